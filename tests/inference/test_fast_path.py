"""The ONNX fast paths agree with fp32 eager on the top-1 label."""

from __future__ import annotations

import numpy as np
import pytest

from serving import inference
from standins.modeldir import LABELS, clip

CLIPS = 150


@pytest.fixture(scope="module")
def test_set() -> list[np.ndarray]:
    """Clips of every class, 0.2-2 s long, at random loudness and noise (some near the boundaries)."""
    rng = np.random.default_rng(2024)
    return [clip(LABELS[i % len(LABELS)], rng.uniform(0.2, 2.0), rng) for i in range(CLIPS)]


def top1(model_dir, fast_path: str, clips: list[np.ndarray]) -> list[str]:
    classifier = inference.load_model(model_dir, inference.Settings(fast_path=fast_path, threads=1))
    return [classifier.predict(inference.AudioRequest(samples)).answer["label"] for samples in clips]


@pytest.fixture(scope="module")
def fp32_labels(model_dir, test_set) -> list[str]:
    return top1(model_dir, "off", test_set)


@pytest.mark.slow
@pytest.mark.parametrize("fast_path", ["onnx", "onnx-int8"])
def test_fast_path_agrees_with_fp32_on_at_least_99_percent_of_clips(
    model_dir, test_set, fp32_labels, fast_path
):
    # Given a briefly trained model and a generated test set, labelled by fp32 eager
    reference = fp32_labels

    # When the fast path labels the same clips
    fast = top1(model_dir, fast_path, test_set)

    # Then the top-1 labels agree on at least 99% of them
    agreement = np.mean([a == b for a, b in zip(reference, fast, strict=True)])
    assert agreement >= 0.99, f"{fast_path}: top-1 agreement {agreement:.3f}"
    assert len(set(reference)) == len(LABELS)  # the model did learn: every class is predicted


@pytest.mark.slow
def test_a_multilabel_model_answers_alike_on_the_onnx_fast_path(tmp_path, test_set):
    # Given a multi-label model directory with its ONNX export
    from standins.modeldir import build_model_dir

    model_dir = build_model_dir(tmp_path / "model", task="multilabel", onnx=True)
    eager = inference.load_model(model_dir, inference.Settings(fast_path="off", threads=1))
    fast = inference.load_model(model_dir, inference.Settings(fast_path="onnx", threads=1))
    # When both answer the same clips / Then their scores agree within float tolerance, label by label
    for samples in test_set[:20]:
        expected = eager.predict(inference.AudioRequest(samples)).answer["scores"]
        assert fast.predict(inference.AudioRequest(samples)).answer["scores"] == pytest.approx(
            expected, abs=1e-4
        )
