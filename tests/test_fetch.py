"""`minbert data fetch` against a local HTTP server serving ../shared/data."""
from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import socket
import threading
import time

import pytest

from minbert_core.atomic import _umask
from minbert_core.cli import main
from minbert_core.fetch import FetchError, fetch, git_blob_id, manifest

SMALL = ["ids-sst-dev.csv", "sts-dev.csv"]


@pytest.fixture
def server(data_root, tmp_path):
    """Serve a copy of the data folder on 127.0.0.1 (tests may corrupt the copy)."""
    served = tmp_path / "served"
    shutil.copytree(data_root, served)
    handler = functools.partial(_QuietHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", served
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_blob_id_matches_git():
    assert git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object`


def test_good_fetch_over_http(server, tmp_path):
    url, _ = server
    dest = tmp_path / "data"
    status = fetch(dest, base_url=url, only=SMALL)
    assert all(s.startswith("ok") for s in status.values())
    for name in SMALL:
        assert git_blob_id((dest / name).read_bytes()) == manifest()[name][0].git_blob
        assert (dest / name).stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's 0600
    assert not list(dest.glob(".*part"))


def test_corrupted_download_refused_and_nothing_overwritten(server, tmp_path):
    url, served = server
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "sts-dev.csv").write_text("previous content")
    p = served / "sts-dev.csv"
    p.write_bytes(p.read_bytes()[:-100])  # truncated
    with pytest.raises(FetchError, match="sts-dev.csv: refused"):
        fetch(dest, base_url=url, only=SMALL)
    assert (dest / "sts-dev.csv").read_text() == "previous content"
    assert not (dest / "ids-sst-dev.csv").exists()  # all or nothing: the good file waits for the bad one
    assert not list(dest.glob(".*part"))


def test_correct_files_are_neither_fetched_nor_rewritten(server, tmp_path):
    url, served = server
    dest = tmp_path / "data"
    fetch(dest, base_url=url, only=SMALL)
    before = {n: (dest / n).stat().st_mtime_ns for n in SMALL}
    for n in SMALL:
        (served / n).unlink()  # the source no longer has them: a second fetch must not need it
    assert fetch(dest, base_url=url, only=SMALL) == {n: "up to date" for n in SMALL}
    assert {n: (dest / n).stat().st_mtime_ns for n in SMALL} == before


def test_server_down_is_a_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(FetchError, match="cannot reach the server"):
        fetch(tmp_path / "d", base_url=f"http://127.0.0.1:{port}/", only=SMALL, timeout=5)


def test_fetch_from_local_folder_via_cli(data_root, tmp_path, capsys):
    dest = tmp_path / "data"
    assert main(["data", "fetch", "--from", str(data_root), "--dest", str(dest)]) == 0
    out = capsys.readouterr().out
    assert "quora-train.csv" in out and "offline subset, 13,507 rows" in out
    assert "quora-test-student.csv" in out and "missing (optional)" in out
    assert len(list(dest.glob("*.csv"))) == 11


def test_cli_reports_failure(tmp_path, capsys):
    assert main(["data", "fetch", "--from", str(tmp_path / "none"), "--dest", str(tmp_path / "d")]) == 1
    assert "does not exist" in capsys.readouterr().err


# ---- a slow or endless server, a source that is not a file (issue 22 item 2) -----------------------

SST_DEV = "ids-sst-dev.csv"
SST_DEV_BYTES = 151_384  # its size in the manifest


@contextlib.contextmanager
def _raw_server(respond):
    """A TCP server on 127.0.0.1 answering each request with respond(conn, stop); yields its URL."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.1)
    stop = threading.Event()

    def serve(conn):
        with conn:
            try:
                conn.recv(65536)  # the request
                respond(conn, stop)
            except OSError:  # the client hung up: what a stopped download does
                pass

    def accept_loop():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    t = threading.Thread(target=accept_loop, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}/"
    finally:
        stop.set()
        t.join()
        srv.close()


def _trickle(conn, stop, data: bytes, every: float = 0.05, limit_s: float = 8.0) -> None:
    """Send `data` a byte at a time, one every `every` s (never long enough to trip a read timeout);
    give up after limit_s so that code without a deadline fails the test instead of hanging it."""
    t0 = time.monotonic()
    for i in range(len(data)):
        if stop.is_set() or time.monotonic() - t0 > limit_s:
            return
        conn.sendall(data[i:i + 1])
        time.sleep(every)


HEADERS = f"HTTP/1.1 200 OK\r\nContent-Length: {SST_DEV_BYTES}\r\n\r\n".encode()
TRICKLES = {
    "body": lambda conn, stop: (conn.sendall(HEADERS), _trickle(conn, stop, b"x" * SST_DEV_BYTES)),
    "headers": lambda conn, stop: _trickle(conn, stop, HEADERS + b"x" * SST_DEV_BYTES),
}


@pytest.mark.parametrize("where", list(TRICKLES))
def test_a_trickling_server_is_stopped_at_the_deadline(tmp_path, where):
    dest = tmp_path / "data"
    with _raw_server(TRICKLES[where]) as url:
        t0 = time.monotonic()
        with pytest.raises(FetchError, match=r"not complete after 1 s \(the whole download's deadline\)"):
            fetch(dest, base_url=url, only=[SST_DEV], timeout=5, deadline=1)
        took = time.monotonic() - t0
    assert took < 6  # the deadline ended it, not the trickle's own end (8 s) nor a read timeout
    assert not list(dest.iterdir())


def _endless(conn, stop, head: bytes, chunk: bytes) -> None:
    conn.sendall(head)
    while not stop.is_set():
        conn.sendall(chunk)


ENDLESS = {  # a body of no announced length, an endless chunked body, and a false Content-Length
    "close-delimited": lambda c, s: _endless(c, s, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", b"a\tb\n" * 4096),
    "chunked": lambda c, s: _endless(c, s, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                                     b"4000\r\n" + b"z" * 0x4000 + b"\r\n"),
    "huge-length": lambda c, s: _endless(c, s, b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n",
                                         b"z" * 65536),
}


@pytest.mark.parametrize("kind", list(ENDLESS))
def test_an_endless_stream_stops_at_the_manifest_size(tmp_path, kind):
    dest = tmp_path / "data"
    with _raw_server(ENDLESS[kind]) as url:
        with pytest.raises(FetchError, match=f"more than the manifest's {SST_DEV_BYTES:,} (bytes|for this file)"):
            fetch(dest, base_url=url, only=[SST_DEV], timeout=5, deadline=20)
    assert not list(dest.iterdir())


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "directory", "too-large"])
def test_a_source_file_that_is_not_the_data_file_is_named(tmp_path, kind):
    src = tmp_path / "src"
    src.mkdir()
    p = src / SST_DEV
    if kind == "dev-zero":
        p.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(p)  # opening it would wait for a writer forever
    elif kind == "directory":
        p.mkdir()
    else:
        p.write_bytes(b"a\tb\n" * SST_DEV_BYTES)
    expected = {"dev-zero": "is not a regular file", "fifo": "is not a regular file",
                "directory": "is a directory", "too-large": "more than the manifest's"}[kind]
    with pytest.raises(FetchError, match=f"{SST_DEV}: {expected}"):
        fetch(tmp_path / "data", src_dir=src, only=[SST_DEV])


def test_every_manifest_size_matches_the_shared_copy(data_root):
    """The sizes the caps come from are those of the files (where a copy exists)."""
    for name, entries in manifest().items():
        if (data_root / name).is_file():
            have = (data_root / name).read_bytes()
            match = [e for e in entries if e.git_blob == git_blob_id(have)]
            assert match and match[0].size == len(have), name
