"""A briefly trained tiny model directory (with its ONNX files), built once for the inference tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from standins.modeldir import build_model_dir

WINDOW_SECONDS = 0.5  # short windows keep the tiny model cheap; long clips still span many windows


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return build_model_dir(
        tmp_path_factory.mktemp("model"), train_steps=300, window_seconds=WINDOW_SECONDS, onnx=True
    )
