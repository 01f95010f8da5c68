"""Hot reload: valid edits swap in atomically, invalid ones are logged and ignored, even while
other threads are deciding."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from policies import Decision, PolicyStore, parse_policy
from core.errors import PolicyError
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


def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


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
