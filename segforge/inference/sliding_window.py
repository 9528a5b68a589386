"""Gaussian-weighted sliding-window inference: a window iterator and an accumulator.

``sliding_window_logits`` joins the two: windows of the plan's patch size tile the image
with a step of half a patch (:func:`iter_windows`), are fed through the network a batch at a
time (with mirroring test-time augmentation, :func:`predict_batch`), and their logits,
weighted by a Gaussian importance map, are summed into an image-sized buffer
(:class:`LogitAccumulator`) that is divided by the summed weights at the end.

2D configurations (a ``(y, x)`` patch) run on the same path: the window is ``(1, y, x)``,
so every slice of the ``(C, z, y, x)`` volume is tiled, and windows of several slices share
one forward pass.

Everything stays on the device when the estimate says it fits (no host synchronisation per
window); otherwise the image-sized buffers live in CPU memory and only the windows travel. On a
GPU the buffers are float16 (half the memory and traffic; the weights' smallest value is raised
to float16's smallest normal number so that no voxel's weight underflows) and are normalised
in place.
"""

from __future__ import annotations

import itertools
import math
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from segforge.inference.gaussian import gaussian_importance_map

__all__ = [
    "window_starts",
    "iter_windows",
    "mirror_combinations",
    "predict_batch",
    "network_forward",
    "LogitAccumulator",
    "sliding_window_logits",
    "sliding_window_predict",
    "accumulation_bytes",
]


def window_starts(size: int, patch: int, step: float) -> list[int]:
    """Start indices of windows of length ``patch`` covering ``size`` (``size >= patch``).

    As few windows as a step of ``step * patch`` allows, spread evenly so the first starts
    at 0 and the last ends at ``size``.
    """
    if size < patch:
        raise ValueError(f"image size {size} is smaller than the patch {patch}; pad first")
    if not 0 < step <= 1:
        raise ValueError(f"step must be in (0, 1], got {step}")
    n = math.ceil((size - patch) / max(step * patch, 1e-8)) + 1
    if n == 1:
        return [0]
    stride = (size - patch) / (n - 1)
    return [int(round(stride * i)) for i in range(n)]


def iter_windows(shape: Sequence[int], patch_size: Sequence[int], step: float = 0.5) -> Iterator[tuple[slice, ...]]:
    """Slices ``(z, y, x)`` of every window of ``patch_size`` over an image of ``shape``."""
    starts = [window_starts(s, p, step) for s, p in zip(shape, patch_size)]
    for corner in itertools.product(*starts):
        yield tuple(slice(c, c + p) for c, p in zip(corner, patch_size))


def mirror_combinations(mirror_axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every subset of ``mirror_axes`` (the empty one first): ``2 ** len(mirror_axes)`` flips."""
    axes = tuple(mirror_axes)
    return [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]


def predict_batch(
    network: torch.nn.Module, batch: torch.Tensor, mirror_axes: Sequence[int] = (), max_inputs: int | None = None
) -> torch.Tensor:
    """Logits ``(B, K, *patch)`` of ``batch (B, C, *patch)``, averaged over all mirror flips.

    ``mirror_axes`` count spatial axes of the network input (0 = first axis after C). The
    flipped copies go through the network together with the windows, as one batch of
    ``B * flips`` inputs, split into passes of at most ``max_inputs`` (default: all at once).
    """
    flips = mirror_combinations(mirror_axes)
    inputs = [(b, tuple(a + 2 for a in flip)) for b in range(batch.shape[0]) for flip in flips]
    step = max(1, int(max_inputs or len(inputs)))
    total = None
    for start in range(0, len(inputs), step):
        chunk = inputs[start : start + step]
        x = torch.cat([_flip(batch[b : b + 1], dims) for b, dims in chunk])
        y = network_forward(network, x).float()
        if total is None:
            total = torch.zeros((batch.shape[0], *y.shape[1:]), dtype=torch.float32, device=y.device)
        for i, (b, dims) in enumerate(chunk):
            total[b] += _flip(y[i], [d - 1 for d in dims])
    return total.div_(len(flips)) if len(flips) > 1 else total


def network_forward(network: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``network(x)``, with a batch of one doubled on the CPU.

    PyTorch sends a float32 CPU convolution with a batch of one and a small input (N*C*D*H <=
    20480 with a 3x3x3 kernel) to its slow im2col kernel instead of oneDNN: for the planned
    CPU U-Nets a one-window pass cost 4-5x the per-window time of a two-window pass
    (docs/prediction.md, "Why prediction was slow"). Two copies of the window cost less.
    """
    if x.shape[0] == 1 and x.device.type == "cpu" and x.dtype == torch.float32:
        return network(torch.cat((x, x)))[:1]
    return network(x)


def _flip(x: torch.Tensor, dims) -> torch.Tensor:
    return torch.flip(x, list(dims)) if dims else x


FLOAT16_SMALLEST_NORMAL = 2.0**-14


class LogitAccumulator:
    """Sums importance-weighted window logits into a ``(K, z, y, x)`` buffer of ``dtype``.

    ``add`` takes a batch of window logits and their slices; ``result`` divides by the
    summed weights, in place (every voxel is covered by at least one window, and no weight is 0).
    """

    def __init__(self, num_classes: int, shape: Sequence[int], importance: torch.Tensor, device,
                 dtype: torch.dtype = torch.float32):
        self.device = torch.device(device)
        self.dtype = dtype
        self.importance = importance.to(self.device, dtype)
        if dtype == torch.float16:  # the Gaussian's far corners underflow in float16: no voxel may weigh 0
            self.importance.clamp_min_(FLOAT16_SMALLEST_NORMAL)
        self.logits = torch.zeros((num_classes, *shape), dtype=dtype, device=self.device)
        self.weights = torch.zeros(tuple(shape), dtype=dtype, device=self.device)

    def add(self, logits: torch.Tensor, windows: Sequence[tuple[slice, ...]]) -> None:
        """``logits (B, K, *window)``; ``windows[b]`` the ``(z, y, x)`` slices of window ``b``."""
        # an asynchronous copy is only safe towards the GPU (a GPU->CPU one may be read too early);
        # channels-last network outputs are made contiguous once rather than read strided per window
        logits = logits.to(self.device, self.dtype, non_blocking=self.device.type == "cuda",
                           memory_format=torch.contiguous_format)
        for b, window in enumerate(windows):
            self.logits[(slice(None), *window)].addcmul_(logits[b], self.importance)
            self.weights[window] += self.importance

    def result(self) -> torch.Tensor:
        """The weighted mean logits (the buffer itself, divided in place)."""
        return self.logits.div_(self.weights)


def accumulation_bytes(data_shape: Sequence[int], num_classes: int, bytes_per_value: int = 4) -> int:
    """Bytes of the image-sized buffers: the input (float32), the logit sum, the weights, the softmax."""
    voxels = int(np.prod(data_shape[1:]))
    return voxels * (4 * int(data_shape[0]) + bytes_per_value * (2 * num_classes + 1))


def sliding_window_logits(
    network: torch.nn.Module,
    data: torch.Tensor | np.ndarray,
    patch_size: Sequence[int],
    step: float = 0.5,
    mirror_axes: Sequence[int] = (),
    batch_size: int = 4,
    device: str | torch.device | None = None,
    accumulate_device: str | torch.device | None = None,
    num_classes: int | None = None,
    progress: bool = False,
    amp_dtype: torch.dtype | None = None,
    accumulate_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Importance-weighted mean logits ``(K, z, y, x)`` of ``network`` over ``data (C, z, y, x)``.

    ``batch_size`` is the number of network inputs per forward pass, windows times mirror
    flips: with 8 flips and a batch of 4, each pass holds one window's first or last four
    flips; without mirroring, four windows. ``patch_size`` is ``(z, y, x)`` for a 3D network or ``(y, x)`` for a 2D one (then every
    slice is predicted; ``mirror_axes`` count the network's spatial axes: ``(0, 1)`` for 2D).
    An image smaller than the patch is zero-padded (centred) and the result cropped back.
    The result lies on ``accumulate_device`` (default: ``device``). ``progress`` shows a bar
    counting windows (on a GPU it counts launches, which run ahead of the device). The network
    runs under autocast to ``amp_dtype`` when given (``torch.bfloat16`` on a CPU with native
    BF16; on CUDA the dtype the network was trained in, :func:`segforge.devices.prediction_dtype`);
    ``torch.float32`` means no autocast; None: float16 on CUDA, none on the CPU. Logits are
    accumulated in ``accumulate_dtype`` (None: float16 on a GPU, float32 on the CPU).
    """
    device = torch.device(device) if device is not None else _device_of(network)
    accumulate_device = torch.device(accumulate_device) if accumulate_device is not None else device
    data = torch.as_tensor(data, dtype=torch.float32)
    if data.ndim != 4:
        raise ValueError(f"data must be (C, z, y, x), got shape {tuple(data.shape)}")
    dims = len(patch_size)
    window = (1, *patch_size) if dims == 2 else tuple(patch_size)
    if len(window) != 3:
        raise ValueError(f"patch_size must have 2 or 3 axes, got {patch_size}")

    data, crop = _pad_to_window(data, window)
    data = data.to(accumulate_device)
    importance = gaussian_importance_map(window, device=accumulate_device)
    windows = list(iter_windows(data.shape[1:], window, step))
    flips = len(mirror_combinations(mirror_axes))
    windows_per_pass = max(1, int(batch_size) // flips)
    accumulator = None
    bar = tqdm(total=len(windows), desc="windows", unit="win", leave=False, disable=not progress)
    reduced = amp_dtype is not None and amp_dtype != torch.float32
    use_autocast = reduced or (amp_dtype is None and device.type == "cuda")
    autocast = torch.autocast(device.type, dtype=amp_dtype if reduced else torch.float16, enabled=use_autocast)
    with bar, torch.inference_mode(), autocast:
        for start in range(0, len(windows), windows_per_pass):
            chunk = windows[start : start + windows_per_pass]
            batch = torch.stack([data[(slice(None), *w)] for w in chunk]).to(device, non_blocking=True)
            if dims == 2:
                batch = batch[:, :, 0]
            logits = predict_batch(network, batch, mirror_axes, max_inputs=batch_size)
            if dims == 2:
                logits = logits[:, :, None]
            if accumulator is None:
                k = num_classes or logits.shape[1]
                dtype = accumulate_dtype or (torch.float16 if accumulate_device.type == "cuda" else torch.float32)
                accumulator = LogitAccumulator(k, data.shape[1:], importance, accumulate_device, dtype)
            accumulator.add(logits, chunk)
            bar.update(len(chunk))
        result = accumulator.result()
    return result[(slice(None), *crop)]


def sliding_window_predict(network: torch.nn.Module, data: torch.Tensor | np.ndarray, patch_size: Sequence[int],
                           **options) -> torch.Tensor:
    """Softmax probabilities ``(K, z, y, x)`` of :func:`sliding_window_logits` (same ``options``)."""
    return torch.softmax(sliding_window_logits(network, data, patch_size, **options), dim=0)


def _pad_to_window(data: torch.Tensor, window: Sequence[int]) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Zero-pad ``(C, z, y, x)`` so each axis is at least the window; the slices undo it."""
    pads, crop = [], []
    for size, w in zip(data.shape[1:], window):
        extra = max(w - size, 0)
        before = extra // 2
        pads.append((before, extra - before))
        crop.append(slice(before, before + size))
    if any(p != (0, 0) for p in pads):
        flat = [v for pair in reversed(pads) for v in pair]  # F.pad wants the last axis first
        data = F.pad(data, flat)
    return data, tuple(crop)


def _device_of(network: torch.nn.Module) -> torch.device:
    for p in network.parameters():
        return p.device
    return torch.device("cpu")
