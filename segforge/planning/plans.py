"""Plans: typed dataclasses that round-trip through readable JSON.

``plans.json`` holds one :class:`Configuration` per trainable configuration (``2d``,
``2.5d``, ``3d_fullres`` and, when the planner chooses the cascade, ``locator`` +
``cascade_fullres``) and names the ``default`` one. Every decision has a reason in the
``why`` mapping beside it, keyed by the field it explains.

Shapes and spacings follow the package convention: ``(z, y, x)`` for 3D; a ``2d``
configuration's ``patch_size`` and network are ``(y, x)`` while its ``spacing`` stays the
3D ``(z, y, x)`` grid the slices are cut from; ``2.5d`` is ``2d`` fed ``input_slices`` adjacent
slices as input channels.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from segforge.errors import InputError
from segforge.io.atomic import write_json_atomic
from segforge.networks.topology import NetworkTopology  # the network owns its shape; plans hold one

__all__ = [
    "NetworkTopology",
    "ChannelNormalization",
    "ResamplingSettings",
    "LocatorSettings",
    "CascadeSettings",
    "Configuration",
    "ComputeTarget",
    "Plans",
    "PLANS_FORMAT",
]

PLANS_FORMAT = 1


@dataclass
class ChannelNormalization:
    """How one input channel is normalised.

    ``scheme``: ``"ct"`` (clip to ``[lower, upper]`` then ``(x - mean) / std`` with dataset
    foreground statistics), ``"zscore"`` (per image) or ``"zscore_nonzero"`` (per image,
    statistics and output only inside the non-zero mask).
    """

    scheme: str
    mean: float | None = None
    std: float | None = None
    lower: float | None = None
    upper: float | None = None
    why: str = ""


@dataclass
class ResamplingSettings:
    """``image_order``/``label_order`` are spline orders (labels: ``"linear"`` on one-hot,
    ``"nearest"``). When ``separate_axis`` is set (anisotropic data), that array axis is
    resampled on its own with ``separate_axis_order``."""

    image_order: int = 3
    label_mode: str = "linear_onehot"
    separate_axis: int | None = None
    separate_axis_order: int = 0
    why: str = ""


@dataclass
class LocatorSettings:
    """Heatmap locator training for the cascade's first stage (sigmas in locator voxels)."""

    target: str = "union"  # "union" of all foreground labels, or "per_class"
    sigma_start: float = 3.0
    sigma_min: float = 1.5
    sigma_shrink_factor: float = 0.7
    shrink_loss_threshold: float = 0.5  # shrink when val loss < threshold * loss at current sigma's start
    shrink_patience: int = 3  # ... or when the val loss has not improved for this many epochs
    loss: str = "kl"  # "kl" (divergence between normalised heatmaps) or "mse"
    symmetric: bool = False  # allow left/right mirroring as augmentation
    why: dict[str, str] = field(default_factory=dict)


@dataclass
class CascadeSettings:
    """The full-resolution segmenter's crop around the located centroid."""

    locator_configuration: str = "locator"
    crop_size: list[int] = field(default_factory=list)  # (z, y, x) voxels at this configuration's spacing
    expected_locator_error_mm: float = 0.0  # jitter scale until the locator's measured error replaces it
    why: dict[str, str] = field(default_factory=dict)


@dataclass
class Configuration:
    name: str
    kind: str  # "segmentation" or "locator"
    spacing: list[float]
    patch_size: list[int]
    batch_size: int
    network: NetworkTopology
    normalization: list[ChannelNormalization]
    resampling: ResamplingSettings
    median_shape: list[int]  # median (cropped) image shape at this spacing, (z, y, x)
    crop_to_nonzero: bool = True
    data_identifier: str = ""  # preprocessed sub-folder holding this configuration's cases
    locator: LocatorSettings | None = None
    cascade: CascadeSettings | None = None
    why: dict[str, str] = field(default_factory=dict)
    input_slices: int = 1  # 2.5d: adjacent slices stacked as input channels (odd; the middle one is predicted)

    @property
    def dims(self) -> int:
        return len(self.patch_size)

    def network_input_channels(self, image_channels: int) -> int:
        """The network's input channels: every image channel of each of the ``input_slices`` slices."""
        return int(image_channels) * int(self.input_slices)

    def __post_init__(self):
        if self.kind not in ("segmentation", "locator"):
            raise ValueError(f"configuration kind must be 'segmentation' or 'locator', got {self.kind!r}")
        if not self.data_identifier:
            self.data_identifier = self.name
        if int(self.input_slices) < 1 or int(self.input_slices) % 2 == 0:
            raise ValueError(f"input_slices must be an odd number >= 1 (the middle slice is predicted), "
                             f"got {self.input_slices}")
        if self.input_slices > 1 and self.dims != 2:
            raise ValueError(f"input_slices {self.input_slices} stacks slices for a 2D network; the patch "
                             f"{self.patch_size} is {self.dims}D")

    def version(self) -> str:
        """Hash of everything that changes this configuration's preprocessed data or training."""
        return _digest(_to_jsonable(self))


@dataclass
class ComputeTarget:
    """The device and training time the plans were made for (``segforge.planning.budget_rule``).

    ``memory_gb``: the memory the network was sized to (a GPU's, or the CPU profile's);
    ``train_minutes``: the time budget given at planning (``--train-minutes``), which
    ``segforge_train`` uses when no ``--max-minutes`` is given (None: the full schedule);
    ``sized_for_minutes``: the budget the network was chosen for (``train_minutes``, or on a
    CPU without one the default CPU budget); ``configurations``: per configuration its
    GFLOP and predicted seconds per iteration on this device (and the iterations the budget
    buys); ``stage_shares``: the share of the budget of each stage of a cascade;
    ``candidates``: the memory budgets considered, with their predicted cost; ``overrides``:
    what the user imposed (``--device``, ``--gpu-memory-gb``, ``--train-minutes``).
    """

    device: str
    device_name: str
    memory_gb: float
    train_minutes: float | None = None
    sized_for_minutes: float | None = None
    configurations: dict[str, dict] = field(default_factory=dict)
    stage_shares: dict[str, float] = field(default_factory=dict)
    candidates: list[dict] = field(default_factory=list)
    calibration: dict = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    why: dict[str, str] = field(default_factory=dict)


@dataclass
class Plans:
    dataset_name: str
    channel_names: dict[str, str]  # {"0": "CT"}, as in dataset.json
    labels: dict  # {"background": 0, "liver": 1, ...}; regions {"tumour": [1, 2]}; "ignore" (segforge.io.labels)
    configurations: dict[str, Configuration]
    default_configuration: str
    gpu_memory_gb: float
    format: int = PLANS_FORMAT
    why: dict[str, str] = field(default_factory=dict)
    compute: ComputeTarget | None = None
    regions_class_order: list[int] | None = None  # region-based labels: the value each region writes, in order
    dropped_labels: dict = field(default_factory=dict)  # --labels at planning: the labels made background

    def __post_init__(self):
        self.label_scheme  # noqa: B018  (checks labels and regions_class_order: InputError when invalid)
        if self.default_configuration not in self.configurations:
            raise ValueError(
                f"default configuration {self.default_configuration!r} is not planned "
                f"(have: {', '.join(self.configurations)})"
            )

    @property
    def label_scheme(self):
        """What the model predicts (:class:`segforge.io.labels.LabelScheme`): outputs, targets, ignore label."""
        from segforge.io.labels import parse_label_scheme

        return parse_label_scheme(self.labels, self.regions_class_order)

    @property
    def num_classes(self) -> int:
        """The network's outputs: softmax classes including background, or sigmoid regions (never the ignore label)."""
        return self.label_scheme.num_outputs

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    def configuration(self, name: str | None = None) -> Configuration:
        name = name or self.default_configuration
        if name not in self.configurations:
            raise InputError(f"configuration {name!r} is not in the plans; planned: {', '.join(self.configurations)}")
        return self.configurations[name]

    def version(self) -> str:
        return _digest(_to_jsonable(self))

    # --- JSON -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = _to_jsonable(self)
        d["version"] = self.version()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Plans":
        d = dict(d)
        d.pop("version", None)
        if d.get("format") != PLANS_FORMAT:
            raise InputError(f"plans format {d.get('format')} is not supported (expected {PLANS_FORMAT}); re-plan")
        d["configurations"] = {k: _configuration_from_dict(v) for k, v in d["configurations"].items()}
        if d.get("compute") is not None:
            d["compute"] = ComputeTarget(**_known(ComputeTarget, d["compute"]))
        return cls(**_known(cls, d))

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically (temporary file, then rename)."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Plans":
        p = Path(path)
        if not p.is_file():
            raise InputError("plans not found; run segforge_plan_and_preprocess first", p)
        try:
            return cls.from_dict(json.loads(p.read_text()))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, InputError) as exc:
            raise InputError(f"plans file is not valid ({exc})", p) from None


def _configuration_from_dict(d: dict) -> Configuration:
    d = dict(d)
    d["network"] = NetworkTopology(**_known(NetworkTopology, d["network"]))
    d["normalization"] = [ChannelNormalization(**_known(ChannelNormalization, n)) for n in d["normalization"]]
    d["resampling"] = ResamplingSettings(**_known(ResamplingSettings, d["resampling"]))
    if d.get("locator") is not None:
        d["locator"] = LocatorSettings(**_known(LocatorSettings, d["locator"]))
    if d.get("cascade") is not None:
        d["cascade"] = CascadeSettings(**_known(CascadeSettings, d["cascade"]))
    return Configuration(**_known(Configuration, d))


def _known(cls, d: dict) -> dict:
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {', '.join(sorted(unknown))}")
    return d


# fields added after plans were first written: left out while at their default, so older plans keep their version
_LATER_FIELDS = {"input_slices": 1}
_LATER_PLANS_FIELDS = {"regions_class_order": None, "dropped_labels": {}}  # region-based labels; a --labels subset


def _to_jsonable(obj) -> dict:
    d = json.loads(json.dumps(asdict(obj)))
    if isinstance(obj, Plans):  # fields added later are left out at their default: older plans keep their version
        for name, default in _LATER_PLANS_FIELDS.items():
            if d.get(name) == default:
                del d[name]
    for configuration in d.get("configurations", {}).values() if isinstance(obj, Plans) else [d]:
        for name, default in _LATER_FIELDS.items():
            if configuration.get(name) == default:
                del configuration[name]
    return d


def _digest(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
