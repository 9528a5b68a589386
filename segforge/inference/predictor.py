"""The predictor: a trained model folder applied to one image.

``Predictor.predict_case(image, geometry)`` runs the three steps

1. ``preprocess``: the same crop / resample / normalise as training (``preprocess_case``);
2. ``predict_preprocessed``: sliding window with mirroring, softmax, mean over folds;
3. ``restore``: back onto the input's grid, then argmax.

Step 2 is the seam for the cascade: :class:`~segforge.inference.cascade_predictor.CascadePredictor`
overrides ``predict_preprocessed`` with locate -> crop -> segment -> paste;
:func:`segforge.inference.registry.create_predictor` picks the predictor a configuration needs.
"""

from __future__ import annotations

import os
import warnings
from typing import Sequence

import numpy as np
import torch

from segforge.data.slice_stack import stack_adjacent_slices
from segforge.devices import free_device_memory, prediction_dtype, resolve_device
from segforge.errors import InputError
from segforge.inference.export import restore_labels, restore_probabilities
from segforge.inference.model import ModelFolder, load_checkpoint, plain_state_dict
from segforge.inference.onnx_backend import BACKENDS, OnnxNetwork
from segforge.inference.postprocessing import Postprocessing
from segforge.inference.sliding_window import accumulation_bytes, sliding_window_logits
from segforge.io.geometry import Geometry

__all__ = ["FAST_MODE", "Predictor", "pick_device"]

# network inputs (windows x mirror flips) per forward pass: (2D, 3D) on a GPU and on a CPU;
# on the CPU a pass of one 3D window costs 4-5x a window of a larger pass (docs/prediction.md)
_WINDOW_BATCH = {"cuda": (32, 4), "cpu": (16, 4)}
# --fast: the settings and the reason (their measured Dice cost is in docs/prediction.md)
FAST_MODE = {"options": {"step": 0.75, "mirror_axes": (1, 2)}, "why": "step 0.75, mirror y and x"}
# share of the free GPU memory the image-sized buffers may take before they move to the CPU
_DEVICE_MEMORY_SHARE = 0.6


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """:func:`segforge.devices.resolve_device`, set up for prediction: the CPU with all its cores,
    or a GPU with cuDNN autotuning."""
    device = resolve_device(device)
    if device.type == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    else:
        torch.backends.cudnn.benchmark = True  # one patch shape throughout: pick the fastest kernels once
    return device


class Predictor:
    """A model folder's networks (one per fold) ready to predict.

    ``folds`` None: every fold with a checkpoint. ``checkpoint``: ``final`` (falls back to
    ``latest`` with a warning), ``best`` or ``latest``. ``tta``: mirror over ``mirror_axes``
    (default all spatial axes; ``(1, 2)`` = y and x of a 3D model). ``bf16``: the network in
    bfloat16 (CPUs with native BF16; docs/prediction.md measures what it costs in Dice).
    ``progress``: a bar over each case's windows. ``backend``: ``torch``, or ``onnxruntime``
    for an export folder (``segforge_export``; its ``fold_K/network.onnx`` on the CPU).
    ``postprocessing``: apply the folder's ``postprocessing.json`` (decided by cross-validation,
    :mod:`segforge.inference.postprocessing`) to the label maps, when it has one.
    """

    def __init__(
        self,
        model_folder,
        folds: Sequence[str | int] | None = None,
        checkpoint: str = "final",
        device: str | torch.device | None = None,
        tta: bool = True,
        step: float = 0.5,
        window_batch: int | None = None,
        progress: bool = False,
        backend: str = "torch",
        mirror_axes: Sequence[int] | None = None,
        bf16: bool = False,
        postprocessing: bool = True,
    ):
        self.model = model_folder if isinstance(model_folder, ModelFolder) else ModelFolder.open(model_folder)
        # the model folder's cross-validated postprocessing (postprocessing.json), unless switched off
        self.postprocessing = Postprocessing.load(self.model.path) if postprocessing else None
        self.plans = self.model.plans
        self.configuration = self.model.configuration
        if backend not in BACKENDS:
            raise InputError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
        if backend == "onnxruntime" and device is not None and torch.device(device).type != "cpu":
            raise InputError("--backend onnxruntime runs on the CPU here; leave --device out or use --device cpu")
        self.backend = backend
        self.device = pick_device("cpu" if backend == "onnxruntime" else device)
        self.folds = self.model.resolve_folds(folds)
        self.checkpoint = checkpoint
        self.tta = tta
        self.step = step
        self.progress = progress
        self.labels = self.plans.label_scheme  # softmax labels or sigmoid regions (segforge.io.labels)
        self.num_classes = self.labels.num_outputs
        self.set_speed(tta, mirror_axes, bf16)
        self.window_size = list(self.configuration.patch_size)  # the sliding window's size (the patch)
        batches = _WINDOW_BATCH["cuda" if self.device.type == "cuda" else "cpu"]
        self.window_batch = window_batch or (batches[0] if self.configuration.dims == 2 else batches[1])
        self._check_window_memory()
        self.network_dtypes: list[torch.dtype] = []  # autocast dtype per network (its training's; float32: none)
        self.networks = [self._load_network(fold) for fold in self.folds]

    def set_speed(self, tta: bool = True, mirror_axes: Sequence[int] | None = None, bf16: bool = False) -> None:
        """Mirroring over ``mirror_axes`` (all when None) if ``tta``; bfloat16 networks if ``bf16``."""
        dims = self.configuration.dims
        axes = tuple(range(dims)) if mirror_axes is None else tuple(int(a) for a in mirror_axes)
        if any(a not in range(dims) for a in axes) or len(set(axes)) != len(axes):
            raise InputError(f"mirror axes {list(axes)} are not distinct axes of a {dims}D model "
                             f"(0..{dims - 1}, array order)")
        self.tta = tta
        self.mirror_axes = axes if tta else ()
        if bf16 and self.backend != "torch":
            raise InputError("--bf16 applies to the torch backend only")
        self.amp_dtype = torch.bfloat16 if bf16 else None

    # ------------------------------------------------------------------ loading
    def _load_network(self, fold: str) -> torch.nn.Module:
        from segforge.networks import build_network, to_device_layout

        if self.backend == "onnxruntime":
            self.network_dtypes.append(torch.float32)
            return OnnxNetwork(self.model.path / f"fold_{fold}" / "network.onnx")
        path = self.model.checkpoint_file(fold, self.checkpoint)
        checkpoint = load_checkpoint(path)
        trained_for = checkpoint.get("configuration")
        if trained_for is not None and trained_for != self.configuration.name:
            raise InputError(f"checkpoint was trained for configuration {trained_for!r}, the folder is for "
                             f"{self.configuration.name!r}", path)
        self.model.check_plans_version(checkpoint, path)
        network = build_network(self.configuration, self.plans.num_channels, self.num_classes)
        # the dtype the network was trained in where the device computes it natively, else float32
        trained = prediction_dtype(self.device, checkpoint.get("amp_dtype"))
        self.network_dtypes.append(torch.float32 if trained is None else trained)
        state = plain_state_dict(checkpoint["network_state"])
        try:
            network.load_state_dict(state)
        except RuntimeError as exc:
            raise InputError(
                f"checkpoint does not fit the planned network ({str(exc).splitlines()[0]})", path
            ) from None
        return to_device_layout(network, self.device).eval()

    def _check_window_memory(self) -> None:
        """Refuse, before anything is allocated, a patch whose forward pass cannot fit this device."""
        from segforge.networks.memory import inference_memory_bytes
        from segforge.resources import check_memory

        patch = self.configuration.patch_size
        needed = inference_memory_bytes(self.configuration.network, patch, self.window_batch,
                                        self.configuration.network_input_channels(self.plans.num_channels),
                                        self.num_classes)
        check_memory(needed, self.device, f"prediction with patch {'x'.join(map(str, patch))} "
                     f"(batch of {self.window_batch} window(s))", self.model.path / "plans.json",
                     "the model's plans ask for a patch too large for this machine")

    # ------------------------------------------------------------------ steps
    def preprocess(self, image: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, dict]:
        """``image (C, Z, Y, X)`` -> ``(data (C, z, y, x) float32, properties)`` as in training."""
        from segforge.preprocessing import preprocess_case

        image = np.asarray(image, dtype=np.float32)
        if image.ndim == 3:
            image = image[None]
        if image.ndim != 4 or image.shape[0] != self.plans.num_channels:
            raise InputError(f"image has shape {image.shape}; the model takes (C={self.plans.num_channels}, Z, Y, X)")
        data, _, properties = preprocess_case(image, geometry, self.configuration)
        return data, properties

    def predict_preprocessed(self, data: np.ndarray | torch.Tensor, properties: dict) -> torch.Tensor:
        """Softmax probabilities ``(K, z, y, x)`` on the preprocessed grid, mean over folds.

        The image-sized buffers stay on the GPU when the estimate fits. On an out-of-memory
        error they move to CPU memory (only windows travel), and then one window per forward
        pass is tried before giving up; the smaller batch is kept for later cases.
        """
        data = torch.as_tensor(np.asarray(data, dtype=np.float32))
        if not torch.isfinite(data).all():
            raise InputError("preprocessed image holds NaN or infinite values")
        accumulate = self._accumulation_device(tuple(data.shape))
        if accumulate.type == "cpu":
            from segforge.resources import check_memory

            voxels = int(np.prod(data.shape[1:]))
            needed = accumulation_bytes(tuple(data.shape), self.num_classes) + 8 * self.num_classes * voxels
            check_memory(needed, "cpu", f"the image-sized buffers of a {'x'.join(map(str, data.shape[1:]))} image")
        while True:
            try:
                return self._fold_mean(data, accumulate, self.window_batch)
            except torch.OutOfMemoryError:
                if accumulate.type == "cpu" and self.window_batch == 1:
                    raise
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                if accumulate.type != "cpu":
                    warnings.warn("out of GPU memory: accumulating this case in CPU memory", stacklevel=2)
                    accumulate = torch.device("cpu")
                else:
                    warnings.warn("out of memory: predicting one window at a time from now on", stacklevel=2)
                    self.window_batch = 1

    def restore(self, probabilities: torch.Tensor, properties: dict, keep_probabilities: bool = False):
        """``(labels (Z, Y, X), probabilities (K, Z, Y, X) | None)`` on the original grid.

        Probabilities on a GPU, not asked for: resampled and turned into labels there
        (:func:`~segforge.inference.export.restore_labels`; softmax labels only); only the labels
        come back. Region-based (sigmoid) outputs are painted in ``regions_class_order``."""
        regions = self.labels.is_regions
        if isinstance(probabilities, torch.Tensor) and probabilities.is_cuda and not keep_probabilities and not regions:
            try:
                return self.postprocess(self.labels.label_values_of(restore_labels(probabilities, properties))), None
            except torch.OutOfMemoryError:
                torch.cuda.empty_cache()  # the CPU path below
        restored = restore_probabilities(probabilities, properties, background_channel=not regions)
        labels = self.postprocess(self.labels.probabilities_to_labels(restored))
        return labels, (restored if keep_probabilities else None)

    def postprocess(self, labels: np.ndarray) -> np.ndarray:
        """The cross-validated postprocessing of a label map on the original grid (none: unchanged)."""
        return labels if self.postprocessing is None else self.postprocessing.apply(labels)

    def export_extras(self, properties: dict, target) -> None:
        """Called after ``target`` (the label file) was written; subclasses add their own files."""

    def predict_case(self, image: np.ndarray, geometry: Geometry, return_probabilities: bool = False):
        """``image (C, Z, Y, X)`` (or ``(Z, Y, X)``) -> ``(labels (Z, Y, X), probabilities | None)``."""
        data, properties = self.preprocess(image, geometry)
        probabilities = self.predict_preprocessed(data, properties)
        return self.restore(probabilities, properties, return_probabilities)

    # ------------------------------------------------------------------ helpers
    def _fold_mean(self, data: torch.Tensor, accumulate: torch.device, window_batch: int) -> torch.Tensor:
        patch = self.window_size
        # 2.5d: each slice with its neighbours as channels, then the 2D sliding window predicts every slice
        data = stack_adjacent_slices(data.to(accumulate), self.configuration.input_slices)
        total = None
        for network, dtype in zip(self.networks, self.network_dtypes):
            logits = sliding_window_logits(
                network, data, patch, self.step, self.mirror_axes, window_batch,
                device=self.device, accumulate_device=accumulate, num_classes=self.num_classes,
                progress=self.progress, amp_dtype=self.amp_dtype or dtype,
            )
            # softmax over labels; regions are independent (sigmoid each)
            probabilities = torch.sigmoid(logits) if self.labels.is_regions else torch.softmax(logits, dim=0)
            del logits
            total = probabilities if total is None else total.add_(probabilities)
        return total / len(self.networks) if len(self.networks) > 1 else total

    def _accumulation_device(self, data_shape: tuple[int, ...]) -> torch.device:
        if self.device.type != "cuda":
            return self.device
        # float16 buffers on the GPU (sliding_window_logits), plus the softmax of one fold
        needed = accumulation_bytes(data_shape, self.num_classes, 2) + 2 * self.num_classes * int(np.prod(data_shape[1:]))
        return self.device if needed < _DEVICE_MEMORY_SHARE * free_device_memory(self.device) else torch.device("cpu")
