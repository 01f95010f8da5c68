"""How `router serve` logs: one stream (stderr), text or JSON lines, the same in every worker process.

uvicorn applies `log_config(...)` in the parent and again in each worker it spawns, so the app's
own INFO lines (start-up, readiness, reloads, Redis trouble) show with `--workers N` as with one.
Third-party loggers speak only at WARNING. A record may carry structured fields in
`extra={"fields": {...}}`: JSON lines hold them as keys, text lines append them as key=value.

The access log (`--access-log`) is one `router.access` line per chat request, written where the
request is accounted (router.server.pipeline), with its id, key, tier, rule, strategy, samples,
tokens, cost and latency.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any, Literal

LogFormat = Literal["text", "json"]
OWN_LOGGERS = ("core", "classifiers", "strategies", "policies", "router")
ACCESS_LOGGER = "router.access"


def _fields(record: logging.LogRecord) -> Mapping[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, Mapping) else {}


class TextFormatter(logging.Formatter):
    """`LEVEL logger: message key=value ...`."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{key}={_text(value)}" for key, value in _fields(record).items())
        return f"{line} {extra}" if extra else line


def _text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (ISO 8601, UTC), level, logger, message, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        body: dict[str, Any] = {
            "ts": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _fields(record).items():
            body.setdefault(key, value)
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


def log_config(fmt: LogFormat = "text", *, level: str = "info", access_log: bool = False) -> dict[str, Any]:
    """A logging.config dict for uvicorn's `log_config` (applied in every worker process)."""
    formatter = f"{__name__}.{'JsonFormatter' if fmt == 'json' else 'TextFormatter'}"
    own = "DEBUG" if level in ("debug", "trace") else "INFO"
    uvicorn_level = level.upper() if level != "trace" else "DEBUG"
    stderr = {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        # uvicorn sets use_colors on these two names when asked to; both are ours.
        "formatters": {"default": {"()": formatter}, "access": {"()": formatter}},
        "handlers": {"default": stderr},
        "root": {"level": "WARNING", "handlers": ["default"]},
        "loggers": {
            **{name: {"level": own} for name in OWN_LOGGERS},
            ACCESS_LOGGER: {"level": "INFO" if access_log else "WARNING"},
            "uvicorn": {"level": uvicorn_level, "handlers": ["default"], "propagate": False},
            "uvicorn.error": {"level": uvicorn_level},
            "uvicorn.access": {"level": "INFO", "handlers": ["default"], "propagate": False},
        },
    }
