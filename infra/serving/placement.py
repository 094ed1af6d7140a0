"""Where and how the model runs: endpoint name, instance facts, revision digests. Pure functions."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import aws_cdk as cdk
from constructs import Construct

from ..config import ConfigError, ServingConfig
from ..images import processor_for

VARIANT_NAME = "AllTraffic"  # blue/green updates need the same variant name in every config

_SIZE = re.compile(r"(\d*)xlarge")


def vcpus(instance_type: str) -> int:
    """vCPUs of a SageMaker instance type, from its size (large: 2, xlarge: 4, Nxlarge: 4N, medium: 2)."""
    size = instance_type.split(".")[2]
    match = _SIZE.fullmatch(size)
    if match:
        return 4 * int(match.group(1) or 1)
    return 2 if size in ("large", "medium") else 1


def processor(serving: ServingConfig) -> str:
    """'cpu' or 'gpu'; serverless endpoints run on CPU."""
    return "cpu" if serving.mode == "serverless" else processor_for(serving.instance_type)


def image_instance_type(serving: ServingConfig) -> str:
    """The instance type that selects the image build (a CPU type for serverless)."""
    return "ml.m5.large" if serving.mode == "serverless" else serving.instance_type


# SageMaker's limit on endpoint names.
ENDPOINT_NAME_LIMIT = 63


def endpoint_name(name_prefix: str, serving: ServingConfig) -> str:
    """``<name_prefix>-<placement>``: placement is the instance type (``m5-xlarge``), ``async-...`` or
    ``serverless``; ``name_prefix`` is the deployment's runtime name (the name prefix and the task's suffix).

    The name is known before the endpoint exists, so that the rollback alarms can watch it, and it
    changes exactly when an in-place update is impossible: a new instance type while the variant is
    registered with Application Auto Scaling, or another serving mode. Then CloudFormation creates a new
    endpoint beside the old one and deletes the old one once the new one is in service.
    """
    if serving.mode == "serverless":
        placement = "serverless"
    else:
        placement = serving.instance_type.removeprefix("ml.").replace(".", "-")
        if serving.mode == "async":
            placement = f"async-{placement}"
    name = f"{name_prefix}-{placement}"
    if len(name) > ENDPOINT_NAME_LIMIT:
        raise ConfigError(
            f"the endpoint name {name!r} is longer than SageMaker's {ENDPOINT_NAME_LIMIT} characters; "
            "shorten name_prefix"
        )
    return name


def check_serving(serving: ServingConfig) -> None:
    """Combinations the config alone cannot judge (they need the instance's processor)."""
    if serving.fast_path != "off" and processor(serving) == "gpu":
        raise ConfigError(
            f"inference_fast_path {serving.fast_path!r} runs ONNX Runtime on the CPU only; on the GPU "
            f"instance type {serving.instance_type!r} set inference_fast_path=off (PyTorch on the GPU)"
        )


def digest(scope: Construct, value: Any) -> str:
    """Eight hex digits of ``value`` as CloudFormation will see it (tokens resolved)."""
    resolved = cdk.Stack.of(scope).resolve(value)
    return hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:8]
