"""Image I/O: geometry round trips for every format, DICOM series in HU, the nibabel fallback."""

import numpy as np
import pytest
import SimpleITK as sitk

from segforge.errors import InputError
from segforge.io import Geometry, read_image, read_multichannel, split_ending, write_image
from segforge.io import image as image_module

from helpers.dicom_writer import write_dicom_series

SHAPE = (8, 10, 12)  # (z, y, x)
SPACING = (2.5, 0.8, 0.7)  # anisotropic, (z, y, x)
_c, _s = np.cos(np.pi / 6), np.sin(np.pi / 6)
DIRECTIONS = {
    "identity": np.eye(3),
    "flipped_xy": np.diag([-1.0, -1.0, 1.0]),
    "left_handed": np.diag([1.0, 1.0, -1.0]),
    "rotated": np.array([[_c, -_s, 0.0], [_s, _c, 0.0], [0.0, 0.0, 1.0]]),
}


def _volume(dtype):
    return (np.arange(np.prod(SHAPE)).reshape(SHAPE) % 251 - 100).astype(dtype)


@pytest.mark.parametrize("ending", [".nii", ".nii.gz", ".nrrd", ".mha", ".mhd"])
@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_geometry_round_trip(tmp_path, ending, direction):
    geometry = Geometry(SPACING, (10.0, -20.0, 30.5), DIRECTIONS[direction].ravel(), SHAPE)
    for dtype in (np.int16, np.float32):
        array = _volume(dtype)
        path = tmp_path / f"img_{np.dtype(dtype).name}{ending}"
        write_image(array, geometry, path)
        back, g = read_image(path)
        assert back.dtype == dtype and np.array_equal(back, array)
        assert g.same_grid(geometry), g.describe_difference(geometry)
        # a voxel maps to the same world point through both geometries
        assert np.allclose(g.index_to_world([7, 9, 11]), geometry.index_to_world([7, 9, 11]), atol=1e-3)
    assert not list(tmp_path.glob(".tmp-*")), "temporary files left behind"


def test_index_world_round_trip_and_split_ending():
    g = Geometry(SPACING, (1.0, 2.0, 3.0), DIRECTIONS["rotated"].ravel(), SHAPE)
    idx = np.array([[1.5, 2.0, 3.25], [0, 0, 0]])
    assert np.allclose(g.world_to_index(g.index_to_world(idx)), idx)
    assert np.allclose(g.index_to_world([0, 0, 1]), np.array([1, 2, 3]) + 0.7 * DIRECTIONS["rotated"][:, 0])
    assert split_ending("a/b/CASE_0000.nii.gz") == ("CASE_0000", ".nii.gz")
    assert split_ending("x.NRRD") == ("x", ".nrrd")
    assert split_ending("notes.txt") == ("notes.txt", "")


def test_nibabel_fallback_gives_the_same_geometry(tmp_path, monkeypatch):
    geometry = Geometry(SPACING, (10.0, -20.0, 30.5), DIRECTIONS["rotated"].ravel(), SHAPE)
    array = _volume(np.float32)
    path = tmp_path / "img.nii.gz"
    write_image(array, geometry, path)
    write_image(array, geometry, tmp_path / "img.nrrd")

    def refuse(*args, **kwargs):
        raise RuntimeError("Exception thrown in SimpleITK ReadImage\nITK only supports orthonormal direction cosines")

    monkeypatch.setattr(image_module.sitk, "ReadImage", refuse)
    back, g = read_image(path)
    assert np.array_equal(back, array)
    assert g.same_grid(geometry), g.describe_difference(geometry)
    # formats nibabel cannot read keep SimpleITK's error, naming the file
    with pytest.raises(InputError, match=r"img.nrrd: cannot read image \(.*orthonormal"):
        read_image(tmp_path / "img.nrrd")


def test_sheared_nifti_is_refused_not_regridded(tmp_path):
    nib = pytest.importorskip("nibabel")
    affine = np.array([[0.7, 0.3, 0.0, 5.0], [0.0, 0.8, 0.0, -3.0], [0.0, 0.0, 2.5, 1.0], [0, 0, 0, 1]])  # sheared
    data = np.arange(12 * 10 * 8, dtype=np.float32).reshape(12, 10, 8)  # nibabel order (x, y, z)
    img = nib.Nifti1Image(data, affine)
    img.set_qform(None, code=0)
    img.set_sform(affine, code=2)
    path = tmp_path / "sheared.nii.gz"
    nib.save(img, str(path))
    with pytest.raises(RuntimeError):
        sitk.ReadImage(str(path))
    with pytest.raises(InputError, match=r"sheared.nii.gz: direction matrix is not orthonormal .*resample"):
        read_image(path)


def test_nifti_simpleitk_rejects_but_nearly_orthonormal_is_read_by_nibabel(tmp_path, monkeypatch):
    nib = pytest.importorskip("nibabel")
    angle = 0.3
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    rotation[0, 1] += 2e-4  # header rounding: not exactly orthonormal
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.7, 0.8, 2.5])
    affine[:3, 3] = [5.0, -3.0, 1.0]
    data = np.arange(12 * 10 * 8, dtype=np.float32).reshape(12, 10, 8)
    path = tmp_path / "rounded.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))

    def refuse(*args, **kwargs):
        raise RuntimeError("ITK only supports orthonormal direction cosines")

    monkeypatch.setattr(image_module.sitk, "ReadImage", refuse)
    array, g = read_image(path)
    assert array.shape == (8, 10, 12) and np.array_equal(array, data.transpose(2, 1, 0))
    d = g.direction_matrix
    assert np.allclose(d.T @ d, np.eye(3), atol=1e-12)  # made exactly orthonormal
    # voxel (x=2, y=3, z=4) lies at the affine's point (RAS -> LPS), up to the rounding removed
    ras = affine @ np.array([2, 3, 4, 1.0])
    assert np.allclose(g.index_to_world([4, 3, 2]), [-ras[0], -ras[1], ras[2]], atol=1e-2)


def test_bad_files_are_clear_errors(tmp_path):
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match="empty.nii.gz: empty file"):
        read_image(tmp_path / "empty.nii.gz")
    with pytest.raises(InputError, match="missing.nrrd: file not found"):
        read_image(tmp_path / "missing.nrrd")
    (tmp_path / "junk.mha").write_bytes(b"\x00garbage" * 50)
    with pytest.raises(InputError, match="junk.mha: cannot read image"):
        read_image(tmp_path / "junk.mha")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((10, 12), np.float32)), str(tmp_path / "flat.nii.gz"))
    with pytest.raises(InputError, match="flat.nii.gz: 2D image; expected 3D"):
        read_image(tmp_path / "flat.nii.gz")
    with pytest.raises(InputError, match="unknown image format"):
        write_image(np.zeros(SHAPE), Geometry.identity(SHAPE), tmp_path / "x.png")


def test_read_multichannel_checks_grids(tmp_path):
    g = Geometry(SPACING, (0.0, 0.0, 0.0), np.eye(3).ravel(), SHAPE)
    write_image(_volume(np.int16), g, tmp_path / "c_0000.nrrd")
    write_image(_volume(np.float32) * 2, g, tmp_path / "c_0001.mha")
    data, geometry = read_multichannel([tmp_path / "c_0000.nrrd", tmp_path / "c_0001.mha"])
    assert data.shape == (2, *SHAPE) and data.dtype == np.float32 and geometry.same_grid(g)
    write_image(_volume(np.float32), Geometry(SPACING, (0.0, 0.0, 9.0), np.eye(3).ravel(), SHAPE),
                tmp_path / "c_0002.mha")
    with pytest.raises(InputError, match=r"c_0002.mha: channel grid differs from c_0000.nrrd: origin"):
        read_multichannel([tmp_path / "c_0000.nrrd", tmp_path / "c_0002.mha"])


# ------------------------------------------------------------------------------------ DICOM
@pytest.mark.parametrize("flipped", [False, True])
def test_dicom_series_read_in_hu_with_geometry(tmp_path, flipped):
    hu = (np.arange(np.prod(SHAPE)).reshape(SHAPE) * 3 - 1000).astype(np.int16)
    row, col = ((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0)) if flipped else ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0))
    write_dicom_series(tmp_path / "ct", hu, SPACING, (-50.0, 20.0, 100.0), row, col)
    array, g = read_image(tmp_path / "ct")
    assert np.array_equal(array.astype(np.int32), hu.astype(np.int32)), "values must be HU (rescale applied)"
    assert array.min() == -1000
    normal = np.cross(row, col)
    expected = Geometry(SPACING, (-50.0, 20.0, 100.0), np.stack([row, col, normal], axis=1).ravel(), SHAPE)
    assert g.same_grid(expected), g.describe_difference(expected)


def test_dicom_folder_with_two_series(tmp_path):
    hu = np.full(SHAPE, -500, np.int16)
    uid_a = write_dicom_series(tmp_path / "mixed", hu, SPACING, (0, 0, 0), (1, 0, 0), (0, 1, 0), prefix="a")
    uid_b = write_dicom_series(tmp_path / "mixed", hu + 600, SPACING, (0, 0, 0), (1, 0, 0), (0, 1, 0), prefix="b")
    with pytest.raises(InputError) as info:
        read_image(tmp_path / "mixed")
    message = str(info.value)
    assert "mixed: folder holds 2 DICOM series" in message and uid_a in message and uid_b in message
    assert "SeriesInstanceUID" in message
    array, _ = read_image(tmp_path / "mixed", series_uid=uid_b)
    assert np.all(array == 100)
    with pytest.raises(InputError, match="no DICOM series 1.2.3"):
        read_image(tmp_path / "mixed", series_uid="1.2.3")
