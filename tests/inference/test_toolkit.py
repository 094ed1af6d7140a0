"""The handler driven by the real SageMaker Hugging Face inference toolkit (HuggingFaceHandlerService).

The toolkit lives in the parity environment of the inference image, ``.venv-toolkit`` (``make install``
builds it: transformers 4.51.3, numpy 1.26.4, ...). ``toolkit_driver.py`` runs there; this test runs it
and checks its answers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving import inference
from tests.inference.parity import drive_toolkit, driver_case
from tests.inference.payloads import LIMITS, Case, bad_cases, good_cases

SEGMENTS_HEADER = {"X-Amzn-SageMaker-Custom-Attributes": "segments=true"}


@pytest.fixture(scope="module")
def toolkit_answers(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Every good and bad case, then a good one again, through initialize() + handle()."""
    good, bad = good_cases(), bad_cases()
    cases = [
        *(driver_case(c.name, c.body, c.headers) for c in good + bad),
        driver_case("segments-by-header", good[0].body, good[0].headers | SEGMENTS_HEADER),
        driver_case("good-after-bad", good[0].body, good[0].headers),
    ]
    return drive_toolkit(model_dir, cases, tmp_path_factory.mktemp("toolkit"))


@pytest.fixture(scope="module")
def classifier(model_dir: Path) -> inference.AudioModel:
    return inference.load_model(model_dir, LIMITS)


GOOD = good_cases()
BAD = bad_cases()


@pytest.mark.slow
@pytest.mark.parametrize("case", GOOD, ids=[c.name for c in GOOD])
def test_the_toolkit_serves_every_content_type_as_the_handler_does_in_process(
    toolkit_answers, classifier, case
):
    # Given the answer the handler gives in-process (transformers 5, numpy 2)
    request = inference.parse_request(case.body, case.content_type, LIMITS)
    expected = json.loads(inference.output_fn(classifier.predict(request), "application/json"))

    # When the toolkit (the image's transformers 4, numpy 1) loads the model from code/ and handles the request
    answer = toolkit_answers[case.name]

    # Then it answers 200 with the same JSON
    assert answer["status"] == 200, answer["body"]
    assert answer["content_type"] == "application/json"
    body = json.loads(answer["body"])
    assert body["label"] == expected["label"]
    assert body["probs"] == pytest.approx(expected["probs"], abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("case", BAD, ids=[c.name for c in BAD])
def test_the_toolkit_turns_every_broken_payload_into_a_400_with_our_message(toolkit_answers, case: Case):
    # Given a broken request
    # When the toolkit handles it
    answer = toolkit_answers[case.name]

    # Then HuggingFaceHandlerService.handle raises PredictionException(str(error), 400): a 400 from the
    # model server carrying the handler's message, without a traceback
    assert answer["status"] == 400
    assert case.message in answer["body"]
    assert "Traceback" not in answer["body"]


@pytest.mark.slow
def test_the_toolkit_passes_the_custom_attributes_header_to_input_fn(toolkit_answers):
    # Given a request with segments=true in X-Amzn-SageMaker-Custom-Attributes
    # When the toolkit handles it
    answer = toolkit_answers["segments-by-header"]

    # Then the answer carries per-window labels
    assert answer["status"] == 200
    assert json.loads(answer["body"])["segments"]


@pytest.mark.slow
def test_the_worker_still_answers_after_every_broken_payload(toolkit_answers):
    # Given a worker that has just handled every broken payload
    # When a good request follows
    answer = toolkit_answers["good-after-bad"]

    # Then it is answered
    assert answer["status"] == 200
