"""Test helper: write a CT DICOM series with pydicom (stored values differ from HU)."""

import numpy as np

__all__ = ["write_dicom_series"]


def write_dicom_series(folder, hu, spacing_zyx, origin, row_dir, col_dir, series_uid=None, prefix="slice"):
    """Write ``hu (z, y, x)`` as a CT series: stored int16 = HU + 1024, RescaleIntercept -1024."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    normal = np.cross(row_dir, col_dir)
    stored = (np.asarray(hu) + 1024).astype(np.int16)
    for k in range(stored.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, study_uid
        ds.Modality, ds.PatientID, ds.PatientName, ds.SeriesNumber, ds.InstanceNumber = "CT", "X", "X", 1, k + 1
        ds.Rows, ds.Columns = stored.shape[1], stored.shape[2]
        ds.PixelSpacing = [f"{spacing_zyx[1]:g}", f"{spacing_zyx[2]:g}"]  # row spacing (y), column spacing (x)
        ds.SliceThickness = f"{spacing_zyx[0]:g}"
        position = np.asarray(origin) + k * spacing_zyx[0] * normal
        ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:g}" for v in (*row_dir, *col_dir)]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
        ds.PixelData = stored[k].tobytes()
        # slices written in reverse order: the reader must sort them by position
        ds.save_as(folder / f"{prefix}_{stored.shape[0] - k:03d}.dcm", enforce_file_format=True)
    return series_uid
