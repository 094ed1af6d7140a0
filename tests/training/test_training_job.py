"""The launcher's real request, run by the real SageMaker training toolkit in the training image's libraries.

The launcher starts a job in the emulated account (moto) from a staged dataset, exactly as the Lambda does;
``tools.local_job`` reads the job back, lays out ``/opt/ml`` under a temporary folder and runs the toolkit's
``train`` entry point with ``sagemaker_pytorch_container.training:main`` in ``.venv-train`` (transformers
5.3.0, numpy 1.26.4, ...). The source dir is the ``sourcedir.tar.gz`` the synthesizer bundles.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws

import tasks
from common import contract
from common.lambda_contract import GateRule
from infra.assets import training_source_dir
from infra.bundling import write_tar_gz
from lambdas.launcher.orchestration import launch
from lambdas.launcher.settings import LaunchSettings
from lambdas.promoter import aws as promoter_aws
from lambdas.promoter import logic as promoter
from lambdas.promoter.settings import Thresholds
from standins.synthetic import make_audiofolder
from tests.inference.parity import pins
from tools import local_job

ROOT = Path(__file__).resolve().parents[2]
TRAIN_ENV = ROOT / ".venv-train"
IMAGE_REQUIREMENTS = Path(__file__).with_name("requirements-train-image.txt")
REGION = "eu-west-1"
BUCKET = "acoustic-data"
PREFIX = "acoustic-shield-dev-train-"
ACCOUNT = "123456789012"
# What the Training stack gives the launcher (infra/training/launcher.py), with deployed values.
LAUNCHER_ENV = {
    "JOB_NAME_PREFIX": PREFIX,
    "EXECUTION_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/training",
    "TRAINING_IMAGE": "763104351884.dkr.ecr.eu-west-1.amazonaws.com/huggingface-pytorch-training:2.9.0-"
    "transformers5.3.0-gpu-py312-cu130-ubuntu22.04",
    "SOURCE_DIR": "s3://cdk-assets/sourcedir.tar.gz",
    "DATA_BUCKET": BUCKET,
    "DATASET_PREFIX": "datasets/tones/",
    "MODELS_PREFIX": "models/",
    "CHECKPOINTS_PREFIX": "checkpoints/",
    "LAUNCH_LOCK_KEY": "locks/launcher.json",
    "KMS_KEY_ARN": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "INSTANCE_TYPE": "ml.g5.xlarge",
    "INSTANCE_COUNT": "1",
    "VOLUME_SIZE_GB": "50",
    "USE_SPOT": "true",
    "MAX_RUNTIME_SECONDS": "21600",
    "MAX_WAIT_SECONDS": "43200",
    "AWS_REGION": REGION,
    "HYPERPARAMETERS": json.dumps({"num_train_epochs": "10", "learning_rate": "3e-3"}),
    "TAGS": json.dumps({"project": "acoustic-shield"}),
}
# The offline model: a config-only folder inside the source dir (the job runs in the source dir).
EVENT = {
    "hyperparameters": {
        "model_name_or_path": "training/configs/tiny-wav2vec2",
        "max_length_seconds": 1,
        "per_device_train_batch_size": 8,
        "export_onnx": True,  # the ONNX export and int8 quantization, in the image's libraries too
    }
}


def _pip(*args: str) -> str:
    python = TRAIN_ENV / "bin" / "python"
    run = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One training job: staged in S3, started by the launcher, run by the toolkit."""
    if not (TRAIN_ENV / "bin" / "python").exists():
        pytest.fail(".venv-train is missing: run `make install` (or `make train-venv`)")
    root = tmp_path_factory.mktemp("training-job")
    source_dir = root / "sourcedir.tar.gz"
    write_tar_gz(training_source_dir(), source_dir)  # what the Training stack's asset bundling writes
    data = root / "dataset"
    make_audiofolder(data / "train", per_class=20, seed=1, labels=("low", "high", "noise"), broken=True)
    make_audiofolder(data / "test", per_class=5, seed=2, labels=("low", "high", "noise"))
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        sagemaker = boto3.client("sagemaker", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        for path in sorted(p for p in data.rglob("*") if p.is_file()):
            s3.upload_file(str(path), BUCKET, f"datasets/tones/{path.relative_to(data).as_posix()}")
        sent: list[dict[str, Any]] = []
        sagemaker.meta.events.register(
            "provide-client-params.sagemaker.CreateTrainingJob", lambda params, **_: sent.append(params)
        )
        started = launch(
            EVENT,
            LaunchSettings.from_environment(LAUNCHER_ENV),
            sagemaker=sagemaker,
            s3=s3,
            request_id="0f1e2d3c-manual",
        )
        # The request exactly as sent: moto's DescribeTrainingJob answers with made-up MetricDefinitions.
        (request,) = sent
        definition = local_job.JobDefinition.from_api(request)
        described = local_job.JobDefinition.from_api(
            sagemaker.describe_training_job(TrainingJobName=started["job"])
        )
        assert (described.hyperparameters, described.channels) == (
            definition.hyperparameters,
            definition.channels,
        )
        result = local_job.run_job(
            definition,
            work_dir=root / "work",
            env_dir=TRAIN_ENV,
            s3=s3,
            source_dir=str(source_dir),
            output_dir=root / "output",
            extra_env={"HF_HUB_OFFLINE": "1"},
        )
    return SimpleNamespace(started=started, definition=definition, result=result, root=root)


@pytest.mark.slow
def test_the_toolkit_runs_the_launchers_request_to_success(job) -> None:
    # Given the job the launcher started (the log level as the toolkit reads it, channels from S3)
    assert job.started["status"] == "started"
    assert set(job.started["channels"]) == {"train", "test"}
    # When the toolkit ran it
    base: Path = job.result.base_dir
    # Then it reported success, not failure
    assert (base / "output" / "success").exists()
    assert not (base / "output" / "failure").exists()


@pytest.mark.slow
def test_the_job_leaves_a_deployable_model_archive(job) -> None:
    # Given the job's model.tar.gz, where SageMaker would put it
    archive = Path(job.result.model_archive)
    assert archive.name == "model.tar.gz"
    assert archive.parent.name == "output"
    # When its members are listed
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    # Then it holds the weights, the feature extractor, the labels and the handler with its requirements
    for name in (
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        contract.LABELS_FILE,
        contract.ONNX_FILE,
        contract.ONNX_INT8_FILE,
    ):
        assert name in names
    for name in (*contract.SERVING_CODE, contract.HANDLER_FILE, "requirements.txt"):
        assert f"{contract.CODE_DIR}/{name}" in names
    assert not any(n.startswith(("/", "..")) for n in names)


def _output_file(job: Any, name: str) -> Any:
    """A JSON file of the job's output.tar.gz, where the promoter reads it."""
    with tarfile.open(job.result.output_archive) as tar:
        member = tar.extractfile(name)
        assert member is not None, name
        return json.loads(member.read())


@pytest.mark.slow
def test_the_launchers_metric_regexes_scrape_the_jobs_metrics(job) -> None:
    # Given the metric definitions the launcher sent and the log the toolkit streamed
    metrics = job.result.metrics
    # Then every test metric was scraped, as SageMaker would (the promoter reads these)
    assert {d[0] for d in job.definition.metric_definitions} == set(contract.JOB_METRIC_NAMES)
    for name in ("train_loss", "test_accuracy", "test_f1", "test_clip_accuracy"):
        assert name in metrics, f"{name} not scraped; got {sorted(metrics)}"
    # And each health rule the job evaluated was scraped: its flag, and its value where finite
    rules = _output_file(job, contract.EVALUATION_FILE)[contract.HEALTH_REPORT]["rules"]
    evaluated = {rule for rule, outcome in rules.items() if outcome["status"] != "not_evaluated"}
    assert {"overfit", "vanishing_gradient", "exploding_gradient", "nonfinite_loss"} <= evaluated
    for rule in contract.HEALTH_RULES:
        flag = metrics.get(contract.health_metric(rule))
        assert flag == ({"fired": 1.0, "silent": 0.0}.get(rules[rule]["status"])), (rule, rules[rule])
        if rule in evaluated and rules[rule]["value"] is not None:
            assert metrics[contract.health_value_metric(rule)] == pytest.approx(
                rules[rule]["value"], rel=1e-5
            )
    # And the model learned the separable task (chance is 1/3)
    assert metrics["test_accuracy"] >= 0.6


@pytest.mark.slow
def test_the_jobs_metrics_reach_the_promoters_gate_as_train_py_wrote_them(job) -> None:
    # Given the final values SageMaker reports for the job (its log scraped with the launcher's regexes:
    # DescribeTrainingJob's FinalMetricDataList) and the job's output.tar.gz, read from S3 by the promoter
    final = [{"MetricName": name, "Value": value} for name, value in job.result.metrics.items()]
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        key = f"models/{job.result.name}/output/output.tar.gz"
        s3.upload_file(job.result.output_archive, BUCKET, key)
        archive = promoter_aws.read_output_archive(s3, f"s3://{BUCKET}/{key}")

    # When the promoter reads both, as it does for a finished job
    scraped = promoter.metrics_from_final_metric_data(final)
    metrics = promoter.merge_metrics(scraped, archive.metrics)

    # Then the log and metrics.json agree on every quality metric of the contract, and on the health metrics
    # the job wrote (to the 6 printed significant digits)
    assert not archive.problems
    health = set(contract.HEALTH_METRIC_NAMES)
    written = _output_file(job, contract.METRICS_FILE)
    assert scraped.keys() - health == archive.metrics.keys() - health == set(contract.METRIC_NAMES)
    assert scraped.keys() & health == written.keys() & health != set()
    assert archive.metrics.keys() & health <= scraped.keys() & health
    for name, value in scraped.items():
        assert value == pytest.approx(written[name], rel=1e-5, abs=1e-12), name
        assert name not in archive.metrics or archive.metrics[name] == written[name], name
    # And the gate decides on the test split: minimums just below the values approve, one above rejects
    task = tasks.load(None)
    values = {name: metrics[f"test_{name}"] for name in task.gated}
    floor = Thresholds(
        gate_rules=tuple(GateRule(name, True, max(0.0, v - 0.01)) for name, v in values.items()),
        max_regression=0.0,
    )
    approved = promoter.decide(metrics, thresholds=floor, approved=[], manual_approval=False)
    assert (approved.status, approved.split, approved.gated) == (promoter.APPROVED, "test", values)
    raised = [
        GateRule(r.metric, True, values["f1"] + 0.01) if r.metric == "f1" else r for r in floor.gate_rules
    ]
    above = dataclasses.replace(floor, gate_rules=tuple(raised))
    rejected = promoter.decide(metrics, thresholds=above, approved=[], manual_approval=False)
    assert rejected.status == promoter.REJECTED
    assert [reason.split()[0] for reason in rejected.reasons] == ["test_f1"]


# Reads the scalar tags of a folder of TensorBoard event files, with the image's tensorboard.
READ_SCALARS = """
import json, sys
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
runs = EventMultiplexer().AddRunsFromDirectory(sys.argv[1]).Reload()
print(json.dumps(sorted({tag for run in runs.Runs().values() for tag in run["scalars"]})))
"""


@pytest.mark.slow
def test_the_jobs_tensorboard_curves_are_uploaded_and_drawn(job) -> None:
    """TensorBoardOutputConfig (Amazon SageMaker API Reference): LocalPath "Defaults to
    /opt/ml/output/tensorboard"; SageMaker uploads it under <S3OutputPath>/<job>/tensorboard-output/."""
    # Given the launcher's TensorBoardOutputConfig, and where the runner put the job's event files
    assert job.definition.tensorboard == local_job.TensorBoardOutput(
        f"s3://{BUCKET}/tensorboard/", "/opt/ml/output/tensorboard"
    )
    uploaded = job.root / "output" / job.result.name / local_job.TENSORBOARD_OUTPUT
    assert job.result.tensorboard_uri == str(uploaded)
    # When the image's tensorboard reads them
    read = subprocess.run(
        [str(TRAIN_ENV / "bin" / "python"), "-c", READ_SCALARS, str(uploaded)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert read.returncode == 0, read.stderr[-3000:]
    tags = set(json.loads(read.stdout))
    # Then they hold the training loss and every evaluation's loss and objective
    assert {"train/loss", "eval/loss", "eval/f1", "train/learning_rate"} <= tags, tags
    # And the job's report has the picture of them beside evaluation.json
    with tarfile.open(job.result.output_archive) as tar:
        names = set(tar.getnames())
    assert {contract.EVALUATION_FILE, "training_curves.png"} <= names


@pytest.mark.slow
def test_the_jobs_requirements_leave_the_images_pins_alone() -> None:
    # Given the environment after training/requirements.txt was installed on top of the image's libraries
    # When pip checks it and resolves the image's pins again
    check = _pip("check")
    report = _pip("install", "--dry-run", "--no-deps", "-r", str(IMAGE_REQUIREMENTS))
    # Then nothing is broken, nothing would be reinstalled, and numpy is the image's 1.26.4
    assert "No broken requirements" in check
    assert "Would install" not in report, report
    versions = {
        line.split("==")[0].lower(): line.split("==")[1]
        for line in _pip("freeze").splitlines()
        if "==" in line
    }
    assert versions["numpy"] == "1.26.4"
    assert versions["transformers"] == "5.3.0"


@pytest.mark.parametrize(
    "path",
    [ROOT / runtime / "requirements.txt" for runtime in ("training", "serving", "staging")],
    ids=lambda p: p.parent.name,
)
def test_every_requirement_we_ship_is_an_exact_pin(path: Path) -> None:
    # Given a requirements file that a job, an endpoint or a build installs at run time
    # When it is read / Then every line is name==version (pins() fails on anything else)
    assert pins(path)
