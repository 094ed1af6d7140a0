"""Model directories as train.py writes them: the tiny config, random init, optionally briefly trained."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoConfig, Wav2Vec2FeatureExtractor

import tasks
from common import contract
from training.onnx_export import export_model_dir
from training.train import copy_serving_code

TINY_CONFIG = Path(__file__).resolve().parents[1] / "training" / "configs" / "tiny-wav2vec2"
LABELS = ("tone", "noise", "pulses")
# What a speech model's labels (its vocabulary) are built from.
TRANSCRIPTS = ("turn left", "stop now", "go back", "three seven")
SR = 16_000


def clip(label: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A mono 16 kHz clip of one class: a low sine, white noise, or noise bursts a few times a second."""
    n = max(1, int(seconds * SR))
    t = np.arange(n) / SR
    if label == "tone":
        signal = np.sin(2 * np.pi * rng.uniform(150, 400) * t + rng.uniform(0, 2 * np.pi))
    elif label == "noise":
        signal = rng.standard_normal(n)
    else:
        gate = np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 2 * np.pi)) > 0.3
        signal = rng.standard_normal(n) * gate
    mixed = rng.uniform(0.1, 0.8) * signal + rng.uniform(0.0, 0.05) * rng.standard_normal(n)
    return np.clip(mixed, -1, 1).astype(np.float32)


def build_model_dir(
    path: Path,
    *,
    train_steps: int = 0,
    window_seconds: float = 1.0,
    onnx: bool = False,
    seed: int = 0,
    task: str | None = None,
) -> Path:
    """A complete model directory: weights, feature extractor, labels.json, metrics.json, code/.

    ``task``: a task of tasks/ whose head and answer the model has (default: the default task's, with
    labels.json as models from before tasks wrote it: no task named). ``train_steps`` trains classification
    models only; others keep their random weights.
    """
    torch.manual_seed(seed)
    chosen = tasks.load(task)
    labels = chosen.labels(TRANSCRIPTS) if chosen.whole_clips else list(LABELS)
    config = AutoConfig.from_pretrained(TINY_CONFIG, **chosen.config_fields(labels))
    model = getattr(transformers, chosen.auto_model).from_config(config)
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(TINY_CONFIG)
    if train_steps and task is None:
        _train(model, extractor, train_steps, window_seconds, np.random.default_rng(seed))
    model.eval()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    extractor.save_pretrained(path)
    hop = chosen.hop(round(window_seconds * SR))  # as train.py records it
    meta: dict[str, object] = {
        "labels": labels,
        "sampling_rate": SR,
        "max_length_seconds": window_seconds,
    }
    if task is not None:
        meta[contract.TASK_KEY] = task
        # What the task would choose on a validation split without positives: its defaults.
        nothing = np.zeros((1, len(labels)))
        settings = chosen.fit(tasks.SplitScores(nothing, nothing, nothing, nothing), labels)
        if settings:
            meta[contract.TASK_SETTINGS_KEY] = settings
    (path / contract.LABELS_FILE).write_text(json.dumps({**meta, "window_hop_seconds": hop / SR}))
    (path / contract.METRICS_FILE).write_text(json.dumps({"accuracy": 0.0}))
    for name, text in chosen.model_files(labels).items():
        (path / name).write_text(text + "\n", encoding="utf-8")
    if onnx:
        export_model_dir(model, path)
    copy_code(path, chosen)
    return path


def copy_code(model_dir: Path, task: tasks.Task | None = None) -> None:
    """What train.py puts in <model_dir>/code/ (its own function does it)."""
    copy_serving_code(model_dir / contract.CODE_DIR, task)


def _train(model, extractor, steps: int, seconds: float, rng: np.random.Generator) -> None:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        ids = rng.integers(0, len(LABELS), size=8)
        batch = [clip(LABELS[i], seconds, rng) for i in ids]
        inputs = extractor(batch, sampling_rate=SR, return_tensors="pt")
        loss = model(input_values=inputs["input_values"], labels=torch.from_numpy(ids)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
