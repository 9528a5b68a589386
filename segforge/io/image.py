"""Reading and writing 3D images with their geometry: the one validating reader and writer.

SimpleITK reads NIfTI, NRRD, MHA/MHD and DICOM series (:mod:`segforge.io.dicom`); nibabel
is the fallback reader for NIfTI files SimpleITK refuses. Arrays come back as
``(z, y, x)`` with a :class:`~segforge.io.geometry.Geometry`.

Everything segforge reads goes through :func:`read_image`, which refuses, as one
:class:`InputError` naming the file, what SimpleITK would pass on silently: a truncated
file, NaN/inf voxels, a sheared (non-orthonormal) direction, an unevenly spaced DICOM
series. Everything it writes goes through :func:`write_image`, which reads the file back
before renaming it into place.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from segforge.errors import InputError
from segforge.io.atomic import WriteError, describe_os_error, temporary_name, temporary_path
from segforge.io.dicom import dicom_series_files, is_dicom_folder, list_dicom_series, pick_dicom_series, read_series_image
from segforge.io.itk_messages import first_line
from segforge.io.geometry import Geometry
from segforge.io.integrity import FileCheck, check_image_file

__all__ = [
    "IMAGE_ENDINGS",
    "ORTHONORMAL_TOLERANCE",
    "split_ending",
    "is_image_file",
    "is_dicom_folder",
    "read_image",
    "read_label",
    "read_dicom_series",
    "list_dicom_series",
    "pick_dicom_series",
    "dicom_series_files",
    "write_image",
    "read_multichannel",
    "read_geometry",
    "check_direction",
]

# largest |D^T D - I| entry of a direction matrix taken as orthonormal (rounding in headers)
ORTHONORMAL_TOLERANCE = 1e-3

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


def read_image(path: str | os.PathLike, series_uid: str | Sequence[str] | None = None) -> tuple[np.ndarray, Geometry]:
    """Read one 3D image (a file, or a folder holding a DICOM series), validated.

    Returns ``(array (z, y, x), geometry)``. Raises :class:`InputError` naming the file for
    anything that is not a whole, readable, non-empty 3D scalar image with finite voxels on
    a grid with perpendicular axes: a missing, empty, truncated or corrupt file (checked
    before SimpleITK reads it, see :mod:`segforge.io.integrity`), 2D/4D/vector data, NaN or
    infinite voxels, a sheared direction matrix, a DICOM series with a missing slice.
    """
    array, geometry, stored = _load(Path(path), series_uid, strict=True)
    _check_finite(array, stored, Path(path))
    return array, geometry


def _load(p: Path, series_uid: str | Sequence[str] | None, strict: bool) -> tuple[np.ndarray, Geometry, FileCheck]:
    """Container check, then SimpleITK (nibabel for NIfTI it refuses). ``strict``: refuse a
    sheared direction too (off when the writer reads back what it was asked to write)."""
    if p.is_dir():
        return (*_from_sitk(read_series_image(p, series_uid), p, strict), FileCheck())
    if not p.exists():
        raise InputError("file not found", p)
    if not p.is_file():
        raise InputError("not a regular file", p)
    if p.stat().st_size == 0:
        raise InputError("empty file", p)
    ending = split_ending(p)[1]
    try:
        stored = check_image_file(p, ending)
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror or exc})", p) from None
    try:
        image = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        if ending not in (".nii", ".nii.gz"):
            raise InputError(f"cannot read image ({first_line(exc, p)})", p) from None
        return (*_read_nifti_with_nibabel(p, exc, strict), stored)
    return (*_from_sitk(image, p, strict), stored)


def read_label(path: str | os.PathLike, series_uid: str | Sequence[str] | None = None) -> tuple[np.ndarray, Geometry]:
    """:func:`read_image` of a label map: integer values only (a probability map is refused)."""
    array, geometry = read_image(path, series_uid)
    if array.dtype.kind == "f":
        fractional = array != np.round(array)
        if fractional.any():
            example = float(array[fractional].flat[0])
            raise InputError(f"label map holds non-integer values ({int(fractional.sum())} voxels, e.g. {example:g}; "
                             "a probability map or an interpolated label?); labels must be integers", path)
    return array, geometry


def read_dicom_series(folder: str | os.PathLike, series_uid: str | Sequence[str] | None = None) -> tuple[np.ndarray, Geometry]:
    """A DICOM series folder as ``(array (z, y, x), geometry)``, in HU for CT (:func:`read_image` of a folder)."""
    if not Path(folder).is_dir():
        raise InputError("DICOM folder not found", folder)
    return read_image(folder, series_uid)


def read_geometry(path: str | os.PathLike) -> Geometry:
    """The grid of an image file from its header alone (no voxels are read, nothing validated but the header)."""
    p = Path(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(f"cannot read image header ({first_line(exc, p)})", p) from None
    size = reader.GetSize()
    if len(size) == 4 and size[3] == 1:
        size = size[:3]
    if len(size) != 3:
        raise InputError(f"{len(size)}D image; expected 3D", p)
    spacing = reader.GetSpacing()[:3]
    origin = reader.GetOrigin()[:3]
    d = np.asarray(reader.GetDirection()).reshape(len(reader.GetSize()), -1)[:3, :3]
    return Geometry(tuple(spacing)[::-1], tuple(origin), tuple(d.ravel()), tuple(size)[::-1])


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
    """Write ``array (z, y, x)`` on ``geometry`` to ``path`` (format from the ending), verified.

    Through :func:`segforge.io.atomic.temporary_path`: a temporary name, fsync, the file is
    read back with :func:`read_image` and must give the same voxels on the same grid, then
    the rename. SimpleITK does not report a full disk (it leaves a zero-byte or cut-off
    file); the read-back does, as :class:`~segforge.io.atomic.WriteError`.
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
    _, ending = split_ending(p)
    if not ending:
        raise InputError(f"unknown image format; use one of {', '.join(IMAGE_ENDINGS)}", p)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(geometry.spacing_xyz)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)

    def check(written: Path) -> None:
        back, back_geometry, _ = _load(written, None, strict=False)
        # NIfTI stores NaN/inf, but SimpleITK reads them as 0: compare with those as 0 on both sides
        if back.shape != array.shape or not np.array_equal(_finite_or_zero(back), _finite_or_zero(array)):
            raise InputError("the voxels read back differ from those written")
        if not back_geometry.same_grid(geometry):
            raise InputError(f"the grid read back differs ({geometry.describe_difference(back_geometry)})")

    if ending in (".mhd", ".nhdr"):
        _write_detached(image, p, compress, check)
        return
    with temporary_path(p, check) as tmp:
        _sitk_write(image, tmp, compress)


def _sitk_write(image: sitk.Image, path: Path, compress: bool) -> None:
    try:
        sitk.WriteImage(image, str(path), useCompression=compress)
    except RuntimeError as exc:
        raise OSError(0, f"SimpleITK: {first_line(exc, path)}") from None


def _write_detached(image: sitk.Image, path: Path, compress: bool, check) -> None:
    """A header naming its data file (``.mhd``, ``.nhdr``): the pair is written and checked in a
    temporary folder, then each file is moved in, the data file first and the header last."""
    folder = temporary_name(path.with_name(f"{path.name}.d"))
    try:
        try:
            folder.mkdir(parents=True)
            header = folder / path.name
            _sitk_write(image, header, compress)
            check(header)
        except OSError as exc:
            raise WriteError(f"cannot write: {describe_os_error(exc, path.parent)}", path) from None
        except InputError as exc:
            if isinstance(exc, WriteError):
                raise
            raise WriteError(f"written file is damaged ({exc})", path) from None
        for written in sorted(folder.iterdir(), key=lambda f: f.name == path.name):  # data first, header last
            with temporary_path(path.parent / written.name) as tmp:
                os.replace(written, tmp)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _finite_or_zero(array: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(array), array, 0) if array.dtype.kind in "fc" else array


def _from_sitk(image: sitk.Image, path: Path, strict: bool = True) -> tuple[np.ndarray, Geometry]:
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
    if size[2] == 1 and strict:
        raise InputError(f"2D image (size {size}); expected 3D", path)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    if strict:
        direction = check_direction(direction, path)
    array = sitk.GetArrayFromImage(image)
    geometry = Geometry(
        spacing=tuple(image.GetSpacing())[::-1],
        origin=tuple(image.GetOrigin()),
        direction=tuple(direction.ravel()),
        shape=array.shape,
    )
    _check_geometry_values(geometry, path)
    return array, geometry


def check_direction(direction: np.ndarray, path: Path | None = None) -> np.ndarray:
    """``direction`` (3x3, columns = axis directions) if orthonormal within :data:`ORTHONORMAL_TOLERANCE`
    (then made exactly orthonormal); else :class:`InputError`: a sheared grid is refused, never re-gridded."""
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(d)):
        raise InputError("direction matrix holds NaN or infinite values", path)
    deviation = float(np.abs(d.T @ d - np.eye(3)).max())
    if deviation > ORTHONORMAL_TOLERANCE:
        raise InputError(
            f"direction matrix is not orthonormal (axes sheared or scaled: |D^T D - I| up to {deviation:.3g}); "
            "segforge needs perpendicular voxel axes: resample the image onto an orthogonal grid first", path)
    u, _, vt = np.linalg.svd(d)  # the nearest orthonormal matrix (polar factor)
    return u @ vt


def _check_geometry_values(geometry: Geometry, path: Path) -> None:
    if not all(np.isfinite(geometry.spacing)) or min(geometry.spacing) <= 0:
        raise InputError(f"voxel spacing {list(geometry.spacing)} must be positive and finite", path)
    if not all(np.isfinite(geometry.origin)):
        raise InputError(f"origin {list(geometry.origin)} is not finite", path)


def _check_finite(array: np.ndarray, stored: FileCheck, path: Path) -> None:
    nan, inf = stored.nan, stored.inf  # NaN/inf NIfTI voxels that SimpleITK turned into 0
    if array.dtype.kind in "fc":
        nan, inf = max(nan, int(np.isnan(array).sum())), max(inf, int(np.isinf(array).sum()))
    if nan or inf:
        raise InputError(f"image holds {nan} NaN and {inf} infinite voxels", path)


def _read_nifti_with_nibabel(path: Path, sitk_error: Exception, strict: bool = True) -> tuple[np.ndarray, Geometry]:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise InputError(f"cannot read image ({first_line(sitk_error, path)}; nibabel: {first_line(exc, path)})", path) from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{data.ndim}D image; expected 3D", path)
    affine = np.asarray(img.affine, dtype=np.float64)
    lps = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, :3]  # nibabel affines are RAS
    spacing_xyz = np.linalg.norm(lps, axis=0)
    if not np.all(np.isfinite(spacing_xyz)) or spacing_xyz.min() <= 0:
        raise InputError(f"affine gives voxel spacing {spacing_xyz.tolist()}; it must be positive", path)
    direction = check_direction(lps / spacing_xyz, path) if strict else lps / spacing_xyz
    origin = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, 3]
    array = np.ascontiguousarray(np.transpose(data, (2, 1, 0)))
    geometry = Geometry(tuple(spacing_xyz[::-1]), tuple(origin), tuple(direction.ravel()), array.shape)
    _check_geometry_values(geometry, path)
    return array, geometry
