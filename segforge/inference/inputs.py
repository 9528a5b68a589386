"""Which cases an input path holds, where their predictions go, and reading them.

An input is one of:

* a folder of image files, nnU-Net style ``CASE_0000.nii.gz`` (+ ``_0001``... for more
  channels), or, for a single-channel model, any image files (one per case);
* one image file (its sibling channel files ``CASE_000c`` are picked up for a
  multi-channel model);
* a folder holding one DICOM series (one case named after the folder), or a folder whose
  sub-folders each hold one DICOM series (one case per sub-folder).

A prediction is written as ``OUTPUT/CASE`` + the input's file ending (``.nii.gz`` for DICOM).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from segforge.errors import InputError
from segforge.io.dataset import CHANNEL_SUFFIX_RE
from segforge.io.geometry import Geometry
from segforge.io.image import IMAGE_ENDINGS, is_dicom_folder, is_image_file, read_image, read_multichannel, split_ending

__all__ = ["InputCase", "discover_cases", "output_file", "check_output_folder", "read_case"]

DICOM_OUTPUT_ENDING = ".nii.gz"
DICOM_SEG_ENDING = ".dcm"
OUTPUT_FORMATS = ("auto", "dicom-seg")


@dataclass
class InputCase:
    """One case to predict: ``sources`` are its channel files in order, or ``[dicom_folder]``.

    ``problem`` is set when the case cannot be read as found (a missing channel, say); the
    case is then reported as failed instead of stopping the others.
    """

    name: str
    sources: list[Path]
    ending: str
    is_dicom: bool = False
    problem: str | None = None
    series_uids: tuple[str, ...] = ()  # DICOM folders with several series: which to read


def discover_cases(input_path: str | os.PathLike, num_channels: int = 1, series_uids: Sequence[str] = (),
                   output_format: str = "auto") -> list[InputCase]:
    """The cases of ``input_path`` (a folder, an image file or DICOM series folders), sorted by name.

    ``series_uids``: for DICOM folders holding several series, the one(s) to read (see
    :func:`segforge.io.image.pick_dicom_series`). ``output_format``: ``auto`` (the input's
    format, NIfTI for DICOM) or ``dicom-seg`` (DICOM inputs only: ``CASE.dcm``).
    """
    if output_format not in OUTPUT_FORMATS:
        raise InputError(f"unknown output format {output_format!r}; use one of {', '.join(OUTPUT_FORMATS)}")
    cases = _discover(input_path, num_channels)
    for case in cases:
        case.series_uids = tuple(series_uids)
        if output_format == "dicom-seg":
            if case.is_dicom:
                case.ending = DICOM_SEG_ENDING
            else:
                case.problem = case.problem or ("--output-format dicom-seg needs a DICOM series as input (the "
                                                "segmentation references the scan's slices)")
    return cases


def _discover(input_path: str | os.PathLike, num_channels: int) -> list[InputCase]:
    path = Path(input_path).expanduser().absolute()
    if not path.exists():
        raise InputError("input not found", path)
    if path.is_file():
        if not is_image_file(path):
            raise InputError(f"not an image file (endings: {', '.join(IMAGE_ENDINGS)})", path)
        return [_single_file_case(path, num_channels)]
    files = [p for p in sorted(path.iterdir()) if is_image_file(p)]
    cases = _group_files(files, num_channels) if files else []
    if not files and is_dicom_folder(path):
        cases.append(InputCase(path.name, [path], DICOM_OUTPUT_ENDING, is_dicom=True))
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if is_dicom_folder(sub):
            cases.append(InputCase(sub.name, [sub], DICOM_OUTPUT_ENDING, is_dicom=True))
    if not cases:
        raise InputError(
            f"no images found: expected image files ({', '.join(IMAGE_ENDINGS)}) or folders of DICOM series", path
        )
    names = [c.name for c in cases]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise InputError(f"several inputs would give the same output name: {', '.join(clashes)}", path)
    return sorted(cases, key=lambda c: c.name)


def output_file(case: InputCase, output_folder: str | os.PathLike) -> Path:
    return Path(output_folder) / f"{case.name}{case.ending}"


def check_output_folder(
    input_path: str | os.PathLike, output_folder: str | os.PathLike, cases: list[InputCase]
) -> None:
    """Refuse an output folder that is the input folder, or any output that would replace an input."""
    inp = Path(input_path).expanduser().resolve()
    out = Path(output_folder).expanduser().resolve()
    input_folder = inp if inp.is_dir() else inp.parent
    if out == input_folder:
        raise InputError(
            "output folder is the input folder; predictions must not sit among (or replace) the images: "
            "choose another output folder", output_folder
        )
    sources = {s.resolve() for c in cases for s in c.sources}
    for case in cases:
        target = output_file(case, out)
        if target in sources or any(s in target.parents for s in sources if s.is_dir()):
            raise InputError(f"the prediction of {case.name} would replace or enter an input; choose another "
                             "output folder", target)


def read_case(case: InputCase) -> tuple[np.ndarray, Geometry]:
    """``(image (C, z, y, x) float32, geometry)``; :class:`InputError` naming the file on any problem."""
    if case.problem:
        raise InputError(case.problem, case.sources[0] if case.sources else case.name)
    if case.is_dicom:
        array, geometry = read_image(case.sources[0], case.series_uids or None)
        image = array.astype(np.float32, copy=False)[None]
    else:
        image, geometry = read_multichannel(case.sources)
    if not np.isfinite(image).all():
        raise InputError("image holds NaN or infinite values", case.sources[0])
    return image, geometry


def _single_file_case(path: Path, num_channels: int) -> InputCase:
    stem, ending = split_ending(path)
    m = CHANNEL_SUFFIX_RE.match(stem)
    if num_channels == 1:
        name = m["case"] if m and int(m["channel"]) == 0 else stem
        return InputCase(name, [path], ending)
    if not m:
        return InputCase(stem, [path], ending, problem=_suffix_problem(ending, num_channels))
    files = [path.parent / f"{m['case']}_{c:04d}{ending}" for c in range(num_channels)]
    missing = [f.name for f in files if not f.is_file()]
    problem = f"missing channel file(s) {', '.join(missing)}" if missing else None
    return InputCase(m["case"], files, ending, problem=problem)


def _group_files(files: list[Path], num_channels: int) -> list[InputCase]:
    parsed = []
    for p in files:
        stem, ending = split_ending(p)
        m = CHANNEL_SUFFIX_RE.match(stem)
        parsed.append((p, stem, ending, m))
    if num_channels == 1:
        if all(m and int(m["channel"]) == 0 for _, _, _, m in parsed):
            return [InputCase(m["case"], [p], ending) for p, _, ending, m in parsed]
        # not nnU-Net named: every file is a case of its own
        return [InputCase(stem, [p], ending) for p, stem, ending, _ in parsed]
    groups: dict[str, dict[int, Path]] = {}
    endings: dict[str, set[str]] = {}
    cases = []
    for p, stem, ending, m in parsed:
        if not m:
            cases.append(InputCase(stem, [p], ending, problem=_suffix_problem(ending, num_channels)))
            continue
        groups.setdefault(m["case"], {})[int(m["channel"])] = p
        endings.setdefault(m["case"], set()).add(ending)
    for name, channels in groups.items():
        ending = sorted(endings[name])[0]
        folder = channels[min(channels)].parent
        files = [channels.get(c, folder / f"{name}_{c:04d}{ending}") for c in range(num_channels)]
        problems = []
        missing = [f"{name}_{c:04d}{ending}" for c in range(num_channels) if c not in channels]
        if missing:
            problems.append(f"missing channel file(s) {', '.join(missing)} (the model takes {num_channels} channels)")
        extra = sorted(c for c in channels if c >= num_channels)
        if extra:
            problems.append(f"channel(s) {', '.join(f'_{c:04d}' for c in extra)} beyond the model's {num_channels}")
        if len(endings[name]) > 1:
            problems.append(f"channel files have different endings {sorted(endings[name])}")
        cases.append(InputCase(name, files, ending, problem="; ".join(problems) or None))
    return cases


def _suffix_problem(ending: str, num_channels: int) -> str:
    return (f"file name lacks the channel suffix; the model takes {num_channels} channels, named "
            f"CASE_0000{ending} ... CASE_{num_channels - 1:04d}{ending}")
