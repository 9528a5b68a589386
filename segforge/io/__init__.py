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

__all__ = [
    "Geometry",
    "IMAGE_ENDINGS",
    "is_dicom_folder",
    "is_image_file",
    "read_dicom_series",
    "read_image",
    "read_multichannel",
    "split_ending",
    "write_image",
]
