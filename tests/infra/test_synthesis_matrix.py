"""Run where it ships: the app synthesizes, passes the cdk-nag gate and cfn-lint in every environment.

The matrix covers every value of each axis at least once, not their full cross product (each synthesis
costs seconds): environment-agnostic and explicit (account 123456789012 in eu-west-1, us-east-1 and
ap-southeast-2), dev and prod, no endpoint and each serving mode of SERVING_VARIANTS. A region without
the training image stops synthesis with a ConfigError instead of failing at deploy time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from infra.app_builder import AcousticShieldApp
from infra.config import ConfigError, load_image_table
from infra.images import huggingface_image

from .conftest import EVERY_FEATURE, SERVING_VARIANTS, synth

ACCOUNT = "123456789012"


def explicit(region: str) -> dict[str, str]:
    return {"account": ACCOUNT, "region": region}


# name: (-c overrides, serving variant or None)
MATRIX: dict[str, tuple[dict[str, str], str | None]] = {
    "agnostic-dev": ({}, None),
    "agnostic-dev-serverless": ({}, "serverless"),
    "agnostic-prod-realtime": ({"env": "prod"}, "realtime"),
    "eu-west-1-dev": (explicit("eu-west-1"), None),
    "eu-west-1-prod-package": ({**explicit("eu-west-1"), "env": "prod"}, "package"),
    "us-east-1-dev-gpu": (explicit("us-east-1"), "gpu"),
    "ap-southeast-2-prod-async": ({**explicit("ap-southeast-2"), "env": "prod"}, "async"),
    # Every optional feature at once: rules, tuning, new-data retraining, reserved concurrency, a canary.
    "agnostic-prod-every-feature": (
        {k: v for k, v in EVERY_FEATURE.items() if k not in SERVING_VARIANTS["canary"]},
        "canary",
    ),
}
# A real AWS region (Spain) that has the inference image but no training image.
NO_TRAINING_IMAGE = "eu-south-2"


def overrides_of(name: str) -> dict[str, str]:
    context, variant = MATRIX[name]
    return {**context, **(SERVING_VARIANTS[variant] if variant else {})}


def outdir_of(built: AcousticShieldApp) -> Path:
    return Path(built.data.node.root.outdir)  # type: ignore[attr-defined]


def cfn_lint(outdir: Path) -> subprocess.CompletedProcess[str]:
    """cfn-lint exactly as `make synth` runs it: errors fail, warnings do not."""
    command = [
        str(Path(sys.executable).with_name("cfn-lint")),
        "--non-zero-exit-code",
        "error",
        "--",
        str(outdir / "*.template.json"),
    ]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_the_matrix_covers_every_axis_value() -> None:
    # Given the rows of the matrix
    # When the environment, env and serving mode of each row are collected
    regions = {context.get("region", "agnostic") for context, _ in MATRIX.values()}
    envs = {context.get("env", "dev") for context, _ in MATRIX.values()}
    modes = {variant for _, variant in MATRIX.values()}
    # Then each value appears at least once, within the synthesis budget
    assert regions == {"agnostic", "eu-west-1", "us-east-1", "ap-southeast-2"}
    assert envs == {"dev", "prod"}
    assert modes == {None, *SERVING_VARIANTS}
    assert len(MATRIX) <= 9


@pytest.mark.parametrize("name", list(MATRIX))
def test_app_synthesizes_nag_clean_and_cfn_lint_clean(
    synth_app: Callable[..., AcousticShieldApp], name: str
) -> None:
    # Given this row's context
    context, variant = MATRIX[name]
    # When the app is synthesized with it (the nag gate raises on any unacknowledged finding)
    built = synth_app(**overrides_of(name))
    outdir = outdir_of(built)
    # Then it has the stacks the row asks for, in the row's environment...
    assert (built.serving is not None) == (variant is not None)
    assert built.config.env_name == context.get("env", "dev")
    stacks = [s for s in (built.data, built.training, built.serving) if s is not None]
    if "region" in context:
        assert {(s.account, s.region) for s in stacks} == {(ACCOUNT, context["region"])}
    else:
        assert all(cdk.Token.is_unresolved(s.region) for s in stacks)
    # ...cdk-nag reports nothing unacknowledged...
    assert json.loads((outdir / "validation-report.json").read_text())["pluginReports"] == []
    # ...and cfn-lint finds no error in any template
    linted = cfn_lint(outdir)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_explicit_environment_acknowledges_the_codebuild_roles_concrete_arns(
    synth_app: Callable[..., AcousticShieldApp],
) -> None:
    # Given `cdk synth -c account=123456789012 -c region=eu-west-1`: the CodeBuild grants CDK adds
    # name the concrete partition, region and account, not their pseudo parameters
    built = synth_app(**overrides_of("eu-west-1-dev"))
    # When the Training stack's policies are read
    template = Template.from_stack(built.training)
    policies = json.dumps(template.find_resources("AWS::IAM::Policy"))
    # Then the logs and report-group grants of both projects are concrete ARNs...
    for project in ("DatasetStagerProject", "DeployerProject"):
        assert (
            f'"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/aws/codebuild/", {{"Ref": "{project}' in policies
        )
        assert f'"arn:aws:codebuild:eu-west-1:{ACCOUNT}:report-group/", {{"Ref": "{project}' in policies
    # ...and the synthesis passed the nag gate: those wildcards are acknowledged in their concrete form
    report = json.loads((outdir_of(built) / "validation-report.json").read_text())
    assert report["pluginReports"] == []


def test_region_without_the_training_image_stops_synthesis(tmp_path: Path) -> None:
    # Given a real region the table publishes no training image in
    training = load_image_table()["training"]["versions"]
    assert all(NO_TRAINING_IMAGE not in entry["registries"] for entry in training.values())
    # When the app is synthesized for it / Then synthesis stops, naming the region, image and regions
    with pytest.raises(ConfigError) as failure:
        synth(tmp_path, **explicit(NO_TRAINING_IMAGE))
    message = str(failure.value)
    assert message.startswith(
        f"region '{NO_TRAINING_IMAGE}' has no Hugging Face training image for transformers 5.3.0;"
    )
    assert "supported regions: af-south-1, ap-east-1," in message and "eu-west-1" in message
    assert "-c region=" in message
    assert not list(tmp_path.glob("*.template.json"))


def test_serving_image_is_checked_against_an_explicit_region() -> None:
    # Given a stack in a real region the table publishes no inference image in (Mexico)
    stack = cdk.Stack(cdk.App(), "Somewhere", env=cdk.Environment(account=ACCOUNT, region="mx-central-1"))
    # When the serving image is resolved / Then the error names the region and the inference image
    with pytest.raises(ConfigError, match=r"region 'mx-central-1' has no Hugging Face inference image "):
        huggingface_image(stack, kind="inference", version="5.5.3", instance_type="ml.m5.xlarge")


def test_an_environment_agnostic_stack_looks_the_image_up_at_deploy_time() -> None:
    # Given a stack without an environment
    stack = cdk.Stack(cdk.App(), "Anywhere")
    # When the training image is resolved
    image = huggingface_image(stack, kind="training", version="4.56.2", instance_type="ml.g5.xlarge")
    # Then no region is checked now: the template maps AWS::Region to the registry at deploy time
    resolved: Any = stack.resolve(image.uri)
    assert {"Fn::FindInMap": ["TrainingImageRegistry", {"Ref": "AWS::Region"}, "account"]} in resolved[
        "Fn::Join"
    ][1]


@pytest.mark.parametrize(
    ("version", "instance_type", "runs"),
    [
        ("5.3.0", "ml.p3.2xlarge", False),  # CUDA 13.0: no Volta
        ("5.3.0", "ml.g4dn.xlarge", True),
        ("5.3.0", "ml.g5.xlarge", True),
        ("5.3.0", "ml.g6.xlarge", True),
        ("5.3.0", "ml.p4d.24xlarge", True),
        ("5.3.0", "ml.p5.48xlarge", True),
        ("4.49.0", "ml.p3.2xlarge", True),  # CUDA 12.4 still builds for Volta...
        ("4.49.0", "ml.p6-b200.48xlarge", False),  # ...but not yet for Blackwell
        ("5.3.0", "ml.g9z.xlarge", False),  # a GPU family nobody has checked
    ],
)
def test_training_image_must_run_on_the_instance_gpu(version: str, instance_type: str, runs: bool) -> None:
    """CUDA Toolkit 13.0 Release Notes (NVIDIA): support for Maxwell, Pascal and Volta GPUs (compute
    capability below 7.5) is removed; Blackwell (10.0) needs CUDA 12.8 or later. SageMaker accepts the
    request and the job fails when its container starts, so synthesis refuses it."""
    # Given a stack and a training image version (its GPU build's CUDA version is in the tag)
    stack = cdk.Stack(cdk.App(), "Anywhere")
    # When the image is resolved for the instance type
    if runs:
        image = huggingface_image(stack, kind="training", version=version, instance_type=instance_type)
        # Then it resolves to the GPU build
        assert "-gpu-" in image.tag
        return
    # Then synthesis stops, naming the CUDA version and the families that image runs on
    with pytest.raises(ConfigError, match=r"built for CUDA 1\d\.\d, which cannot run on") as failure:
        huggingface_image(stack, kind="training", version=version, instance_type=instance_type)
    assert "ml.g5" in str(failure.value) and "ml.g4dn" in str(failure.value)


@pytest.mark.parametrize("instance_type", ["ml.c7g.xlarge", "ml.g5g.xlarge", "ml.m6gd.large"])
def test_graviton_instances_are_refused_for_the_x86_images(instance_type: str) -> None:
    """Available Deep Learning Containers Images (AWS DLC): the Hugging Face PyTorch images are x86_64
    builds; a Graviton (arm64) instance cannot run them."""
    # Given a stack / When the inference image is resolved for a Graviton type / Then synthesis stops
    with pytest.raises(ConfigError, match="Graviton"):
        huggingface_image(
            cdk.Stack(cdk.App(), "Anywhere"), kind="inference", version="4.51.3", instance_type=instance_type
        )


def test_no_reserved_concurrency_unless_configured(synth_app: Callable[..., AcousticShieldApp]) -> None:
    """Lambda function scaling (AWS Lambda Developer Guide): reserved concurrency comes out of the account's
    unreserved pool, which may not drop below 100; new accounts often have a quota of 10 or 50, where
    reserving any fails the deployment. Leases, not reservations, serialize the Lambdas' critical sections."""
    # Given dev (defaults) and every feature on, with lambda_reserved_concurrency=5
    default = Template.from_stack(synth_app().training)
    reserved = Template.from_stack(synth_app(**overrides_of("agnostic-prod-every-feature")).training)

    # When their Lambda functions' reservations are read
    def reservations(template: Template) -> list[Any]:
        functions = template.find_resources("AWS::Lambda::Function").values()
        return [f["Properties"].get("ReservedConcurrentExecutions") for f in functions]

    # Then none reserves by default; each reserves what the key says when it is set
    assert reservations(default) and set(reservations(default)) == {None}
    assert set(reservations(reserved)) == {5}
