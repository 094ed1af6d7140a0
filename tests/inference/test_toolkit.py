"""The handler driven by the real SageMaker Hugging Face inference toolkit (HuggingFaceHandlerService).

The toolkit lives in its own environment, ``.venv-toolkit`` (``make install`` builds it): it needs
numpy<2 and transformers 4. ``toolkit_driver.py`` runs there; this test runs it and checks its answers.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest

from ml_code import inference
from tests.inference.payloads import LIMITS, LIMITS_ENV, Case, bad_cases, good_cases

ROOT = Path(__file__).resolve().parents[2]
TOOLKIT_PYTHON = ROOT / ".venv-toolkit" / "bin" / "python"
DRIVER = Path(__file__).with_name("toolkit_driver.py")
SEGMENTS_HEADER = {"X-Amzn-SageMaker-Custom-Attributes": "segments=true"}


@pytest.fixture(scope="module")
def toolkit_answers(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Every good and bad case, then a good one again, through initialize() + handle()."""
    if not TOOLKIT_PYTHON.exists():
        pytest.fail(
            f"{TOOLKIT_PYTHON.relative_to(ROOT)} is missing: run `make install` (or `make toolkit-venv`)"
        )
    good, bad = good_cases(), bad_cases()
    cases = [
        *({"name": c.name, "body_b64": _b64(c.body), "headers": c.headers} for c in good + bad),
        {
            "name": "segments-by-header",
            "body_b64": _b64(good[0].body),
            "headers": good[0].headers | SEGMENTS_HEADER,
        },
        {"name": "good-after-bad", "body_b64": _b64(good[0].body), "headers": good[0].headers},
    ]
    cases_file = tmp_path_factory.mktemp("toolkit") / "cases.json"
    cases_file.write_text(json.dumps(cases))
    env = os.environ | LIMITS_ENV | {"SAGEMAKER_PROGRAM": "inference.py"}
    env.pop("PYTHONPATH", None)  # the toolkit finds the handler through <model_dir>/code alone
    result = subprocess.run(
        [str(TOOLKIT_PYTHON), str(DRIVER), str(model_dir), str(cases_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    answers = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {answer["name"]: answer for answer in answers}


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.fixture(scope="module")
def classifier(model_dir: Path) -> inference.Classifier:
    return inference.load_classifier(model_dir, LIMITS)


GOOD = good_cases()
BAD = bad_cases()


@pytest.mark.slow
@pytest.mark.parametrize("case", GOOD, ids=[c.name for c in GOOD])
def test_the_toolkit_serves_every_content_type_as_the_handler_does_in_process(
    toolkit_answers, classifier, case
):
    # Given the answer the handler gives in-process (transformers 5, numpy 2)
    request = inference.parse_request(case.body, case.content_type, LIMITS)
    expected = json.loads(inference.output_fn(classifier.classify(request), "application/json"))

    # When the toolkit (transformers 4, numpy 1) loads the model from code/ and handles the request
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
