"""Which arithmetic a run uses: fp32, or bf16 autocast where the hardware multiplies bf16 natively.

`precision: auto` resolves to bf16 on a device with native bf16 matrix multiplication, detected from the
device's own feature flags, never guessed from the vendor:
- CUDA: `torch.cuda.is_bf16_supported()` (Ampere and later);
- a CPU: AMX (`amx_bf16`, Intel Sapphire Rapids and later) or AVX512-BF16 (`avx512_bf16`, Intel Cooper
  Lake, AMD Zen 4 and later), as torch's bundled cpuinfo reports them, else /proc/cpuinfo's flags.
Elsewhere (an older CPU, Apple silicon's CPU path) bf16 is emulated and slower than fp32, so auto is fp32.

bf16 here is autocast (Micikevicius et al. 2018, "Mixed Precision Training"; bf16 needs no loss scaling):
weights, gradients and AdamW's state stay fp32; matmuls run in bf16 and losses are taken in fp32.
"""
from __future__ import annotations

import platform
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags() -> dict[str, bool]:
    """The CPU's bf16 matmul features, {flag: present} for BF16_CPU_FLAGS."""
    try:  # torch's bundled cpuinfo: the same detection its kernels dispatch on
        caps = torch._C._cpu._get_cpu_capability()
        return {f: bool(caps.get(f, False)) for f in BF16_CPU_FLAGS}
    except (AttributeError, RuntimeError):  # an older or other torch build: the kernel's own list
        text = _read("/proc/cpuinfo")
        flags = set(next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []))
        return {f: f in flags for f in BF16_CPU_FLAGS}


def native_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bf16 matrices in hardware (see the module's docstring)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return any(cpu_flags().values())
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """'fp32' or 'bf16' for a config's `precision` on `device`: auto follows native_bf16; an explicit
    choice is kept (bf16 on a device without native support runs, emulated and slow).

    Raises ValueError for a name outside PRECISIONS."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def device_name(device: torch.device) -> str:
    """The processor a run or benchmark ran on: the GPU's name, or the CPU's model name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    text = _read("/proc/cpuinfo")
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def hardware_record(device: torch.device) -> dict:
    """What a run's config.json and a benchmark record about the arithmetic hardware."""
    rec = {"device_name": device_name(device), "native_bf16": native_bf16(device)}
    if device.type == "cpu":
        rec["cpu_flags"] = cpu_flags()
    return rec


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
