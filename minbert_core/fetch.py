"""`minbert data fetch`: download (or copy) the data files, verify each against its git blob id."""
from __future__ import annotations

import csv
import functools
import hashlib
import http.client
import logging
import socket
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

from .atomic import atomic_write_bytes

log = logging.getLogger("minbert.fetch")

UPSTREAM = "https://raw.githubusercontent.com/timothydai/minbert-default-final-project/main/data/"


@dataclass(frozen=True)
class ManifestEntry:
    """One accepted version of a data file."""

    file: str
    git_blob: str
    optional: bool
    note: str
    size: int | None  # bytes; None where only an upper bound is known (a file no offline copy has)
    max_size: int  # bytes: a download is stopped past this


def _sizes(field: str, file: str) -> tuple[int | None, int]:
    """(exact size or None, cap) from the manifest's `bytes` field: '151384', or '<=32000000'."""
    try:
        return (None, int(field[2:])) if field.startswith("<=") else (int(field), int(field))
    except ValueError:
        raise ValueError(f"data_manifest.tsv: {file}: bytes {field!r} is not a size ('123' or '<=123')") from None


def manifest() -> dict[str, list[ManifestEntry]]:
    """The known files and every accepted blob id for each (upstream, plus documented subsets)."""
    text = resources.files("minbert_core").joinpath("data_manifest.tsv").read_text()
    out: dict[str, list[ManifestEntry]] = {}
    for row in csv.DictReader(text.splitlines(), delimiter="\t"):
        e = ManifestEntry(row["file"], row["git_blob"], row["optional"] == "yes", row["note"] or "",
                          *_sizes(row["bytes"], row["file"]))
        out.setdefault(e.file, []).append(e)
    return out


def git_blob_id(content: bytes) -> str:
    """The id git gives a file's content: sha1 of 'blob <size>\\0' + content."""
    return hashlib.sha1(b"blob " + str(len(content)).encode() + b"\0" + content).hexdigest()


class FetchError(RuntimeError):
    """A file could not be fetched or failed verification; nothing was overwritten."""


CHUNK = 1 << 16  # bytes per read


def _read_capped(read: Callable[[int], bytes], cap: int, what: str, deadline: _Deadline | None = None) -> bytes:
    """Everything `read` gives, refusing more than `cap` bytes (an endless or wrong stream)."""
    buf = bytearray()
    while chunk := read(CHUNK):
        buf += chunk
        if len(buf) > cap:
            raise FetchError(f"{what}: more than the manifest's {cap:,} bytes for this file; stopped reading. "
                             "The source does not serve this data file: check --base-url / --from")
        if deadline is not None and deadline.expired:
            break
    return bytes(buf)


def _read_local(p: Path, cap: int) -> bytes | None:
    """Bytes of the source folder's file `p`; None where it has none."""
    if not p.exists():
        return None
    if not p.is_file():  # a FIFO or /dev/zero would block or never end
        raise FetchError(f"{p}: {'is a directory' if p.is_dir() else 'is not a regular file'}; "
                         "--from needs a folder holding the data files themselves")
    with p.open("rb") as f:
        return _read_capped(f.read, cap, str(p))


class _Deadline:
    """Ends a download at its deadline however the server paces its bytes (one byte just inside every
    per-read timeout, in the headers or the body): at the deadline it shuts the download's sockets
    down, which makes any read in progress return."""

    def __init__(self, seconds: float):
        self.seconds, self.expired = seconds, False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def watch(self, sock: socket.socket) -> socket.socket:
        """Register a new connection's socket (a duplicate: TLS wrapping detaches the original)."""
        with self._lock:
            self._socks.append(sock.dup())
            if self.expired:
                _shut(self._socks[-1])
        return sock

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for s in self._socks:
                _shut(s)

    def __enter__(self) -> "_Deadline":
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        with self._lock:
            for s in self._socks:
                s.close()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed
        pass


def _watched(cls: type, deadline: _Deadline, host: str, **kw) -> http.client.HTTPConnection:
    """An HTTP(S) connection whose sockets `deadline` can shut down."""
    conn = cls(host, **kw)
    create = conn._create_connection  # http.client's hook for opening the socket (proxies, tunnels too)
    conn._create_connection = lambda *a, **k: deadline.watch(create(*a, **k))
    return conn


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline):
        super().__init__()
        self.deadline = deadline

    def http_open(self, req):
        return self.do_open(functools.partial(_watched, http.client.HTTPConnection, self.deadline), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline):
        super().__init__()
        self.deadline = deadline

    def https_open(self, req):  # the default context: certificates verified
        return self.do_open(functools.partial(_watched, http.client.HTTPSConnection, self.deadline), req)


def _download(url: str, cap: int, timeout: float, deadline: float) -> bytes | None:
    """The body at `url` within `deadline` seconds and `cap` bytes; None on HTTP 404."""
    watch = _Deadline(deadline)
    opener = urllib.request.build_opener(_HTTPHandler(watch), _HTTPSHandler(watch))
    try:
        with watch, opener.open(url, timeout=min(timeout, deadline)) as r:
            declared = r.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > cap:
                raise FetchError(f"{url}: the server announces {int(declared):,} bytes, more than the manifest's "
                                 f"{cap:,} for this file; nothing was read. Check --base-url")
            content = _read_capped(r.read1, cap, url, watch)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        if not watch.expired:
            reason = getattr(e, "reason", e)
            raise FetchError(f"{url}: cannot reach the server ({reason}); check the network or use "
                             "`minbert data fetch --from DIR` with a folder that holds the files") from e
    if watch.expired:
        raise FetchError(f"{url}: not complete after {deadline:g} s (the whole download's deadline); the server is "
                         "too slow or stalled: try again later, raise --deadline, or use --from DIR")
    return content


def _read_source(name: str, cap: int, base_url: str | None, src_dir: Path | None, timeout: float,
                 deadline: float) -> bytes | None:
    """Bytes of `name` from the folder or URL base; None where the source lacks the file."""
    if src_dir is not None:
        return _read_local(src_dir / name, cap)
    return _download((base_url or UPSTREAM).rstrip("/") + "/" + name, cap, timeout, deadline)


DEADLINE_S = 600.0  # one file's whole download; the largest (22 MB) needs 37 KB/s to make it


def fetch(dest: str | Path, base_url: str | None = None, src_dir: str | Path | None = None,
          only: list[str] | None = None, timeout: float = 60.0, deadline: float = DEADLINE_S) -> dict[str, str]:
    """Fetch every manifest file into `dest`, verified and written atomically.

    timeout: seconds one network read may wait; deadline: seconds one file's whole download may take,
    however the server paces it. No file is read past its manifest size (an endless stream stops there).
    Returns {file: status} with status 'ok (<note>)', 'missing (optional)'. Raises FetchError
    after trying every file if any required file is missing, unreachable, too slow, too large or
    fails verification.
    """
    if not (timeout > 0 and deadline > 0):
        raise ValueError(f"timeout and deadline must be > 0 seconds; got {timeout!r} and {deadline!r}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    src = Path(src_dir) if src_dir is not None else None
    if src is not None and not src.is_dir():
        raise FetchError(f"{src}: --from folder does not exist")
    known = manifest()
    names = only or list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise FetchError(f"unknown data file(s): {', '.join(unknown)}; known: {', '.join(known)}")
    status: dict[str, str] = {}
    errors: list[str] = []
    verified: dict[str, bytes] = {}
    for name in names:
        read = functools.partial(_read_source, name, base_url=base_url, src_dir=src, timeout=timeout,
                                 deadline=deadline)
        status[name], error, content = _fetch_one(name, known[name], dest / name, read)
        if error:
            errors.append(error)
        if content is not None:
            verified[name] = content
    if errors:  # all or nothing: no file is written unless every file verified
        raise FetchError("data fetch failed for some files; nothing was written:\n  " + "\n  ".join(errors))
    for name, content in verified.items():
        atomic_write_bytes(dest / name, content, fsync=True)
    return status


def _is_current(have: Path, entries: list[ManifestEntry]) -> bool:
    """`have` is already an accepted version (its size is checked before any byte is read)."""
    if not have.is_file():
        return False
    size, sizes = have.stat().st_size, {e.size for e in entries}
    if size > max(e.max_size for e in entries) or (None not in sizes and size not in sizes):
        return False
    return git_blob_id(have.read_bytes()) in {e.git_blob for e in entries}


def _fetch_one(name: str, entries: list[ManifestEntry], have: Path,
               read: Callable[[int], bytes | None]) -> tuple[str, str | None, bytes | None]:
    """(status, error or None, verified content or None) of one file; `read(cap)` gets its bytes."""
    if _is_current(have, entries):
        return "up to date", None, None  # already verified: neither downloaded nor rewritten
    try:
        content = read(max(e.max_size for e in entries))
    except FetchError as e:
        return "error", str(e), None
    if content is None:
        if entries[0].optional:
            log.warning("%s: not available from the source; skipped (optional)", name)
            return "missing (optional)", None, None
        return "missing", f"{name}: not found at the source", None
    blob = git_blob_id(content)
    match = next((e for e in entries if e.git_blob == blob), None)
    if match is None:
        expected = " or ".join(e.git_blob + (f" ({e.size:,} bytes)" if e.size else "") for e in entries)
        return "refused", (f"{name}: refused, content does not match the manifest (git blob {blob}, "
                           f"{len(content):,} bytes; expected {expected}). The download is corrupted or "
                           "truncated; the existing file was left untouched."), None
    return (f"ok ({match.note})" if match.note else "ok"), None, content
