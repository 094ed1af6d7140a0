"""One synthesized app per test session (synthesis costs seconds), built exactly as `cdk synth` builds it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from stacks.app_builder import AcousticShieldApp, build_app

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
