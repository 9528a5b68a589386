"""The raw dataset layout (nnU-Net / Medical Segmentation Decathlon style).

::

    segforge_raw/Dataset901_Name/
        dataset.json          channel_names, labels, numTraining, file_ending [, segforge_split]
        imagesTr/CASE_0000.nii.gz   (one file per channel: _0000, _0001, ...)
        labelsTr/CASE.nii.gz
        imagesTs/CASE_0000.nii.gz   (optional)
        labelsTs/CASE.nii.gz        (optional)

:class:`RawDataset` only reads the folder listing and ``dataset.json``; it opens no image.
Checking the images is :func:`segforge.io.verify.verify_dataset`'s job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from segforge import paths
from segforge.errors import InputError
from segforge.io.image import IMAGE_ENDINGS, split_ending
from segforge.io.json_file import read_json
from segforge.io.labels import LabelScheme, parse_label_scheme

__all__ = ["RawCase", "RawDataset", "CHANNEL_SUFFIX_RE", "load_dataset_json", "parse_labels", "parse_channel_names"]

CHANNEL_SUFFIX_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass
class RawCase:
    """One case: its channel files in channel order and its label file (None when unlabelled).

    ``image_files[c]`` is the path where channel ``c`` is expected (``CASE_000c`` + file
    ending); it may be missing on disk, which verification reports.
    """

    name: str
    image_files: list[Path]
    label_file: Path | None = None


@dataclass
class RawDataset:
    root: Path
    dataset_json: dict
    channel_names: dict[str, str]
    labels: dict  # name -> value, or a region's list of values (segforge.io.labels)
    file_ending: str
    # files in imagesTr/imagesTs/labelsTr/labelsTs that do not fit the layout (see stray_files())
    _stray: list[str] = field(default_factory=list, repr=False)

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def label_scheme(self) -> LabelScheme:
        """What a model of this dataset predicts (plain labels or regions, ignore label): :mod:`segforge.io.labels`."""
        return parse_label_scheme(self.labels, self.dataset_json.get("regions_class_order"),
                                  self.root / "dataset.json")

    @property
    def label_values(self) -> list[int]:
        """Every value the label files may hold (labels, regions' values, the ignore label)."""
        return self.label_scheme.raw_values

    @classmethod
    def open(cls, dataset: str | int | Path) -> "RawDataset":
        """``901``, ``"Dataset901_Name"`` (looked up in ``SEGFORGE_RAW``) or a folder path."""
        root = _find_root(dataset)
        data = load_dataset_json(root / "dataset.json")
        channel_names = parse_channel_names(data, root / "dataset.json")
        labels = parse_labels(data, root / "dataset.json")
        ending = data.get("file_ending", ".nii.gz")
        if ending not in IMAGE_ENDINGS:
            raise InputError(
                f"file_ending {ending!r} is not one of {', '.join(IMAGE_ENDINGS)}", root / "dataset.json"
            )
        return cls(root=root, dataset_json=data, channel_names=channel_names, labels=labels, file_ending=ending)

    def modality(self, channel: int = 0) -> str:
        """The channel's name from ``channel_names`` ("CT", "MR", "T2", ...)."""
        try:
            return str(self.channel_names[str(channel)])
        except KeyError:
            raise InputError(f"no channel {channel} in channel_names", self.root / "dataset.json") from None

    def training_cases(self) -> list[RawCase]:
        """Cases of ``imagesTr`` (sorted by name), each with its ``labelsTr`` file when present."""
        return self._cases("imagesTr", "labelsTr")

    def test_cases(self) -> list[RawCase]:
        """Cases of ``imagesTs`` (sorted by name), with ``labelsTs`` files when that folder exists."""
        return self._cases("imagesTs", "labelsTs")

    def predefined_split(self) -> dict | None:
        """``dataset.json``'s ``segforge_split`` (``{"train": [...], "val": [...], "test": [...]}``) or None."""
        split = self.dataset_json.get("segforge_split")
        if split is None:
            return None
        if not isinstance(split, dict) or not all(
            isinstance(v, list) and all(isinstance(c, str) for c in v) for v in split.values()
        ):
            raise InputError("segforge_split must map 'train'/'val'/'test' to lists of case names",
                             self.root / "dataset.json")
        return {k: list(v) for k, v in split.items()}

    def stray_files(self) -> list[str]:
        """Problems of the folder listing: files with another ending, no channel suffix, labels without images."""
        self._stray = []
        self.training_cases()
        self.test_cases()
        return sorted(set(self._stray))

    # ------------------------------------------------------------------ listing
    def _cases(self, images_dir: str, labels_dir: str) -> list[RawCase]:
        image_folder, label_folder = self.root / images_dir, self.root / labels_dir
        channels: dict[str, set[int]] = {}
        for p in _listing(image_folder):
            stem, ending = split_ending(p)
            if ending != self.file_ending:
                if ending or p.suffix in (".dcm", ".gz", ".nii"):
                    self._stray.append(f"{p}: file ending {ending or p.suffix!r} differs from dataset.json "
                                       f"file_ending {self.file_ending!r}; file ignored")
                continue
            m = CHANNEL_SUFFIX_RE.match(stem)
            if not m:
                self._stray.append(f"{p}: image name lacks the channel suffix _0000 (expected CASE_0000"
                                   f"{self.file_ending}); file ignored")
                continue
            channels.setdefault(m["case"], set()).add(int(m["channel"]))
        label_names = set()
        for p in _listing(label_folder):
            stem, ending = split_ending(p)
            if ending == self.file_ending:
                label_names.add(stem)
                if stem not in channels:
                    self._stray.append(f"{p}: label file has no image in {images_dir}")
            elif ending:
                self._stray.append(f"{p}: file ending {ending!r} differs from dataset.json file_ending "
                                   f"{self.file_ending!r}; file ignored")
        cases = []
        for case in sorted(channels):
            n = max(self.num_channels, max(channels[case]) + 1)
            files = [image_folder / f"{case}_{c:04d}{self.file_ending}" for c in range(n)]
            label = label_folder / f"{case}{self.file_ending}" if case in label_names else None
            cases.append(RawCase(case, files, label))
        return cases


def load_dataset_json(path: Path) -> dict:
    if not path.is_file():
        raise InputError("dataset.json not found (a raw dataset needs dataset.json with channel_names, labels, "
                         "numTraining, file_ending; segforge_import writes one)", path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError("dataset.json must hold a JSON object", path)
    return data


def parse_channel_names(data: dict, path: Path) -> dict[str, str]:
    """``channel_names`` (nnU-Net v2) or ``modality`` (Decathlon) -> ``{"0": "CT", ...}``."""
    names = data.get("channel_names", data.get("modality"))
    if not isinstance(names, dict) or not names:
        raise InputError('dataset.json needs "channel_names", e.g. {"0": "CT"}', path)
    keys = sorted(names, key=lambda k: int(k) if str(k).isdigit() else -1)
    if [str(k) for k in keys] != [str(i) for i in range(len(keys))]:
        raise InputError(f'channel_names keys must be "0", "1", ... without gaps, got {list(names)}', path)
    return {str(k): str(names[k]) for k in keys}


def parse_labels(data: dict, path: Path) -> dict:
    """``labels`` as ``{"background": 0, "liver": 1}`` (nnU-Net v2), ``{"0": "background"}`` (Decathlon),
    with regions ``{"whole tumour": [1, 2, 3], ...}`` and an ``"ignore"`` label allowed
    (:func:`segforge.io.labels.parse_label_scheme` checks them)."""
    return dict(parse_label_scheme(data.get("labels"), data.get("regions_class_order"), path).labels)


def _find_root(dataset: str | int | Path) -> Path:
    text = str(dataset)
    as_path = Path(text).expanduser()
    if isinstance(dataset, Path) or "/" in text or as_path.is_dir():
        if not as_path.is_dir():
            raise InputError("dataset folder not found", as_path)
        return as_path.absolute()
    root = paths.raw_dataset_dir(dataset)
    if not root.is_dir():
        raise InputError(f"dataset folder not found (raw datasets live in {paths.raw_root()}; set SEGFORGE_RAW "
                         "or run segforge_import)", root)
    return root


def _listing(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file())
