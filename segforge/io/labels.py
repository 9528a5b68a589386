"""What a model predicts, from ``dataset.json``'s ``labels`` (nnU-Net v2's forms).

* **plain labels** ``{"background": 0, "liver": 1, "tumour": 2}``: one softmax output per label;
  output ``k`` is the ``k``-th label by value, written back as that label's value;
* **regions** ``{"background": 0, "whole tumour": [1, 2, 3], "tumour core": [2, 3], "enhancing": [3]}``
  with ``"regions_class_order": [1, 2, 3]``: one sigmoid output per region (a voxel is in the
  region when its value is one of the listed ones; regions may overlap or nest); the label map
  written is built by painting, region after region, the value ``regions_class_order[i]`` where
  region ``i``'s probability is above one half;
* an **ignore** label ``{"ignore": 4}`` (either form): voxels of partially annotated cases that
  are not annotated. They count for neither the loss nor any metric, and are never predicted;
* a **label subset** (``segforge_plan_and_preprocess --labels kidney cyst``): the other labels
  become background; the plans hold only the kept ones (their values unchanged, so predictions
  use the dataset's values).

:class:`LabelScheme` answers every question the stages ask: how many outputs, which raw values
make each training target, what value each output writes, what to score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segforge.errors import InputError

__all__ = ["IGNORE", "LabelScheme", "parse_label_scheme", "select_labels", "target_key", "target_name", "parse_target_key"]

IGNORE = "ignore"


def target_key(target) -> str:
    """The summary key of a scored target: ``"2"`` for a label, ``"2,3"`` for a region."""
    return ",".join(str(int(v)) for v in target) if isinstance(target, (list, tuple)) else str(int(target))


def parse_target_key(key: str):
    """``"2"`` -> 2; ``"2,3"`` -> ``(2, 3)`` (a region): the inverse of :func:`target_key`."""
    values = tuple(int(v) for v in str(key).split(","))
    return values[0] if len(values) == 1 else values


def target_name(names: dict, target, default: str | None = None) -> str:
    """The name of a scored target (a value, a region's values, or their summary key) in ``names``, which
    may be keyed by value, by a region's tuple of values, or by summary key."""
    key = target_key(parse_target_key(target) if isinstance(target, str) else target)
    parsed = parse_target_key(key)
    for candidate in (parsed, key):
        if candidate in names:
            return str(names[candidate])
    return default if default is not None else key


@dataclass(frozen=True)
class LabelScheme:
    """``labels`` in dataset.json form (name -> value, or list of values for a region) and the regions'
    ``regions_class_order``. Build with :func:`parse_label_scheme` (which checks them)."""

    labels: dict
    regions_class_order: tuple | None = None

    @property
    def ignore_label(self) -> int | None:
        value = self.labels.get(IGNORE)
        return None if value is None else int(value)

    @property
    def is_regions(self) -> bool:
        return any(isinstance(v, (list, tuple)) for v in self.labels.values())

    @property
    def classes(self) -> list[tuple[str, object]]:
        """The network's outputs in order: plain ``(name, value)`` background first; regions
        ``(name, values tuple)`` in dataset.json order (no background)."""
        entries = [(n, v) for n, v in self.labels.items() if n != IGNORE]
        if self.is_regions:
            return [(n, tuple(int(x) for x in (v if isinstance(v, (list, tuple)) else [v])))
                    for n, v in entries if v != 0]
        return sorted(((n, int(v)) for n, v in entries), key=lambda nv: nv[1])

    @property
    def num_outputs(self) -> int:
        return len(self.classes)

    @property
    def foreground_names(self) -> list[str]:
        """Names of what is scored (plain: every label but background; regions: every region)."""
        return [n for n, v in self.classes if v != 0]

    @property
    def targets(self) -> list:
        """What is scored: plain label values (not background), or regions as tuples of values."""
        return [v for _, v in self.classes if v != 0]

    @property
    def output_values(self) -> list[int]:
        """The label value each output writes (plain: output ``k`` -> its label's value; regions: the order)."""
        if self.is_regions:
            return [int(v) for v in self.regions_class_order]
        return [int(v) for _, v in self.classes]

    @property
    def written_labels(self) -> dict[str, int]:
        """Name -> the value the predicted label maps hold for it: plain labels as declared (no ignore
        label); regions: background 0 and each region's ``regions_class_order`` value."""
        if self.is_regions:
            return {"background": 0, **{n: v for (n, _), v in zip(self.classes, self.output_values)}}
        return {n: int(v) for n, v in self.classes}

    @property
    def raw_values(self) -> list[int]:
        """Every value the dataset's label files may hold: the labels', the regions' and the ignore value."""
        values = set()
        for v in self.labels.values():
            values.update(int(x) for x in (v if isinstance(v, (list, tuple)) else [v]))
        return sorted(values)

    @property
    def foreground_values(self) -> list[int]:
        """Raw values a foreground patch may be centred on (not background, not ignore, not dropped)."""
        values = set()
        for _, v in self.classes:
            values.update(x for x in (v if isinstance(v, tuple) else (v,)) if x != 0)
        return sorted(values)

    @property
    def is_identity(self) -> bool:
        """Plain labels ``0..K-1`` without ignore: raw values are the training targets as they are."""
        return not self.is_regions and self.ignore_label is None and self.output_values == list(range(self.num_outputs))

    def training_lookup(self, size: int | None = None) -> np.ndarray:
        """``lookup[raw value]`` -> the training target's value: plain -> output index (ignore -> the
        number of outputs, dropped labels -> 0); regions -> the raw value itself (dropped -> 0, ignore kept).
        ``size``: at least one past the largest raw value the label files hold (a label subset's dropped
        labels may be larger than every kept one); default one past :attr:`raw_values`."""
        size = max(max(self.raw_values + [0]) + 1, size or 0)
        lookup = np.zeros(size, dtype=np.int64)
        if self.is_regions:
            for v in self.foreground_values:
                lookup[v] = v
        else:
            for k, (_, v) in enumerate(self.classes):
                lookup[v] = k
        if self.ignore_label is not None:
            lookup[self.ignore_label] = self.ignore_index
        return lookup

    @property
    def ignore_index(self) -> int | None:
        """The training target's value of ignored voxels (plain: the number of outputs; regions: the raw value)."""
        if self.ignore_label is None:
            return None
        return self.ignore_label if self.is_regions else self.num_outputs

    def probabilities_to_labels(self, probabilities) -> np.ndarray:
        """``(K, Z, Y, X)`` probabilities (softmax, or per-region sigmoid) -> the label map of the dataset's
        values (uint8, or uint16 past 255)."""
        if hasattr(probabilities, "detach"):  # a torch tensor
            probabilities = probabilities.detach().float().cpu().numpy()
        values = self.output_values
        dtype = np.uint8 if max(values + [0]) < 256 else np.uint16
        if self.is_regions:
            labels = np.zeros(probabilities.shape[1:], dtype=dtype)
            for k, value in enumerate(values):
                labels[probabilities[k] > 0.5] = value
            return labels
        return self.label_values_of(np.argmax(probabilities, axis=0))

    def label_values_of(self, index: np.ndarray) -> np.ndarray:
        """Softmax output indices (an argmax) -> the dataset's label values they write (uint8, or uint16 past 255)."""
        values = self.output_values
        dtype = np.uint8 if max(values + [0]) < 256 else np.uint16
        return np.asarray(values, dtype=dtype)[index]

    def target_mask(self, label_map: np.ndarray, target) -> np.ndarray:
        """Boolean mask of a scored ``target`` (a value, or a region's values) in a label map."""
        if isinstance(target, (list, tuple)):
            return np.isin(label_map, list(target))
        return label_map == target

    def to_dict(self) -> dict:
        d = {"labels": {n: (list(v) if isinstance(v, (list, tuple)) else int(v)) for n, v in self.labels.items()}}
        if self.regions_class_order is not None:
            d["regions_class_order"] = list(self.regions_class_order)
        return d


def parse_label_scheme(labels, regions_class_order=None, path=None) -> LabelScheme:
    """Check ``labels`` (nnU-Net v2 ``{"name": value or [values]}``, or Decathlon ``{"0": "name"}``) and
    ``regions_class_order``; one clear :class:`InputError` naming ``path`` for each kind of mistake."""
    if not isinstance(labels, dict) or not labels:
        raise InputError('dataset.json needs "labels", e.g. {"background": 0, "liver": 1}', path)
    if all(str(k).isdigit() for k in labels) and all(isinstance(v, str) for v in labels.values()):
        labels = {v: int(k) for k, v in labels.items()}  # Decathlon: value -> name
    out: dict = {}
    for name, value in labels.items():
        name = str(name)
        if isinstance(value, (list, tuple)):
            if not value or not all(_is_value(x) for x in value):
                raise InputError(f"region {name!r} must list non-negative integer label values, got {value!r}", path)
            if name == IGNORE:
                raise InputError(f"the ignore label must be one value, not a region: {value!r}", path)
            out[name] = [int(x) for x in value]
        elif _is_value(value):
            out[name] = int(value)
        else:
            raise InputError(f"label {name!r} must be a non-negative integer or a list of them (a region), "
                             f"got {value!r}", path)
    if out.get("background", 0) != 0 or 0 not in [v for v in out.values() if isinstance(v, int)]:
        raise InputError('labels must declare background as 0, e.g. {"background": 0, ...}', path)
    scheme_regions = any(isinstance(v, list) for v in out.values())
    ignore = out.get(IGNORE)
    if ignore is not None:
        if ignore == 0:
            raise InputError("the ignore label cannot be 0 (background)", path)
        used = {x for n, v in out.items() if n != IGNORE for x in (v if isinstance(v, list) else [v])}
        if ignore in used:
            raise InputError(f"the ignore label's value {ignore} is also a label's or region's value", path)
    if scheme_regions:
        regions = [n for n, v in out.items() if n != IGNORE and v != 0]
        if regions_class_order is None:
            raise InputError(f'region-based labels need "regions_class_order": one label value per region '
                             f"({', '.join(regions)}), written where that region is predicted, in order", path)
        if (not isinstance(regions_class_order, (list, tuple)) or len(regions_class_order) != len(regions)
                or not all(_is_value(x) for x in regions_class_order)):
            raise InputError(f"regions_class_order must give one label value per region ({len(regions)}: "
                             f"{', '.join(regions)}), got {regions_class_order!r}", path)
        return LabelScheme(out, tuple(int(x) for x in regions_class_order))
    values = [v for n, v in out.items()]
    if len(set(values)) != len(values):
        raise InputError(f"labels map two names to the same value: {out}", path)
    if regions_class_order is not None:
        raise InputError("regions_class_order is given but no label is a region (a list of values)", path)
    return LabelScheme(out)


def select_labels(scheme: LabelScheme, names, path=None) -> LabelScheme:
    """The scheme restricted to the labels (or regions) ``names``; the others become background. The
    ignore label stays. An unknown name answers "did you mean"."""
    from segforge.registry import look_up

    available = {n: v for n, v in scheme.labels.items() if n not in ("background", IGNORE) and v != 0}
    keep = []
    for name in names:
        look_up(name, available, "label")  # InputError with the closest names
        if name not in keep:
            keep.append(name)
    if not keep:
        raise InputError("--labels needs at least one label to keep", path)
    labels = {n: v for n, v in scheme.labels.items() if n in keep or n == IGNORE or v == 0}
    order = None
    if scheme.regions_class_order is not None:
        regions = [n for n, v in scheme.labels.items() if n != IGNORE and v != 0]
        order = tuple(o for n, o in zip(regions, scheme.regions_class_order) if n in keep)
    return LabelScheme(labels, order)


def _is_value(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0
