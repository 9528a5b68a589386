"""Writing a prediction as a DICOM Segmentation object (``--output-format dicom-seg``).

The label map of a case read from a DICOM series becomes one binary DICOM-SEG (highdicom,
an optional extra: ``pip install 'segforge[dicom]'``) that

* references the input series (its study, series and every source instance), so a PACS or
  viewer shows it on the scan it was made from;
* has one segment per foreground label, numbered by label value and named from
  ``dataset.json`` (``{"liver": 1}`` -> segment 1 "liver"), marked as automatic, made by segforge;
* lies on the input's geometry: frame ``k`` is source slice ``k`` in the order the series
  reader stacked them (``dicom_series_files``), with its position and orientation.

Empty frames are left out (highdicom's default) unless the whole map is empty.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from segforge.errors import InputError
from segforge.io.atomic import temporary_path
from segforge.io.geometry import Geometry
from segforge.io.image import dicom_series_files

__all__ = ["DICOM_SEG_ENDING", "write_dicom_seg", "read_dicom_seg_labels", "check_dicom_seg"]

DICOM_SEG_ENDING = ".dcm"
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


def write_dicom_seg(
    labels: np.ndarray,
    geometry: Geometry,
    path: str | os.PathLike,
    source_folder: str | os.PathLike,
    series_uid: str,
    label_names: dict[str, int],
    series_description: str = "segforge segmentation",
) -> Path:
    """Write ``labels (Z, Y, X)`` (on the grid of the series ``series_uid`` in ``source_folder``) as a DICOM-SEG."""
    hd, codes, dcmread = _imports()
    from segforge import __version__

    files = dicom_series_files(source_folder, series_uid)
    if len(files) != labels.shape[0]:
        raise InputError(f"the series has {len(files)} slices but the prediction {labels.shape[0]}; "
                         "DICOM-SEG needs one file per slice (multi-frame inputs are not supported)", source_folder)
    sources = [_with_type2_attributes(dcmread(f, stop_before_pixels=True)) for f in files]
    if (sources[0].Rows, sources[0].Columns) != tuple(labels.shape[1:]):
        raise InputError(f"slices are {sources[0].Rows}x{sources[0].Columns}, the prediction {labels.shape[1:]}",
                         source_folder)
    names = {int(v): k for k, v in label_names.items()}
    values = sorted(v for v in names if v != 0) or sorted(int(v) for v in np.unique(labels) if v != 0)
    if values != list(range(1, len(values) + 1)):
        raise InputError(f"DICOM-SEG segment numbers must be 1..N; the labels are {values}")
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=v,
            segment_label=names.get(v, f"label_{v}")[:64],
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=hd.AlgorithmIdentificationSequence(
                name="segforge", version=__version__, family=codes.cid7162.ArtificialIntelligence),
        )
        for v in values
    ]
    mask = np.asarray(labels)
    if mask.max() > len(values):
        raise InputError(f"the prediction holds label {int(mask.max())}, beyond the {len(values)} named labels")
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=mask.astype(np.uint16 if len(values) > 255 else np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=int(getattr(sources[0], "SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="segforge",
        manufacturer_model_name="segforge",
        software_versions=__version__,
        device_serial_number="0",
        series_description=series_description,
        omit_empty_frames=bool(mask.any()),
    )
    path = Path(path)
    with temporary_path(path, check=lambda tmp: check_dicom_seg(tmp, int(seg.NumberOfFrames))) as tmp:
        seg.save_as(tmp)
    return path


def check_dicom_seg(path: str | os.PathLike, frames: int | None = None) -> None:
    """:class:`InputError` unless ``path`` is a whole, readable DICOM Segmentation (with ``frames`` frames)."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        ds = dcmread(str(path))
        pixels = len(ds.PixelData)
    except (InvalidDicomError, OSError, AttributeError, ValueError, EOFError) as exc:
        raise InputError(f"not a readable DICOM Segmentation ({str(exc)[:200]})", path) from None
    if ds.get("SOPClassUID") != SEGMENTATION_STORAGE:
        raise InputError("not a DICOM Segmentation (SOP class differs)", path)
    n = int(ds.get("NumberOfFrames", 0))
    bits = int(ds.Rows) * int(ds.Columns) * n
    if (frames is not None and n != frames) or pixels * 8 < bits:
        raise InputError(f"DICOM Segmentation is incomplete ({n} frames, {pixels} pixel bytes)", path)


def read_dicom_seg_labels(path: str | os.PathLike, source_folder: str | os.PathLike, series_uid: str) -> np.ndarray:
    """A DICOM-SEG written by :func:`write_dicom_seg` back as a ``(Z, Y, X)`` label map on the source grid."""
    hd, _, dcmread = _imports()
    seg = hd.seg.segread(str(path))
    files = dicom_series_files(source_folder, series_uid)
    uids = [dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]
    frames = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True,
                                               assert_missing_frames_are_empty=True)
    return np.asarray(frames)


# patient and study attributes a DICOM-SEG copies from its source; type 2 (present, may be empty),
# but some exporters leave them out, and highdicom then refuses the source
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")


def _with_type2_attributes(dataset):
    for keyword in _TYPE2:
        if keyword not in dataset:
            setattr(dataset, keyword, "")
    return dataset


def _imports():
    try:
        import highdicom as hd
        from pydicom import dcmread
        from pydicom.sr.codedict import codes
    except ImportError:
        raise InputError("--output-format dicom-seg needs highdicom: pip install 'segforge[dicom]'") from None
    return hd, codes, dcmread
