"""Send audio files to the classifier and print one JSON line per file, or verify a deployment.

    python -m tools.invoke --endpoint acoustic-shield-dev dog.wav siren.flac
    python -m tools.invoke --url http://127.0.0.1:8080 --segments long-recording.wav
    python -m tools.invoke --verify --endpoint acoustic-shield-dev-m5-xlarge --expect-package ARN

``--endpoint`` calls a SageMaker endpoint (``sagemaker-runtime`` InvokeEndpoint); ``--url`` calls any server
speaking the SageMaker container contract (``POST /invocations``), such as the local serving container.
Each file prints ``{"file": ..., "response": {...}}``; errors go to stderr and the exit status is non-zero.

``--verify`` checks that the endpoint is InService, serves the expected endpoint config and model package, and
answers a smoke clip (the FILEs, or a generated tone) with a well-formed prediction of one of the model's labels
(``tools/verify.py``). It prints one JSON line describing what the endpoint serves, or says what differs and
exits 1. The deploy build runs it after every ``cdk deploy``.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import contract
from common.cli import Parser, run_command
from tools import aws_errors as cli
from tools import verify as verification


class InvokeError(Exception):
    """A failed call. ``fatal`` errors (no such endpoint, no connection) stop the run; others skip a file."""

    def __init__(self, message: str, *, fatal: bool) -> None:
        super().__init__(message)
        self.fatal = fatal


def content_type_for(path: Path) -> str:
    """The request content type, from the file extension."""
    return contract.SUFFIX_CONTENT_TYPES.get(path.suffix.lower(), contract.SNIFFED_CONTENT_TYPE)


def _error_detail(body: bytes | str) -> str:
    """The ``message`` of a JSON error body (as the serving containers send), else the body itself."""
    text = body.decode(errors="replace") if isinstance(body, bytes) else body
    try:
        parsed = json.loads(text)
    except ValueError:
        return text.strip()[:1000]
    if isinstance(parsed, dict):
        for key in ("message", "error", "Message"):
            if isinstance(parsed.get(key), str):
                return str(parsed[key])
    return text.strip()[:1000]


def _parse_response(body: bytes, source: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise InvokeError(
            f"{source} returned a response that is not JSON: {body[:200]!r}", fatal=False
        ) from None


def invoke_endpoint(runtime: Any, endpoint: str, body: bytes, content_type: str, segments: bool) -> Any:
    """One InvokeEndpoint call; the endpoint's own message on failure."""
    from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

    request: dict[str, Any] = {
        "EndpointName": endpoint,
        "Body": body,
        "ContentType": content_type,
        "Accept": contract.JSON_CONTENT_TYPE,
    }
    if segments:
        request["CustomAttributes"] = contract.SEGMENTS_ATTRIBUTE
    try:
        response = runtime.invoke_endpoint(**request)
    except ClientError as error:
        details = error.response.get("Error", {})
        code = details.get("Code", "Error")
        if code == "ModelError":
            # The container answered with an error for this payload: report it, go on with the next file.
            status = error.response.get("OriginalStatusCode", "?")
            message = _error_detail(error.response.get("OriginalMessage") or details.get("Message", ""))
            raise InvokeError(
                f"endpoint {endpoint!r}: the model answered {status}: {message}", fatal=False
            ) from None
        raise InvokeError(f"endpoint {endpoint!r}: {cli.aws_error(error)}", fatal=True) from None
    except ReadTimeoutError as error:  # this file took too long; the next one may not
        raise InvokeError(f"endpoint {endpoint!r}: {error}", fatal=False) from None
    except BotoCoreError as error:
        raise InvokeError(f"endpoint {endpoint!r}: {error}", fatal=True) from None
    return _parse_response(response["Body"].read(), f"endpoint {endpoint!r}")


def invoke_url(url: str, body: bytes, content_type: str, segments: bool, timeout: float) -> Any:
    """One ``POST /invocations`` to a server speaking the SageMaker container contract."""
    target = url if url.rstrip("/").endswith("/invocations") else url.rstrip("/") + "/invocations"
    headers = {"Content-Type": content_type, "Accept": contract.JSON_CONTENT_TYPE}
    if segments:
        headers[contract.CUSTOM_ATTRIBUTES_HEADER] = contract.SEGMENTS_ATTRIBUTE
    request = urllib.request.Request(target, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload: bytes = response.read()
    except urllib.error.HTTPError as error:
        message = _error_detail(error.read())
        raise InvokeError(f"{target}: the server answered {error.code}: {message}", fatal=False) from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, TimeoutError):  # this file took too long; the next one may not
            raise InvokeError(f"{target}: no answer within {timeout:g} s", fatal=False) from None
        raise InvokeError(f"cannot reach {target}: {reason}", fatal=True) from None
    return _parse_response(payload, target)


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m tools.invoke",
        description="Classify audio files with a SageMaker endpoint or a local serving container.",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--endpoint", help="SageMaker endpoint name")
    target.add_argument(
        "--url", help="base URL of a server speaking the container contract, e.g. http://127.0.0.1:8080"
    )
    parser.add_argument(
        "files", nargs="*", type=Path, metavar="FILE", help="audio files to classify (--verify: smoke clips)"
    )
    parser.add_argument(
        "--content-type",
        help="send every file with this content type (default: from the extension: "
        + ", ".join(f"{ext}={ctype}" for ext, ctype in contract.SUFFIX_CONTENT_TYPES.items())
        + f", else {contract.SNIFFED_CONTENT_TYPE})",
    )
    parser.add_argument("--segments", action="store_true", help="also return per-window predictions")
    parser.add_argument("--region", help="AWS region of the endpoint (default: the AWS configuration's)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for --url (default 60)")
    check = parser.add_argument_group("deployment verification (--verify, with --endpoint)")
    check.add_argument(
        "--verify", action="store_true", help="check the endpoint serves the expected model and answers"
    )
    check.add_argument("--expect-package", metavar="ARN", help="the model package the endpoint must serve")
    check.add_argument(
        "--expect-config",
        metavar="NAME",
        help="the endpoint config it must serve (the EndpointConfigName output)",
    )
    check.add_argument(
        "--labels",
        metavar="A,B,...",
        help="the model's labels (default: the package's evaluation report, else the labels the answer lists)",
    )
    check.add_argument(
        "--wait",
        type=float,
        default=600.0,
        help="seconds to wait for an Updating or Creating endpoint to be InService (default 600)",
    )
    return parser


VERIFY_ONLY = ("expect_package", "expect_config", "labels")


def _verify(args: argparse.Namespace, runtime: Any, sagemaker: Any, s3: Any) -> int:
    """``--verify``: runs tools/verify.py's checks and prints what the endpoint serves."""
    from botocore.exceptions import BotoCoreError, ClientError

    clips = [(str(p), p.read_bytes(), args.content_type or content_type_for(p)) for p in args.files]
    expected = verification.Expectation(
        endpoint=args.endpoint,
        endpoint_config=args.expect_config,
        package_arn=args.expect_package,
        labels=tuple(label.strip() for label in args.labels.split(",")) if args.labels else None,
    )

    def send(body: bytes, content_type: str) -> Any:
        return invoke_endpoint(runtime, args.endpoint, body, content_type, segments=False)

    try:
        report = verification.verify(
            sagemaker=sagemaker, invoke=send, s3=s3, expected=expected, clips=clips, timeout=args.wait
        )
    except (verification.VerificationError, InvokeError) as error:
        print(f"error: verification failed: {error}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError) as error:
        print(f"error: verification failed: {cli.aws_error(error)}", file=sys.stderr)
        return 1
    print(json.dumps(report.as_dict()), flush=True)
    return 0


def main(
    argv: Sequence[str] | None = None, *, runtime: Any = None, sagemaker: Any = None, s3: Any = None
) -> int:
    """Runs the CLI; ``runtime``, ``sagemaker`` and ``s3`` replace the boto3 clients (tests)."""
    parser = _parser()
    args = parser.parse_args(argv)
    _check_arguments(parser, args)
    if args.endpoint and (runtime is None or (args.verify and (sagemaker is None or s3 is None))):
        from botocore.exceptions import BotoCoreError

        try:
            runtime, sagemaker, s3 = _clients(args, runtime, sagemaker, s3)
        except BotoCoreError as error:  # e.g. no region configured
            print(f"error: {error} ({cli.REGION_HINT})", file=sys.stderr)
            return 1
    if args.verify:
        return _verify(args, runtime, sagemaker, s3)
    return _classify(args, runtime)


def _check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exits with the parser's usage error when the options don't go together or a file is missing."""
    if args.url and args.region:
        parser.error("--region applies to --endpoint only")
    if args.verify and not args.endpoint:
        parser.error("--verify checks a SageMaker endpoint: give --endpoint NAME")
    if not args.verify:
        given = [f"--{name.replace('_', '-')}" for name in VERIFY_ONLY if getattr(args, name)]
        if given:
            parser.error(f"{', '.join(given)} apply to --verify only")
        if not args.files:
            parser.error("give at least one FILE to classify")

    missing = [str(path) for path in args.files if not path.is_file()]
    if missing:
        parser.error("no such file: " + ", ".join(missing))


def _clients(args: argparse.Namespace, runtime: Any, sagemaker: Any, s3: Any) -> tuple[Any, Any, Any]:
    """The boto3 clients that were not given (the verification's only with --verify)."""
    import boto3

    runtime = runtime or boto3.client("sagemaker-runtime", region_name=args.region)
    if args.verify:
        sagemaker = sagemaker or boto3.client("sagemaker", region_name=args.region)
        s3 = s3 or boto3.client("s3", region_name=args.region)
    return runtime, sagemaker, s3


def _classify(args: argparse.Namespace, runtime: Any) -> int:
    """Sends each file, printing one JSON line per answer; 1 when any failed, at once on a fatal error."""
    failures = 0
    for path in args.files:
        body = path.read_bytes()
        content_type = args.content_type or content_type_for(path)
        try:
            if args.endpoint:
                response = invoke_endpoint(runtime, args.endpoint, body, content_type, args.segments)
            else:
                response = invoke_url(args.url, body, content_type, args.segments, args.timeout)
        except InvokeError as error:
            print(f"error: {path}: {error}", file=sys.stderr)
            if error.fatal:
                return 1
            failures += 1
            continue
        print(json.dumps({"file": str(path), "response": response}), flush=True)
    return 1 if failures else 0


def run(argv: Sequence[str] | None = None) -> int:
    """``main`` with Ctrl-C as one line and exit status 130, not a traceback."""
    try:
        return run_command(main, argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(run())
