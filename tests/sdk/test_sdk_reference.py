"""The SageMaker Python SDK v2 as the reference producer of our requests, compared field by field.

The launcher builds CreateTrainingJob and CreateHyperParameterTuningJob requests with boto3 alone, and botocore
checks only their shape. The SDK encodes service rules that botocore does not, the first of them
``sagemaker.utils.instance_supports_kms``: "ResourceConfig (Amazon SageMaker API Reference)", VolumeKmsKeyId:
"Certain Nitro-based instances include local storage [...] you can't request a VolumeKmsKeyId when using an
instance type with local storage". So the SDK builds the same jobs (``sdk_driver.py``, in ``.venv-sdk``), with
the data key given through its configuration, where that rule applies, and every field of its request is
compared with ours.

The launcher's settings are its environment as the Training stack synthesizes it, for dev and prod
(``cdk.json``), varied over the GPU families the training image runs on, an EBS-only one (so that a volume key
that should be sent is compared too), spot and on-demand, one and two instances, a single job and a tuning
job; and a multilabel deployment's (another task: its metric definitions and tuning objective). Every training
job carries the SDK's ``tensorboard_output_config``: ``TensorBoardOutputConfig`` is compared too (a tuning job's
definition has no place for it, in the SDK's request as in ours). ``tools/batch.py``'s CreateTransformJob
request is compared with the SDK's ``Transformer`` over the serving instance types.

Every difference is fixed in our code or explained in ``ALLOWED``, the one reviewed list: path → reason.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from common import contract
from lambdas.launcher import logic
from lambdas.launcher.settings import LaunchSettings
from tests.inference.parity import pins
from tests.infra.conftest import synth
from tests.infra.test_lambda_environments import ACCOUNT, REGION, environment
from tools import batch

ROOT = Path(__file__).resolve().parents[2]
SDK_PYTHON = ROOT / ".venv-sdk" / "bin" / "python"
SDK_REQUIREMENTS = Path(__file__).with_name("requirements-sdk.txt")
DRIVER = Path(__file__).with_name("sdk_driver.py")
CONTEXT = json.loads((ROOT / "cdk.json").read_text())["context"]["acoustic_shield"]

# Paths are "<API>:<dotted path>"; lists of tags become <path>.<Key>, lists of named entries <path>[<name>].
# A key may also read "<path> if not instance_supports_kms" (allowed only on the instance types the SDK's rule
# keeps volume keys off), or "<SDK path> -> <our path>" (the SDK's field, compared as ours).
TRAIN, TUNE, TRANSFORM = "CreateTrainingJob", "CreateHyperParameterTuningJob", "CreateTransformJob"
DEFINITION = f"{TUNE}:TrainingJobDefinition"
ALLOWED: dict[str, str] = {
    # The training job
    f"{TRAIN}:HyperParameters.sagemaker_job_name": (
        "the SDK names the job in its hyperparameters; the training toolkit only copies it into "
        "SAGEMAKER_JOB_NAME, which nothing reads (SageMaker sets TRAINING_JOB_NAME itself)"
    ),
    f"{TRAIN}:HyperParameters.sagemaker_instance_type": (
        "the SDK adds it with torch_distributed; the toolkit's torch_distributed runner reads the instance "
        "type from resourceconfig.json (current_instance_type), not from this hyperparameter"
    ),
    f"{TRAIN}:EnableManagedSpotTraining": (
        "the launcher states False for on-demand jobs; the SDK omits the field (False is the API default)"
    ),
    f"{TRAIN}:EnableInterContainerTrafficEncryption": (
        "the launcher states False for single-instance jobs; the SDK omits the field (False is the API default)"
    ),
    # The tuning job
    f"{DEFINITION}.HyperParameterTuningResourceConfig -> {DEFINITION}.ResourceConfig": (
        "the SDK uses the newer HyperParameterTuningResourceConfig (which can also hold InstanceConfigs); with "
        "one instance type its fields are ResourceConfig's, and compared as such (VolumeKmsKeyId included)"
    ),
    f"{DEFINITION}.StaticHyperParameters.sagemaker_job_name": (
        "as for the training job: in a tuning job the SDK sets the tuning job's name for every trial"
    ),
    f"{DEFINITION}.StaticHyperParameters.sagemaker_instance_type": (
        "as for the training job (torch_distributed)"
    ),
    f"{DEFINITION}.StaticHyperParameters.sagemaker_estimator_class_name": (
        "the SDK records its estimator class for HyperparameterTuner.attach(); the toolkit ignores sagemaker_* "
        "names it does not know, and train.py never sees them"
    ),
    f"{DEFINITION}.StaticHyperParameters.sagemaker_estimator_module": "as sagemaker_estimator_class_name",
    f"{DEFINITION}.CheckpointConfig.S3Uri": (
        "deliberately left out of tuning jobs: trials share the definition, SageMaker gives them no checkpoint "
        "location of their own, and train.py would resume another trial's model (build_tuning_job_request)"
    ),
    f"{DEFINITION}.CheckpointConfig.LocalPath": "as CheckpointConfig.S3Uri",
    f"{DEFINITION}.EnableManagedSpotTraining": f"as {TRAIN}:EnableManagedSpotTraining",
    f"{DEFINITION}.EnableInterContainerTrafficEncryption": f"as {TRAIN}:EnableInterContainerTrafficEncryption",
    f"{TUNE}:HyperParameterTuningJobConfig.ParameterRanges.IntegerParameterRanges": (
        "the SDK sends every range family, empty ones as []; the launcher only those it tunes"
    ),
    f"{TUNE}:HyperParameterTuningJobConfig.ParameterRanges.CategoricalParameterRanges"
    "[per_device_train_batch_size].Values": (
        "the SDK JSON-encodes categorical values for framework estimators ('\"8\"'), the launcher sends them "
        "as configured ('8'); the toolkit json-decodes every hyperparameter, and both reach train.py as "
        "--per_device_train_batch_size 8 (only numeric arguments can be tuned)"
    ),
    # The transform job (tools/batch.py)
    f"{TRANSFORM}:TransformResources.VolumeKmsKeyId if not instance_supports_kms": (
        "the SDK's Transformer applies no instance_supports_kms rule and sends the configured key for any "
        "instance type; TransformResources (API reference) refuses it where the instance has local storage"
    ),
}
API_NAMES = {
    "create_training_job": TRAIN,
    "create_hyper_parameter_tuning_job": TUNE,
    "create_transform_job": TRANSFORM,
}
RENAME, ONLY_WITHOUT_KMS = " -> ", " if not instance_supports_kms"
ABSENT = "<absent>"

# The launcher's matrix: configurations x instance types x spot x instances x job kind.
VARIANTS = {"dev": {}, "prod": {"env": "prod"}}
# And a deployment of another task than the default one (its metric definitions, its tuning objective).
TASK_VARIANTS = {"multilabel": {"task": "multilabel"}}
GPU_INSTANCE_TYPES = ("ml.g4dn.xlarge", "ml.g5.xlarge", "ml.g6.xlarge", "ml.p4d.24xlarge")
EBS_ONLY = "ml.p3.2xlarge"  # no local storage: the volume key is sent, and compared
EVENT = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": ACCOUNT,
    "time": "2026-11-22T03:00:00Z",
    "region": REGION,
    "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/schedule"],
    "detail": {},
}
CHANNELS = ["train", "validation"]


@dataclass(frozen=True)
class Case:
    """One job of the matrix."""

    variant: str
    instance_type: str
    use_spot: bool = True
    instance_count: int = 1
    kind: str = "training"  # training | tuning | transform
    tuning: dict[str, Any] = field(default_factory=dict)  # TUNING overrides

    @property
    def name(self) -> str:
        if self.kind == "transform":
            return f"{self.variant}-{self.instance_type}-x{self.instance_count}"
        spot = "spot" if self.use_spot else "on-demand"
        extra = "-" + "-".join(f"{k}={v}" for k, v in sorted(self.tuning.items())) if self.tuning else ""
        return f"{self.variant}-{self.instance_type}-{spot}-x{self.instance_count}-{self.kind}{extra}"


def _instance_types(variant: str) -> list[str]:
    configured = CONTEXT[variant]["training_instance_type"]
    return list(dict.fromkeys([configured, *GPU_INSTANCE_TYPES, EBS_ONLY]))


LAUNCHER_CASES = [
    Case(variant, instance_type, use_spot, count, kind)
    for variant in VARIANTS
    for instance_type in _instance_types(variant)
    for use_spot in (True, False)
    for count in (1, 2)
    for kind in ("training", "tuning")
] + [Case("dev", "ml.g5.xlarge", kind="tuning", tuning={"strategy": "Hyperband", "early_stopping": "Off"})]
LAUNCHER_CASES += [
    Case(variant, "ml.g5.xlarge", kind=kind) for variant in TASK_VARIANTS for kind in ("training", "tuning")
]
# The serving instance types (dev, prod, and a GPU one), as batch.py's --instance-type.
TRANSFORM_TYPES = (CONTEXT["dev"]["serving_instance_type"], CONTEXT["prod"]["serving_instance_type"])
TRANSFORM_CASES = [
    Case("batch", instance_type, instance_count=count, kind="transform")
    for instance_type, count in [(t, 1) for t in TRANSFORM_TYPES] + [("ml.g5.xlarge", 1), ("ml.m5.xlarge", 2)]
]
KMS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def launcher_environment(tmp: Path, variant: str) -> dict[str, str]:
    """The launcher's environment as the Training stack synthesizes it (tests/infra/test_lambda_environments.py)."""
    app = synth(tmp / variant, **{**VARIANTS, **TASK_VARIANTS}[variant])
    env = environment(Template.from_stack(app.training), "lambdas.launcher.handler.handler")
    # The role as IAM names it (the synthesized stand-in has no "/", so the SDK would look the name up in IAM).
    return {**env, "EXECUTION_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/acoustic-shield-training"}


def launcher_request(env: dict[str, str], case: Case) -> tuple[dict[str, Any], dict[str, Any]]:
    """Our request for the case, and the same job described for the SDK driver."""
    tuning = {**json.loads(env["TUNING"]), **case.tuning}
    settings = LaunchSettings.from_environment(
        {
            **env,
            "INSTANCE_TYPE": case.instance_type,
            "INSTANCE_COUNT": str(case.instance_count),
            "USE_SPOT": str(case.use_spot).lower(),
            "TUNING": json.dumps(tuning),
        }
    )
    request = logic.parse_event(EVENT, "r-1")
    if case.kind == "tuning":
        assert settings.tuning is not None
        name = logic.tuning_job_name(settings.tuning.job_name_prefix, request)
        ours = logic.build_tuning_job_request(settings, name, request, CHANNELS)
    else:
        name = logic.job_name(settings.job_name_prefix, request)
        ours = logic.build_training_job_request(settings, name, request, CHANNELS)
    bucket = settings.bucket
    job: dict[str, Any] = {
        "name": case.name,
        "kind": case.kind,
        "region": settings.region,
        "bucket": bucket,
        "kms_key": settings.kms_key_arn,
        "job_name": name,
        "entry_point": logic.ENTRY_POINT,
        "source_dir": settings.source_dir,
        "image": settings.image_uri,
        "role": settings.role_arn,
        "instance_type": settings.instance_type,
        "instance_count": settings.instance_count,
        "volume_size": settings.volume_size_gb,
        "max_run": settings.max_runtime_seconds,
        "use_spot": settings.use_spot,
        "max_wait": settings.max_wait_seconds,
        "inputs": {c: f"s3://{bucket}/{settings.dataset_prefix}{c}/" for c in CHANNELS},
        "output_path": f"s3://{bucket}/{settings.models_prefix}",
        "checkpoint_s3_uri": f"s3://{bucket}/{settings.checkpoints_prefix}{name}/",
        "checkpoint_local_path": logic.CHECKPOINT_LOCAL_PATH,
        # TensorBoardOutputConfig(s3_output_path): the prefix alone, as SageMaker adds <job>/tensorboard-output/
        # (Estimator.latest_job_tensorboard_artifacts_path); no container_local_output_path, so LocalPath keeps
        # its documented default, where train.py writes (the service refuses one spelled under /opt/ml).
        "tensorboard_output_path": f"s3://{bucket}/{logic.TENSORBOARD_PREFIX}",
        # The dataset's name (for the model card) is one hyperparameter more, given to the SDK alike.
        "hyperparameters": {
            contract.DATASET_NAME_ARGUMENT: contract.dataset_name(settings.dataset_prefix),
            **settings.hyperparameters,
            **request.hyperparameters,
        },
        "metric_definitions": contract.metric_definitions(settings.metric_names),
        # Our choice: traffic between instances is encrypted when there are several.
        "encrypt_inter_container_traffic": settings.instance_count > 1,
        "tags": {**settings.tags, "trigger": request.trigger},
    }
    if case.kind == "tuning":
        assert settings.tuning is not None
        t = settings.tuning
        epochs = float(job["hyperparameters"].get("num_train_epochs", "1"))
        job["tuning"] = {
            "strategy": t.strategy,
            "objective_metric_name": t.objective,
            "objective_type": t.objective_type,
            "ranges": t.ranges,
            "max_jobs": t.max_jobs,
            "max_parallel_jobs": t.max_parallel_jobs,
            "early_stopping_type": t.early_stopping,
            # Hyperband's resource is the epoch (build_tuning_job_request)
            "hyperband": (
                {"min_resource": 1, "max_resource": max(1, math.ceil(epochs))}
                if t.strategy == "Hyperband"
                else None
            ),
        }
    return ours, job


def transform_request(case: Case) -> tuple[dict[str, Any], dict[str, Any]]:
    """batch.py's request for the case, and the same job described for the SDK driver."""
    bucket, prefix, name, model = "acoustic-data", "street/2026-05/", "batch-street-1", "acoustic-model"
    max_payload_mb = 100  # batch.py's default
    ours = batch.transform_request(
        job_name=name,
        model_name=model,
        bucket=bucket,
        prefix=prefix,
        instance_type=case.instance_type,
        instance_count=case.instance_count,
        max_payload_mb=max_payload_mb,
        kms_key=KMS_KEY,
    )
    job = {
        "name": case.name,
        "kind": "transform",
        "region": REGION,
        "bucket": bucket,
        "kms_key": KMS_KEY,
        "job_name": name,
        "instance_type": case.instance_type,
        "instance_count": case.instance_count,
        "transform": {
            "model_name": model,
            "input_path": f"s3://{bucket}/{batch.INPUT_PREFIX}{prefix}",
            "output_path": f"s3://{bucket}/{batch.OUTPUT_PREFIX}{prefix}",
            "content_type": batch.CONTENT_TYPE,
            "accept": contract.JSON_CONTENT_TYPE,
            # batch.py's choices: one file per request, one request at a time, one retry
            "strategy": "SingleRecord",
            "assemble_with": "Line",
            "split_type": "None",
            "compression_type": "None",
            "max_concurrent_transforms": 1,
            "max_payload": max_payload_mb,
            "model_client_config": {"InvocationsTimeoutInSeconds": 600, "InvocationsMaxRetries": 1},
        },
    }
    return ours, job


def flatten(value: Any, path: str = "") -> dict[str, Any]:
    """``{dotted path: leaf}``; tags by key, named entries (channels, metrics, ranges) by name."""
    if isinstance(value, dict):
        if not value:
            return {path: {}}
        found: dict[str, Any] = {}
        for key, item in value.items():
            found.update(flatten(item, f"{path}.{key}" if path else key))
        return found
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        if all(set(item) == {"Key", "Value"} for item in value):
            return {f"{path}.{item['Key']}": item["Value"] for item in value}
        for name in ("ChannelName", "Name", "RuleConfigurationName"):
            names = [item.get(name) for item in value]
            if None not in names and len(set(names)) == len(names):
                found = {}
                for item in value:
                    rest = {k: v for k, v in item.items() if k != name}
                    found.update(flatten(rest, f"{path}[{item[name]}]"))
                return found
        found = {}
        for index, item in enumerate(value):
            found.update(flatten(item, f"{path}[{index}]"))
        return found
    return {path: value}


@dataclass
class Comparison:
    """One case: the differences between our request and the SDK's, and the allow-list keys that explain them."""

    differences: dict[str, tuple[Any, Any]]  # path: (ours, SDK's)
    unexplained: list[str]
    used: set[str]


def compare(api: str, ours: dict[str, Any], sdk: dict[str, Any], supports_kms: bool) -> Comparison:
    mine = {f"{api}:{path}": value for path, value in flatten(ours).items()}
    theirs = {f"{api}:{path}": value for path, value in flatten(sdk).items()}
    used: set[str] = set()
    for key in (k for k in ALLOWED if RENAME in k):
        source, target = key.split(RENAME)
        for path in [p for p in theirs if p == source or p.startswith(source + ".")]:
            theirs[target + path[len(source) :]] = theirs.pop(path)
            used.add(key)
    differences = {
        path: (mine.get(path, ABSENT), theirs.get(path, ABSENT))
        for path in sorted(mine.keys() | theirs.keys())
        if mine.get(path, ABSENT) != theirs.get(path, ABSENT)
    }
    unexplained = []
    for path, (mine_value, sdk_value) in differences.items():
        keys = [path] + ([path + ONLY_WITHOUT_KMS] if not supports_kms else [])
        explained = [key for key in keys if key in ALLOWED]
        used.update(explained)
        if not explained:
            unexplained.append(f"{path}: ours {mine_value!r}, the SDK's {sdk_value!r}")
    return Comparison(differences, unexplained, used)


def sdk_python() -> Path:
    """The SDK's environment; fails (never skips) the test when it was not built."""
    if not SDK_PYTHON.exists():
        pytest.fail(f"{SDK_PYTHON.relative_to(ROOT)} is missing: run `make install` (or `make sdk-venv`)")
    return SDK_PYTHON


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Comparison]:
    """Every case of both matrices, built by us and by the SDK (one driver run), compared."""
    python = sdk_python()
    work = tmp_path_factory.mktemp("sdk-reference")
    environments = {variant: launcher_environment(work, variant) for variant in {**VARIANTS, **TASK_VARIANTS}}
    built = {case.name: launcher_request(environments[case.variant], case) for case in LAUNCHER_CASES}
    built |= {case.name: transform_request(case) for case in TRANSFORM_CASES}
    (work / "cases.json").write_text(json.dumps([job for _, job in built.values()]))
    run = subprocess.run(
        [str(python), str(DRIVER), str(work / "cases.json"), str(work / "sdk.json")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-5000:]
    answer = json.loads((work / "sdk.json").read_text())
    pinned = pins(SDK_REQUIREMENTS)["sagemaker"]
    assert answer["sagemaker_version"] == pinned, (
        f".venv-sdk has sagemaker {answer['sagemaker_version']}, {SDK_REQUIREMENTS.name} pins {pinned}: "
        "run `make install`"
    )
    return {
        name: compare(API_NAMES[sdk["api"]], built[name][0], sdk["request"], sdk["instance_supports_kms"])
        for name, sdk in answer["jobs"].items()
    }


@pytest.mark.parametrize("case", LAUNCHER_CASES, ids=lambda case: case.name)
def test_the_launchers_requests_are_the_sdks_field_by_field(
    case: Case, compared: dict[str, Comparison]
) -> None:
    """sagemaker.utils.instance_supports_kms (SageMaker Python SDK) and ResourceConfig (Amazon SageMaker API
    Reference): no VolumeKmsKeyId on instance types with local storage; every other field as the SDK sends it."""
    # Given the launcher's settings as synthesized for the case, and the SDK configured with the data key
    # When both build the job (the SDK's request recorded by sdk_driver.py)
    comparison = compared[case.name]
    # Then every field is the same, or its difference is explained in ALLOWED
    assert comparison.unexplained == [], "\n".join(comparison.unexplained)


@pytest.mark.parametrize("case", TRANSFORM_CASES, ids=lambda case: case.name)
def test_batch_transform_requests_are_the_sdks_field_by_field(
    case: Case, compared: dict[str, Comparison]
) -> None:
    """TransformResources (Amazon SageMaker API Reference): VolumeKmsKeyId, not on instance types with local
    storage; every field of tools/batch.py's CreateTransformJob as the SDK's Transformer sends it."""
    # Given batch.py's request for a serving instance type, with the data key
    # When the SDK's Transformer builds the same job, the key from its configuration
    comparison = compared[case.name]
    # Then every field is the same, or its difference is explained in ALLOWED
    assert comparison.unexplained == [], "\n".join(comparison.unexplained)


def test_every_allowed_difference_still_occurs(compared: dict[str, Comparison]) -> None:
    # Given the differences of every case
    # When the allow-list keys that explained them are gathered
    used = set().union(*(comparison.used for comparison in compared.values()))
    # Then none is stale: a difference that went away leaves the list with it
    assert sorted(set(ALLOWED) - used) == []
