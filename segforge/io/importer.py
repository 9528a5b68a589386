"""``segforge_import``: bring a plain images/labels (or DICOM) dataset into ``segforge_raw``.

Steps: list and pair the source (:mod:`segforge.io.plain_layout`) -> decide the split ->
convert every image and label to ``.nii.gz`` in a temporary folder next to the target ->
derive ``dataset.json`` (labels by scanning, modality from the user or guessed) -> verify
-> move into place. The source is only read; a failed import leaves ``segforge_raw`` as it
was. Every derived decision is written into ``dataset.json`` with its reason.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from segforge import paths
from segforge.errors import DatasetProblems, InputError
from segforge.io.atomic import check_writable_folder, process_alive, remove_stale_temporaries, write_json_atomic
from segforge.workers import die_with_parent
from segforge.io.dataset import RawDataset, load_dataset_json, parse_channel_names, parse_labels
from segforge.io.image import read_image, read_label, write_image
from segforge.io.plain_layout import SourceCase, find_subsets, list_entries, pair_cases
from segforge.io.verify import verify_dataset

__all__ = ["ImportResult", "import_plain_dataset", "parse_split_fractions", "parse_label_names", "assign_split"]

ENDING = ".nii.gz"
HU_THRESHOLD = -500.0
STAGING_PREFIX = ".importing-"  # + pid-random: the dataset being converted
REPLACED_PREFIX = ".replaced-"  # + pid-random-DatasetNNN_Name: the old dataset while --overwrite swaps it


@dataclass
class ImportResult:
    dataset_dir: Path
    num_train: int
    num_val: int
    num_test: int
    channel_names: dict[str, str]
    labels: dict[str, int]
    split: dict | None
    unchanged: bool = False
    notes: list[str] = field(default_factory=list)

    def summary_lines(self) -> list[str]:
        if self.unchanged:
            return [f"{self.dataset_dir} already holds exactly this import; nothing changed"]
        split = f" ({self.num_train} train, {self.num_val} val)" if self.split else ""
        return [
            f"imported {self.num_train + self.num_val} training cases{split} and {self.num_test} test cases "
            f"into {self.dataset_dir}",
            "channels: " + ", ".join(f"{k}={v}" for k, v in self.channel_names.items())
            + "; labels: " + ", ".join(f"{k}={v}" for k, v in self.labels.items()),
            "verification: no problems",
        ]


def import_plain_dataset(source: str | os.PathLike, dataset_id: int, name: str, modality: str | None = None,
                         match: str = "name", split: str | None = None, seed: int = 0, labels: str | None = None,
                         overwrite: bool = False, num_processes: int = 2, progress: bool = True,
                         log: Callable[[str], None] = print, series_uids: Sequence[str] = ()) -> ImportResult:
    """Import ``source`` as ``segforge_raw/DatasetNNN_name``; see the module docstring and docs/dataset_format.md.

    ``modality``: ``"CT"`` or one name per channel (``"T1,T2"``); ``split``: ``"70,15,15"``
    train/val/test percentages (or fractions), only for a source that is not split yet;
    ``labels``: ``"liver=1,tumour=2"``; ``series_uids``: for DICOM folders holding several
    series, the SeriesInstanceUIDs to read (each folder's one among them). Raises InputError / DatasetProblems.
    """
    source = Path(source).expanduser().absolute()
    folder_name = paths.dataset_folder_name(dataset_id, name)
    raw_root = paths.raw_root()
    dest = raw_root / folder_name
    _recover_interrupted(raw_root)  # what a killed import left, before anything is decided
    _check_places(source, dest, raw_root, dataset_id, folder_name)

    # 1. list and pair
    cases, notes = _collect_cases(source, match)
    if split is not None:
        if any(c.subset for c in cases):
            raise InputError("--split given but the source is already split into train/val/test folders", source)
        fractions = parse_split_fractions(split)
        chosen = assign_split([c.name for c in cases], fractions, seed)
        for c in cases:
            c.subset = next(s for s, names in chosen.items() if c.name in names)
        split_why = f"--split {split} with seed {seed} over {len(cases)} cases (sorted names, then shuffled)"
    elif any(c.subset for c in cases):
        split_why = "the source came split into train/val/test folders"
    else:
        split_why = None
    num_channels = len(cases[0].images)

    if dest.exists() and not overwrite:
        _refuse_early(dest, source, cases)

    # 2. names and user choices
    src_json = _source_dataset_json(source)
    channel_names = _channel_names(modality, num_channels, src_json)
    label_names = parse_label_names(labels) if labels else (parse_labels(src_json, source / "dataset.json")
                                                             if src_json and "labels" in src_json else None)

    # 3. convert into a temporary folder next to the target (named with this process's id, so a
    # later import can tell a killed run's leftovers from a running one's)
    check_writable_folder(raw_root, "raw datasets folder")
    work = raw_root / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = work / folder_name
    try:
        result = _build(tmp, source, cases, channel_names, label_names, split_why, match, name, num_processes,
                        progress, log, tuple(series_uids))
        result.notes = notes
        result.dataset_dir = dest
        # 4. install
        if dest.exists():
            if _same_content(dest, tmp):
                result.unchanged = True
                return result
            if not overwrite:
                raise InputError("dataset folder exists with different content; pass --overwrite to replace it "
                                 "(or pick another id/name)", dest)
            backup = raw_root / f"{REPLACED_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-{folder_name}"
            os.replace(dest, backup)
            os.replace(tmp, dest)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, dest)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _recover_interrupted(raw_root: Path) -> None:
    """Undo what a killed import left: its staging folder goes; an old dataset it had moved aside
    for ``--overwrite`` but not yet replaced goes back (or goes, when the new one is in place)."""
    remove_stale_temporaries(raw_root, STAGING_PREFIX)
    for backup in raw_root.glob(f"{REPLACED_PREFIX}*"):
        pid, _, rest = backup.name[len(REPLACED_PREFIX):].partition("-")
        if pid.isdigit() and process_alive(int(pid)):
            continue
        original = raw_root / rest.partition("-")[2]
        if rest.partition("-")[2] and not original.exists():
            os.replace(backup, original)
        else:
            shutil.rmtree(backup, ignore_errors=True)


def parse_split_fractions(text: str) -> tuple[float, float, float]:
    """``"70,15,15"`` or ``"0.7,0.15,0.15"`` -> fractions (train, val, test) summing to 1."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or any(v < 0 for v in values):
        raise InputError(f"--split must be three non-negative numbers TRAIN,VAL,TEST (e.g. 70,15,15), got {text!r}")
    total = sum(values)
    if not (abs(total - 100) < 0.5 or abs(total - 1) < 0.005):
        raise InputError(f"--split {text} must sum to 100 (percent) or 1 (fractions), got {total:g}")
    return tuple(v / total for v in values)


def assign_split(names: list[str], fractions: tuple[float, float, float], seed: int) -> dict[str, list[str]]:
    """Deterministic split: shuffle the sorted names with ``seed``; test first, then val, the rest train."""
    ordered = sorted(names)
    order = np.random.default_rng(seed).permutation(len(ordered))
    n_test = int(round(len(ordered) * fractions[2]))
    n_val = int(round(len(ordered) * fractions[1]))
    if len(ordered) - n_test - n_val < 1:
        raise InputError(f"--split leaves no training case out of {len(ordered)}")
    picked = [ordered[i] for i in order]
    return {"train": sorted(picked[n_test + n_val:]), "val": sorted(picked[n_test:n_test + n_val]),
            "test": sorted(picked[:n_test])}


def parse_label_names(text: str) -> dict[str, int]:
    """``"liver=1,tumour=2"`` -> ``{"background": 0, "liver": 1, "tumour": 2}``."""
    labels = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip().isdigit():
            raise InputError(f"--labels must look like liver=1,tumour=2; cannot read {item!r}")
        labels[name.strip()] = int(value)
    if 0 not in labels.values():
        labels = {"background": 0, **labels}
    if len(set(labels.values())) != len(labels):
        raise InputError(f"--labels gives two names the same value: {text}")
    return dict(sorted(labels.items(), key=lambda kv: kv[1]))


def sanitize_case_name(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-]+", "_", stem).strip("_") or "case"


# ---------------------------------------------------------------------------- steps
def _cases_record(cases: list[SourceCase], source: Path) -> dict:
    return {c.name: {"subset": c.subset or "train", "images": [str(e.path.relative_to(source)) for e in c.images],
                     "label": str(c.label.path.relative_to(source)) if c.label else None} for c in cases}


def _refuse_early(dest: Path, source: Path, cases: list[SourceCase]) -> None:
    """An existing dataset made from other files can be refused before converting anything."""
    try:
        previous = json.loads((dest / "dataset.json").read_text()).get("segforge_import", {})
    except (OSError, json.JSONDecodeError):
        previous = {}
    if previous.get("source") != str(source) or previous.get("cases") != _cases_record(cases, source):
        raise InputError("dataset folder exists with different content; pass --overwrite to replace it "
                         "(or pick another id/name)", dest)


def _check_places(source: Path, dest: Path, raw_root: Path, dataset_id: int, folder_name: str) -> None:
    src, dst, root = source.resolve(), dest.resolve(), raw_root.resolve()
    if src == dst or src in dst.parents or dst in src.parents or src in root.parents or src == root:
        raise InputError(f"the source folder and the output {dest} overlap; import from a folder outside "
                         f"{raw_root}", source)
    prefix = f"Dataset{int(dataset_id):03d}_"
    if raw_root.is_dir():
        other = [p.name for p in raw_root.iterdir() if p.is_dir() and p.name.startswith(prefix)
                 and p.name != folder_name]
        if other:
            raise InputError(f"dataset id {int(dataset_id)} is already used by {', '.join(other)}; pick another id "
                             "or remove that folder", raw_root)


def _collect_cases(source: Path, match: str) -> tuple[list[SourceCase], list[str]]:
    cases, notes, problems = [], [], []
    num_channels = None
    for subset, folder in find_subsets(source).items():
        images, skipped = list_entries(folder / "images")
        labels, skipped_l = list_entries(folder / "labels")
        notes += [f"skipped {p} (not an image)" for p in skipped + skipped_l]
        if not images:
            problems.append(f"{folder / 'images'}: no image files or DICOM series folders")
            continue
        try:
            found = pair_cases(images, labels, subset, match, labels_required=subset != "test",
                               images_dir=folder / "images", labels_dir=folder / "labels",
                               num_channels=num_channels)
        except DatasetProblems as exc:
            problems += exc.problems
            continue
        num_channels = num_channels or len(found[0].images)
        cases += found
    seen: dict[str, SourceCase] = {}
    for c in cases:
        if len(c.images) != num_channels:
            problems.append(f"{c.images[0].path}: case has {len(c.images)} channels, others have {num_channels}")
        c.name = sanitize_case_name(c.name)
        if c.name in seen:
            problems.append(f"{c.images[0].path}: case name {c.name!r} also used by {seen[c.name].images[0].path}")
        seen[c.name] = c
    if problems:
        raise DatasetProblems(problems)
    return cases, notes


def _source_dataset_json(source: Path) -> dict | None:
    path = source / "dataset.json"
    return load_dataset_json(path) if path.is_file() else None


def _channel_names(modality: str | None, num_channels: int, src_json: dict | None) -> dict[str, str] | None:
    """Names from --modality, else from the source's dataset.json, else None (guessed after reading)."""
    if modality:
        names = [m.strip() for m in modality.split(",") if m.strip()]
        if len(names) == 1 and num_channels > 1:
            names = names * num_channels
        if len(names) != num_channels:
            raise InputError(f"--modality names {len(names)} channels but the cases have {num_channels}")
        return {str(i): n for i, n in enumerate(names)}
    if src_json and ("channel_names" in src_json or "modality" in src_json):
        return parse_channel_names(src_json, Path("dataset.json"))
    return None


@dataclass
class _ConvertTask:
    case: SourceCase
    image_out: list[Path]
    label_out: Path | None
    series_uids: tuple[str, ...] = ()


def _convert(task: _ConvertTask) -> tuple[list[str], list[float], list[int]]:
    """Convert one case; returns (problems naming source files, per-channel minimum, label values)."""
    problems, minima, values = [], [], []
    ref = None  # (geometry, path) of the first channel
    for entry, out in zip(task.case.images, task.image_out):
        try:
            array, geometry = read_image(entry.path, task.series_uids or None)
        except InputError as exc:
            problems.append(str(exc))
            continue
        if ref is None:
            ref = (geometry, entry.path)
        elif not geometry.same_grid(ref[0]):
            problems.append(f"{entry.path}: grid differs from channel 0 file {ref[1].name} "
                            f"({ref[0].describe_difference(geometry)})")
        minima.append(float(array.min()))
        write_image(array, geometry, out)
    if task.case.label is None or task.label_out is None:
        return problems, minima, values
    path = task.case.label.path
    try:
        label, geometry = read_label(path, task.series_uids or None)
    except InputError as exc:
        return problems + [str(exc)], minima, values
    if ref is not None and not geometry.same_grid(ref[0]):
        problems.append(f"{path}: label grid differs from image {ref[1].name} "
                        f"(image vs label: {ref[0].describe_difference(geometry)})")
    values = sorted(int(v) for v in np.unique(label))
    if values and values[0] < 0:
        return problems + [f"{path}: negative label values {[v for v in values if v < 0]}"], minima, values
    dtype = np.uint8 if values[-1] < 256 else (np.int16 if values[-1] < 32768 else np.int32)
    write_image(label.astype(dtype), geometry, task.label_out)
    return problems, minima, values


def _build(tmp: Path, source: Path, cases: list[SourceCase], channel_names, label_names, split_why, match,
           name, num_processes, progress, log, series_uids: tuple[str, ...] = ()) -> ImportResult:
    tasks = []
    for c in cases:
        tr = c.subset != "test"
        img_dir, lbl_dir = tmp / ("imagesTr" if tr else "imagesTs"), tmp / ("labelsTr" if tr else "labelsTs")
        tasks.append(_ConvertTask(c, [img_dir / f"{c.name}_{i:04d}{ENDING}" for i in range(len(c.images))],
                                  lbl_dir / f"{c.name}{ENDING}" if c.label else None, series_uids))
    bar = dict(total=len(tasks), desc=f"import {tmp.name}", unit="case", disable=not progress)
    pool = None
    if num_processes > 1 and len(tasks) > num_processes:  # fewer cases are not worth starting processes
        # spawn, not fork: ITK's thread pool does not survive a fork; one pool converts and verifies
        pool = mp.get_context("spawn").Pool(min(num_processes, len(tasks)), initializer=die_with_parent)
    try:
        results = list(tqdm(pool.imap(_convert, tasks) if pool else map(_convert, tasks), **bar))
        return _finish(tmp, source, cases, tasks, results, channel_names, label_names, split_why, match, name,
                       num_processes, progress, log, pool)
    finally:
        if pool is not None:
            pool.terminate()


def _finish(tmp, source, cases, tasks, results, channel_names, label_names, split_why, match, name,
            num_processes, progress, log, pool) -> ImportResult:
    problems = [line for r in results for line in r[0]]
    if problems:
        raise DatasetProblems(problems)

    decisions = {}
    if channel_names is None:
        lowest = min(r[1][0] for r in results)
        guess = "CT" if lowest < HU_THRESHOLD else "MR"
        why = (f"no --modality given: lowest intensity of channel 0 is {lowest:g} "
               f"({'<' if guess == 'CT' else '>='} {HU_THRESHOLD:g}, {'looks like HU' if guess == 'CT' else 'not HU'})")
        log(f"warning: {why}; guessed {guess} (pass --modality to choose)")
        channel_names = {str(i): guess for i in range(len(cases[0].images))}
        decisions["modality"] = {"value": guess, "why": why}
    found = sorted({v for r in results for v in r[2]} | {0})
    if label_names is None:
        label_names = {("background" if v == 0 else f"label_{v}"): v for v in found}
        decisions["labels"] = {"why": f"label values found by scanning the label files: {found}"}
    if split_why:
        decisions["split"] = {"why": split_why}

    train = [c for c in cases if c.subset != "test"]
    data = {
        "name": name,
        "channel_names": channel_names,
        "labels": label_names,
        "numTraining": len(train),
        "file_ending": ENDING,
    }
    split = None
    if split_why:
        split = {s: sorted(c.name for c in cases if c.subset == s) for s in ("train", "val", "test")}
        data["segforge_split"] = split
    data["segforge_import"] = {
        "source": str(source),
        "match": match,
        "decisions": decisions,
        "cases": _cases_record(cases, source),
    }
    tmp.mkdir(parents=True, exist_ok=True)
    write_json_atomic(tmp / "dataset.json", data)

    origin = {str(out): str(e.path) for t in tasks for e, out in zip(t.case.images, t.image_out)}
    origin.update({str(t.label_out): str(t.case.label.path) for t in tasks if t.label_out})
    found_problems = verify_dataset(RawDataset.open(tmp), num_processes=num_processes, progress=progress, pool=pool)
    if found_problems:
        raise DatasetProblems([_to_source(line, origin, tmp) for line in found_problems])
    return ImportResult(tmp, sum(c.subset in ("", "train") for c in cases), sum(c.subset == "val" for c in cases),
                        sum(c.subset == "test" for c in cases), channel_names, label_names, split)


def _to_source(line: str, origin: dict[str, str], tmp: Path) -> str:
    """Name the user's file in a verification line about a converted file."""
    head, sep, rest = line.partition(": ")
    if head in origin:
        return f"{origin[head]}: {rest}"
    if head == str(tmp / "dataset.json"):
        return f"derived dataset.json: {rest}"
    return line


def _same_content(a: Path, b: Path) -> bool:
    def listing(root):
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))

    files = listing(a)
    if files != listing(b):
        return False
    for rel in files:
        pa, pb = a / rel, b / rel
        if rel == "dataset.json":
            if json.loads(pa.read_text()) != json.loads(pb.read_text()):
                return False
        elif pa.read_bytes() != pb.read_bytes():
            try:
                (xa, ga), (xb, gb) = read_image(pa), read_image(pb)
            except InputError:
                return False
            if not (ga.same_grid(gb) and xa.dtype == xb.dtype and np.array_equal(xa, xb)):
                return False
    return True
