"""Mixed precision: which autocast type a trainer's ``amp`` setting means on a device.

Example
-------
>>> amp_dtype(False, torch.device("cpu")) is None
True
>>> amp_dtype("bfloat16", torch.device("cpu"))
torch.bfloat16
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["amp_dtype", "cpu_has_native_bfloat16"]

_AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX), where bfloat16
    convolutions beat float32 ones; elsewhere oneDNN emulates them, more slowly. The trainer's
    ``amp="auto"`` trains in bfloat16 on CPU only where this is true.

    Example
    -------
    >>> cpu_has_native_bfloat16() in (True, False)
    True
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def amp_dtype(amp: Any, device: torch.device) -> torch.dtype | None:
    """The autocast type ``amp`` asks for on ``device`` (``None``: off), or a clear error.

    ``True`` picks float16 on CUDA and bfloat16 on CPU; ``"auto"`` does the same where the
    hardware computes in that type natively and returns ``None`` elsewhere.
    """
    if amp is False:
        return None
    if amp == "auto":  # where the hardware has it natively
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bfloat16() else None
    if amp is True:
        dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    elif isinstance(amp, str) and amp in _AMP_DTYPES:
        dtype = _AMP_DTYPES[amp]
    else:
        raise ValueError(f"amp must be a bool, 'auto', 'float16' or 'bfloat16', got {amp!r}")
    if dtype == torch.float16 and device.type != "cuda":
        raise ValueError(
            f"amp with float16 needs a CUDA device, got device {str(device)!r}; "
            "use amp=true or amp=bfloat16 on CPU"
        )
    return dtype
