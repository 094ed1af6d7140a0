"""One synthesized app per test session (synthesis costs seconds), built exactly as `cdk synth` builds it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from infra.app_builder import AcousticShieldApp, build_app

ROOT = Path(__file__).resolve().parents[2]


def cdk_context(**overrides: Any) -> dict[str, Any]:
    """cdk.json's context (feature flags and environments) plus ``-c``-style overrides."""
    context: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]
    return {**context, **overrides}


def synth(outdir: Path, **overrides: Any) -> AcousticShieldApp:
    app = cdk.App(context=cdk_context(**overrides), outdir=str(outdir))
    built = build_app(app)
    app.synth()
    return built


@pytest.fixture(scope="session")
def synth_app(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., AcousticShieldApp]:
    """Synthesizes an app once per distinct set of overrides."""
    cache: dict[str, AcousticShieldApp] = {}

    def build(**overrides: Any) -> AcousticShieldApp:
        key = json.dumps(overrides, sort_keys=True)
        if key not in cache:
            cache[key] = synth(tmp_path_factory.mktemp("cdk.out"), **overrides)
        return cache[key]

    return build


@pytest.fixture(scope="session")
def dev_app(synth_app: Callable[..., AcousticShieldApp]) -> AcousticShieldApp:
    return synth_app()


@pytest.fixture(scope="session")
def data_template(dev_app: AcousticShieldApp) -> Template:
    return Template.from_stack(dev_app.data)


@pytest.fixture(scope="session")
def training_template(dev_app: AcousticShieldApp) -> Template:
    return Template.from_stack(dev_app.training)


# The serving variants the suite synthesizes (each distinct context costs one synthesis).
MODEL_A = "s3://acoustic-data/models/job-a/output/model.tar.gz"
PACKAGE_B = "arn:aws:sagemaker:eu-west-1:111122223333:model-package/acoustic-shield-dev/3"
SERVING_VARIANTS: dict[str, dict[str, str]] = {
    "realtime": {"model_data_url": MODEL_A},
    "package": {"model_package_arn": PACKAGE_B},
    "gpu": {
        "model_data_url": MODEL_A,
        "serving_instance_type": "ml.g5.xlarge",
        "autoscaling_min_capacity": "2",
        "data_capture_percent": "20",
    },
    # Prod's fleet (two to four instances, no scheduled scale-down): the one variant with a canary.
    "canary": {
        "model_data_url": MODEL_A,
        "autoscaling_min_capacity": "2",
        "autoscaling_max_capacity": "4",
        "scale_down_schedule": "false",
    },
    "serverless": {
        "model_data_url": MODEL_A,
        "serving_mode": "serverless",
        "inference_fast_path": "onnx-int8",
    },
    "async": {"model_data_url": MODEL_A, "serving_mode": "async"},
}


# Every optional feature at once (prod, with the canary endpoint): Debugger rules and profiling, tuning,
# retraining on new data, reserved concurrency, batch inference and data capture. One synthesis, shared by
# the synthesis matrix, the Lambda environment seam and the service-rule walks.
EVERY_FEATURE: dict[str, str] = {
    "env": "prod",
    "profiler_enabled": "true",
    "debugger_rules": "LossNotDecreasing,Overfit",
    "tuning_enabled": "true",
    "retrain_on_new_data": "true",
    "lambda_reserved_concurrency": "5",
    "batch_inference": "true",
    "data_capture_percent": "10",
    **SERVING_VARIANTS["canary"],
}


@pytest.fixture(scope="session")
def serving_app(synth_app: Callable[..., AcousticShieldApp]) -> Callable[[str], AcousticShieldApp]:
    """The app synthesized with one of SERVING_VARIANTS."""
    return lambda variant: synth_app(**SERVING_VARIANTS[variant])


@pytest.fixture(scope="session")
def serving_template(serving_app: Callable[[str], AcousticShieldApp]) -> Callable[[str], Template]:
    def template(variant: str) -> Template:
        serving = serving_app(variant).serving
        assert serving is not None
        return Template.from_stack(serving)

    return template
