"""Reading and writing images with geometry; DICOM series; raw dataset layouts."""

from segforge.io.geometry import Geometry
from segforge.io.image import (
    IMAGE_ENDINGS,
    is_dicom_folder,
    is_image_file,
    read_dicom_series,
    read_image,
    read_multichannel,
    split_ending,
    write_image,
)
from segforge.io.dataset import RawCase, RawDataset
from segforge.io.verify import verify_dataset, verify_or_raise

__all__ = [
    "Geometry",
    "RawCase",
    "RawDataset",
    "verify_dataset",
    "verify_or_raise",
    "IMAGE_ENDINGS",
    "is_dicom_folder",
    "is_image_file",
    "read_dicom_series",
    "read_image",
    "read_multichannel",
    "split_ending",
    "write_image",
]
