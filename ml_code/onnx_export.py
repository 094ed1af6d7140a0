"""Writes ``model.onnx`` in the form the inference fast path reads (see ``layout.ONNX_FILE``).

Input ``input_values`` float32 [batch, samples] (normalized by the feature extractor), output ``logits``
[batch, labels]; batch and length are dynamic axes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

ONNX_OPSET = 17


def export_onnx(model: torch.nn.Module, path: str | Path, *, example_seconds: float = 1.0) -> Path:
    """Exports an audio-classification model (eval mode, CPU) to ``path``."""
    path = Path(path)
    model = model.eval().to("cpu")
    example = torch.zeros(2, int(example_seconds * 16_000), dtype=torch.float32)
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
            dynamic_axes={"input_values": {0: "batch", 1: "samples"}, "logits": {0: "batch"}},
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
