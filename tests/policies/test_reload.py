"""Hot reload: valid edits swap in atomically, invalid ones are logged and ignored, even while
other threads are deciding."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from policies import Decision, PolicyStore, parse_policy
from core.errors import PolicyError
from tests.conftest import wait_for
from tests.policies.support import TWO_TIERS

# Difficulty 0.6 goes to strong under TWO_TIERS, to weak once the edge moves to 0.7.
MOVED = TWO_TIERS.replace("max: 0.50", "max: 0.70").replace("min: 0.50", "min: 0.70")
BROKEN = TWO_TIERS.replace("tier: strong", "tier: stronk")
EXPECTED_TIER = {parse_policy(TWO_TIERS).version: "strong", parse_policy(MOVED).version: "weak"}


def replace_file(path: Path, text: str) -> None:
    """Write as editors and deploy tools do: a new file renamed over the old, never half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "router.yaml"
    path.write_text(TWO_TIERS)
    return path


class Deciders:
    """Threads that decide in a loop, each reading the live policy once per 'request'."""

    def __init__(self, store: PolicyStore, count: int = 4) -> None:
        self.store = store
        self.stop = threading.Event()
        self.seen: list[tuple[str, Decision]] = []
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run) for _ in range(count)]

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                policy = self.store.policy  # once per request
                first = policy.decide("What is 6 x 7?", 0.6)
                time.sleep(0.0005)  # the request is in flight across a possible swap
                second = policy.decide("What is 6 x 7?", 0.6)
                assert first == second
                with self.lock:
                    self.seen.append((policy.version, first))
        except BaseException as error:  # surfaced to the test below
            self.errors.append(error)

    def __enter__(self) -> Deciders:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def check_consistent(deciders: Deciders) -> set[str]:
    assert deciders.errors == []
    for version, decision in deciders.seen:
        assert decision.policy_version == version
        assert decision.tier == EXPECTED_TIER[version]
    return {version for version, _ in deciders.seen}


def test_valid_and_invalid_edits_under_concurrent_decisions(
    policy_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = PolicyStore(policy_file)
    original = store.policy
    with Deciders(store) as deciders:
        time.sleep(0.05)
        policy_file.write_text(MOVED)
        assert store.reload() is True
        moved = store.policy
        assert moved.version != original.version
        time.sleep(0.05)
        with caplog.at_level(logging.ERROR, logger="policies.reload"):
            policy_file.write_text(BROKEN)
            assert store.reload() is False
        assert store.policy is moved
        time.sleep(0.05)
    versions = check_consistent(deciders)
    assert versions == {original.version, moved.version}
    # The reference taken before the swap still decides with the old policy.
    assert original.decide("q", 0.6).tier == "strong"
    assert "edit rejected" in caplog.text
    assert "rules[1].tier: no tier named 'stronk'" in caplog.text
    assert f"keeping policy {moved.version}" in caplog.text


def test_watcher_picks_up_edits_and_keeps_the_last_good_policy(
    policy_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = PolicyStore(policy_file, interval_s=0.02)
    first = store.policy.version
    with (
        caplog.at_level(logging.INFO, logger="policies.reload"),
        store,
        Deciders(store) as deciders,
    ):
        replace_file(policy_file, MOVED)
        assert wait_for(lambda: store.policy.version != first)
        moved = store.policy.version
        replace_file(policy_file, BROKEN)
        assert wait_for(lambda: "edit rejected" in caplog.text)
        time.sleep(0.1)  # several more polls: still the last good policy, logged once
        assert store.policy.version == moved
    assert caplog.text.count("edit rejected") == 1
    assert check_consistent(deciders) <= {first, moved}
    # Back to a valid file after the broken one: swapped in again.
    replace_file(policy_file, TWO_TIERS)
    assert store.reload() is True and store.policy.version == first


def test_unchanged_content_is_not_reloaded(policy_file: Path) -> None:
    store = PolicyStore(policy_file)
    policy = store.policy
    policy_file.write_text(TWO_TIERS)  # touched, same bytes
    assert store.reload() is False
    assert store.policy is policy


def test_missing_file_keeps_the_policy(policy_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = PolicyStore(policy_file)
    policy = store.policy
    policy_file.unlink()
    with caplog.at_level(logging.WARNING, logger="policies.reload"):
        assert store.reload() is False
        assert store.reload() is False
    assert caplog.text.count("file is missing") == 1
    assert store.policy is policy
    policy_file.write_text(MOVED)
    assert store.reload() is True


def test_start_needs_a_valid_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no such policy file"):
        PolicyStore(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN)
    with pytest.raises(PolicyError, match="stronk"):
        PolicyStore(broken)


def test_stop_is_idempotent(policy_file: Path) -> None:
    store = PolicyStore(policy_file, interval_s=0.01)
    store.start()
    store.start()
    store.stop()
    store.stop()


# Hardening (issue 10, item 3): a file still being written never goes live, and an edit that drops
# every API key source needs the new file's consent.
FALLBACKS = "fallbacks:\n  strong: [weak]\n"
KEYS = "server:\n  api_keys:\n    - {name: app, sha256: " + "a" * 64 + "}\n    - {name: ops, sha256: " + "b" * 64 + "}\n"


class Sampler:
    """A thread that notes every policy version the store serves, as requests would see them."""

    def __init__(self, store: PolicyStore) -> None:
        self.store = store
        self.versions: set[str] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        while not self.stop.is_set():
            self.versions.add(self.store.policy.version)
            time.sleep(0.001)

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        # One last look, as a request arriving now would: the thread may not have woken since the swap.
        self.versions.add(self.store.policy.version)


def test_a_file_written_in_two_parts_never_goes_live_half_written(policy_file: Path) -> None:
    policy_file.write_text(TWO_TIERS + FALLBACKS)
    # Settling far longer than the 0.3 s between the two writes, so a loaded machine cannot stretch the gap past it.
    store = PolicyStore(policy_file, interval_s=0.01, settle_s=1.5)
    first = store.policy.version
    half, whole = parse_policy(MOVED).version, parse_policy(MOVED + FALLBACKS).version
    with store, Sampler(store) as sampler:
        with policy_file.open("w") as handle:  # in place, as `cat > router.yaml` or a slow copy does
            handle.write(MOVED)  # a valid policy on its own: it only lacks the fallbacks
            handle.flush()
            time.sleep(0.3)
            handle.write(FALLBACKS)
        assert wait_for(lambda: store.policy.version == whole)
    assert half not in sampler.versions
    assert sampler.versions == {first, whole}
    assert store.stats() == {"applied": 1, "invalid": 0, "auth_downgrade_refused": 0}


def test_the_settle_time_comes_from_the_live_policy(policy_file: Path) -> None:
    policy_file.write_text(TWO_TIERS + "server:\n  reload: {settle_s: 0}\n")
    store = PolicyStore(policy_file)
    assert store.settle_s == 0
    policy_file.write_text(MOVED)
    assert store.poll() is True  # no settling asked: the first poll that sees the edit loads it
    assert store.settle_s == 1.0  # MOVED says nothing: the default
    policy_file.write_text(TWO_TIERS)
    assert store.poll() is False and store.poll() is False  # seen, but not yet still for 1 s
    assert store.policy.version == parse_policy(MOVED).version


@pytest.mark.parametrize(
    ("old", "new", "dropped"),
    [
        (KEYS, "", "every server.api_keys entry (2)"),
        ("server:\n  redis_api_keys: true\n", "server:\n  redis_api_keys: false\n", "server.redis_api_keys"),
        (KEYS + "  redis_api_keys: true\n", "", "every server.api_keys entry (2) and server.redis_api_keys"),
    ],
    ids=["api-keys", "redis-keys", "both"],
)
def test_an_edit_that_drops_every_key_source_is_refused_unless_confirmed(
    policy_file: Path, caplog: pytest.LogCaptureFixture, old: str, new: str, dropped: str
) -> None:
    policy_file.write_text(TWO_TIERS + old)
    store = PolicyStore(policy_file)
    live = store.policy
    with caplog.at_level(logging.ERROR, logger="policies.reload"):
        policy_file.write_text(MOVED + new)
        assert store.reload() is False
        assert store.reload() is False  # logged and counted once per content
    assert store.policy is live
    assert caplog.text.count("edit refused") == 1
    assert f"it drops {dropped}" in caplog.text
    assert "allow_auth_downgrade: true" in caplog.text
    assert store.stats()["auth_downgrade_refused"] == 1
    confirmed = new or "server:\n"
    policy_file.write_text(MOVED + confirmed + "  reload: {allow_auth_downgrade: true}\n")
    assert store.reload() is True
    assert store.policy.version != live.version


def test_removing_one_key_or_adding_keys_is_ordinary(policy_file: Path) -> None:
    policy_file.write_text(TWO_TIERS + KEYS)
    store = PolicyStore(policy_file)
    one_key = KEYS.split("    - {name: ops")[0]
    policy_file.write_text(TWO_TIERS + one_key)
    assert store.reload() is True
    policy_file.write_text(TWO_TIERS)  # from no key source to... still one is dropped: refused
    assert store.reload() is False
    store_without = PolicyStore(policy_file)
    policy_file.write_text(TWO_TIERS + KEYS)
    assert store_without.reload() is True
