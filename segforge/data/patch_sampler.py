"""Random training patches read from memory-mapped preprocessed cases.

A preprocessed configuration folder holds per case ``CASE.npy`` (C, z, y, x) float32,
``CASE_seg.npy`` (z, y, x) int16 and ``CASE.json`` (properties with ``class_locations``).
:class:`PatchSampler` draws a batch: a case per sample (uniformly, with replacement), then
a patch that with probability ``oversample_foreground`` contains a voxel of a random
present class (centred on it unless that would leave the image), else a uniformly random
patch. Where the patch leaves the image, data and labels are padded with zeros.

``sample_size`` may exceed ``patch_size``: spatial augmentation then rotates/scales the
larger region and centre-crops ``patch_size`` (the patch is placed by its centre crop).

``case_weights`` makes some cases likelier than others (pseudo-labelled cases, ``--pseudo-weight``);
``soft_classes`` adds class probabilities to the labels (``seg`` ``(B, 1 + K, ...)``: labels, then
probabilities), which the augmentation carries along and ``FinalizeBatch`` puts under ``soft``.

2D configurations (``patch_size`` of length 2) first pick a slice ``z`` (one holding the
class for foreground patches), then a ``(y, x)`` patch in it; with ``input_slices = k`` (``2.5d``)
the data of the patch are slices ``z - k//2 .. z + k//2`` stacked as channels
(:mod:`segforge.data.slice_stack`), the labels those of slice ``z``.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np

from segforge.data.slice_stack import adjacent_slice_indices
from segforge.errors import InputError

__all__ = ["list_preprocessed_cases", "CaseStore", "PatchSampler", "read_region", "FOREGROUND_FRACTION"]

FOREGROUND_FRACTION = 1.0 / 3.0


def list_preprocessed_cases(folder: str | Path, need_labels: bool = True) -> list[str]:
    """Sorted names of the finished cases in a configuration folder (JSON written last = finished)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("preprocessed data not found; run segforge_plan_and_preprocess first", folder)
    names = []
    for p in sorted(folder.glob("*.json")):
        name = p.stem
        if (folder / f"{name}.npy").is_file() and (not need_labels or (folder / f"{name}_seg.npy").is_file()):
            names.append(name)
    return names


class CaseStore:
    """Opens preprocessed cases as read-only memory maps; keeps a few cases' properties cached.

    Memory maps are opened per call (cheap, and no file handle stays open); the cache is
    not carried into worker processes. ``elsewhere`` maps case keys to cases in other folders
    (``{key: folder / name}``; the pseudo-labelled cases of ``--pseudo-labels``).
    """

    def __init__(self, folder: str | Path, cache_size: int = 128, elsewhere: dict[str, Path] | None = None):
        self.folder = Path(folder)
        self.cache_size = cache_size
        self.elsewhere = {k: Path(v) for k, v in (elsewhere or {}).items()}
        self._cache: OrderedDict[str, dict] = OrderedDict()

    def __getstate__(self):
        return {"folder": self.folder, "cache_size": self.cache_size, "elsewhere": self.elsewhere,
                "_cache": OrderedDict()}

    def file(self, case: str, suffix: str) -> Path:
        """``CASE<suffix>`` of case key ``case`` (in ``folder``, or where ``elsewhere`` says)."""
        where = self.elsewhere.get(case)
        return where.with_name(where.name + suffix) if where is not None else self.folder / f"{case}{suffix}"

    def data(self, case: str) -> np.ndarray:
        """(C, z, y, x) float32, memory-mapped."""
        return _load(self.file(case, ".npy"))

    def seg(self, case: str) -> np.ndarray:
        """(z, y, x) int16, memory-mapped."""
        return _load(self.file(case, "_seg.npy"))

    def soft(self, case: str) -> np.ndarray | None:
        """(K, z, y, x) float16 class probabilities (a pseudo-labelled case's), memory-mapped; None without."""
        path = self.file(case, "_soft.npy")
        return _load(path) if path.is_file() else None

    def properties(self, case: str) -> dict:
        """The case's JSON with ``class_locations`` turned into ``{label: (n, 3) int array}`` (empty ones dropped)."""
        if case in self._cache:
            self._cache.move_to_end(case)
            return self._cache[case]
        path = self.file(case, ".json")
        try:
            props = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read case properties ({exc})", path) from None
        locations = {}
        for label, points in (props.get("class_locations") or {}).items():
            arr = np.asarray(points, dtype=np.int64).reshape(-1, 3)
            if len(arr):
                locations[int(label)] = arr
        props["class_locations"] = locations
        self._cache[case] = props
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return props


def _load(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read preprocessed array ({exc})", path) from None


def read_region(array: np.ndarray, lower: np.ndarray, size: np.ndarray) -> np.ndarray:
    """``array[..., lower:lower+size]`` over the last ``len(size)`` axes, zero outside the array.

    ``lower`` may be negative and ``lower + size`` may pass the end; only the overlap is read
    (so a memory map reads just that part).
    """
    lower, size = np.asarray(lower, dtype=np.int64), np.asarray(size, dtype=np.int64)
    spatial = np.asarray(array.shape[-len(size):])
    lead = array.shape[:-len(size)]
    out = np.zeros(lead + tuple(int(s) for s in size), dtype=array.dtype)
    src_lo = np.clip(lower, 0, spatial)
    src_hi = np.clip(lower + size, 0, spatial)
    if np.any(src_hi <= src_lo):
        return out
    dst_lo = src_lo - lower
    dst_hi = dst_lo + (src_hi - src_lo)
    src = (Ellipsis,) + tuple(slice(int(a), int(b)) for a, b in zip(src_lo, src_hi))
    dst = (Ellipsis,) + tuple(slice(int(a), int(b)) for a, b in zip(dst_lo, dst_hi))
    out[dst] = array[src]
    return out


class PatchSampler:
    """Draws batches ``{"data": (B, C, *sample_size) float32, "seg": (B, 1, *sample_size) int16, "keys": [case]}``
    (``C`` times ``input_slices`` channels for ``2.5d``).

    ``rng`` is anything with numpy's ``RandomState`` methods; the default (the global
    ``np.random``) is what batchgenerators' augmentations use too, so seeding a worker with
    ``np.random.seed`` makes its whole stream reproducible.

    Subclasses change where patches go by overriding :meth:`choose_lower_corner` (for
    example a cascade segmenter that crops around the object's centroid with jitter).
    ``foreground_labels`` (None: every label) limits foreground patches to those label values
    (not the ignore label, not labels dropped by a label subset).
    """

    foreground_labels: list[int] | None = None

    def __init__(self, store: CaseStore, cases: list[str], patch_size, batch_size: int,
                 sample_size=None, oversample_foreground: float = FOREGROUND_FRACTION, input_slices: int = 1,
                 case_weights=None, soft_classes: int | None = None):
        if not cases:
            raise InputError("no cases to sample patches from", store.folder)
        self.store = store
        self.cases = list(cases)
        self.patch_size = np.asarray(patch_size, dtype=np.int64)
        self.sample_size = np.asarray(sample_size if sample_size is not None else patch_size, dtype=np.int64)
        if len(self.sample_size) != len(self.patch_size) or np.any(self.sample_size < self.patch_size):
            raise ValueError(f"sample_size {list(self.sample_size)} must be >= patch_size {list(self.patch_size)}")
        self.batch_size = int(batch_size)
        self.oversample_foreground = float(oversample_foreground)
        self.dims = len(self.patch_size)
        self.input_slices = int(input_slices)
        if self.input_slices > 1 and self.dims != 2:
            raise ValueError(f"input_slices {self.input_slices} stacks slices for 2D patches, not {self.dims}D ones")
        self.case_probabilities = None
        if case_weights is not None:
            w = np.asarray(case_weights, dtype=np.float64)
            if w.shape != (len(self.cases),) or np.any(w < 0) or w.sum() <= 0:
                raise ValueError(f"case_weights needs one weight >= 0 per case ({len(self.cases)}), not all 0")
            self.case_probabilities = w / w.sum()
        self.soft_classes = soft_classes

    def sample_batch(self, rng=np.random) -> dict:
        data, seg, keys = [], [], []
        for _ in range(self.batch_size):
            case = self.choose_case(rng)
            force_fg = rng.uniform() < self.oversample_foreground
            d, s = self.sample_patch(case, force_fg, rng)
            data.append(d)
            seg.append(s)
            keys.append(case)
        return {"data": np.stack(data), "seg": np.stack(seg), "keys": keys}

    def choose_case(self, rng) -> str:
        """A case drawn uniformly, or by ``case_weights``."""
        if self.case_probabilities is None:
            return self.cases[rng.randint(len(self.cases))]
        return self.cases[rng.choice(len(self.cases), p=self.case_probabilities)]

    def sample_patch(self, case: str, force_fg: bool, rng) -> tuple[np.ndarray, np.ndarray]:
        """One patch of ``case``: data (C, *sample_size) float32, seg (1, *sample_size) int16; with
        ``soft_classes`` K, seg is (1 + K, *sample_size) float32: the labels, then the case's class
        probabilities (:meth:`read_soft`)."""
        z, lower = self.choose_location(case, force_fg, rng)
        d, s = self.read(case, z, lower, self.sample_size)
        if not self.soft_classes:
            return d, s
        return d, np.concatenate([s.astype(np.float32), self.read_soft(case, z, lower, self.sample_size, s[0])])

    def choose_location(self, case: str, force_fg: bool, rng) -> tuple[int | None, np.ndarray]:
        """``(slice z or None for 3D, lower corner of the sample_size region)`` of one patch of ``case``."""
        labels = self.store.seg(case)
        props = self.store.properties(case) if force_fg else None
        if self.dims == 3:
            return None, self.choose_lower_corner(case, np.asarray(labels.shape), props, rng)
        z, point = self._choose_slice(labels.shape[0], props, rng)
        return z, self.choose_lower_corner(case, np.asarray(labels.shape[1:]), point, rng)

    def read(self, case: str, z: int | None, lower, size, image_dtype=np.float32,
             label_dtype=np.int16) -> tuple[np.ndarray, np.ndarray]:
        """``(data (C, *size), seg (1, *size))`` of ``case`` from ``lower`` (in slice ``z`` for 2D), zero outside."""
        image, labels = self.store.data(case), self.store.seg(case)
        if z is not None and self.input_slices > 1:  # 2.5d: slice z and its neighbours as channels (slice_stack.py)
            stack = image[:, adjacent_slice_indices(z, labels.shape[0], self.input_slices)]
            image, labels = stack.reshape(-1, *stack.shape[2:]), labels[z]
        elif z is not None:
            image, labels = image[:, z], labels[z]
        d = read_region(image, lower, size)
        s = read_region(labels, lower, size)
        return np.asarray(d, dtype=image_dtype), np.asarray(s, dtype=label_dtype)[None]

    def read_soft(self, case: str, z: int | None, lower, size, labels: np.ndarray) -> np.ndarray:
        """``(K, *size)`` float32 class probabilities of ``case`` where :meth:`read` read ``labels``: its
        ``_soft.npy`` (a pseudo-labelled case's; 0 outside the image), else ``labels`` one-hot."""
        soft = self.store.soft(case)
        if soft is None:
            return (np.arange(self.soft_classes).reshape(-1, *[1] * labels.ndim) == labels[None]).astype(np.float32)
        if soft.shape[0] != self.soft_classes:
            raise InputError(f"{soft.shape[0]} class probabilities, the dataset has {self.soft_classes} classes",
                             self.store.file(case, "_soft.npy"))
        return np.asarray(read_region(soft if z is None else soft[:, z], lower, size), dtype=np.float32)

    def _choose_slice(self, n_slices: int, props: dict | None, rng):
        """2D: a slice and (for foreground patches) the in-plane point to contain."""
        point = self._foreground_point(props, rng) if props is not None else None
        if point is None:
            return int(rng.randint(n_slices)), None
        return int(point[0]), {"point": point[1:]}

    def choose_lower_corner(self, case: str, shape: np.ndarray, props, rng) -> np.ndarray:
        """Lower corner of the ``sample_size`` region in a case of spatial ``shape``.

        ``props`` is None for a random patch; otherwise the case properties (3D) or
        ``{"point": (y, x)}`` (2D) for a foreground patch.
        """
        p, margin = self.patch_size, (self.sample_size - self.patch_size) // 2
        point = None
        if isinstance(props, dict) and "point" in props:
            point = props["point"]
        elif props is not None:
            point = self._foreground_point(props, rng)
        # range of the final patch's lower corner: inside the image, or anywhere overlapping it when smaller
        lo_min = np.minimum(0, shape - p)
        lo_max = np.maximum(0, shape - p)
        if point is not None:
            patch_lo = np.clip(np.asarray(point) - p // 2, lo_min, lo_max)
        else:
            patch_lo = np.array([rng.randint(a, b + 1) for a, b in zip(lo_min, lo_max)])
        return patch_lo - margin

    def _foreground_point(self, props: dict, rng) -> np.ndarray | None:
        """A random sampled voxel (z, y, x) of a random class present in the case, or None."""
        locations = props["class_locations"]
        if self.foreground_labels is not None:
            locations = {k: v for k, v in locations.items() if k in self.foreground_labels}
        if not locations:
            return None
        labels = sorted(locations)
        points = locations[labels[rng.randint(len(labels))]]
        return points[rng.randint(len(points))]
