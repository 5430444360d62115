"""Resumable, hash-checked HTTP download into a `.part` file (urllib only).

`fetch(urls, part, ...)` tries each URL in turn. A `.part` left by an interrupted run is resumed
with an HTTP Range request (restarted if the server ignores Range), the bytes are hashed as they
arrive, and the file is only reported good when its size and sha256 match. Renaming the `.part`
to its final name is the caller's job (generator/weights.py), so a file under its final name has
always been verified.
"""
from __future__ import annotations

import hashlib
import http.client
import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from generator.errors import WeightsError

CHUNK = 1 << 20
USER_AGENT = "vqclip/0.1 (+urllib)"
Progress = Callable[[int, "int | None"], None]


class FetchError(WeightsError):
    """Every URL failed; `attempts` holds one (url, reason) pair per URL tried."""

    def __init__(self, attempts: list[tuple[str, str]]):
        self.attempts = attempts
        super().__init__("; ".join(f"{url}: {reason}" for url, reason in attempts))


class HashMismatch(Exception):
    """The transfer completed but the bytes are not the expected ones."""


@dataclass
class Fetched:
    sha256: str
    size: int
    url: str


def sha256_file(path: Path, hasher=None) -> "hashlib._Hash":
    """Hash a file in 1 MiB chunks (never read whole into memory)."""
    hasher = hasher or hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            hasher.update(chunk)
    return hasher


def _total_from(response, offset: int) -> int | None:
    """Full file size from Content-Range (206) or Content-Length (200)."""
    content_range = response.headers.get("Content-Range", "")
    match = re.match(r"bytes (\d+)-(\d+)/(\d+)", content_range)
    if match:
        if int(match.group(1)) != offset:
            raise ConnectionError(f"server resumed at byte {match.group(1)}, not {offset}")
        return int(match.group(3))
    length = response.headers.get("Content-Length")
    return int(length) + offset if length is not None else None


def _transfer(url, part, *, expected_size, timeout, progress) -> tuple["hashlib._Hash", int]:
    """One attempt at one URL: append to `part` from its current size. Returns (hasher, size)."""
    offset = part.stat().st_size if part.exists() else 0
    if expected_size is not None and offset > expected_size:
        part.unlink()
        offset = 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the .part is not a prefix the server recognises: restart
            part.unlink()
            return _transfer(url, part, expected_size=expected_size, timeout=timeout, progress=progress)
        raise
    with response:
        if offset and response.status != 206:  # Range ignored: the body is the whole file again
            offset = 0
        total = _total_from(response, offset)
        if expected_size is not None and total is not None and total != expected_size:
            raise HashMismatch(f"server offers {total} bytes, expected {expected_size}")
        hasher = sha256_file(part) if offset else hashlib.sha256()
        done = offset
        with open(part, "ab" if offset else "wb") as out:
            if progress:
                progress(done, total)
            while chunk := response.read(CHUNK):
                out.write(chunk)
                hasher.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        if total is not None and done != total:
            raise ConnectionError(f"connection closed after {done} of {total} bytes")
    return hasher, done


def fetch(
    urls: tuple[str, ...] | list[str],
    part: Path,
    *,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    timeout: float = 10.0,
    progress: Progress | None = None,
) -> Fetched:
    """Download the first URL that delivers the expected bytes into `part`.

    Args:
        urls: tried in order; all must serve the same file.
        part: the partial file; resumed if present, deleted if its bytes turn out wrong.
        expected_sha256, expected_size: checked once the transfer completes (None: not checked).
        timeout: seconds to connect and for each read to make progress.
        progress: called as progress(bytes_done, total_or_None) while bytes arrive.
    Raises:
        FetchError: every URL failed; the message names each URL and why.
    """
    attempts: list[tuple[str, str]] = []
    part.parent.mkdir(parents=True, exist_ok=True)
    for url in urls:
        try:
            hasher, size = _transfer(
                url, part, expected_size=expected_size, timeout=timeout, progress=progress
            )
            actual = hasher.hexdigest()
            if expected_size is not None and size != expected_size:
                raise HashMismatch(f"got {size} bytes, expected {expected_size}")
            if expected_sha256 is not None and actual != expected_sha256:
                raise HashMismatch(f"sha256 mismatch: expected {expected_sha256}, got {actual}")
            return Fetched(actual, size, url)
        except HashMismatch as exc:
            part.unlink(missing_ok=True)  # wrong bytes are never resumed
            attempts.append((url, str(exc)))
        except urllib.error.HTTPError as exc:
            attempts.append((url, f"HTTP {exc.code} {exc.reason}"))
        except urllib.error.URLError as exc:
            attempts.append((url, f"unreachable ({exc.reason})"))
        except (OSError, http.client.HTTPException, socket.timeout) as exc:
            # a dropped or stalled transfer: the .part stays for the next URL or the next run
            attempts.append((url, f"interrupted ({exc.__class__.__name__}: {exc})"))
    raise FetchError(attempts)
