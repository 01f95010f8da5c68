"""Fetch a data file named by an http(s) URL into a local cache, once.

The cache folder is `cache_dir` when given, else `$ROUTER_CACHE_DIR/downloads`, else
`~/.cache/difficulty-router/downloads`. A file is named sha256(url)[:16] + '-' + the URL's
basename, written to a temporary file and renamed, so an interrupted download never
leaves a half file that a later run would trust.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from core.errors import DataError

logger = logging.getLogger(__name__)

CACHE_ENV = "ROUTER_CACHE_DIR"
TIMEOUT_S = 60.0


def is_url(text: str) -> bool:
    """True for http:// and https:// addresses."""
    return text.lower().startswith(("http://", "https://"))


def url_basename(url: str) -> str:
    """The last path segment of a URL, made safe for a file name ('download' when there is none)."""
    name = unquote(urlsplit(url).path).rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "download"


def downloads_dir(cache_dir: Path | None = None) -> Path:
    """Where downloads are kept: cache_dir, else $ROUTER_CACHE_DIR/downloads, else ~/.cache/..."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    root = os.environ.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "difficulty-router"
    return base / "downloads"


def cached_path(url: str, cache_dir: Path | None = None) -> Path:
    """The file a URL is (or will be) cached in."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return downloads_dir(cache_dir) / f"{digest}-{url_basename(url)}"


def fetch(url: str, cache_dir: Path | None = None) -> Path:
    """The local copy of `url`, downloading it first unless it is already cached."""
    target = cached_path(url, cache_dir)
    if target.is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=".part"
        )
    except OSError as error:
        raise DataError(
            f"Cannot write to the download cache {target.parent} ({error.strerror}). Set "
            f"{CACHE_ENV} to a writable folder, or download {url} by hand and pass the local path."
        ) from None
    logger.info("downloading %s to %s", url, target)
    try:
        with (
            os.fdopen(handle, "wb") as out,
            httpx.stream("GET", url, follow_redirects=True, timeout=TIMEOUT_S) as response,
        ):
            response.raise_for_status()
            for chunk in response.iter_bytes():
                out.write(chunk)
        os.replace(temporary, target)
    except httpx.HTTPStatusError as error:
        status = error.response
        why = f"the server answered HTTP {status.status_code} {status.reason_phrase}"
        raise _unfetched(url, why) from None
    except httpx.HTTPError as error:
        raise _unfetched(url, str(error) or type(error).__name__) from None
    except OSError as error:
        raise DataError(f"Cannot save {url} to {target} ({error.strerror}).") from None
    finally:
        Path(temporary).unlink(missing_ok=True)
    return target


def _unfetched(url: str, why: str) -> DataError:
    return DataError(
        f"Could not fetch {url}: {why}. Download the file by hand (e.g. curl -L -O '{url}') "
        "and pass the local path instead."
    )
