"""Where Triton kernels run: natively on CUDA, or under Triton's interpreter on the CPU.

Kept free of heavy imports: ``dsl/kernel.py`` asks :func:`cuda_available` on every launch that
names no backend, and without an NVIDIA driver the answer needs neither torch nor triton."""

from __future__ import annotations

import functools
import importlib.util
import os

from bittile.runtime import config

__all__ = ["cuda_available", "use_interpreter"]


@functools.cache
def cuda_available() -> bool:
    """Whether torch sees a CUDA device (False without an NVIDIA driver, without importing
    torch)."""
    if not any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/dxg")):
        return False
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def use_interpreter() -> bool:
    """Whether kernels run under Triton's interpreter (no CUDA, or
    ``BITTILE_TRITON_INTERPRET=1``)."""
    return bool(config.get("BITTILE_TRITON_INTERPRET")) or not cuda_available()
