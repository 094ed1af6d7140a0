"""A multi-label model served by the real multi-model-server (as ``test_model_server.py`` starts it): the
task's answer and its events with times come through the toolkit's handler service and the model's code/,
which carries the multi-label task module."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from common import contract
from serving import inference
from standins.modeldir import LABELS, build_model_dir
from tasks import multilabel
from tests.inference.payloads import LIMITS
from tests.inference.test_model_server import SEGMENTS_HEADER, ModelServer, serving


@pytest.fixture(scope="module")
def multilabel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("multilabel") / "model", task="multilabel")


@pytest.fixture(scope="module")
def server(multilabel_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    with serving(multilabel_dir, tmp_path_factory) as started:
        yield started


def _wav(seconds: float) -> bytes:
    import io

    rng = np.random.default_rng(3)
    buffer = io.BytesIO()
    sf.write(buffer, rng.normal(0, 0.1, int(16_000 * seconds)).astype(np.float32), 16_000, format="WAV")
    return buffer.getvalue()


@pytest.mark.slow
def test_the_model_server_answers_labels_scores_and_events_as_the_handler_does(server, multilabel_dir):
    # Given a 3 s clip and the answer the handler gives in-process with segments
    body = _wav(3.0)
    model = inference.load_model(multilabel_dir, LIMITS)
    request = inference.parse_request(body, "audio/wav", LIMITS, segments=True)
    expected = json.loads(inference.output_fn(model.predict(request), "application/json"))
    # When the model server is asked the same, segments in the custom attributes
    status, raw = server.request(
        "POST", "/invocations", body, {"Content-Type": "audio/wav", **SEGMENTS_HEADER}
    )
    # Then it answers in the multi-label task's words, as in-process (scores within float tolerance)
    assert status == 200, f"{raw}\n{server.logs()}"
    answer = json.loads(raw)
    assert multilabel.TASK.check_answer(answer, list(LABELS)) == []
    assert answer[multilabel.SCORES_KEY] == pytest.approx(expected[multilabel.SCORES_KEY], abs=1e-4)
    assert [e["label"] for e in answer[multilabel.LABELS_KEY]] == [
        e["label"] for e in expected[multilabel.LABELS_KEY]
    ]
    # And its segments are events with times, the same ones
    assert [(e["label"], e["start"], e["end"]) for e in answer[contract.SEGMENTS_KEY]] == [
        (e["label"], e["start"], e["end"]) for e in expected[contract.SEGMENTS_KEY]
    ]
