"""DICOM series: a folder of slices read as one 3D image, with its slice positions checked.

SimpleITK's series reader (GDCM) sorts the slices by position and applies rescale
slope/intercept (CT arrives in Hounsfield units), but it builds the volume with one slice
spacing for all: a missing slice would silently stretch the anatomy between its
neighbours, and a duplicated one would stack twice. :func:`read_series_image` therefore
reads every slice's ``ImagePositionPatient`` first and refuses a series whose slices are not
evenly spaced along the slice normal, naming the gap.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from segforge.errors import InputError
from segforge.io.itk_messages import first_line

__all__ = ["is_dicom_folder", "list_dicom_series", "read_series_image", "pick_dicom_series", "dicom_series_files",
           "check_slice_positions"]

# relative tolerance on slice gaps: scanners write positions rounded to ~0.01 mm
SPACING_RTOL = 0.05
SPACING_ATOL_MM = 0.02


def is_dicom_folder(path: str | os.PathLike) -> bool:
    """A folder holding at least one DICOM series (checked by GDCM, not by file name)."""
    p = Path(path)
    if not p.is_dir():
        return False
    return len(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(p))) > 0


def list_dicom_series(folder: str | os.PathLike) -> list[str]:
    return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))


def read_series_image(folder: str | os.PathLike, series_uid: str | Sequence[str] | None = None) -> sitk.Image:
    """The SimpleITK image of a DICOM series in ``folder`` (several series: ``series_uid`` picks one,
    see :func:`pick_dicom_series`).

    Raises :class:`InputError` naming the folder for no series, several series without a
    choice, irregular slice positions, or an unreadable series.
    """
    folder = Path(folder)
    files = dicom_series_files(folder, pick_dicom_series(folder, series_uid))
    check_slice_positions(files, folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"cannot read DICOM series ({first_line(exc, folder)})", folder) from None


def pick_dicom_series(folder: str | os.PathLike, series_uid: str | Sequence[str] | None = None) -> str:
    """The SeriesInstanceUID to read from ``folder``.

    ``series_uid`` is one UID or several (one per folder of a dataset, say: the folder's
    series among them is taken). A folder holding one series needs none; a folder with
    several needs exactly one of them among ``series_uid`` (:class:`InputError` otherwise,
    listing what the folder holds).
    """
    folder = Path(folder)
    uids = list_dicom_series(folder)
    if not uids:
        raise InputError("folder holds no DICOM series", folder)
    wanted = [series_uid] if isinstance(series_uid, str) else list(series_uid or [])
    if not wanted:
        if len(uids) > 1:
            raise InputError(f"folder holds {len(uids)} DICOM series ({', '.join(uids)}); pick one by "
                             "SeriesInstanceUID (--series-uid UID)", folder)
        return uids[0]
    found = [u for u in uids if u in wanted]
    if len(found) == 1:
        return found[0]
    if not found and len(uids) == 1 and len(wanted) > 1:
        return uids[0]  # UIDs given for other folders; this one has a single series
    if found:
        raise InputError(f"folder holds several of the series asked for ({', '.join(found)}); give one", folder)
    raise InputError(f"no DICOM series {', '.join(wanted)} (found: {', '.join(uids)})", folder)


def dicom_series_files(folder: str | os.PathLike, series_uid: str) -> list[str]:
    """The series' files in the order the reader stacks them (along the slice normal)."""
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid))


def check_slice_positions(files: list[str], folder: Path) -> None:
    """Refuse a series whose slices are not evenly spaced along their normal (missing or doubled slices)."""
    if len(files) < 2:
        return
    positions, normal = [], None
    for name in files:
        reader = sitk.ImageFileReader()
        reader.SetFileName(name)
        try:
            reader.ReadImageInformation()
            position = [float(v) for v in reader.GetMetaData("0020|0032").split("\\")]
            orientation = [float(v) for v in reader.GetMetaData("0020|0037").split("\\")]
        except (RuntimeError, ValueError):
            return  # no per-slice geometry (a secondary capture, say): nothing to compare
        if normal is None:
            normal = np.cross(orientation[:3], orientation[3:])
        positions.append(float(np.dot(position, normal)))
    order = np.argsort(positions)
    along = np.asarray(positions)[order]
    gaps = np.diff(along)
    if len(gaps) == 0:
        return
    typical = float(np.median(gaps))
    names = [Path(files[i]).name for i in order]
    if typical <= SPACING_ATOL_MM:
        raise InputError(f"DICOM series has {int(np.sum(gaps <= SPACING_ATOL_MM))} slices at the same position as "
                         f"another (e.g. {names[int(np.argmin(gaps)) + 1]}): duplicated slices", folder)
    bad = np.flatnonzero(np.abs(gaps - typical) > SPACING_RTOL * typical + SPACING_ATOL_MM)
    if len(bad):
        i = int(bad[0])
        gap = float(gaps[i])
        hint = "a missing slice?" if gap > typical else "a duplicated or extra slice?"
        raise InputError(
            f"DICOM series has irregular slice spacing: {names[i]} and {names[i + 1]} are {gap:.3g} mm apart, "
            f"the other slices {typical:.3g} mm ({len(bad)} irregular gap(s) among {len(gaps)}; {hint})", folder
        )
