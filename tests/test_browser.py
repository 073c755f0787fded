"""The gradient-conflict explorer in a real browser: JupyterLab driven by Playwright and the system's
Chromium. Marked slow (CI does not run it); `make browser-test` does.

It opens notebook 04 on two short runs (paths relative to the notebook), runs every cell, changes each
control in turn (the run, the run to compare, the task pair, the layer group, the step range and the
step) and checks after each change that the figure was drawn again and that no output shows an error.
The two sliders are moved with the arrow keys, so the test also says whether keyboard use works.

Needs `pip install -e ".[browser]"` (Playwright's Python package) and a Chromium on the PATH, e.g.
`apt-get install chromium` (Playwright's own browser download is not needed). MINBERT_EXPLORER_RUNS=a,b
points it at two existing run folders instead of two fresh smoke runs; MINBERT_SCREENSHOT=path saves
a picture of the explorer (how figures/explorer_jupyterlab.png is made).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("MINBERT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")

# Dropdowns and sliders are found by their ipywidgets label (the `description` in explorer.Explorer).
FIGURE = ".widget-output img"
LATEST_UNSEEN = "() => { const i = document.querySelector('.widget-output img'); return !!i && !i.dataset.seen; }"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _copy_run(src: Path, dest: Path) -> None:
    """A run's records (not its checkpoints) into the notebook's folder, so its path there is relative."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("checkpoints", "kernel-ipc-*"))


@pytest.fixture(scope="module")
def lab(tmp_path_factory, data_root):
    """A JupyterLab server over a folder holding notebook 04 and two runs; yields (url, folder)."""
    if CHROMIUM is None:
        pytest.skip("no Chromium on the PATH: apt-get install chromium (or set MINBERT_CHROMIUM)")
    pytest.importorskip("playwright.sync_api", reason='pip install -e ".[browser]"')
    from minbert_core.train import smoke_config, train

    root = tmp_path_factory.mktemp("lab")
    runs = root / "runs"
    given = [p for p in os.environ.get("MINBERT_EXPLORER_RUNS", "").split(",") if p]
    if given:
        for p in given:
            _copy_run(Path(p).resolve(), runs / Path(p).name)
        names = [Path(p).name for p in given]
    else:
        names = ["sum", "pcgrad"]
        for name in names:
            train(smoke_config(strategy=name, runs_dir=str(runs), run_id=name, data_dir=str(data_root)))
    nb = nbformat.read(ROOT / "notebooks" / "04_gradient_conflict.ipynb", as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    injected = nbformat.v4.new_code_cell(
        "# Parameters\n" + "".join(f'{k} = "runs/{n}"\n' for k, n in zip(("run_a", "run_b"), names)))
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(at + 1, injected)
    nbformat.write(nb, root / "explore.ipynb")
    # a fresh settings folder: no news or update pop-ups over the notebook
    settings = root / ".settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                          "checkForUpdates": False}))
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(root / ".settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(root / ".workspaces"), MINBERT_DATA=str(data_root),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    log = open(root / "lab.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
                               f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
                               f"--ServerApp.root_dir={root}", *(["--allow-root"] if os.geteuid() == 0 else [])],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start:\n{(root / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield f"{base}/lab/tree/explore.ipynb?token={token}", root
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _labelled(page, kind: str, label: str):
    """The ipywidgets control of this kind whose label is exactly `label` ("step" is not "steps")."""
    return page.locator(kind, has=page.locator(".widget-label", has_text=re.compile(f"^{re.escape(label)}$"))).first


def _changed_and_redrawn(page, what: str, change) -> None:
    """Mark the figure as seen, make the change, then wait for a new figure and check for errors."""
    page.evaluate("() => { document.querySelector('.widget-output img').dataset.seen = '1'; }")
    change()
    try:
        page.wait_for_function(LATEST_UNSEEN, timeout=60_000)
        _settled(page)
    except Exception as e:
        raise AssertionError(f"changing {what} did not redraw the figure; the explorer shows: "
                             f"{page.locator('.widget-output').first.inner_text()!r}") from e
    assert page.locator(".widget-output").first.inner_text().strip() == "", f"{what}: the explorer shows an error"
    _no_error_output(page, f"after changing {what}")


def _settled(page) -> None:
    """The kernel idle for a second on end: every message a change caused has been answered."""
    page.wait_for_function("""() => {
        const idle = !!document.querySelector(".jp-Notebook-ExecutionIndicator[data-status='idle']");
        const now = Date.now();
        if (!idle) { window.__idleSince = null; return false; }
        window.__idleSince = window.__idleSince || now;
        return now - window.__idleSince > 1000;
    }""", polling=100, timeout=60_000)


def _no_error_output(page, when: str) -> None:
    texts = page.locator(".jp-OutputArea-output").all_inner_texts()
    bad = [t for t in texts if "Traceback" in t or "Error" in t]
    assert not bad, f"{when}, an output shows an error: {bad[0][:2000]}"


def test_explorer_controls_redraw_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright

    url, root = lab
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        page = browser.new_page(viewport={"width": 1500, "height": 1800})
        try:
            _drive(page, url)
        except BaseException:
            page.screenshot(path=str(root / "failure.png"))  # what the browser showed, kept with lab.log
            print(f"the browser's last picture: {root / 'failure.png'}; the server's log: {root / 'lab.log'}")
            raise
        finally:
            browser.close()


def _accept_dialog(page) -> None:
    """Accept a JupyterLab dialog (its preselected choice) if one is open or opens within 5 s."""
    try:
        page.wait_for_selector(".jp-Dialog", timeout=5_000)
    except Exception:
        return
    page.locator(".jp-Dialog .jp-mod-accept").first.click()
    page.wait_for_selector(".jp-Dialog", state="detached", timeout=10_000)


def _drive(page, url: str) -> None:
    """Open the notebook, run it, and change every control (the test's steps)."""
    page.goto(url)
    page.wait_for_selector(".jp-Notebook", timeout=120_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
    started = ("() => [...document.querySelectorAll('.jp-InputPrompt')].some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))")
    for attempt in range(3):  # Run > Run All Cells; again if the kernel was not ready to take it
        _accept_dialog(page)  # JupyterLab may first ask which kernel to start: the notebook's own
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-item", has=page.get_by_text("Run All Cells", exact=True)).first.click()
        try:
            page.wait_for_function(started, timeout=30_000)
            break
        except Exception:
            if attempt == 2:
                raise AssertionError("Run All Cells ran nothing in 3 tries")
    page.wait_for_selector(FIGURE, timeout=300_000)
    # every cell finished: no prompt left at [*]
    page.wait_for_function("() => document.querySelectorAll('.jp-InputPrompt').length > 0 && "
                           "![...document.querySelectorAll('.jp-InputPrompt')].some(p => p.textContent.includes('*'))",
                           timeout=300_000)
    _no_error_output(page, "after running every cell")

    def dropdown(label: str):
        return _labelled(page, ".widget-dropdown", label).locator("select")

    def pick_other(label: str, avoid: tuple[str, ...] = ()):
        sel = dropdown(label)
        current = sel.input_value()
        # option values, not their labels: ipywidgets writes spaces in labels as non-breaking ones
        values = sel.locator("option").evaluate_all("os => os.map(o => o.value)")
        options = [v for v in values if v != current and v not in avoid]
        assert options, f"the {label!r} dropdown offers nothing else to choose"
        return lambda: sel.select_option(value=options[0])

    def keys(label: str, handle: int, key: str, times: int):
        def press():
            h = _labelled(page, ".widget-slider", label).locator(".noUi-handle").nth(handle)
            h.focus()
            for _ in range(times):
                h.press(key)
        return press

    names = dropdown("run").locator("option").evaluate_all("os => os.map(o => o.value)")
    _changed_and_redrawn(page, "the run", pick_other("run"))
    _changed_and_redrawn(page, "the run to compare", pick_other("compare", avoid=("(none)",)))
    _changed_and_redrawn(page, "the task pair", pick_other("tasks"))
    _changed_and_redrawn(page, "the layer group", pick_other("layers"))
    # the step range: its left handle two telemetry steps right, by keyboard
    _changed_and_redrawn(page, "the step range (arrow keys)", keys("steps", 0, "ArrowRight", 2))
    _changed_and_redrawn(page, "the step (arrow keys)", keys("step", 0, "ArrowLeft", 1))
    # back to the first run, compared with the second, for the picture
    _changed_and_redrawn(page, "the run", lambda: dropdown("run").select_option(value=names[0]))
    if dropdown("compare").input_value() != names[1]:
        _changed_and_redrawn(page, "the run to compare", lambda: dropdown("compare").select_option(value=names[1]))
    shot = os.environ.get("MINBERT_SCREENSHOT")
    if shot:
        page.locator(".widget-output").first.scroll_into_view_if_needed()
        page.screenshot(path=shot)
