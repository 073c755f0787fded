"""`minbert data fetch`: download (or copy) the data files, verify each against its git blob id."""
from __future__ import annotations

import csv
import hashlib
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

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


def manifest() -> dict[str, list[ManifestEntry]]:
    """The known files and every accepted blob id for each (upstream, plus documented subsets)."""
    text = resources.files("minbert_core").joinpath("data_manifest.tsv").read_text()
    out: dict[str, list[ManifestEntry]] = {}
    for row in csv.DictReader(text.splitlines(), delimiter="\t"):
        e = ManifestEntry(row["file"], row["git_blob"], row["optional"] == "yes", row["note"] or "")
        out.setdefault(e.file, []).append(e)
    return out


def git_blob_id(content: bytes) -> str:
    """The id git gives a file's content: sha1 of 'blob <size>\\0' + content."""
    return hashlib.sha1(b"blob " + str(len(content)).encode() + b"\0" + content).hexdigest()


class FetchError(RuntimeError):
    """A file could not be fetched or failed verification; nothing was overwritten."""


def _read_source(name: str, base_url: str | None, src_dir: Path | None, timeout: float) -> bytes | None:
    """Bytes of `name` from the folder or URL base; None where the source lacks the file."""
    if src_dir is not None:
        p = src_dir / name
        return p.read_bytes() if p.is_file() else None
    url = (base_url or UPSTREAM).rstrip("/") + "/" + name
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise FetchError(f"{url}: cannot reach the server ({reason}); check the network or use "
                         "`minbert data fetch --from DIR` with a folder that holds the files") from e


def fetch(dest: str | Path, base_url: str | None = None, src_dir: str | Path | None = None,
          only: list[str] | None = None, timeout: float = 60.0) -> dict[str, str]:
    """Fetch every manifest file into `dest`, verified and written atomically.

    Returns {file: status} with status 'ok (<note>)', 'missing (optional)'. Raises FetchError
    after trying every file if any required file is missing, unreachable or fails verification.
    """
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
        entries = known[name]
        have = dest / name
        if have.is_file() and git_blob_id(have.read_bytes()) in {e.git_blob for e in entries}:
            status[name] = "up to date"  # already verified: neither downloaded nor rewritten
            continue
        try:
            content = _read_source(name, base_url, src, timeout)
        except FetchError as e:
            errors.append(str(e))
            status[name] = "error"
            continue
        if content is None:
            if entries[0].optional:
                status[name] = "missing (optional)"
                log.warning("%s: not available from the source; skipped (optional)", name)
                continue
            errors.append(f"{name}: not found at the source")
            status[name] = "missing"
            continue
        blob = git_blob_id(content)
        match = next((e for e in entries if e.git_blob == blob), None)
        if match is None:
            errors.append(f"{name}: refused, content does not match the manifest (git blob {blob}, "
                          f"{len(content)} bytes; expected {' or '.join(e.git_blob for e in entries)}). "
                          "The download is corrupted or truncated; the existing file was left untouched.")
            status[name] = "refused"
            continue
        verified[name] = content
        status[name] = f"ok ({match.note})" if match.note else "ok"
    if errors:  # all or nothing: no file is written unless every file verified
        raise FetchError("data fetch failed for some files; nothing was written:\n  " + "\n  ".join(errors))
    for name, content in verified.items():
        atomic_write_bytes(dest / name, content, fsync=True)
    return status
