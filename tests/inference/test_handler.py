"""The handler in-process: every content type and encoding, segments, long and short clips, errors."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from common import audio, contract
from serving import inference
from standins.modeldir import LABELS, SR
from tests.inference.conftest import WINDOW_SECONDS
from tests.inference.payloads import LIMITS, LIMITS_ENV, Case, bad_cases, good_cases, tone

GOOD = good_cases()
BAD = bad_cases()


@pytest.fixture(scope="module")
def classifier(model_dir: Path) -> inference.AudioModel:
    return inference.load_model(model_dir, LIMITS)


def answer(classifier: inference.AudioModel, case: Case) -> dict:
    request = inference.parse_request(case.body, case.content_type, LIMITS)
    return json.loads(inference.output_fn(inference.predict_fn(request, classifier), case.accept))


def assert_valid_answer(body: dict) -> None:
    assert set(body) >= {"label", "confidence", "probs"}
    assert list(body["probs"]) == list(LABELS)
    assert all(math.isfinite(p) and 0 <= p <= 1 for p in body["probs"].values())
    assert sum(body["probs"].values()) == pytest.approx(1.0, abs=1e-9)
    assert body["label"] == max(body["probs"], key=body["probs"].get)
    assert body["confidence"] == body["probs"][body["label"]]


@pytest.mark.parametrize("case", GOOD, ids=[c.name for c in GOOD])
def test_every_content_type_and_encoding_is_classified_like_the_clip_it_holds(classifier, case):
    # Given a file (or JSON) holding a tone at some rate, channel count and sample format
    expected = classifier.predict(inference.AudioRequest(case.reference))

    # When the handler decodes and classifies it
    body = answer(classifier, case)

    # Then the answer is well formed and matches the clip decoded ideally
    assert_valid_answer(body)
    assert body["label"] == expected.answer["label"]
    assert body["probs"] == pytest.approx(expected.answer["probs"], abs=0.05)


@pytest.mark.parametrize("case", BAD, ids=[c.name for c in BAD])
def test_every_broken_payload_is_a_client_error_saying_what_was_wrong(classifier, case):
    # Given a broken request
    # When the handler sees it
    with pytest.raises(inference.BadRequest) as caught:
        answer(classifier, case)

    # Then it is a 4xx whose message names the problem, without a traceback
    assert caught.value.status_code == case.status
    assert case.message in str(caught.value)
    assert "Traceback" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_long_audio_is_windowed_with_overlap_and_averaged(classifier, monkeypatch):
    # Given a 7.3 s clip: tone, then noise, and batches of four windows
    monkeypatch.setattr(inference, "SAMPLES_PER_BATCH", 4 * classifier.window)
    rng = np.random.default_rng(1)
    samples = np.concatenate([tone(SR, 1, seconds=4.0)[:, 0], 0.3 * rng.standard_normal(int(3.3 * SR))])

    # When it is classified with segments
    prediction = classifier.predict(inference.AudioRequest(samples.astype(np.float32), segments=True))
    body = json.loads(inference.output_fn(prediction, "application/json"))

    # Then windows of the training length overlap by half, the last one flush with the end,
    # and the clip's probabilities are their mean
    segments = body["segments"]
    assert len(segments) > inference.windows_per_batch(classifier.window)  # several batches
    assert [s["start"] for s in segments[:3]] == [0.0, WINDOW_SECONDS / 2, WINDOW_SECONDS]
    assert all(s["end"] - s["start"] == pytest.approx(WINDOW_SECONDS) for s in segments)
    assert segments[-1]["end"] == pytest.approx(7.3)
    _, probs = classifier.window_scores(samples.astype(np.float32))
    assert list(body["probs"].values()) == pytest.approx(list(probs.mean(axis=0)))
    assert segments[0]["label"] == "tone"


@pytest.mark.parametrize(
    ("samples", "model_samples"),
    [
        (1, 1_600),
        (160, 1_600),
        (1_600, 1_600),
        (4_321, 4_321),
        (7_999, 7_999),
        (8_000, 8_000),
        (8_400, 8_000),
    ],
    ids=["one-sample", "10ms", "the-minimum", "0.27s", "just-under-a-window", "a-window", "two-windows"],
)
def test_clips_shorter_than_a_window_run_at_their_own_length(classifier, samples, model_samples):
    # Given a clip shorter than the model's 0.5 s window (some shorter than its receptive field)
    clip = tone(SR, 1, seconds=1.0)[:samples, 0]
    seen: list[tuple[int, ...]] = []

    def backend(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.shape)
        return classifier.backend(batch)

    # When it is classified
    spy = dataclasses.replace(classifier, backend=backend)
    prediction = spy.predict(inference.AudioRequest(clip, segments=True))

    # Then the model ran on the clip's own length (only what is under 0.1 s is padded, to 0.1 s): a short
    # clip costs what it lasts, not a whole window; and one segment covers the clip
    windows = 1 if samples <= 8_000 else 2
    assert seen == [(windows, model_samples)]
    assert_valid_answer(prediction.to_json())
    assert len(prediction.segments) == windows
    assert prediction.segments[0]["end"] == pytest.approx(min(samples, 8_000) / SR, abs=1e-3)


def test_the_handler_normalizes_exactly_as_the_saved_feature_extractor_does(model_dir):
    # Given the feature extractor saved with the model, and windows of a few lengths
    from transformers import AutoFeatureExtractor

    extractor = AutoFeatureExtractor.from_pretrained(model_dir)
    normalize = inference._normalizer(model_dir, SR)
    rng = np.random.default_rng(3)
    for length in (1_600, 5_000, 8_000):
        batch = (0.3 * rng.standard_normal((3, length)) + 0.1).astype(np.float32)
        # When both normalize them / Then the handler's numpy arithmetic gives the very same values
        expected = extractor(list(batch), sampling_rate=SR, return_tensors="np")["input_values"]
        np.testing.assert_array_equal(normalize(batch), expected)
    assert isinstance(normalize, audio.Features)  # no transformers call per request


def test_segments_are_returned_only_when_asked(classifier):
    # Given one clip, asked for plainly, with a JSON flag and with an Accept parameter
    wav = next(c for c in GOOD if c.content_type == "audio/wav")
    flagged = next(c for c in GOOD if c.name == "json-base64-flac")
    flagged_body = json.loads(flagged.body) | {"segments": True}

    # When each is answered
    plain = answer(classifier, wav)
    by_json = answer(classifier, Case("json", json.dumps(flagged_body).encode(), "application/json"))
    by_accept = answer(
        classifier, Case("accept", wav.body, "audio/wav", accept="application/json; segments=true")
    )

    # Then only the requests that asked carry per-window labels with times
    assert "segments" not in plain
    for body in (by_json, by_accept):
        assert body["segments"] and {"start", "end", "label", "confidence"} <= set(body["segments"][0])


def test_input_fn_reads_segments_from_the_custom_attributes_header(monkeypatch, classifier):
    # Given the context the model server passes, carrying SageMaker's custom-attributes header
    class Processor:
        def get_request_properties(self):
            return {"x-amzn-sagemaker-custom-attributes": "trace=1; segments=true"}

    class Context:
        request_processor = [Processor()]

    for name, value in LIMITS_ENV.items():
        monkeypatch.setenv(name, value)
    wav = GOOD[0]

    # When input_fn decodes the body with that context
    request = inference.input_fn(wav.body, wav.content_type, Context())

    # Then the answer will carry segments
    assert request.segments
    assert "segments" in json.loads(inference.output_fn(inference.predict_fn(request, classifier), None))


def test_model_fn_reads_settings_from_the_environment_once(monkeypatch, model_dir):
    # Given the fixed environment variables the Serving stack sets
    for name, value in {
        "ACOUSTIC_FAST_PATH": "onnx",
        "ACOUSTIC_THREADS": "1",
        "ACOUSTIC_MAX_AUDIO_SECONDS": "30",
        "ACOUSTIC_MAX_REQUEST_BYTES": "1000",
    }.items():
        monkeypatch.setenv(name, value)

    # When the toolkit loads the model
    model = inference.model_fn(str(model_dir))

    # Then the settings apply to the model and to every request
    assert model.settings == inference.Settings(
        fast_path="onnx", threads=1, max_audio_seconds=30.0, max_request_bytes=1000
    )
    with pytest.raises(inference.BadRequest, match="limit of 1000"):
        inference.input_fn(GOOD[0].body, "audio/wav")


def test_default_settings_share_the_cpus_between_model_server_workers():
    # Given no settings but the model server's worker count
    # When the settings are read
    settings = inference.Settings.from_env({"SAGEMAKER_MODEL_SERVER_WORKERS": "1000000"})

    # Then fp32 eager, at least one thread, 10 minutes and 128 MiB are the defaults
    assert settings == inference.Settings(
        fast_path="off", threads=1, max_audio_seconds=600.0, max_request_bytes=128 * 1024 * 1024
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ACOUSTIC_FAST_PATH", "tensorrt"),
        ("ACOUSTIC_THREADS", "0"),
        ("ACOUSTIC_THREADS", "two"),
        ("ACOUSTIC_MAX_AUDIO_SECONDS", "-1"),
        ("ACOUSTIC_MAX_AUDIO_SECONDS", "nan"),
        ("ACOUSTIC_MAX_REQUEST_BYTES", "1.5"),
    ],
)
def test_invalid_settings_fail_at_load_naming_the_variable(name, value):
    # Given a misconfigured environment
    # When the settings are read
    # Then the error names the variable
    with pytest.raises(ValueError, match=name):
        inference.Settings.from_env({name: value})


@pytest.mark.parametrize("fast_path", ["onnx", "onnx-int8"])
def test_a_fast_path_without_model_onnx_fails_at_start_up_saying_what_to_do(tmp_path, model_dir, fast_path):
    # Given a model directory without ONNX files
    bare = tmp_path / "bare"
    shutil.copytree(model_dir, bare, ignore=shutil.ignore_patterns("*.onnx"))

    # When it is loaded for a fast path
    # Then start-up fails, pointing at --export_onnx and at the way back to fp32
    with pytest.raises(FileNotFoundError, match=r"export_onnx.*ACOUSTIC_FAST_PATH=off"):
        inference.load_model(bare, inference.Settings(fast_path=fast_path))


def test_int8_is_quantized_at_load_when_the_model_has_only_model_onnx(tmp_path, model_dir):
    # Given a model directory with model.onnx but no model.int8.onnx (and the onnx package installed)
    only_fp32 = tmp_path / "only-fp32"
    shutil.copytree(model_dir, only_fp32, ignore=shutil.ignore_patterns("model.int8.onnx"))

    # When it is loaded for the int8 path
    classifier = inference.load_model(only_fp32, inference.Settings(fast_path="onnx-int8"))

    # Then it answers
    assert_valid_answer(classifier.predict(inference.AudioRequest(tone(SR, 1)[:, 0])).to_json())


@pytest.mark.parametrize(
    ("recorded", "expected"), [(None, WINDOW_SECONDS / 2), (0.1, 0.1)], ids=["rule", "recorded"]
)
def test_the_window_hop_comes_from_labels_json_and_else_from_the_contract_rule(
    tmp_path, model_dir, recorded, expected
):
    # Given a model directory whose labels.json records the hop training evaluated with (or, from an
    # older train.py, none)
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    meta = json.loads((copy / contract.LABELS_FILE).read_text())
    meta.pop("window_hop_seconds", None)
    if recorded is not None:
        meta["window_hop_seconds"] = recorded
    (copy / contract.LABELS_FILE).write_text(json.dumps(meta))

    # When it is loaded and classifies two seconds with segments
    classifier = inference.load_model(copy, inference.Settings())
    prediction = classifier.predict(inference.AudioRequest(tone(SR, 1, seconds=2.0)[:, 0], segments=True))

    # Then consecutive windows start that hop apart
    starts = [segment["start"] for segment in prediction.to_json()["segments"]]
    assert starts[1] - starts[0] == pytest.approx(expected)
    assert classifier.hop == round(expected * SR)


@pytest.mark.parametrize(
    ("window_seconds", "per_batch"),
    [(0.5, 40), (5.0, 4), (20.0, 1), (30.0, 1)],
    ids=["0.5s", "5s", "20s", "30s"],
)
def test_a_batch_holds_twenty_seconds_of_audio_at_most_and_one_window_at_least(window_seconds, per_batch):
    # Then long recordings are run in batches whose memory does not grow with the window's length (a
    # 10-minute recording in 20 s speech windows: one at a time)
    assert inference.windows_per_batch(round(window_seconds * 16_000)) == per_batch
