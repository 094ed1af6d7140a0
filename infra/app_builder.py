"""Builds the whole app from context: config once, stacks wired by objects, compliance checks on."""

from __future__ import annotations

import os
from dataclasses import dataclass

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from .config import AppConfig, load_config, stack_name
from .data_stack import DataStack
from .serving_stack import ServingStack
from .training_stack import TrainingStack


@dataclass(frozen=True)
class AcousticShieldApp:
    """The stacks of one environment."""

    config: AppConfig
    data: DataStack
    training: TrainingStack
    serving: ServingStack | None = None


def build_app(app: cdk.App) -> AcousticShieldApp:
    """Adds every stack of the configured environment to ``app``."""
    config = load_config(app.node.try_get_context)
    env = cdk.Environment(account=config.account or None, region=config.region or None)
    # Stack tags (CloudFormation tags the stack and what it creates) are given to each stack: with the
    # @aws-cdk/core:explicitStackTags flag, Tags.of(stack) below tags the template's resources only.
    data = DataStack(
        app,
        stack_name(config, "Data"),
        env=env,
        tags=config.tags,
        description="AcousticShield: key and data bucket",
    )
    training = TrainingStack(
        app,
        stack_name(config, "Training"),
        config=config,
        data=data,
        env=env,
        tags=config.tags,
        description="AcousticShield: training jobs, retraining schedule, dataset staging, model registry",
    )
    # The endpoint exists only once a model is given: -c model_package_arn=... or -c model_data_url=...
    serving = None
    if config.serving.model_configured:
        serving = ServingStack(
            app,
            stack_name(config, "Serving"),
            config=config,
            data=data,
            env=env,
            tags=config.tags,
            description="AcousticShield: model endpoint, blue/green deployments, autoscaling, alarms",
        )
    for stack in (data, training, serving):
        if stack is None:
            continue
        for key, value in config.tags.items():
            cdk.Tags.of(stack).add(key, value)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return AcousticShieldApp(config=config, data=data, training=training, serving=serving)


def main() -> None:
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    app = cdk.App()
    build_app(app)
    app.synth()
