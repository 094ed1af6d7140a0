"""Writes ``model.onnx`` (and ``model.int8.onnx``) in the form the inference fast path reads.

Input ``input_values`` float32 [batch, samples] (normalized by the feature extractor), output ``logits``
[batch, labels], or [batch, frames, labels] for a model that answers per frame (CTC); batch, samples and
frames are dynamic axes. See ``contract.ONNX_FILE`` and ``contract.ONNX_INT8_FILE``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from common import contract
from serving.inference import quantize_int8

ONNX_OPSET = 17


def export_model_dir(model: torch.nn.Module, model_dir: str | Path) -> tuple[Path, Path]:
    """Writes ``model.onnx`` and its int8 twin into a model directory."""
    onnx_path = export_onnx(model, Path(model_dir) / contract.ONNX_FILE)
    return onnx_path, quantize_int8(onnx_path, Path(model_dir) / contract.ONNX_INT8_FILE)


def export_onnx(model: torch.nn.Module, path: str | Path, *, example_seconds: float = 1.0) -> Path:
    """Exports an audio-classification model (eval mode, CPU) to ``path``."""
    path = Path(path)
    model = model.eval().to("cpu")
    example = torch.zeros(2, int(example_seconds * 16_000), dtype=torch.float32)
    with torch.no_grad():
        per_frame = model(input_values=example).logits.dim() == 3
    logits_axes = {0: "batch", 1: "frames"} if per_frame else {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is deprecated but needs no extra packages (the dynamo one needs
        # onnxscript) and traces wav2vec2 with dynamic axes correctly.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _LogitsOnly(model),
            (example,),
            str(path),
            input_names=["input_values"],
            output_names=["logits"],
            dynamic_axes={"input_values": {0: "batch", 1: "samples"}, "logits": logits_axes},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    return path


class _LogitsOnly(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        return self.model(input_values=input_values).logits
