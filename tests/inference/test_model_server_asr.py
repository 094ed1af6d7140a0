"""A speech model served by the real multi-model-server (as ``test_model_server.py`` starts it): the
transcript and its timed words come through the toolkit's handler service and the model's code/, which
carries the speech task module, as the handler answers in-process; a recording longer than the model's window
is read in overlapping windows and stitched."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from common import contract
from serving import inference
from standins.modeldir import build_model_dir
from tasks import asr
from tests.inference.payloads import LIMITS
from tests.inference.test_model_server import ModelServer, serving

WINDOW_SECONDS = 2.0


@pytest.fixture(scope="module")
def asr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(
        tmp_path_factory.mktemp("asr") / "model", task="asr", window_seconds=WINDOW_SECONDS
    )


@pytest.fixture(scope="module")
def server(asr_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    with serving(asr_dir, tmp_path_factory) as started:
        yield started


def _flac(seconds: float, rate: int = 22_050, channels: int = 2) -> bytes:
    rng = np.random.default_rng(5)
    buffer = io.BytesIO()
    sf.write(buffer, rng.normal(0, 0.1, (int(rate * seconds), channels)), rate, format="FLAC")
    return buffer.getvalue()


def test_the_model_directory_is_a_complete_speech_checkpoint(asr_dir):
    # The model's code/ ships the speech task, and its tokenizer files spell the labels.json vocabulary
    assert (asr_dir / contract.CODE_DIR / contract.TASKS_DIR / "asr.py").is_file()
    meta = json.loads((asr_dir / contract.LABELS_FILE).read_text())
    assert meta[contract.TASK_KEY] == "asr"
    assert asr.read_vocabulary(asr_dir / asr.VOCABULARY_FILE) == meta[contract.LABELS_KEY]
    # And the windows overlap by a third: each keeps a sixth of context on either side
    assert meta[contract.HOP_SECONDS_KEY] == pytest.approx(WINDOW_SECONDS * 2 / 3, abs=1e-3)


@pytest.mark.slow
def test_the_model_server_transcribes_a_long_stereo_recording_as_the_handler_does(server, asr_dir):
    # Given a 4.5 s stereo FLAC at 22.05 kHz (three windows of the 2 s model) and the handler's own answer
    body = _flac(4.5)
    model = inference.load_model(asr_dir, LIMITS)
    expected = json.loads(
        inference.output_fn(
            model.predict(inference.parse_request(body, "audio/flac", LIMITS)), "application/json"
        )
    )
    # When the model server is asked the same
    status, raw = server.request("POST", "/invocations", body, {"Content-Type": "audio/flac"})
    # Then it answers text and timed words, exactly as in-process, within the recording
    assert status == 200, f"{raw}\n{server.logs()}"
    answer = json.loads(raw)
    assert asr.TASK.check_answer(answer, None) == []
    assert answer == expected
    assert answer[asr.WORDS_KEY], "the random-weight model spells something: the stitched words are compared"
    assert all(word[asr.END_KEY] <= 4.5 for word in answer[asr.WORDS_KEY])


@pytest.mark.slow
def test_a_broken_payload_is_a_4xx_and_the_worker_keeps_answering(server):
    status, raw = server.request("POST", "/invocations", b"RIFF not really", {"Content-Type": "audio/wav"})
    assert 400 <= status < 500, raw
    status, raw = server.request("POST", "/invocations", _flac(1.0), {"Content-Type": "audio/flac"})
    assert status == 200 and asr.TASK.check_answer(json.loads(raw), None) == [], raw
