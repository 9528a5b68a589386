"""The device a plan is made for: which one, how much memory, and how fast it trains.

:func:`resolve_device_profile` finds the device training will use (the visible GPU, else
the CPU, or the one named by ``device``), its memory (the GPU's; on a CPU a share of the
RAM, see :data:`CPU_MEMORY_FRACTION`) and its speed: the rates of
:mod:`segforge.planning.calibration`, measured once per machine (a few seconds) and kept
in ``<cache>/device_profiles.json`` (``segforge.paths.cache_root()``), keyed by the device,
the torch threads and the torch version. ``--recalibrate`` measures again (do it on a
quiet machine: a calibration taken while other jobs run makes every plan too small).

The profile is data: the planner never looks at the machine itself, so a test (or a user
planning for another machine) passes a :class:`DeviceProfile` of its own.
"""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import asdict, dataclass, field, fields

from segforge.errors import InputError

__all__ = [
    "DeviceProfile",
    "CPU_MEMORY_FRACTION",
    "PROFILE_CACHE_FILE",
    "resolve_device_profile",
    "training_threads",
    "device_signature",
    "cpu_name",
    "cached_rates",
    "store_rates",
]

CPU_MEMORY_FRACTION = 0.125  # of the RAM, for a CPU plan's activations (fp32: twice the half-precision estimate)
PROFILE_CACHE_FILE = "device_profiles.json"
_RATE_FIELDS = ("conv_gflops_3d", "conv_gflops_2d", "elementwise_gelems", "layer_overhead_s", "calibration_seconds")


@dataclass
class DeviceProfile:
    """What a device does per second for a U-Net training step (see :mod:`segforge.planning.calibration`).

    ``conv_gflops_3d`` / ``_2d``: convolution forward + backward throughput (GFLOP/s) by the
    convolution's width (channels, as a string key: JSON); ``elementwise_gelems``: 1e9
    elements/s of normalisation + non-linearity forward + backward; ``layer_overhead_s``:
    the fixed cost per convolution layer and iteration (kernel launches, Python).
    """

    kind: str  # "cpu" or "cuda"
    name: str
    memory_gb: float
    threads: int = 0  # torch threads of CPU training; 0 on a GPU
    conv_gflops_3d: dict[str, float] = field(default_factory=dict)
    conv_gflops_2d: dict[str, float] = field(default_factory=dict)
    elementwise_gelems: float = 0.0
    layer_overhead_s: float = 0.0
    calibration_seconds: float = 0.0
    source: str = ""  # "measured", "cache <path>", "given"
    why: str = ""

    def __post_init__(self):
        if self.kind not in ("cpu", "cuda"):
            raise InputError(f"device must be cpu or cuda, got {self.kind!r}")
        if not self.memory_gb > 0:
            raise InputError(f"device memory must be positive, got {self.memory_gb} GB")

    @property
    def calibrated(self) -> bool:
        return bool(self.conv_gflops_3d) and self.elementwise_gelems > 0

    def conv_rate(self, width: int, dims: int = 3) -> float:
        """FLOP/s of a convolution of ``width`` channels: piecewise linear in log2(width) between the
        measured widths, the nearest measured one outside them."""
        table = self.conv_gflops_3d if dims == 3 or not self.conv_gflops_2d else self.conv_gflops_2d
        points = sorted((int(w), float(r)) for w, r in table.items())
        if not points:
            raise ValueError("the device profile has no convolution rates; calibrate it first")
        x = math.log2(max(1, width))
        xs = [math.log2(w) for w, _ in points]
        if x <= xs[0]:
            return points[0][1] * 1e9
        for (x0, (_, r0)), (x1, (_, r1)) in zip(zip(xs, points), zip(xs[1:], points[1:])):
            if x <= x1:
                return (r0 + (r1 - r0) * (x - x0) / (x1 - x0)) * 1e9
        return points[-1][1] * 1e9

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DeviceProfile":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def summary(self) -> str:
        if self.kind == "cuda":
            return f"GPU {self.name} ({self.memory_gb:.0f} GB)"
        return f"CPU {self.name} ({self.threads} training thread{'s' if self.threads != 1 else ''})"


def training_threads(cpu_count: int | None = None) -> int:
    """Torch threads of CPU training with the default loader workers: the CPUs the workers leave.

    The same rule as ``segforge.training.options.cpu_threads`` with
    ``segforge.data.default_num_workers()`` (a test keeps them equal).
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    n = cpu_count or os.cpu_count() or 1
    workers = min(12, max(1, n - 1))
    return max(1, n - workers)


def _ram_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 8.0


def cpu_name() -> str:
    name = platform.processor() or platform.machine() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}, {os.cpu_count() or 1} cores"


def device_signature(kind: str, name: str, threads: int) -> str:
    import torch

    return f"{kind}|{name}|threads={threads}|torch={torch.__version__.split('+')[0]}"


def _cache_path():
    from segforge.paths import cache_root

    return cache_root() / PROFILE_CACHE_FILE


def cached_rates(signature: str) -> dict | None:
    path = _cache_path()
    try:
        entries = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    entry = entries.get(signature) if isinstance(entries, dict) else None
    return entry if isinstance(entry, dict) and all(k in entry for k in _RATE_FIELDS) else None


def store_rates(signature: str, rates: dict) -> None:
    """Add one device's rates to the cache file (atomically; other devices' entries kept)."""
    from segforge.io.atomic import write_json_atomic

    path = _cache_path()
    try:
        entries = json.loads(path.read_text())
        entries = entries if isinstance(entries, dict) else {}
    except (OSError, json.JSONDecodeError):
        entries = {}
    entries[signature] = {k: rates[k] for k in _RATE_FIELDS}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, entries)


def resolve_device_profile(device: str | None = None, recalibrate: bool = False, measure: bool = True,
                           log=print) -> DeviceProfile:
    """The profile of ``device`` (``"cpu"``, ``"cuda"``; None: the GPU when there is one, else the CPU),
    calibrated from the cache, or measured now and cached (``measure=False``: left uncalibrated instead)."""
    import torch

    if device not in (None, "cpu", "cuda"):
        raise InputError(f"--device must be cpu or cuda, got {device!r}")
    kind = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise InputError("--device cuda was asked for but no CUDA GPU is visible; plan with --device cpu")
        props = torch.cuda.get_device_properties(0)
        name, memory, threads = props.name, props.total_memory / 2**30, 0
        why = f"GPU {name} visible with {memory:.1f} GB: plans sized to its memory"
        if device is None:
            why = "no --device: " + why
    else:
        name, threads = cpu_name(), training_threads()
        ram = _ram_gb()
        memory = CPU_MEMORY_FRACTION * ram
        why = (f"{'no GPU visible' if device is None else '--device cpu'}: CPU profile, "
               f"{CPU_MEMORY_FRACTION:g} x {ram:.1f} GB RAM = {memory:.2f} GB for activations (fp32 on a CPU)")
    signature = device_signature(kind, name, threads)
    rates = None if recalibrate else cached_rates(signature)
    if rates is not None:
        source = f"cache {_cache_path()}"
    elif not measure:
        return DeviceProfile(kind=kind, name=name, memory_gb=round(memory, 3), threads=threads, why=why,
                             source="not calibrated")
    else:
        from segforge.planning.calibration import calibrate

        log(f"calibrating the {kind} ({name}) for planning: a few seconds, once per machine")
        rates = calibrate(kind, threads)
        store_rates(signature, rates)
        source = f"measured, cached in {_cache_path()}"
    return DeviceProfile(kind=kind, name=name, memory_gb=round(memory, 3), threads=threads, source=source, why=why,
                         **{k: rates[k] for k in _RATE_FIELDS})
