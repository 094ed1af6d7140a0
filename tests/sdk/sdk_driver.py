"""Builds training, tuning and transform jobs with the SageMaker Python SDK v2, recording the requests it sends.

Run with the SDK's environment (``.venv-sdk/bin/python``): ``sdk_driver.py CASES_JSON OUT_JSON``. CASES_JSON is
a list of job descriptions (``tests/sdk/test_sdk_reference.py`` writes them from the launcher's settings);
OUT_JSON gets ``{"sagemaker_version": ..., "jobs": {name: {"api", "request", "instance_supports_kms"}}}``,
each request exactly as the SDK would send it. Nothing reaches AWS: the session's SageMaker client is a
recorder, the source dir is an S3 URI (nothing is uploaded), and telemetry is off.

The data key reaches the SDK through its configuration (``SageMaker.TrainingJob.ResourceConfig.VolumeKmsKeyId``,
``OutputDataConfig.KmsKeyId`` and the TransformJob equivalents), as a deployment's ``config.yaml`` would give
it: that is where the SDK applies ``sagemaker.utils.instance_supports_kms`` and drops a volume key that an
instance type with NVMe storage would be refused. A tuning job takes both keys from its estimator.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import sys
from typing import Any

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")

import boto3
import sagemaker
import sagemaker.session
import sagemaker.utils
from sagemaker.debugger import TensorBoardOutputConfig
from sagemaker.huggingface import HuggingFace
from sagemaker.inputs import TrainingInput
from sagemaker.transformer import Transformer
from sagemaker.tuner import (
    CategoricalParameter,
    ContinuousParameter,
    HyperbandStrategyConfig,
    HyperparameterTuner,
    IntegerParameter,
    StrategyConfig,
)
from sagemaker.utils import instance_supports_kms

_VALIDATED: set[str] = set()
_SDK_VALIDATE = sagemaker.utils.validate_sagemaker_config


def _validate_once(config: dict[str, Any] | None = None) -> None:
    """The SDK validates its whole configuration against the schema at every lookup (a fifth of a second
    each, dozens per job): each distinct configuration is validated once."""
    key = json.dumps(config, sort_keys=True)
    if key not in _VALIDATED:
        _SDK_VALIDATE(config)
        _VALIDATED.add(key)


sagemaker.utils.validate_sagemaker_config = _validate_once
sagemaker.session.validate_sagemaker_config = _validate_once

_RANGE_TYPES = {"ContinuousParameterRanges": ContinuousParameter, "IntegerParameterRanges": IntegerParameter}


class Recorder:
    """Stands in for the session's boto3 SageMaker client: records each Create* call's arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, operation: str) -> Any:
        if not operation.startswith("create_"):
            raise AttributeError(f"the SDK called {operation}, which this recorder does not answer")

        def record(**request: Any) -> dict[str, Any]:
            self.calls.append((operation, copy.deepcopy(request)))
            return {}

        return record


@functools.cache
def _boto_session(region: str) -> boto3.Session:
    """One per region: botocore loads its service models once per session."""
    return boto3.Session(region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing")


def session(case: dict[str, Any]) -> tuple[sagemaker.Session, Recorder]:
    """A session that records instead of calling SageMaker, configured with the data key."""
    key = case["kms_key"]
    config = {
        "SchemaVersion": "1.0",
        "SageMaker": {
            "PythonSDK": {"Modules": {"TelemetryOptOut": True}},
            "TrainingJob": {
                "OutputDataConfig": {"KmsKeyId": key},
                "ResourceConfig": {"VolumeKmsKeyId": key},
            },
            "TransformJob": {
                "TransformOutput": {"KmsKeyId": key},
                "TransformResources": {"VolumeKmsKeyId": key},
            },
        },
    }
    recorder = Recorder()
    return (
        sagemaker.Session(
            boto_session=_boto_session(case["region"]),
            sagemaker_client=recorder,
            sagemaker_config=config,
            default_bucket=case["bucket"],
        ),
        recorder,
    )


def estimator(case: dict[str, Any], sm_session: sagemaker.Session) -> HuggingFace:
    """The Hugging Face estimator of the job: the configured image (v2's version table ends before ours)."""
    return HuggingFace(
        entry_point=case["entry_point"],
        source_dir=case["source_dir"],  # an s3:// URI: used as it is, nothing is packed or uploaded
        image_uri=case["image"],
        py_version=None,
        pytorch_version=None,
        transformers_version=None,
        role=case["role"],
        instance_type=case["instance_type"],
        instance_count=case["instance_count"],
        volume_size=case["volume_size"],
        max_run=case["max_run"],
        use_spot_instances=case["use_spot"],
        max_wait=case["max_wait"] if case["use_spot"] else None,
        output_path=case["output_path"],
        checkpoint_s3_uri=case["checkpoint_s3_uri"],
        checkpoint_local_path=case["checkpoint_local_path"],
        hyperparameters=case["hyperparameters"],
        metric_definitions=case["metric_definitions"],
        encrypt_inter_container_traffic=case["encrypt_inter_container_traffic"],
        distribution={"torch_distributed": {"enabled": True}} if case["instance_count"] > 1 else None,
        disable_profiler=True,
        debugger_hook_config=False,
        tensorboard_output_config=TensorBoardOutputConfig(s3_output_path=case["tensorboard_output_path"]),
        tags=[{"Key": k, "Value": v} for k, v in case["tags"].items()],
        sagemaker_session=sm_session,
    )


def parameter_ranges(ranges: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The SDK's parameter objects for CreateHyperParameterTuningJob's ranges, values as configured."""
    found: dict[str, Any] = {}
    for family, entries in ranges.items():
        for entry in entries:
            if family == "CategoricalParameterRanges":
                found[entry["Name"]] = CategoricalParameter(entry["Values"])
            else:
                found[entry["Name"]] = _RANGE_TYPES[family](
                    entry["MinValue"], entry["MaxValue"], scaling_type=entry["ScalingType"]
                )
    return found


def inputs(case: dict[str, Any]) -> dict[str, TrainingInput]:
    return {name: TrainingInput(uri, input_mode="File") for name, uri in case["inputs"].items()}


def training(case: dict[str, Any]) -> Recorder:
    sm_session, recorder = session(case)
    estimator(case, sm_session).fit(inputs(case), job_name=case["job_name"], wait=False, logs=False)
    return recorder


def tuning(case: dict[str, Any]) -> Recorder:
    sm_session, recorder = session(case)
    tuned = case["tuning"]
    hyperband = tuned.get("hyperband")
    tuner = HyperparameterTuner(
        estimator(case, sm_session),
        objective_metric_name=tuned["objective_metric_name"],
        hyperparameter_ranges=parameter_ranges(tuned["ranges"]),
        metric_definitions=case["metric_definitions"],
        strategy=tuned["strategy"],
        objective_type=tuned["objective_type"],
        max_jobs=tuned["max_jobs"],
        max_parallel_jobs=tuned["max_parallel_jobs"],
        tags=[{"Key": k, "Value": v} for k, v in case["tags"].items()],
        early_stopping_type=tuned["early_stopping_type"],
        strategy_config=(StrategyConfig(HyperbandStrategyConfig(**hyperband)) if hyperband else None),
    )
    tuner.fit(inputs(case), job_name=case["job_name"], include_cls_metadata=False, wait=False)
    return recorder


def transform(case: dict[str, Any]) -> Recorder:
    sm_session, recorder = session(case)
    job = case["transform"]
    transformer = Transformer(
        model_name=job["model_name"],
        instance_count=case["instance_count"],
        instance_type=case["instance_type"],
        strategy=job["strategy"],
        assemble_with=job["assemble_with"],
        output_path=job["output_path"],
        accept=job["accept"],
        max_concurrent_transforms=job["max_concurrent_transforms"],
        max_payload=job["max_payload"],
        sagemaker_session=sm_session,
    )
    transformer.transform(
        job["input_path"],
        data_type="S3Prefix",
        content_type=job["content_type"],
        compression_type=job["compression_type"],
        split_type=job["split_type"],
        job_name=case["job_name"],
        model_client_config=job["model_client_config"],
        wait=False,
        logs=False,
    )
    return recorder


BUILDERS = {"training": training, "tuning": tuning, "transform": transform}


def main(cases_path: str, out_path: str) -> None:
    for name in ("sagemaker", "sagemaker.config"):  # which configuration values applied: each job says it
        logging.getLogger(name).setLevel(logging.WARNING)
    with open(cases_path) as handle:
        cases = json.load(handle)
    jobs = {}
    for case in cases:
        recorder = BUILDERS[case["kind"]](case)
        (operation, request), *more = recorder.calls
        assert not more, f"{case['name']}: the SDK sent more than one request: {recorder.calls}"
        jobs[case["name"]] = {
            "api": operation,
            "request": request,
            "instance_supports_kms": instance_supports_kms(case["instance_type"]),
        }
    with open(out_path, "w") as handle:
        json.dump(
            {"sagemaker_version": sagemaker.__version__, "jobs": jobs}, handle, indent=1, sort_keys=True
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
