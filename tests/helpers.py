"""Small helpers the tests share (not fixtures)."""
from __future__ import annotations


def stop_after(n: int):
    """An on_step callback that interrupts a run after n steps, as a kill mid-epoch would."""
    def on_step(steps: int) -> None:
        if steps >= n:
            raise KeyboardInterrupt(f"stopped after {steps} steps (test)")
    return on_step
