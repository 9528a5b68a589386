"""The validating reader refuses what SimpleITK passes on silently (issue 18, item 2 and 6)."""

import gzip

import numpy as np
import pytest
import SimpleITK as sitk

from segforge.errors import InputError
from segforge.io import Geometry, read_image, write_image
from segforge.io.image import read_geometry, read_label

from helpers.dicom_writer import write_dicom_series

SHAPE = (20, 24, 28)


def _image(tmp_path, name, dtype=np.float32, compress=True):
    rng = np.random.default_rng(0)
    array = (rng.normal(size=SHAPE) * 100).astype(dtype)  # noise: compresses badly, so cuts land in the data
    path = tmp_path / name
    write_image(array, Geometry((2.0, 1.0, 1.5), (1.0, 2.0, 3.0), np.eye(3).ravel(), SHAPE), path, compress=compress)
    return path, array


def _cut(path, fraction=0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


@pytest.mark.parametrize("name, compress", [("a.nii.gz", True), ("a.nii", False), ("a.mha", True),
                                            ("a.mha", False), ("a.nrrd", True), ("a.mhd", False)])
def test_a_truncated_file_is_refused_not_zero_filled(tmp_path, name, compress):
    path, array = _image(tmp_path, name, compress=compress)
    assert np.array_equal(read_image(path)[0], array)
    data_file = next(tmp_path.glob("*.raw"), path) if name.endswith(".mhd") else path
    _cut(data_file)
    if name.endswith((".nii.gz", ".nii")):  # what the reader must not do: SimpleITK zero-fills the tail
        assert (sitk.GetArrayFromImage(sitk.ReadImage(str(path))) == 0).mean() > 0.3
    with pytest.raises(InputError, match=rf"{name}: .*(truncated|cannot read)") as info:
        read_image(path)
    assert "\n" not in str(info.value)


def test_a_corrupt_gzip_stream_is_refused(tmp_path):
    path, _ = _image(tmp_path, "c.nii.gz")
    data = bytearray(path.read_bytes())
    data[-6] ^= 0xFF  # inside the CRC/size trailer
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"c.nii.gz: file is (corrupt|truncated)"):
        read_image(path)


def test_a_truncated_uncompressed_nifti_header_promise_is_checked(tmp_path):
    path, _ = _image(tmp_path, "u.nii", compress=False)
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[: size - 4 * 28])  # one row of float32 short
    with pytest.raises(InputError, match=r"u.nii: file is truncated: the header promises \d+ bytes"):
        read_image(path)


@pytest.mark.parametrize("ending", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_nan_and_inf_are_refused_in_every_format(tmp_path, ending):
    array = np.ones(SHAPE, np.float32)
    array[1, 2, 3], array[4, 5, 6], array[7, 8, 9] = np.nan, np.inf, -np.inf
    path = tmp_path / f"n{ending}"
    write_image(array, Geometry.identity(SHAPE), path)  # writing NaN is allowed; reading it is refused
    with pytest.raises(InputError, match=rf"n{ending}: image holds 1 NaN and 2 infinite voxels"):
        read_image(path)


def test_label_maps_must_hold_integers(tmp_path):
    array = np.zeros(SHAPE, np.float32)
    array[2:5, 2:5, 2:5] = 0.5
    write_image(array, Geometry.identity(SHAPE), tmp_path / "p.nii.gz")
    with pytest.raises(InputError, match=r"p.nii.gz: label map holds non-integer values \(27 voxels, e.g. 0.5"):
        read_label(tmp_path / "p.nii.gz")
    array[2:5, 2:5, 2:5] = 2.0
    write_image(array, Geometry.identity(SHAPE), tmp_path / "q.nii.gz")
    assert read_label(tmp_path / "q.nii.gz")[0].max() == 2


def test_read_geometry_reads_only_the_header(tmp_path):
    path, _ = _image(tmp_path, "h.nii.gz")
    g = read_geometry(path)
    assert g.shape == SHAPE and np.allclose(g.spacing, (2.0, 1.0, 1.5)) and np.allclose(g.origin, (1.0, 2.0, 3.0))


# ------------------------------------------------------------------------------------ DICOM
def _series(tmp_path, n=10):
    hu = (np.arange(n * 6 * 7).reshape(n, 6, 7) - 100).astype(np.int16)
    write_dicom_series(tmp_path / "ct", hu, (2.5, 0.8, 0.7), (0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0))
    return tmp_path / "ct", hu


def test_a_dicom_series_with_a_missing_slice_is_refused(tmp_path):
    folder, hu = _series(tmp_path)
    assert np.array_equal(read_image(folder)[0], hu)
    (folder / "slice_005.dcm").unlink()  # slice k is slice_{n - k}: k = 5, in the middle
    with pytest.raises(InputError, match=r"ct: DICOM series has irregular slice spacing: .* 5 mm apart, the other "
                                         r"slices 2.5 mm .*missing slice"):
        read_image(folder)


def test_a_dicom_series_with_a_duplicated_slice_is_refused(tmp_path):
    folder, _ = _series(tmp_path)
    (folder / "slice_011.dcm").write_bytes((folder / "slice_004.dcm").read_bytes())  # the same slice twice
    with pytest.raises(InputError, match=r"ct: DICOM series has irregular slice spacing: .* 0 mm apart.*duplicated"):
        read_image(folder)
