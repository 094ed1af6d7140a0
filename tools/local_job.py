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

# The image's ENV (the PyTorch training images set it; the Hugging Face ones inherit it).
TRAINING_MODULE = "sagemaker_pytorch_container.training:main"
HOST = "algo-1"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ENV = REPO_ROOT / ".venv-train"


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
class JobDefinition:
    """The parts of a training job that the container sees."""

    name: str
    hyperparameters: dict[str, str]
    channels: tuple[Channel, ...]
    output_path: str
    instance_type: str
    metric_definitions: tuple[tuple[str, str], ...] = ()
    environment: dict[str, str] = field(default_factory=dict)

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
        return cls(
            name=name,
            hyperparameters={k: str(v) for k, v in hyperparameters.items()},
            channels=tuple(channels),
            output_path=output_path,
            instance_type=instance_type,
            metric_definitions=metrics,
            environment=dict(job.get("Environment", {})),
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


def split_s3(uri: str) -> tuple[str, str]:
    match = re.fullmatch(r"s3://([^/]+)/?(.*)", uri)
    if not match:
        raise JobDefinitionError(f"{uri!r} is not an s3:// URL")
    return match.group(1), match.group(2)


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

    env = {
        **os.environ,
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
        reason = failure.read_text()[-4000:] if failure.exists() else f"exit code {code}"
        raise JobFailed(f"training job {definition.name} failed: {reason}")

    staging = work_dir / definition.name / "archives"
    model_archive = pack(base / "model", staging / contract.MODEL_ARCHIVE)
    output_archive = pack(base / "output" / "data", staging / contract.OUTPUT_ARCHIVE)
    destinations = _store(definition, [model_archive, output_archive], s3=s3, output_dir=output_dir)
    (base / "output" / contract.METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True))
    print(f"[local_job] {definition.name}: completed in {seconds:.0f} s; model {destinations[0]}", flush=True)
    return JobResult(definition.name, base, destinations[0], destinations[1], metrics, seconds)


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
    parser = argparse.ArgumentParser(prog="python -m tools.local_job", description=__doc__.split("\n")[0])
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
    return parser.parse_args(argv)


def _client(service: str) -> Any:
    import boto3  # only the runner needs it; the job runs with its own environment's packages

    return boto3.client(service)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.describe:
            job = _client("sagemaker").describe_training_job(TrainingJobName=args.describe)
        else:
            job = json.loads(Path(args.job).read_text())
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
    except (JobDefinitionError, JobFailed, OSError) as err:
        print(f"local_job: {err}", file=sys.stderr)
        return 1
    print(
        json.dumps({"job": result.name, "model": result.model_archive, "metrics": result.metrics}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
