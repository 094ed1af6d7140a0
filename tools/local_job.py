"""Run a SageMaker training job's definition on this machine, with the real SageMaker training toolkit.

``python -m tools.local_job JOB.json`` (a ``CreateTrainingJob`` request or a ``DescribeTrainingJob``
answer) or ``python -m tools.local_job --describe JOB_NAME`` (read back from SageMaker, or from the
emulator ``AWS_ENDPOINT_URL`` points at) lays out the container's ``/opt/ml`` under a work folder, the
way the SageMaker platform does before it starts the image:

- ``input/config/hyperparameters.json`` (the request's hyperparameters, byte for byte),
  ``inputdataconfig.json``, ``resourceconfig.json``;
- ``input/data/<channel>/`` with every object under the channel's S3 prefix (or a local folder given
  with ``--channel NAME=PATH``);

then runs the toolkit's own ``train`` entry point with the image's training module
(``sagemaker_pytorch_container.training:main``) in a Python environment that has the image's libraries
(``.venv-train``, built by ``make install``). The toolkit downloads ``sagemaker_submit_directory``,
installs its ``requirements.txt`` and runs ``sagemaker_program`` exactly as in the image. Afterwards the
runner packs ``model/`` as ``model.tar.gz`` and ``output/data/`` as ``output.tar.gz`` and writes them
where SageMaker would (``<S3OutputPath>/<job>/output/``), or to ``--output-dir``.

TensorBoard: the job's ``TensorBoardOutputConfig.LocalPath`` (default ``/opt/ml/output/tensorboard``) is laid
out under the work folder too, and the job is told where through ``TENSORBOARD_LOGGING_DIR`` (train.py reads
it; in SageMaker it writes to the documented default path itself). The event files stay there, where
``tensorboard --logdir`` reads them, and are copied where SageMaker uploads them while a job runs,
``<TensorBoardOutputConfig.S3OutputPath>/<job>/tensorboard-output/`` (or ``--output-dir``), whether the job
succeeded or failed.

What differs from SageMaker: no container (the environment's Python runs the job), one host, CPU only,
and checkpoints are not synced with the job's ``CheckpointConfig`` (a local run does not resume).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from common import contract
from common.cli import CommandError, Parser, run_command, tracebacks_wanted
from tools import aws_errors

# The image's ENV (the PyTorch training images set it; the Hugging Face ones inherit it).
TRAINING_MODULE = "sagemaker_pytorch_container.training:main"
HOST = "algo-1"
# TensorBoardOutputConfig.LocalPath's default ("Defaults to /opt/ml/output/tensorboard", Amazon SageMaker API
# Reference; the launcher leaves it to the default), and what SageMaker adds under S3OutputPath for each job
# (the SageMaker Python SDK's Estimator.latest_job_tensorboard_artifacts_path:
# <S3OutputPath>/<job>/tensorboard-output).
TENSORBOARD_LOCAL_PATH = "/opt/ml/output/tensorboard"
TENSORBOARD_OUTPUT = "tensorboard-output"
TENSORBOARD_VARIABLE = "TENSORBOARD_LOGGING_DIR"  # train.py's (and transformers 5's) TensorBoard folder
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ENV = REPO_ROOT / ".venv-train"
# What --describe usually lacks: a region, or the emulator's endpoint (the rehearsal's).
REGION_HINT = "set AWS_REGION, or AWS_ENDPOINT_URL for a local emulator"


class JobDefinitionError(ValueError):
    """The job definition cannot be run locally; the message says why."""


class JobFailed(RuntimeError):
    """The training toolkit reported a failure (its message is in ``output/failure``)."""


@dataclass(frozen=True)
class Channel:
    name: str
    s3_uri: str
    mode: str
    distribution: str


@dataclass(frozen=True)
class TensorBoardOutput:
    """A job's ``TensorBoardOutputConfig``."""

    s3_output_path: str
    local_path: str = TENSORBOARD_LOCAL_PATH

    @classmethod
    def from_api(cls, config: Mapping[str, Any]) -> TensorBoardOutput:
        try:
            s3_output_path = config["S3OutputPath"]
        except KeyError:
            raise JobDefinitionError("TensorBoardOutputConfig has no 'S3OutputPath'") from None
        split_s3(s3_output_path)
        local_path = config.get("LocalPath") or TENSORBOARD_LOCAL_PATH
        container_path(Path("."), local_path)  # refuses a path that cannot be laid out
        return cls(s3_output_path, local_path)


@dataclass(frozen=True)
class JobDefinition:
    """The parts of a training job that the container sees."""

    name: str
    hyperparameters: dict[str, str]
    channels: tuple[Channel, ...]
    output_path: str
    instance_type: str
    metric_definitions: tuple[tuple[str, str], ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    tensorboard: TensorBoardOutput | None = None  # None: the job uploads no TensorBoard event files

    @classmethod
    def from_api(cls, job: Mapping[str, Any]) -> JobDefinition:
        """From a CreateTrainingJob request or a DescribeTrainingJob answer (the same field names)."""
        try:
            name = job["TrainingJobName"]
            algorithm = job["AlgorithmSpecification"]
            hyperparameters = dict(job.get("HyperParameters", {}))
            output_path = job["OutputDataConfig"]["S3OutputPath"]
            instance_type = job["ResourceConfig"]["InstanceType"]
        except KeyError as err:
            raise JobDefinitionError(f"the job definition has no {err.args[0]!r}") from None
        if algorithm.get("TrainingInputMode", "File") != "File":
            raise JobDefinitionError("only File input mode runs locally")
        for required in ("sagemaker_program", "sagemaker_submit_directory"):
            if required not in hyperparameters:
                raise JobDefinitionError(f"hyperparameter {required} is missing: not a framework job")
        channels = []
        for spec in job.get("InputDataConfig", []):
            source = spec.get("DataSource", {}).get("S3DataSource")
            if source is None or source.get("S3DataType", "S3Prefix") != "S3Prefix":
                raise JobDefinitionError(f"channel {spec.get('ChannelName')!r}: only S3Prefix sources run")
            channels.append(
                Channel(
                    name=spec["ChannelName"],
                    s3_uri=source["S3Uri"],
                    mode=spec.get("InputMode", "File"),
                    distribution=source.get("S3DataDistributionType", "FullyReplicated"),
                )
            )
        metrics = tuple((m["Name"], m["Regex"]) for m in algorithm.get("MetricDefinitions", []))
        tensorboard = job.get("TensorBoardOutputConfig")
        return cls(
            name=name,
            hyperparameters={k: str(v) for k, v in hyperparameters.items()},
            channels=tuple(channels),
            output_path=output_path,
            instance_type=instance_type,
            metric_definitions=metrics,
            environment=dict(job.get("Environment", {})),
            tensorboard=TensorBoardOutput.from_api(tensorboard) if tensorboard else None,
        )


@dataclass(frozen=True)
class JobResult:
    """Where the job left its results, and the final value of every metric its regexes matched."""

    name: str
    base_dir: Path
    model_archive: str
    output_archive: str
    metrics: dict[str, float]
    seconds: float
    tensorboard_dir: Path | None = None  # the job's event files, for tensorboard --logdir
    tensorboard_uri: str | None = None  # where they were copied as SageMaker uploads them; None: nowhere


def split_s3(uri: str) -> tuple[str, str]:
    match = re.fullmatch(r"s3://([^/]+)/?(.*)", uri)
    if not match:
        raise JobDefinitionError(f"{uri!r} is not an s3:// URL")
    return match.group(1), match.group(2)


def container_path(root: Path, path: str) -> Path:
    """Where an absolute path of the container is laid out under ``root``, the job's stand-in for ``/`` (its
    ``/opt/ml`` is ``root/opt/ml``)."""
    container = PurePosixPath(path)
    if not container.is_absolute() or ".." in container.parts:
        raise JobDefinitionError(f"{path!r} is not an absolute path of the container: it cannot be laid out")
    return root.joinpath(*container.relative_to("/").parts)


def _inside(root: Path, relative: str) -> Path:
    """``root/relative``, refusing keys that would leave ``root`` (``..``, absolute)."""
    parts = PurePosixPath(relative).parts
    if not parts or relative.startswith("/") or any(p in ("..", "") for p in parts):
        raise JobDefinitionError(f"object key part {relative!r} would leave {root}")
    return root.joinpath(*parts)


def download_prefix(s3: Any, uri: str, target: Path) -> int:
    """Every object under the S3 prefix into ``target``, keys relative to the prefix; returns the count."""
    bucket, prefix = split_s3(uri)
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            if key.endswith("/"):
                continue
            path = _inside(target, key[len(prefix) :].lstrip("/"))
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(path))
            count += 1
    return count


def lay_out(definition: JobDefinition, base: Path, hyperparameters: Mapping[str, str]) -> None:
    """The container's configuration files, as the platform writes them before the image starts."""
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    for sub in ("model", "output/data", "code", "checkpoints"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(dict(hyperparameters)))
    (config / "inputdataconfig.json").write_text(
        json.dumps(
            {
                c.name: {
                    "TrainingInputMode": c.mode,
                    "S3DistributionType": c.distribution,
                    "RecordWrapperType": "None",
                }
                for c in definition.channels
            }
        )
    )
    (config / "resourceconfig.json").write_text(
        json.dumps(
            {
                "current_host": HOST,
                "current_instance_type": definition.instance_type,
                "current_group_name": "homogeneousCluster",
                "hosts": [HOST],
                "instance_groups": [
                    {
                        "instance_group_name": "homogeneousCluster",
                        "instance_type": definition.instance_type,
                        "hosts": [HOST],
                    }
                ],
                "network_interface_name": "lo",
            }
        )
    )


def pack(folder: Path, archive: Path) -> Path:
    """``folder``'s contents as a .tar.gz, entries relative to it (SageMaker's model.tar.gz layout)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return archive


def toolkit_python(env_dir: Path) -> Path:
    """The Python of a parity environment, with the toolkit's ``train`` entry point installed."""
    python = env_dir / "bin" / "python"
    if not python.exists():
        raise JobDefinitionError(
            f"{env_dir} has no Python: build the training image's environment with `make install` "
            "(or point --env at one with sagemaker-training and sagemaker-pytorch-training)"
        )
    return python


def _stream(
    process: subprocess.Popen[str], metrics: Sequence[tuple[str, re.Pattern[str]]]
) -> dict[str, float]:
    """Echoes the job's log and keeps the last value of every metric, as SageMaker scrapes them."""
    found: dict[str, float] = {}
    assert process.stdout is not None
    for line in process.stdout:
        sys.stdout.write(line)
        for name, pattern in metrics:
            match = pattern.search(line)
            if match:
                with contextlib.suppress(IndexError, ValueError):
                    found[name] = float(match.group(1))
    return found


def run_job(
    definition: JobDefinition,
    *,
    work_dir: Path,
    env_dir: Path = DEFAULT_ENV,
    s3: Any = None,
    channels: Mapping[str, Path] | None = None,
    source_dir: str | None = None,
    output_dir: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> JobResult:
    """Runs ``definition`` with the training toolkit in ``env_dir``; raises JobFailed if it fails."""
    python = toolkit_python(env_dir)
    base = work_dir / definition.name / "opt" / "ml"
    if base.exists():
        shutil.rmtree(base)
    hyperparameters = dict(definition.hyperparameters)
    if source_dir is not None:
        hyperparameters["sagemaker_submit_directory"] = json.dumps(str(source_dir))
    lay_out(definition, base, hyperparameters)

    local = dict(channels or {})
    for channel in definition.channels:
        target = base / "input" / "data" / channel.name
        if channel.name in local:
            shutil.copytree(local[channel.name], target)
            print(f"[local_job] channel {channel.name}: {local[channel.name]}", flush=True)
        else:
            if s3 is None:
                raise JobDefinitionError(f"channel {channel.name} is in S3 and no S3 client was given")
            count = download_prefix(s3, channel.s3_uri, target)
            print(f"[local_job] channel {channel.name}: {count} objects from {channel.s3_uri}", flush=True)

    tensorboard_path = definition.tensorboard.local_path if definition.tensorboard else TENSORBOARD_LOCAL_PATH
    tensorboard_dir = container_path(work_dir / definition.name, tensorboard_path)
    if tensorboard_dir.exists():  # a LocalPath outside /opt/ml: an earlier run's files are not this one's
        shutil.rmtree(tensorboard_dir)
    tensorboard_dir.mkdir(parents=True)
    env = {
        **os.environ,
        # The container's TensorBoard folder as laid out here (train.py uses the path itself in SageMaker).
        TENSORBOARD_VARIABLE: str(tensorboard_dir),
        **definition.environment,
        **(extra_env or {}),
        "SAGEMAKER_BASE_DIR": str(base),
        "SAGEMAKER_TRAINING_MODULE": TRAINING_MODULE,
        "TRAINING_JOB_NAME": definition.name,
        # The toolkit's own local mode: skips waiting for the cluster's DNS names (algo-1 resolves
        # only inside SageMaker's network); everything else runs as in the image.
        "SM_STUDIO_LOCAL_MODE": "true",
        "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    # Let the toolkit's own S3 download of the source dir reach the same endpoint as everything else.
    if "AWS_ENDPOINT_URL" in env:
        env.setdefault("S3_ENDPOINT_URL", env["AWS_ENDPOINT_URL"])
    env.pop("PYTHONPATH", None)  # the job imports what its environment and source dir have, nothing more
    patterns = [(name, re.compile(regex)) for name, regex in definition.metric_definitions]
    print(f"[local_job] {definition.name}: running {TRAINING_MODULE} in {env_dir}", flush=True)
    started = time.monotonic()
    with subprocess.Popen(
        [str(python), "-c", "from sagemaker_training.cli.train import main; main()"],
        cwd=base,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        metrics = _stream(process, patterns)
        code = process.wait()
    seconds = time.monotonic() - started
    failure = base / "output" / "failure"
    if code != 0 or failure.exists():
        # SageMaker uploads the event files while the job runs: a failed job's are there too.
        with contextlib.suppress(JobDefinitionError):
            store_tensorboard(definition, tensorboard_dir, s3=s3, output_dir=output_dir)
        reason = failure.read_text()[-4000:] if failure.exists() else f"exit code {code}"
        raise JobFailed(f"training job {definition.name} failed: {reason}")

    staging = work_dir / definition.name / "archives"
    model_archive = pack(base / "model", staging / contract.MODEL_ARCHIVE)
    output_archive = pack(base / "output" / "data", staging / contract.OUTPUT_ARCHIVE)
    destinations = _store(definition, [model_archive, output_archive], s3=s3, output_dir=output_dir)
    tensorboard_uri = store_tensorboard(definition, tensorboard_dir, s3=s3, output_dir=output_dir)
    (base / "output" / contract.METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True))
    print(f"[local_job] {definition.name}: completed in {seconds:.0f} s; model {destinations[0]}", flush=True)
    return JobResult(
        definition.name,
        base,
        destinations[0],
        destinations[1],
        metrics,
        seconds,
        tensorboard_dir=tensorboard_dir,
        tensorboard_uri=tensorboard_uri,
    )


def store_tensorboard(
    definition: JobDefinition, tensorboard_dir: Path, *, s3: Any, output_dir: Path | None
) -> str | None:
    """The job's TensorBoard event files where SageMaker uploads them,
    ``<S3OutputPath>/<job>/tensorboard-output/`` (or ``<output_dir>/<job>/tensorboard-output/``); returns
    that location, None when the job has no TensorBoardOutputConfig (SageMaker uploads nothing then) or
    wrote no file. The files also stay in ``tensorboard_dir``."""
    files = sorted(p for p in tensorboard_dir.rglob("*") if p.is_file()) if tensorboard_dir.is_dir() else []
    where = f"tensorboard --logdir {tensorboard_dir}"
    if definition.tensorboard is None or not files:
        reason = "no TensorBoardOutputConfig" if definition.tensorboard is None else "no event files"
        print(f"[local_job] {definition.name}: TensorBoard: {where} ({reason}: nothing uploaded)", flush=True)
        return None
    if output_dir is not None:
        target = output_dir / definition.name / TENSORBOARD_OUTPUT
        shutil.copytree(tensorboard_dir, target, dirs_exist_ok=True)
        stored = str(target)
    else:
        if s3 is None:
            raise JobDefinitionError(
                "give --output-dir, or an S3 client to store the TensorBoard files in S3"
            )
        bucket, prefix = split_s3(definition.tensorboard.s3_output_path)
        root = "/".join(p for p in (prefix.strip("/"), definition.name, TENSORBOARD_OUTPUT) if p)
        for path in files:
            s3.upload_file(str(path), bucket, f"{root}/{path.relative_to(tensorboard_dir).as_posix()}")
        stored = f"s3://{bucket}/{root}/"
    print(
        f"[local_job] {definition.name}: TensorBoard: {where}; {len(files)} file(s) in {stored}", flush=True
    )
    return stored


def _store(definition: JobDefinition, archives: list[Path], *, s3: Any, output_dir: Path | None) -> list[str]:
    if output_dir is not None:
        target = output_dir / definition.name / "output"
        target.mkdir(parents=True, exist_ok=True)
        return [str(shutil.copy2(a, target / a.name)) for a in archives]
    if s3 is None:
        raise JobDefinitionError("give --output-dir, or an S3 client to store the results in S3OutputPath")
    bucket, prefix = split_s3(definition.output_path)
    stored = []
    for archive in archives:
        key = "/".join(p for p in (prefix.strip("/"), definition.name, "output", archive.name) if p)
        s3.upload_file(str(archive), bucket, key)
        stored.append(f"s3://{bucket}/{key}")
    return stored


def _channel_args(values: Sequence[str]) -> dict[str, Path]:
    result = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not Path(path).is_dir():
            raise JobDefinitionError(f"--channel {value!r}: use NAME=FOLDER with an existing folder")
        result[name] = Path(path)
    return result


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The arguments; a missing job file or source dir is the parser's one-line error (status 2)."""
    parser = Parser(prog="python -m tools.local_job", description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "job", nargs="?", help="a CreateTrainingJob request or DescribeTrainingJob answer (JSON)"
    )
    source.add_argument("--describe", metavar="JOB_NAME", help="read the job's definition from SageMaker")
    parser.add_argument(
        "--work-dir", type=Path, default=Path("build/local-jobs"), help="where /opt/ml is laid out"
    )
    parser.add_argument("--env", type=Path, default=DEFAULT_ENV, help="the training image's environment")
    parser.add_argument("--channel", action="append", default=[], help="NAME=FOLDER: a local channel")
    parser.add_argument("--source-dir", help="a local sourcedir.tar.gz (or folder) instead of the job's")
    parser.add_argument("--output-dir", type=Path, help="write model.tar.gz here instead of S3OutputPath")
    args = parser.parse_args(argv)
    if args.job and not Path(args.job).is_file():
        parser.error(f"no such file: {args.job}")
    if args.source_dir and not args.source_dir.startswith("s3://") and not Path(args.source_dir).exists():
        parser.error(f"--source-dir {args.source_dir}: no such file or directory")
    return args


def _read_job(path: str) -> Any:
    """The JSON job definition in ``path``."""
    try:
        return json.loads(Path(path).read_text())
    except ValueError as err:  # not JSON, or not text
        raise JobDefinitionError(f"{path} is not a JSON job definition: {err}") from err


def _client(service: str) -> Any:
    import boto3  # only the runner needs it; the job runs with its own environment's packages

    return boto3.client(service)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the job: a definition that cannot run here is one line and status 2, a failed job or AWS
    error one line and status 1."""
    args = parse_args(argv)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        if args.describe:
            job = _client("sagemaker").describe_training_job(TrainingJobName=args.describe)
        else:
            job = _read_job(args.job)
        definition = JobDefinition.from_api(job)
        local = _channel_args(args.channel)
        needs_s3 = args.output_dir is None or any(c.name not in local for c in definition.channels)
        result = run_job(
            definition,
            work_dir=args.work_dir,
            env_dir=args.env,
            s3=_client("s3") if needs_s3 else None,
            channels=local,
            source_dir=args.source_dir,
            output_dir=args.output_dir,
        )
    except JobDefinitionError as err:
        raise CommandError(str(err)) from err
    except (JobFailed, OSError) as err:
        if tracebacks_wanted():
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as err:  # e.g. no region configured, no such job
        if tracebacks_wanted():
            raise
        print(f"error: {aws_errors.aws_error(err)} ({REGION_HINT})", file=sys.stderr)
        return 1
    print(
        json.dumps({"job": result.name, "model": result.model_archive, "metrics": result.metrics}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
