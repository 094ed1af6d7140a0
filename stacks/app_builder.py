"""Builds the whole app from context: config once, stacks wired by objects, compliance checks on."""

from __future__ import annotations

import os
from dataclasses import dataclass

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from .config import AppConfig, load_config
from .data_stack import DataStack
from .training_stack import TrainingStack


@dataclass(frozen=True)
class AcousticShieldApp:
    """The stacks of one environment."""

    config: AppConfig
    data: DataStack
    training: TrainingStack


def stack_prefix(config: AppConfig) -> str:
    return f"AcousticShield-{config.env_name}"


def build_app(app: cdk.App) -> AcousticShieldApp:
    """Adds every stack of the configured environment to ``app``."""
    config = load_config(app.node.try_get_context)
    env = cdk.Environment(account=config.account or None, region=config.region or None)
    prefix = stack_prefix(config)
    data = DataStack(app, f"{prefix}-Data", env=env, description="AcousticShield: key and data bucket")
    training = TrainingStack(
        app,
        f"{prefix}-Training",
        config=config,
        data=data,
        env=env,
        description="AcousticShield: training jobs, retraining schedule, dataset staging, model registry",
    )
    for stack in (data, training):
        for key, value in config.tags.items():
            cdk.Tags.of(stack).add(key, value)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return AcousticShieldApp(config=config, data=data, training=training)


def main() -> None:
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    app = cdk.App()
    build_app(app)
    app.synth()
