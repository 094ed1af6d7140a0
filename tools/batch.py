"""Classify every audio file under a prefix with a SageMaker batch transform job, as JSON lines.

    python -m tools.batch start --model MODEL --bucket BUCKET --prefix street-2026-05/ --wait
    python -m tools.batch results --bucket BUCKET --prefix street-2026-05/

``start`` runs the deployed model (the Serving stack's ``ModelName`` output: the same model, image and handler
as the endpoint) over every object under ``s3://BUCKET/batch-input/PREFIX``, one request per file, sent as
``application/octet-stream`` (the handler reads the format from the bytes). Each file's answer lands in
``s3://BUCKET/batch-output/PREFIX<file>.out`` as one JSON line. ``results`` prints ``{"file": ..., "response":
...}`` per file, as ``tools.invoke`` does. The model's role may read and write those prefixes only when the
Serving stack is deployed with ``batch_inference=true``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from common import contract
from common.cli import Parser, run_command
from tools import aws_errors as cli

INPUT_PREFIX = contract.BATCH_INPUT_PREFIX  # the data bucket's prefix for batch requests: <prefix>/<files>
OUTPUT_PREFIX = contract.BATCH_OUTPUT_PREFIX  # answers: <prefix>/<file>.out
OUTPUT_SUFFIX = ".out"  # what batch transform appends to each input's name
CONTENT_TYPE = contract.SNIFFED_CONTENT_TYPE  # any audio file; the handler sniffs the format
FINISHED = ("Completed", "Failed", "Stopped")
POLL_SECONDS = 30.0
_JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


class BatchError(Exception):
    """A request that cannot work, or a job that did not complete; the message says what to do."""


def normalize_prefix(prefix: str) -> str:
    """``street/2026-05`` → ``street/2026-05/``; refuses empty, absolute and ``..`` prefixes."""
    cleaned = prefix.strip().strip("/")
    parts = cleaned.split("/")
    if not cleaned or any(part in ("", ".", "..") for part in parts):
        raise BatchError(
            f"prefix {prefix!r} is not a folder name under {INPUT_PREFIX}: give one such as 'street/2026-05/' "
            "(no empty, '.' or '..' segments)"
        )
    return cleaned + "/"


def default_job_name(prefix: str, now: datetime) -> str:
    """``batch-<prefix>-<UTC time>``, within SageMaker's 63 characters."""
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", prefix).strip("-")
    stamp = now.strftime("%Y%m%d-%H%M%S")
    return f"batch-{slug[: 63 - len('batch--') - len(stamp)].strip('-')}-{stamp}"


def transform_request(
    *,
    job_name: str,
    model_name: str,
    bucket: str,
    prefix: str,
    instance_type: str,
    instance_count: int,
    max_payload_mb: int,
    kms_key: str | None = None,
) -> dict[str, Any]:
    """The CreateTransformJob request: one file per request, one JSON line per answer; ``kms_key``
    encrypts the answers and, where the instance type has EBS volumes, the volumes."""
    if not _JOB_NAME.fullmatch(job_name):
        raise BatchError(f"job name {job_name!r} is invalid: 1-63 letters, digits and '-'")
    output: dict[str, Any] = {
        "S3OutputPath": f"s3://{bucket}/{OUTPUT_PREFIX}{prefix}",
        "Accept": contract.JSON_CONTENT_TYPE,
        "AssembleWith": "Line",
    }
    if kms_key:
        output["KmsKeyId"] = kms_key
    return {
        "TransformJobName": job_name,
        "ModelName": model_name,
        # One request at a time per instance: the model server runs inference_workers (default 1) workers, and
        # SageMaker allows MaxConcurrentTransforms x MaxPayloadInMB of at most 100 MB.
        "MaxConcurrentTransforms": 1,
        "MaxPayloadInMB": max_payload_mb,
        "BatchStrategy": "SingleRecord",
        "ModelClientConfig": {"InvocationsTimeoutInSeconds": 600, "InvocationsMaxRetries": 1},
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/{INPUT_PREFIX}{prefix}"}
            },
            "ContentType": CONTENT_TYPE,
            "SplitType": "None",
            "CompressionType": "None",
        },
        "TransformOutput": output,
        # The data key encrypts the instances' EBS volumes too; NVMe instance storage takes none.
        "TransformResources": {
            "InstanceType": instance_type,
            "InstanceCount": instance_count,
            **(contract.volume_key(instance_type, kms_key) if kms_key else {}),
        },
    }


def wait(
    sagemaker: Any, job_name: str, *, sleep: Callable[[float], None] = time.sleep, poll: float = POLL_SECONDS
) -> dict[str, Any]:
    """DescribeTransformJob until the job finishes; raises BatchError unless it completed."""
    while True:
        job: dict[str, Any] = sagemaker.describe_transform_job(TransformJobName=job_name)
        if job["TransformJobStatus"] in FINISHED:
            break
        sleep(poll)
    if job["TransformJobStatus"] != "Completed":
        raise BatchError(
            f"transform job {job_name} is {job['TransformJobStatus']}: {job.get('FailureReason', 'no reason given')}. "
            f"Logs: CloudWatch log group /aws/sagemaker/TransformJobs, streams {job_name}/..."
        )
    return job


def results(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """Every answer under ``batch-output/<prefix>``: ``{"file": <input key>, "response": ...}``, by key."""
    root = f"{OUTPUT_PREFIX}{prefix}"
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=root):
        for item in page.get("Contents", []):
            key = item["Key"]
            if not key.endswith(OUTPUT_SUFFIX):
                continue
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
            source = f"{INPUT_PREFIX}{prefix}{key[len(root) : -len(OUTPUT_SUFFIX)]}"
            for line in body.splitlines():
                if not line.strip():
                    continue
                try:
                    found.append({"file": source, "response": json.loads(line)})
                except ValueError:
                    raise BatchError(
                        f"s3://{bucket}/{key} holds a line that is not JSON: {line[:200]!r}"
                    ) from None
    return sorted(found, key=lambda entry: str(entry["file"]))


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m tools.batch", description="Batch inference over s3://BUCKET/batch-input/PREFIX."
    )
    parser.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="start a batch transform job (CreateTransformJob)")
    start.add_argument(
        "--model", required=True, help="SageMaker model name (the Serving stack's ModelName output)"
    )
    start.add_argument(
        "--bucket", required=True, help="the data bucket (the Data stack's DataBucketName output)"
    )
    start.add_argument("--prefix", required=True, help="folder under batch-input/ holding the audio files")
    start.add_argument("--job-name", help="default: batch-<prefix>-<UTC time>")
    start.add_argument("--instance-type", default="ml.m5.xlarge", help="default ml.m5.xlarge")
    start.add_argument("--instance-count", type=int, default=1, help="default 1")
    start.add_argument(
        "--max-payload-mb", type=int, default=100, help="largest file, MB (1-100; default 100)"
    )
    start.add_argument("--kms-key", help="KMS key for the answers (the Data stack's KeyArn output)")
    start.add_argument("--wait", action="store_true", help="wait for the job, then print its answers")
    shown = commands.add_parser("results", help="print the answers of a finished job as JSON lines")
    shown.add_argument("--bucket", required=True, help="the data bucket")
    shown.add_argument("--prefix", required=True, help="the folder the job read under batch-input/")
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    sagemaker: Any = None,
    s3: Any = None,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Runs the CLI; ``sagemaker`` and ``s3`` replace the boto3 clients (tests)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        prefix = normalize_prefix(args.prefix)
        if args.command == "start" and not 1 <= args.max_payload_mb <= 100:
            raise BatchError(f"--max-payload-mb {args.max_payload_mb} is outside 1-100 (SageMaker's limit)")
    except BatchError as error:
        parser.error(str(error))

    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        sagemaker = sagemaker or boto3.client("sagemaker", region_name=args.region)
        s3 = s3 or boto3.client("s3", region_name=args.region)
        if args.command == "start":
            job_name = args.job_name or default_job_name(prefix, now())
            request = transform_request(
                job_name=job_name,
                model_name=args.model,
                bucket=args.bucket,
                prefix=prefix,
                instance_type=args.instance_type,
                instance_count=args.instance_count,
                max_payload_mb=args.max_payload_mb,
                kms_key=args.kms_key,
            )
            sagemaker.create_transform_job(**request)
            print(
                f"started transform job {job_name}: s3://{args.bucket}/{INPUT_PREFIX}{prefix} → "
                f"s3://{args.bucket}/{OUTPUT_PREFIX}{prefix}",
                file=sys.stderr,
            )
            if not args.wait:
                return 0
            wait(sagemaker, job_name, sleep=sleep)
        for entry in results(s3, args.bucket, prefix):
            print(json.dumps(entry), flush=True)
    except BatchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ClientError as error:
        print(f"error: {cli.aws_error(error)}", file=sys.stderr)
        return 1
    except BotoCoreError as error:
        print(f"error: {cli.aws_error(error)} ({cli.REGION_HINT})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
