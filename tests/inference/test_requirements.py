"""The serving requirements respect the inference image: installing them changes none of its packages.

The inference toolkit runs ``pip install -r /opt/ml/model/code/requirements.txt`` (our
``serving/requirements.txt``) at every instance start, into an image whose library versions are
the contract. ``.venv-toolkit`` is built like that image (``tests/inference/requirements-toolkit.txt``),
then the serving requirements are installed on top, as the toolkit does. No network: everything is
already installed, so pip runs with ``--no-index``.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from serving import inference
from tests.inference.parity import (
    SERVING_REQUIREMENTS,
    TOOLKIT_REQUIREMENTS,
    canonical,
    drive_toolkit,
    driver_case,
    pins,
    toolkit_python,
)
from tests.inference.payloads import LIMITS, good_cases

# What the handler and the toolkit import: the versions that must be the image's, never ours.
IMAGE_PACKAGES = (
    "transformers",
    "huggingface-hub",
    "numpy",
    "protobuf",
    "torch",
    "accelerate",
    "sagemaker-huggingface-inference-toolkit",
    "sagemaker-inference",
    "multi-model-server",
    "setuptools",  # sagemaker_inference.model_server imports pkg_resources (gone in setuptools 82)
)


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(toolkit_python()), "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _installed() -> dict[str, str]:
    listed = _pip("list", "--format=json")
    assert listed.returncode == 0, listed.stderr
    return {canonical(p["name"]): p["version"] for p in json.loads(listed.stdout)}


def test_every_requirement_of_the_parity_env_and_of_serving_is_an_exact_pin():
    # Given the two requirements files
    # When they are read
    image, serving = pins(TOOLKIT_REQUIREMENTS), pins(SERVING_REQUIREMENTS)

    # Then every line is name==version (pins() fails otherwise), and the image's packages are all pinned
    assert set(IMAGE_PACKAGES) <= set(image)
    assert {"onnxruntime", "soundfile", "soxr"} <= set(serving)


def test_the_parity_env_has_the_image_versions_after_the_serving_requirements_went_on_top():
    # Given the parity environment, built image first and serving requirements second (make install)
    installed = _installed()

    # When its versions are compared with both files' pins
    expected = pins(TOOLKIT_REQUIREMENTS) | pins(SERVING_REQUIREMENTS)
    wrong = {
        name: (version, installed.get(name))
        for name, version in expected.items()
        if name not in installed or installed[name] not in SpecifierSet(f"=={version}")
    }

    # Then every pin holds (torch 2.13.0 matches the wheel's 2.13.0+cpu) and numpy is 1.x, as in the image
    assert not wrong, f"pinned vs installed: {wrong}; rebuild with `make toolkit-venv`"
    assert installed["numpy"].startswith("1.")


def test_installing_the_serving_requirements_again_would_change_nothing():
    # Given the parity environment
    # When the toolkit's start-up install is dry-run in it, offline
    result = _pip(
        "install", "--dry-run", "--no-index", "--quiet", "--report", "-", "-r", str(SERVING_REQUIREMENTS)
    )

    # Then it resolves from what is installed and would install, upgrade or downgrade nothing
    assert result.returncode == 0, f"the serving requirements need packages the env lacks:\n{result.stderr}"
    report = json.loads(result.stdout)
    changes = {item["metadata"]["name"]: item["metadata"]["version"] for item in report["install"]}
    assert changes == {}, f"installing {SERVING_REQUIREMENTS.name} would change {changes}"


def test_the_parity_env_has_no_broken_requirements():
    # Given the parity environment
    # When pip checks every installed package's requirements
    result = _pip("check")

    # Then none is broken (onnxruntime accepts the image's protobuf 3.20.2 and numpy 1.26.4)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("fast_path", ["onnx", "onnx-int8"])
def test_the_pinned_onnxruntime_serves_the_fast_paths_in_the_parity_env(model_dir, tmp_path, fast_path):
    # Given clips and the labels the handler gives them in-process on the same fast path
    cases = good_cases()[:4]
    classifier = inference.load_model(model_dir, dataclasses.replace(LIMITS, fast_path=fast_path))
    expected = {
        case.name: classifier.predict(inference.parse_request(case.body, case.content_type, LIMITS)).answer[
            "label"
        ]
        for case in cases
    }

    # When the toolkit serves them with ACOUSTIC_FAST_PATH set, on the pinned onnxruntime and numpy 1
    answers = drive_toolkit(
        model_dir,
        [driver_case(c.name, c.body, c.headers) for c in cases],
        tmp_path,
        ACOUSTIC_FAST_PATH=fast_path,
    )

    # Then every clip gets the same label
    assert {name: json.loads(answers[name]["body"])["label"] for name in expected} == expected


def test_a_range_instead_of_a_pin_is_refused(tmp_path: Path):
    # Given a requirements file with a range instead of a pin
    loose = tmp_path / "requirements.txt"
    loose.write_text("soundfile==0.13.1  # fine\nonnxruntime>=1.20\n")

    # When it is read
    # Then the range is refused with the line that has it
    with pytest.raises(pytest.fail.Exception, match=r"onnxruntime>=1\.20"):
        pins(loose)
