"""Running an exported network with ONNX Runtime instead of torch (``--backend onnxruntime``).

:class:`OnnxNetwork` wraps one ``fold_K/network.onnx`` of an export folder
(``segforge_export``) so the sliding window calls it like the torch network: a CPU tensor
``(B, C, *window)`` in, logits ``(B, K, *window)`` out. ONNX files are data (a graph of
standard operators), so loading one cannot run code. ONNX Runtime is an optional extra:
``pip install 'segforge[onnx]'``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from segforge.errors import InputError

__all__ = ["BACKENDS", "OnnxNetwork"]

BACKENDS = ("torch", "onnxruntime")


class OnnxNetwork:
    """``fold_K/network.onnx`` in an ONNX Runtime CPU session with ``threads`` intra-op threads."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise InputError("--backend onnxruntime needs ONNX Runtime: pip install 'segforge[onnx]'") from None
        path = Path(path)
        if not path.is_file():
            raise InputError("no network.onnx here; export the model first (segforge_export -m MODEL_FOLDER -o OUT) "
                             "and predict with -m OUT", path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own types for corrupt files
            raise InputError(f"cannot load the ONNX network ({str(exc).splitlines()[0][:200]})", path) from None
        self.input_name = self.session.get_inputs()[0].name
        self.path = path

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])

    def parameters(self):  # the sliding window asks a network for its device: the CPU
        return iter(())

    def eval(self) -> "OnnxNetwork":
        return self
