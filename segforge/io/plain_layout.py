"""Reading the plain images/labels layout many labs use, and pairing images with labels.

Accepted source layouts::

    SRC/images/  SRC/labels/                      (one pool of cases)
    SRC/train/{images,labels}/ SRC/val/... SRC/test/images[/labels]   (already split)

An image entry is an image file (any of :data:`segforge.io.IMAGE_ENDINGS`) or a folder
holding one DICOM series. Several channels of one case are files ``CASE_0000``,
``CASE_0001``, ... (the nnU-Net suffix).

Name matching (``match="name"``), tried in this order for each image:

1. the same name (without file ending and without the channel suffix ``_0000``);
2. the same *key*: lower-cased, with tokens such as ``seg``, ``label``, ``mask``, ``gt``,
   ``img``, ``image``, ``ct``, ``0000`` removed from the end (after ``_``, ``-`` or ``.``)
   and from the start (before a separator or a digit). So ``img_01.nii.gz`` pairs with
   ``img_01_seg.nii.gz``, ``img_01_label.nii.gz``, ``label_01.nii.gz`` or ``seg01.nrrd``.

``match="sorted"`` pairs the i-th image with the i-th label in natural sort order
(``2`` before ``10``); both folders must hold the same number of entries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from segforge.errors import DatasetProblems, InputError
from segforge.io.image import is_dicom_folder, split_ending

__all__ = ["SourceEntry", "SourceCase", "find_subsets", "list_entries", "pair_cases", "match_key", "natural_key"]

SUBSETS = ("train", "val", "test")
_CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
_TOKENS = ("segmentation", "labelmap", "groundtruth", "annotation", "labels", "label", "seg", "mask", "gt",
           "image", "img", "volume", "vol", "scan", "mri", "ct", "mr", "0000")


@dataclass
class SourceEntry:
    """One image or label in the source: a file, or a folder holding a DICOM series."""

    path: Path
    stem: str  # name without image ending

    @property
    def is_dicom(self) -> bool:
        return self.path.is_dir()


@dataclass
class SourceCase:
    """One case to import: channel entries in channel order, and its label (None for unlabelled test)."""

    name: str
    subset: str  # "train", "val", "test" or "" (not split yet)
    images: list[SourceEntry]
    label: SourceEntry | None


def find_subsets(source: Path) -> dict[str, Path]:
    """``{"": SRC}`` for ``images/+labels/``, else ``{"train": SRC/train, ...}`` for the split layout."""
    if not source.is_dir():
        raise InputError("source folder not found", source)
    if (source / "images").is_dir():
        return {"": source}
    found = {s: source / s for s in SUBSETS if (source / s / "images").is_dir()}
    if "train" not in found and (source / "imagesTr").is_dir():
        raise InputError("this is already a raw dataset (imagesTr/); copy or link it into segforge_raw as "
                         "DatasetNNN_Name instead of importing it", source)
    if "train" not in found:
        raise InputError("expected images/ and labels/ in the source folder, or train/ (val/ test/) each holding "
                         "images/ and labels/", source)
    return found


def list_entries(folder: Path) -> tuple[list[SourceEntry], list[Path]]:
    """Image files and DICOM series folders in ``folder`` (natural order), and the other things skipped."""
    entries, skipped = [], []
    if not folder.is_dir():
        return entries, skipped
    for p in sorted(folder.iterdir(), key=lambda q: natural_key(q.name)):
        if p.name.startswith("."):
            continue
        stem, ending = split_ending(p)
        if p.is_file() and ending:
            entries.append(SourceEntry(p, stem))
        elif p.is_dir() and is_dicom_folder(p):
            entries.append(SourceEntry(p, p.name))
        elif p.is_dir():
            raise InputError("folder is neither an image file nor a folder holding a DICOM series", p)
        else:
            skipped.append(p)
    return entries, skipped


def pair_cases(images: list[SourceEntry], labels: list[SourceEntry], subset: str, match: str,
               labels_required: bool, images_dir: Path, labels_dir: Path,
               num_channels: int | None = None) -> list[SourceCase]:
    """Group channel files into cases and pair each case with its label. Raises DatasetProblems."""
    if match not in ("name", "sorted"):
        raise InputError(f"unknown --match {match!r}; use 'name' or 'sorted'")
    grouped = _group_channels(images)
    if grouped is not None:
        n = len(next(iter(grouped.values())))
        if num_channels is not None and n != num_channels:
            grouped = None
    single: dict[str, list[SourceEntry]] = {}
    for e in images:
        if e.stem in single:
            raise InputError(f"{single[e.stem][0].path.name} and {e.path.name} give the same case name "
                             f"{e.stem!r}; keep one of them", images_dir)
        single[e.stem] = [e]
    if match == "sorted":
        options = [g for g in (grouped, single) if g is not None]
        cases = options[0] if len(options[0]) == len(labels) or not labels else options[-1]
        return _pair_sorted(cases, labels, subset, labels_required, images_dir, labels_dir)
    best, best_count = None, -1
    for option in (grouped, single):
        if option is None:
            continue
        pairs = _pair_by_name(option, labels)
        if len(pairs) > best_count:
            best, best_count = option, len(pairs)
    pairs = _pair_by_name(best, labels)
    problems, cases = [], []
    used = {}
    for stem, channel_entries in best.items():
        label = pairs.get(stem)
        if label is not None:
            if label.stem in used:
                problems.append(f"{label.path}: label matches two images ({used[label.stem]} and {stem})")
            used[label.stem] = stem
        elif labels_required:
            problems.append(f"{channel_entries[0].path}: no label in {labels_dir} matches this image "
                            f"(tried {stem!r} and key {match_key(stem)!r}; see docs/dataset_format.md, or use "
                            "--match sorted)")
        cases.append(SourceCase(stem, subset, channel_entries, label))
    for label in labels:
        if label.stem not in used:
            problems.append(f"{label.path}: no image in {images_dir} matches this label (key {match_key(label.stem)!r})")
    if problems:
        raise DatasetProblems(problems)
    return cases


def match_key(stem: str) -> str:
    """The loose name used for matching: lower case, known tokens removed at both ends."""
    key = stem.lower()
    changed = True
    while changed:
        changed = False
        for token in _TOKENS:
            m = re.fullmatch(rf"(.+?)[_\-. ]{token}", key)
            if m:
                key, changed = m[1], True
                continue
            m = re.fullmatch(rf"{token}(?:[_\-. ](.+)|(\d.*))", key)
            if m:
                key, changed = m[1] or m[2], True
    return key


def natural_key(text: str) -> list:
    """Sort key putting ``case2`` before ``case10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def _group_channels(images: list[SourceEntry]) -> dict[str, list[SourceEntry]] | None:
    """``CASE_000N`` files grouped by CASE when every group holds channels 0..C-1 (one C); else None."""
    groups: dict[str, dict[int, SourceEntry]] = {}
    for e in images:
        m = _CHANNEL_RE.match(e.stem)
        if not m or e.is_dicom:
            return None
        groups.setdefault(m["case"], {})[int(m["channel"])] = e
    sizes = {len(g) for g in groups.values()}
    if len(groups) > 1 and len(sizes) > 1 and all(0 in g for g in groups.values()):
        # CASE_0000 everywhere but not the same channels: some channel files are missing
        n = max(max(g) for g in groups.values()) + 1
        raise DatasetProblems([
            f"{g[0].path.with_name(f'{case}_{c:04d}{split_ending(g[0].path)[1]}')}: channel {c} file missing for "
            f"case {case} "
            f"(other cases have {n} channels)"
            for case, g in groups.items() for c in range(n) if c not in g])
    if not groups or len(sizes) != 1 or any(sorted(g) != list(range(len(g))) for g in groups.values()):
        return None
    return {case: [g[c] for c in range(len(g))] for case, g in groups.items()}


def _pair_by_name(cases: dict[str, list[SourceEntry]], labels: list[SourceEntry]) -> dict[str, SourceEntry]:
    """case stem -> label entry: exact names first, then loose keys among what is left."""
    pairs: dict[str, SourceEntry] = {}
    by_stem = {lb.stem: lb for lb in labels}
    for stem in cases:
        if stem in by_stem:
            pairs[stem] = by_stem[stem]
    taken = {lb.stem for lb in pairs.values()}
    left_labels: dict[str, list[SourceEntry]] = {}
    for lb in labels:
        if lb.stem not in taken:
            left_labels.setdefault(match_key(lb.stem), []).append(lb)
    left_cases: dict[str, list[str]] = {}
    for stem in cases:
        if stem not in pairs:
            left_cases.setdefault(match_key(stem), []).append(stem)
    for key, stems in left_cases.items():
        if len(stems) == 1 and len(left_labels.get(key, [])) == 1:
            pairs[stems[0]] = left_labels[key][0]
    return pairs


def _pair_sorted(cases: dict[str, list[SourceEntry]], labels: list[SourceEntry], subset: str,
                 labels_required: bool, images_dir: Path, labels_dir: Path) -> list[SourceCase]:
    stems = sorted(cases, key=natural_key)
    if labels and len(labels) != len(stems):
        raise InputError(f"{len(stems)} images but {len(labels)} labels in {labels_dir}; --match sorted pairs them "
                         "in order and needs as many of each", images_dir)
    if not labels and labels_required and stems:
        raise InputError(f"no labels in {labels_dir} for the {len(stems)} images", images_dir)
    ordered = sorted(labels, key=lambda e: natural_key(e.stem))
    return [SourceCase(s, subset, cases[s], ordered[i] if labels else None) for i, s in enumerate(stems)]
