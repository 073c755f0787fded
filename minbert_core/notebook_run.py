"""Running one notebook: papermill on the `minbert` kernel, into its run folder.

The only module (with the widget explorer) that drives Jupyter. A study (minbert_core.study) and a
cluster task (minbert_core.cluster) both run their notebooks through `run_entry`.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from .atomic import atomic_write_text
from .resume import finished_without_state
from .runs import inside
from .lifeline import wrap

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
KERNEL = "minbert"
TRAINING_NOTEBOOKS = ("01_sentiment", "02_multitask", "03_structure")


def check_kernel(kernel: str) -> None:
    """A clear error where the Jupyter kernel papermill needs is not registered."""
    from jupyter_client.kernelspec import KernelSpecManager

    if kernel not in KernelSpecManager().find_kernel_specs():
        raise ValueError(f"Jupyter kernel {kernel!r} is not registered; run `make` targets (they register it) or "
                         f"`{sys.executable} -m ipykernel install --sys-prefix --name {kernel}`")


def execute(notebook: Path, output: Path, params: dict, kernel: str) -> None:
    """Run one notebook with papermill, its outputs saved to `output`."""
    import papermill as pm

    output.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(notebook), str(output), parameters=params, kernel_name=kernel, cwd=str(output.parent),
                        progress_bar=False, log_output=False, kernel_manager_class=_kernel_manager_class())


def _kernel_manager_class() -> type:
    """Kernels talk over Unix sockets where there are any: no TCP ports opened, and no "Kernel is
    running over TCP without encryption" warning from every notebook (Windows keeps TCP). A kernel
    being shut down is not sent SIGINT first: papermill shuts a kernel down once its cells are
    done, so there is nothing to interrupt, and the signal only made ipykernel log "KeyboardInterrupt
    caught in kernel" now and then. And a kernel dies with the process that started it
    (minbert_core.lifeline): a killed study or cluster worker leaves no kernel training on."""
    from jupyter_client import AsyncKernelManager
    from traitlets import CaselessStrEnum

    async def interrupt(self) -> None:
        if not self.shutting_down:
            await AsyncKernelManager._async_interrupt_kernel(self)

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        return wrap(AsyncKernelManager.format_kernel_cmd(self, extra_arguments))

    body: dict = {"_async_interrupt_kernel": interrupt, "format_kernel_cmd": format_kernel_cmd}
    if os.name != "nt":
        body["transport"] = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)
    return type("QuietKernelManager", (AsyncKernelManager,), body)


def error_text(e: Exception) -> str:
    """'Name: message' of a notebook's error (papermill's carries the cell's own exception)."""
    ename, evalue = getattr(e, "ename", type(e).__name__), getattr(e, "evalue", str(e))
    return f"{ename}: {evalue}".strip()


def run_entry(notebook: str, folder: str, params: dict, kernel: str, name: str) -> tuple[str, str | None, float]:
    """Execute one plan entry (notebook `name`) into `folder`; returns (status, error, seconds). Never
    raises for a failing notebook: each is reported, none stops the study."""
    folder_p = Path(folder)
    params = dict(params)
    # a run stopped before its `.complete`: mid-training (its last.pt), or finished (last.pt removed then)
    if name in TRAINING_NOTEBOOKS and ((folder_p / "checkpoints" / "last.pt").is_file()
                                       or finished_without_state(folder_p)):
        params["resume"] = True  # interrupted earlier: continue from the checkpoint (a finished run: report it)
    t0 = time.perf_counter()
    try:
        inside(folder_p, folder_p.parent, "study run")  # folder is <study>/<run>: a link out is refused
        execute(Path(notebook), folder_p / "notebook.ipynb", params, kernel)
        atomic_write_text(folder_p / ".complete", time.strftime("%Y-%m-%dT%H:%M:%S\n"))
        return "complete", None, time.perf_counter() - t0
    except Exception as e:  # papermill raises many kinds; each is reported, none stops the study
        return "failed", f"{folder_p / 'notebook.ipynb'}: {error_text(e)}", time.perf_counter() - t0
