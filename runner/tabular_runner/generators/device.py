"""Which accelerator a deep generator trains on.

``torch`` is imported inside the functions: importing this module stays cheap, and the
adapters that need a device import torch anyway.
"""

from __future__ import annotations

from typing import Any

from tabular_runner.generators.base import FitContext

CPU = "cpu"
CUDA = "cuda"


def cuda_available() -> bool:
    """Return True when torch sees a usable CUDA device."""
    try:
        import torch
    except ImportError:  # an engine without torch trains on the CPU
        return False
    return bool(torch.cuda.is_available())


def wants_gpu(context: FitContext, params: dict[str, Any]) -> bool:
    """Return whether the job asked for a GPU.

    ``params.useGpu`` overrides the context (``FitContext.use_gpu`` comes from the stage's
    resources): a user can switch a GPU off for one generator, e.g. to compare timings.
    """
    explicit = params.get("useGpu")
    if explicit is not None:
        return bool(explicit)
    return context.use_gpu


def select_device(context: FitContext, params: dict[str, Any]) -> str:
    """Return ``"cuda"`` when a GPU is wanted and present, else ``"cpu"``."""
    return CUDA if wants_gpu(context, params) and cuda_available() else CPU


def device_name(device: str) -> str:
    """Human-readable device for the report, e.g. ``cuda (NVIDIA H200)`` or ``cpu``."""
    if device != CUDA:
        return CPU
    import torch

    return f"{CUDA} ({torch.cuda.get_device_name(0)})"
