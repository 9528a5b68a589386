"""Reading and writing 3D images with their geometry.

SimpleITK reads NIfTI, NRRD, MHA/MHD and DICOM series; nibabel is the fallback reader for
NIfTI files SimpleITK refuses (for example some non-orthonormal affines). Arrays come back
as ``(z, y, x)`` with a :class:`~segforge.io.geometry.Geometry`.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from segforge.errors import InputError
from segforge.io.geometry import Geometry

__all__ = [
    "IMAGE_ENDINGS",
    "split_ending",
    "is_image_file",
    "is_dicom_folder",
    "read_image",
    "read_dicom_series",
    "list_dicom_series",
    "write_image",
    "read_multichannel",
]

IMAGE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def split_ending(path: str | os.PathLike) -> tuple[str, str]:
    """``"a/CASE_0000.nii.gz"`` -> ``("CASE_0000", ".nii.gz")``; ending ``""`` if unknown."""
    name = Path(path).name
    for ending in IMAGE_ENDINGS:
        if name.lower().endswith(ending):
            return name[: -len(ending)], ending
    return name, ""


def is_image_file(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_file() and split_ending(p)[1] != "" and not p.name.startswith(".")


def is_dicom_folder(path: str | os.PathLike) -> bool:
    """A folder holding at least one DICOM series (checked by GDCM, not by file name)."""
    p = Path(path)
    if not p.is_dir():
        return False
    return len(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(p))) > 0


def list_dicom_series(folder: str | os.PathLike) -> list[str]:
    return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))


def read_image(path: str | os.PathLike, series_uid: str | None = None) -> tuple[np.ndarray, Geometry]:
    """Read one 3D image (a file, or a folder holding a DICOM series).

    Returns ``(array (z, y, x), geometry)``. Raises :class:`InputError` naming the file for
    anything that is not a readable, non-empty 3D scalar image.
    """
    p = Path(path)
    if p.is_dir():
        return read_dicom_series(p, series_uid)
    if not p.exists():
        raise InputError("file not found", p)
    if p.stat().st_size == 0:
        raise InputError("empty file", p)
    try:
        image = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        if split_ending(p)[1] in (".nii", ".nii.gz"):
            return _read_nifti_with_nibabel(p, exc)
        raise InputError(f"cannot read image ({_first_line(exc, p)})", p) from None
    return _from_sitk(image, p)


def read_dicom_series(folder: str | os.PathLike, series_uid: str | None = None) -> tuple[np.ndarray, Geometry]:
    """Read a DICOM series from a folder; rescale slope/intercept are applied (CT in HU).

    Several series in one folder: ``series_uid`` picks one, else the error lists them.
    """
    folder = Path(folder)
    uids = list_dicom_series(folder)
    if not uids:
        raise InputError("folder holds no DICOM series", folder)
    if series_uid is None:
        if len(uids) > 1:
            raise InputError(
                f"folder holds {len(uids)} DICOM series ({', '.join(uids)}); pick one by SeriesInstanceUID", folder
            )
        series_uid = uids[0]
    elif series_uid not in uids:
        raise InputError(f"no DICOM series {series_uid} (found: {', '.join(uids)})", folder)
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"cannot read DICOM series ({_first_line(exc, folder)})", folder) from None
    return _from_sitk(image, folder)


def read_multichannel(paths: list[str | os.PathLike]) -> tuple[np.ndarray, Geometry]:
    """Read one file per channel into ``(C, z, y, x)`` float32; channels must share a grid."""
    arrays, geometry = [], None
    for p in paths:
        array, g = read_image(p)
        if geometry is None:
            geometry = g
        elif not g.same_grid(geometry):
            raise InputError(f"channel grid differs from {Path(paths[0]).name}: {g.describe_difference(geometry)}", p)
        arrays.append(array.astype(np.float32, copy=False))
    return np.stack(arrays), geometry


def write_image(array: np.ndarray, geometry: Geometry, path: str | os.PathLike, compress: bool = True) -> None:
    """Write ``array (z, y, x)`` on ``geometry`` to ``path`` (format from the ending).

    Written to a temporary name in the same folder and renamed, so a reader never sees a
    half-written file.
    """
    p = Path(path)
    array = np.asarray(array)
    if array.shape != tuple(geometry.shape):
        raise ValueError(f"array shape {array.shape} does not match geometry shape {geometry.shape}")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    elif array.dtype == np.float64:
        array = array.astype(np.float32)
    elif array.dtype == np.int64:
        array = array.astype(np.int32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(geometry.spacing_xyz)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    p.parent.mkdir(parents=True, exist_ok=True)
    _, ending = split_ending(p)
    if not ending:
        raise InputError(f"unknown image format; use one of {', '.join(IMAGE_ENDINGS)}", p)
    if ending in (".mhd", ".nhdr"):
        # a detached header names its data file, so the pair is written under the final name
        sitk.WriteImage(image, str(p), useCompression=compress)
        return
    tmp = p.parent / f".tmp-{uuid.uuid4().hex[:8]}-{p.name}"
    try:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()


def _from_sitk(image: sitk.Image, path: Path) -> tuple[np.ndarray, Geometry]:
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{image.GetNumberOfComponentsPerPixel()} components per voxel (4D or vector image); expected a 3D scalar "
            "image (put each channel in its own _000N file)",
            path,
        )
    dim = image.GetDimension()
    if dim == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
        dim = 3
    if dim != 3:
        raise InputError(f"{dim}D image; expected 3D", path)
    size = image.GetSize()
    if min(size) < 1 or int(np.prod(size)) == 0:
        raise InputError("image has no voxels", path)
    if size[2] == 1:
        raise InputError(f"2D image (size {size}); expected 3D", path)
    array = sitk.GetArrayFromImage(image)
    geometry = Geometry(
        spacing=tuple(image.GetSpacing())[::-1],
        origin=tuple(image.GetOrigin()),
        direction=tuple(image.GetDirection()),
        shape=array.shape,
    )
    return array, geometry


def _read_nifti_with_nibabel(path: Path, sitk_error: Exception) -> tuple[np.ndarray, Geometry]:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise InputError(f"cannot read image ({_first_line(sitk_error, path)}; nibabel: {_first_line(exc, path)})", path) from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{data.ndim}D image; expected 3D", path)
    affine = np.asarray(img.affine, dtype=np.float64)
    lps = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, :3]  # nibabel affines are RAS
    spacing_xyz = np.linalg.norm(lps, axis=0)
    direction = lps / spacing_xyz
    origin = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, 3]
    array = np.ascontiguousarray(np.transpose(data, (2, 1, 0)))
    return array, Geometry(tuple(spacing_xyz[::-1]), tuple(origin), tuple(direction.ravel()), array.shape)


def _first_line(exc: Exception, path: Path | None = None) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # ITK messages start with a file/line location; the last line says what went wrong
    text = lines[-1][:200] if lines else type(exc).__name__
    # the message is prefixed with the path already; inside it the file name is enough
    return text.replace(str(path), Path(path).name) if path is not None else text
