"""LedgerConfig validation, the package's public surface, and entry round trips."""

from __future__ import annotations

import types

import pytest
from pydantic import ValidationError

import router.ledger
from router.ledger import LedgerConfig
from router.ledger.entry import entry_from_dict
from tests.ledger.support import make_entry


def test_defaults_are_bounded_and_embedded() -> None:
    config = LedgerConfig()
    assert config.redis_url is None and config.key_prefix == "router:"
    assert config.stream_maxlen == 100_000 and config.buffer_size == 10_000 and not config.store_prompts
    assert config.display_url == "(embedded, in-process)"


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"redis_url": "http://localhost:6379"}, "redis_url"),
        ({"stream_maxlen": 10}, "stream_maxlen"),
        ({"record_ttl_days": 0}, "record_ttl_days"),
        ({"buffer_size": -1}, "buffer_size"),
        ({"key_prefix": ""}, "key_prefix"),
        ({"stream_max_len": 1000}, "stream_max_len"),  # a typo is an error, not ignored
        ({"store_prompts": "yes"}, "store_prompts"),  # strict: no string-to-bool guessing
    ],
)
def test_bad_settings_name_the_field(values: dict[str, object], where: str) -> None:
    with pytest.raises(ValidationError) as caught:
        LedgerConfig(**values)  # type: ignore[arg-type]
    assert caught.value.errors()[0]["loc"] == (where,)


def test_password_never_shows_in_repr() -> None:
    config = LedgerConfig(redis_url="redis://user:s3cret@cache:6380/2")
    assert "s3cret" not in repr(config) and "s3cret" not in config.display_url
    assert "redis://user:***@cache:6380/2" in repr(config)


def test_all_is_the_public_surface() -> None:
    public = {
        name for name, value in vars(router.ledger).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(router.ledger.__all__) == public


def test_entries_round_trip_and_keep_unknown_keys() -> None:
    entry = make_entry(3, extra={"temperature": 0.2})
    assert entry_from_dict(entry.as_dict()) == entry
    newer = {**entry.as_dict(), "region": "eu"}
    assert entry_from_dict(newer).extra == {"temperature": 0.2, "region": "eu"}
