"""`minbert data fetch` against a local HTTP server serving ../shared/data."""
from __future__ import annotations

import functools
import http.server
import shutil
import socket
import threading

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
