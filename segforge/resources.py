"""The one memory check made before a big allocation.

A step that would allocate more than the machine has is refused with its estimate and the
limit, before anything is allocated: the alternative is the kernel's out-of-memory killer
(exit 137, no message, and possibly the whole machine frozen while it swaps).

``available_bytes(device)``: on a CUDA device the free memory ``torch.cuda.mem_get_info``
reports plus the blocks PyTorch keeps cached but unused (:func:`segforge.devices.free_device_memory`);
on the CPU ``MemAvailable`` from ``/proc/meminfo`` (what can be allocated without swapping),
else the free physical pages.
"""

from __future__ import annotations

import os
from pathlib import Path

from segforge.errors import InputError

__all__ = ["available_bytes", "check_memory", "format_bytes"]

_MEMINFO = Path("/proc/meminfo")


def available_bytes(device="cpu") -> int | None:
    """Bytes that can be allocated now on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a torch.device); None if unknown."""
    kind = str(getattr(device, "type", device)).split(":")[0]
    if kind == "cuda":
        import torch

        from segforge.devices import free_device_memory

        return free_device_memory(torch.device(device))  # cached-but-unused blocks count as free
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(needed: int, device, what: str, path=None, hint: str = "") -> None:
    """Raise :class:`InputError` when ``needed`` bytes exceed what ``device`` has available.

    ``what`` says what the memory is for ("prediction with patch 1024x1024x1024 ..."),
    ``hint`` what to do about it; ``path`` the file the sizes came from (plans.json).
    """
    limit = available_bytes(device)
    if limit is None or needed <= limit:
        return
    name = str(getattr(device, "type", device))
    raise InputError(f"{what} needs about {format_bytes(needed)} (estimate), but the {name} has "
                     f"{format_bytes(limit)} available{'; ' + hint if hint else ''}", path)


def format_bytes(n: float) -> str:
    for unit, size in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"
