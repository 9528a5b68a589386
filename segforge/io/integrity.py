"""Is an image file whole? Checks SimpleITK does not make before it reads.

SimpleITK fills the missing tail of a truncated NIfTI file (``.nii`` or ``.nii.gz``) with
zeros and reads NaN/inf voxels of a NIfTI file as 0, both silently; a truncated MetaImage
(``.mha``/``.mhd``) gives a misleading "No such file or directory" and prints to the
terminal. :func:`check_image_file` reads the container itself first:

* NIfTI-1/2: the header's voxel count and type give the data size; ``.nii.gz`` is
  decompressed as a stream, so a cut-off or corrupt gzip stream (CRC, end marker) is found;
  for floating-point data the stored NaN and infinite values are counted on the way;
* MetaImage: ``DimSize``, ``ElementType`` and ``ElementNumberOfChannels`` give the data
  size, compared with what the file (or its ``ElementDataFile``) holds, decompressed when
  ``CompressedData`` is set.

Other formats (NRRD, which reports truncation itself, and DICOM) pass unchecked here.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segforge.errors import InputError

__all__ = ["FileCheck", "check_image_file"]

_CHUNK = 1 << 22  # 4 MiB

# NIfTI datatype code -> numpy dtype (the types segforge can meet as images or labels)
_NIFTI_TYPES = {
    2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8", 1280: "u8",
    128: "u1", 2304: "u1",  # RGB24 / RGBA32: bytes (refused later as multi-component)
}
_META_TYPES = {
    "MET_UCHAR": 1, "MET_CHAR": 1, "MET_USHORT": 2, "MET_SHORT": 2, "MET_UINT": 4, "MET_INT": 4,
    "MET_ULONG": 8, "MET_LONG": 8, "MET_ULONG_LONG": 8, "MET_LONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8,
}


@dataclass
class FileCheck:
    """What the container check found: stored NaN and infinite values (floating-point NIfTI only)."""

    nan: int = 0
    inf: int = 0


def check_image_file(path: Path, ending: str) -> FileCheck:
    """Raise :class:`InputError` naming ``path`` when the file is cut off or corrupt."""
    if ending in (".nii", ".nii.gz"):
        return _check_nifti(path, compressed=ending == ".nii.gz")
    if ending in (".mha", ".mhd"):
        _check_metaimage(path)
    return FileCheck()


# ----------------------------------------------------------------------------- NIfTI
def _check_nifti(path: Path, compressed: bool) -> FileCheck:
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as f:
            head = _read_exactly(f, 540)
            layout = _nifti_layout(head, path)
            if layout is None:  # not a NIfTI header we know: SimpleITK/nibabel give their own error
                return FileCheck()
            offset, nbytes, dtype = layout
            _read_exactly(f, max(0, offset - len(head)))
            data_head = head[offset:] if len(head) > offset else b""
            found, check = _scan_data(f, data_head, nbytes, dtype)
            if compressed:
                while f.read(_CHUNK):  # the rest of the stream: its end marker and CRC are checked
                    pass
    except EOFError:
        raise InputError("file is truncated (its gzip stream ends early)", path) from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise InputError(f"file is corrupt (gzip: {exc})", path) from None
    if found < nbytes:
        raise InputError(f"file is truncated: the header promises {nbytes} bytes of voxel data, the file holds "
                         f"{found} ({100 * found / max(nbytes, 1):.0f}%)", path)
    return check


def _nifti_layout(head: bytes, path: Path) -> tuple[int, int, np.dtype] | None:
    """``(vox_offset, data bytes, dtype)`` from a NIfTI-1 or NIfTI-2 header, None if not one."""
    for order in "<>":
        size = struct.unpack(f"{order}i", head[:4])[0] if len(head) >= 4 else 0
        if size == 348 and len(head) >= 348:
            dims = struct.unpack(f"{order}8h", head[40:56])
            datatype, bitpix = struct.unpack(f"{order}hh", head[70:74])
            offset = max(int(struct.unpack(f"{order}f", head[108:112])[0]), 352)
            break
        if size == 540 and len(head) >= 540:
            dims = struct.unpack(f"{order}8q", head[16:80])
            datatype, bitpix = struct.unpack(f"{order}hh", head[12:16])
            offset = max(int(struct.unpack(f"{order}q", head[168:176])[0]), 544)
            break
    else:
        return None
    ndim = int(dims[0])
    if not 1 <= ndim <= 7 or any(int(d) < 0 for d in dims[1:ndim + 1]) or bitpix <= 0 or bitpix % 8:
        raise InputError(f"NIfTI header is corrupt (dim {list(dims[:ndim + 1])}, bitpix {bitpix})", path)
    voxels = int(np.prod([max(int(d), 1) for d in dims[1:ndim + 1]], dtype=np.int64))
    dtype = np.dtype(order + _NIFTI_TYPES[datatype]) if datatype in _NIFTI_TYPES else np.dtype(f"V{bitpix // 8}")
    return offset, voxels * (bitpix // 8), dtype


def _scan_data(f, first: bytes, nbytes: int, dtype: np.dtype) -> tuple[int, FileCheck]:
    """Read up to ``nbytes`` of voxel data; count NaN/inf when ``dtype`` is floating point."""
    check = FileCheck()
    floating = dtype.kind == "f"
    found, carry = 0, b""
    block = first
    while True:
        block = block[: nbytes - found]
        found += len(block)
        if floating and block:
            data = carry + block
            usable = len(data) - len(data) % dtype.itemsize
            values = np.frombuffer(data[:usable], dtype=dtype)
            check.nan += int(np.isnan(values).sum())
            check.inf += int(np.isinf(values).sum())
            carry = data[usable:]
        if found >= nbytes:
            return found, check
        block = f.read(_CHUNK)
        if not block:
            return found, check


def _read_exactly(f, n: int) -> bytes:
    parts, left = [], n
    while left > 0:
        part = f.read(left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


# ----------------------------------------------------------------------------- MetaImage
def _check_metaimage(path: Path) -> None:
    with open(path, "rb") as f:
        raw = f.read(64 * 1024)
    fields, header_end = {}, None
    position = 0
    for line in raw.split(b"\n"):
        position += len(line) + 1
        key, sep, value = line.decode("latin-1").partition("=")
        if not sep:
            continue
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            header_end = position
            break
    if header_end is None or "DimSize" not in fields or fields.get("ElementType") not in _META_TYPES:
        return  # not a header we understand: let SimpleITK report it
    try:
        dims = [int(v) for v in fields["DimSize"].split()]
        channels = int(fields.get("ElementNumberOfChannels", "1"))
    except ValueError:
        raise InputError(f"MetaImage header is corrupt (DimSize {fields['DimSize']!r})", path) from None
    nbytes = int(np.prod(dims, dtype=np.int64)) * channels * _META_TYPES[fields["ElementType"]]
    data_file = fields["ElementDataFile"]
    if data_file == "LOCAL":
        source, skip = path, header_end
    elif data_file.startswith("LIST") or "%" in data_file or " " in data_file:
        return  # data spread over several files: SimpleITK checks those
    else:
        source, skip = path.parent / data_file, 0
        if not source.is_file():
            raise InputError(f"the header's ElementDataFile {data_file} is missing", path)
    compressed = fields.get("CompressedData", "False").lower() == "true"
    if not compressed:
        found = source.stat().st_size - skip
    else:
        found = _inflated_size(source, skip, path)
    if found < nbytes:
        raise InputError(f"file is truncated: the header promises {nbytes} bytes of voxel data, the file holds "
                         f"{max(found, 0)} ({100 * max(found, 0) / max(nbytes, 1):.0f}%)", path)


def _inflated_size(source: Path, skip: int, path: Path) -> int:
    inflater = zlib.decompressobj()
    total = 0
    try:
        with open(source, "rb") as f:
            f.seek(skip)
            while chunk := f.read(_CHUNK):
                total += len(inflater.decompress(chunk))
                if inflater.eof:
                    break
            total += len(inflater.flush())
    except zlib.error as exc:
        raise InputError(f"file is corrupt (compressed data: {exc})", path) from None
    if not inflater.eof:
        raise InputError(f"file is truncated (compressed data ends early after {total} bytes)", path)
    return total
