"""Hugging Face PyTorch container images and the Debugger rule evaluator image, resolved per region at
deploy time.

The registry account differs per region (and partition), so the template carries a CfnMapping built
from the SageMaker SDK's image table (``infra/image_table.json``) and looks up ``AWS::Region``:
one template deploys anywhere the image exists, and nothing is hard-coded. A stack with an explicit
region is checked against the table at synthesis instead of failing at deploy time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import aws_cdk as cdk
from constructs import Construct

from .config import ConfigError, load_image_table

Scope = Literal["training", "inference"]
# The config key that picks each kind's image version.
VERSION_KEYS: dict[Scope, str] = {"training": "training_image_version", "inference": "serving_image_version"}


# NVIDIA GPU families of SageMaker instance types and their GPUs' compute capability (NVIDIA's CUDA GPUs
# table): p3 V100, g4dn T4, p4d A100, g5 A10G, g6/gr6 L4, g6e L40S, p5 H100/H200, p6 B200.
GPU_COMPUTE_CAPABILITY = {
    "p3": 7.0,
    "p3dn": 7.0,
    "g4dn": 7.5,
    "p4d": 8.0,
    "p4de": 8.0,
    "g5": 8.6,
    "g6": 8.9,
    "gr6": 8.9,
    "g6e": 8.9,
    "p5": 9.0,
    "p5e": 9.0,
    "p5en": 9.0,
    "p6-b200": 10.0,
}
# The compute capabilities a CUDA toolkit builds for (NVIDIA's CUDA release notes): CUDA 12 covers Maxwell
# (5.0) to Hopper (9.0), 12.8 adds Blackwell (10.0, 12.0); CUDA 13.0 drops Maxwell, Pascal and Volta (< 7.5).
_CUDA_CAPABILITIES = (((13, 0), 7.5, 12.0), ((12, 8), 5.0, 12.0), ((12, 0), 5.0, 9.0))
_ARM_FAMILY = re.compile(r"[a-z]+\d+g[a-z]*")  # Graviton: c7g, m6gd, g5g, ...


def processor_for(instance_type: str) -> str:
    """'gpu' for NVIDIA instance families (ml.g*, ml.p*), else 'cpu'."""
    family = instance_type.split(".")[1] if instance_type.count(".") >= 2 else ""
    if family.startswith(("inf", "trn")):
        raise ConfigError(
            f"instance type {instance_type!r} is a Neuron (Inferentia/Trainium) type; these images need "
            "a CPU (ml.m*, ml.c*) or NVIDIA GPU (ml.g*, ml.p*) instance"
        )
    if _ARM_FAMILY.fullmatch(family):
        raise ConfigError(
            f"instance type {instance_type!r} is a Graviton (arm64) type; the Hugging Face images are built "
            "for x86_64: choose an Intel or AMD CPU (ml.m5, ml.c6i, ...) or an NVIDIA GPU (ml.g*, ml.p*) type"
        )
    return "gpu" if family.startswith(("g", "p")) else "cpu"


def _cuda_version(container_version: str) -> tuple[int, int]:
    """(13, 0) of the image tag part ``cu130-ubuntu22.04``."""
    match = re.match(r"cu(\d+)(\d)-", container_version)
    if not match:
        raise ConfigError(f"cannot read the CUDA version of the GPU image {container_version!r}")
    return int(match.group(1)), int(match.group(2))


def check_gpu_runs(instance_type: str, container_version: str, what: str) -> None:
    """Stops synthesis when the image's CUDA build cannot run on ``instance_type``'s GPU.

    SageMaker accepts such a request and the job or endpoint fails only when the container starts.
    """
    cuda = _cuda_version(container_version)
    low, high = next((low, high) for since, low, high in _CUDA_CAPABILITIES if cuda >= since)
    runs = sorted(f"ml.{f}" for f, cc in GPU_COMPUTE_CAPABILITY.items() if low <= cc <= high)
    family = instance_type.split(".")[1]
    capability = GPU_COMPUTE_CAPABILITY.get(family)
    if capability is None or not low <= capability <= high:
        why = "an unknown GPU family" if capability is None else f"compute capability {capability}"
        raise ConfigError(
            f"{what} is built for CUDA {cuda[0]}.{cuda[1]}, which cannot run on {instance_type!r} ({why}); "
            f"choose one of the families it runs on: {', '.join(runs)}"
        )


@dataclass(frozen=True)
class ImageRef:
    """An image URI and its ECR repository ARN (for pull permissions), as deploy-time tokens."""

    uri: str
    repository_arn: str
    tag: str


def huggingface_image(scope: Construct, *, kind: Scope, version: str, instance_type: str) -> ImageRef:
    """The image for ``kind`` and transformers ``version`` on ``instance_type``'s processor."""
    table = load_image_table()[kind]["versions"]
    if version not in table:
        raise ConfigError(
            f"no Hugging Face {kind} image for transformers {version}; known: {', '.join(table)}"
        )
    entry = table[version]
    processor = processor_for(instance_type)
    if processor not in entry["container_version"]:
        raise ConfigError(
            f"the Hugging Face {kind} image for transformers {version} has no {processor.upper()} build; "
            f"choose a {'GPU (ml.g*, ml.p*)' if processor == 'cpu' else 'CPU'} instance type instead of "
            f"{instance_type!r}, or another image version"
        )
    if processor == "gpu":
        check_gpu_runs(
            instance_type,
            entry["container_version"][processor],
            f"the Hugging Face {kind} image for transformers {version}",
        )
    tag = f"{entry['pytorch']}-transformers{version}-{processor}-{entry['py']}-{entry['container_version'][processor]}"
    stack = cdk.Stack.of(scope)
    # An environment-agnostic template resolves the region at deploy time; an explicit one is checked now.
    region = stack.region
    if not cdk.Token.is_unresolved(region) and region not in entry["registries"]:
        elsewhere = [v for v, e in table.items() if region in e["registries"]]
        raise ConfigError(
            f"region {region!r} has no Hugging Face {kind} image for transformers {version}; "
            f"supported regions: {', '.join(sorted(entry['registries']))}. Deploy to one of them "
            "(-c region=...)"
            + (f", or set {VERSION_KEYS[kind]} to {' or '.join(elsewhere)}" if elsewhere else "")
        )
    mapping = _registry_mapping(stack, f"{kind.capitalize()}ImageRegistry", entry["registries"])
    account = mapping.find_in_map(cdk.Aws.REGION, "account")
    repository = entry["repository"]
    uri = f"{account}.dkr.ecr.{cdk.Aws.REGION}.{cdk.Aws.URL_SUFFIX}/{repository}:{tag}"
    arn = f"arn:{cdk.Aws.PARTITION}:ecr:{cdk.Aws.REGION}:{account}:repository/{repository}"
    return ImageRef(uri=uri, repository_arn=arn, tag=tag)


def _registry_mapping(stack: cdk.Stack, mapping_id: str, registries: dict[str, str]) -> cdk.CfnMapping:
    mapping = stack.node.try_find_child(mapping_id)
    if not isinstance(mapping, cdk.CfnMapping):
        mapping = cdk.CfnMapping(
            stack,
            mapping_id,
            mapping={region: {"account": account} for region, account in registries.items()},
        )
    return mapping


def rule_evaluator_image(scope: Construct) -> ImageRef:
    """The SageMaker Debugger rule evaluator image (Debugger and Profiler built-in rules) of the region."""
    entry = load_image_table()["debugger"]
    stack = cdk.Stack.of(scope)
    region = stack.region
    if not cdk.Token.is_unresolved(region) and region not in entry["registries"]:
        raise ConfigError(
            f"region {region!r} has no SageMaker Debugger rule evaluator image; supported regions: "
            f"{', '.join(sorted(entry['registries']))}. Deploy to one of them (-c region=...), or run "
            "training jobs without rules: -c profiler_enabled=false -c debugger_rules=[]"
        )
    account = _registry_mapping(stack, "RuleEvaluatorImageRegistry", entry["registries"]).find_in_map(
        cdk.Aws.REGION, "account"
    )
    repository = entry["repository"]
    uri = f"{account}.dkr.ecr.{cdk.Aws.REGION}.{cdk.Aws.URL_SUFFIX}/{repository}:{entry['tag']}"
    arn = f"arn:{cdk.Aws.PARTITION}:ecr:{cdk.Aws.REGION}:{account}:repository/{repository}"
    return ImageRef(uri=uri, repository_arn=arn, tag=entry["tag"])
