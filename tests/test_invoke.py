"""The invoke CLI, against a stubbed sagemaker-runtime client and a local container-contract server; its
--verify against moto (endpoints, configs, models, packages, reports) and a stubbed InvokeEndpoint."""

from __future__ import annotations

import io
import json
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws

from tools import invoke
from tools import verify as verification

ENDPOINT = "acoustic-shield-dev"
PREDICTION = {"label": "dog_bark", "confidence": 0.93, "probs": {"dog_bark": 0.93, "siren": 0.07}}


@pytest.fixture
def audio(tmp_path: Path) -> dict[str, Path]:
    files = {}
    for name in ("dog.wav", "siren.FLAC", "rain.ogg", "street.mp3", "clip.raw"):
        path = tmp_path / name
        path.write_bytes(b"RIFF" + name.encode())
        files[name] = path
    return files


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Stubber]]:
    """A real sagemaker-runtime client whose calls are validated by botocore and answered by a Stubber."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("sagemaker-runtime", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def ok(payload: Any) -> dict[str, Any]:
    data = json.dumps(payload).encode()
    return {"Body": StreamingBody(io.BytesIO(data), len(data)), "ContentType": "application/json"}


def output_lines(capsys: pytest.CaptureFixture[str]) -> tuple[list[Any], str]:
    captured = capsys.readouterr()
    return [json.loads(line) for line in captured.out.splitlines()], captured.err


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("dog.wav", "audio/wav"),
        ("siren.FLAC", "audio/flac"),
        ("rain.ogg", "audio/ogg"),
        ("street.mp3", "audio/mpeg"),
        ("clip.raw", "application/octet-stream"),
    ],
)
def test_content_type_follows_the_extension(
    name: str,
    content_type: str,
    audio: dict[str, Path],
    runtime: tuple[Any, Stubber],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given an endpoint that expects the file with the type of its extension
    client, stubber = runtime
    expected = {
        "EndpointName": ENDPOINT,
        "Body": audio[name].read_bytes(),
        "ContentType": content_type,
        "Accept": "application/json",
    }
    stubber.add_response("invoke_endpoint", ok(PREDICTION), expected)

    # When the CLI sends it
    code = invoke.main(["--endpoint", ENDPOINT, str(audio[name])], runtime=client)

    # Then it prints the file and the endpoint's answer
    lines, _ = output_lines(capsys)
    assert code == 0
    assert lines == [{"file": str(audio[name]), "response": PREDICTION}]


def test_segments_and_content_type_override_reach_the_endpoint(
    audio: dict[str, Path], runtime: tuple[Any, Stubber], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given two files, an explicit content type and a request for segments
    client, stubber = runtime
    for name in ("dog.wav", "clip.raw"):
        expected = {
            "EndpointName": ENDPOINT,
            "Body": audio[name].read_bytes(),
            "ContentType": "audio/x-wav",
            "Accept": "application/json",
            "CustomAttributes": "segments=true",
        }
        stubber.add_response("invoke_endpoint", ok({**PREDICTION, "segments": []}), expected)

    # When the CLI sends them
    argv = ["--endpoint", ENDPOINT, "--segments", "--content-type", "audio/x-wav"]
    code = invoke.main([*argv, str(audio["dog.wav"]), str(audio["clip.raw"])], runtime=client)

    # Then there is one line per file, in order
    lines, _ = output_lines(capsys)
    assert code == 0
    assert [line["file"] for line in lines] == [str(audio["dog.wav"]), str(audio["clip.raw"])]


def test_model_errors_show_the_models_message_and_fail_the_run(
    audio: dict[str, Path], runtime: tuple[Any, Stubber], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an endpoint whose model rejects the first file and classifies the second
    client, stubber = runtime
    stubber.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        service_message="Received client error (400) from primary with message ...",
        http_status_code=424,
        modeled_fields={
            "OriginalStatusCode": 400,
            "OriginalMessage": json.dumps({"code": 400, "message": "could not decode audio: not a WAV file"}),
        },
    )
    stubber.add_response("invoke_endpoint", ok(PREDICTION))

    # When the CLI sends both
    code = invoke.main(
        ["--endpoint", ENDPOINT, str(audio["clip.raw"]), str(audio["dog.wav"])], runtime=client
    )

    # Then the error names the file and the model's own message, the other file still prints, and it fails
    lines, err = output_lines(capsys)
    assert code == 1
    assert (
        f"{audio['clip.raw']}: endpoint '{ENDPOINT}': the model answered 400: could not decode audio" in err
    )
    assert lines == [{"file": str(audio["dog.wav"]), "response": PREDICTION}]


def test_a_missing_endpoint_stops_the_run(
    audio: dict[str, Path], runtime: tuple[Any, Stubber], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an endpoint that does not exist
    client, stubber = runtime
    stubber.add_client_error(
        "invoke_endpoint",
        service_error_code="ValidationError",
        service_message=f"Endpoint {ENDPOINT} of account 123456789012 not found.",
        http_status_code=400,
    )

    # When the CLI is asked to send two files
    code = invoke.main(
        ["--endpoint", ENDPOINT, str(audio["dog.wav"]), str(audio["rain.ogg"])], runtime=client
    )

    # Then it stops after the first call with the service's message
    lines, err = output_lines(capsys)
    assert code == 1
    assert lines == []
    assert f"ValidationError: Endpoint {ENDPOINT} of account 123456789012 not found." in err


def test_missing_files_are_reported_before_any_call(
    audio: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given one file that exists and one that does not
    missing = tmp_path / "nope.wav"

    # When the CLI is run (no client: nothing may be called)
    with pytest.raises(SystemExit) as exited:
        invoke.main(["--endpoint", ENDPOINT, str(audio["dog.wav"]), str(missing)], runtime=object())

    # Then it exits non-zero naming the missing file
    assert exited.value.code == 2
    assert f"no such file: {missing}" in capsys.readouterr().err


def test_endpoint_or_url_is_required(audio: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    # Given neither --endpoint nor --url
    # When / Then the usage error says what is needed
    with pytest.raises(SystemExit):
        invoke.main([str(audio["dog.wav"])])
    assert "one of the arguments --endpoint --url is required" in capsys.readouterr().err


# --- --url: a local server speaking the container contract ---------------------------------------------


@dataclass
class ContainerServer:
    """A stand-in for the serving container: records requests, answers with a set status and body."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    reply: bytes = json.dumps(PREDICTION).encode()
    delays: dict[bytes, float] = field(default_factory=dict)  # body -> seconds to wait before answering


@pytest.fixture
def container() -> Iterator[ContainerServer]:
    state = ContainerServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            # self.headers looks names up case-insensitively, as HTTP does.
            state.requests.append(
                {"path": self.path, "headers": self.headers, "body": self.rfile.read(length)}
            )
            time.sleep(state.delays.get(state.requests[-1]["body"], 0.0))
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(state.reply)))
            self.end_headers()
            self.wfile.write(state.reply)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def test_url_posts_to_invocations_with_the_container_headers(
    container: ContainerServer, audio: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a local server speaking the container contract
    # When the CLI sends a FLAC file with segments
    code = invoke.main(["--url", container.url, "--segments", str(audio["siren.FLAC"])])

    # Then the request follows the contract and the answer is printed
    lines, _ = output_lines(capsys)
    assert code == 0
    assert lines == [{"file": str(audio["siren.FLAC"]), "response": PREDICTION}]
    (request,) = container.requests
    assert request["path"] == "/invocations"
    assert request["headers"]["Content-Type"] == "audio/flac"
    assert request["headers"]["X-Amzn-SageMaker-Custom-Attributes"] == "segments=true"
    assert request["body"] == audio["siren.FLAC"].read_bytes()


def test_url_errors_show_the_servers_message(
    container: ContainerServer, audio: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a server that rejects the payload with a JSON error
    container.status = 415
    container.reply = json.dumps({"message": "unsupported content type 'application/octet-stream'"}).encode()

    # When the CLI sends a file
    code = invoke.main(["--url", container.url + "/", str(audio["clip.raw"])])

    # Then the server's status and message are shown and the run fails
    _, err = output_lines(capsys)
    assert code == 1
    assert "the server answered 415: unsupported content type 'application/octet-stream'" in err


def test_url_that_cannot_be_reached_fails_clearly(
    audio: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a port nothing listens on
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as probe:
        port = probe.server_address[1]

    # When the CLI sends a file there
    code = invoke.main(["--url", f"http://127.0.0.1:{port}", "--timeout", "5", str(audio["dog.wav"])])

    # Then it says it cannot reach the server
    assert code == 1
    assert f"cannot reach http://127.0.0.1:{port}/invocations" in capsys.readouterr().err


def test_non_json_answers_are_errors(
    container: ContainerServer, audio: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a server that answers with something other than JSON
    container.reply = b"<html>oops</html>"

    # When the CLI sends a file
    code = invoke.main(["--url", container.url, str(audio["dog.wav"])])

    # Then it fails, quoting the start of the answer
    assert code == 1
    assert "is not JSON: b'<html>oops</html>'" in capsys.readouterr().err


def test_a_file_that_times_out_does_not_stop_the_others(
    container: ContainerServer, audio: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a server that takes too long for the first file only
    slow, fast = audio["dog.wav"], audio["siren.FLAC"]
    container.delays[slow.read_bytes()] = 3.0

    # When the CLI sends both with a 1 s timeout
    code = invoke.main(["--url", container.url, "--timeout", "1", str(slow), str(fast)])

    # Then the second file is still classified, the timeout is reported, and the run fails at the end
    lines, err = output_lines(capsys)
    assert lines == [{"file": str(fast), "response": PREDICTION}]
    assert f"error: {slow}: " in err and "no answer within 1 s" in err
    assert code == 1


def test_ctrl_c_prints_one_line_and_no_traceback(
    monkeypatch: pytest.MonkeyPatch, audio: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a run interrupted while it waits for an answer
    def interrupted(*_: Any, **__: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(invoke, "invoke_url", interrupted)

    # When Ctrl-C arrives
    code = invoke.run(["--url", "http://127.0.0.1:9", str(audio["dog.wav"])])

    # Then one line says so and the exit status is the shell's for SIGINT
    assert code == 130
    assert capsys.readouterr().err == "interrupted\n"


# --- --verify: what a deployment meant to serve, against moto -----------------------------------------

SERVED = "acoustic-shield-dev-m5-xlarge"
GROUP = "acoustic-shield-dev"
DATA = "acoustic-data"
LABELS = ["dog_bark", "siren"]


@dataclass
class Deployment:
    """Two registered packages (v1 and v2), a model and an endpoint config for each, in moto."""

    sagemaker: Any
    s3: Any
    packages: list[str]
    configs: list[str]

    def endpoint_on(self, index: int, name: str = SERVED) -> str:
        self.sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=self.configs[index])
        return name


@pytest.fixture
def deployment() -> Iterator[Deployment]:
    with mock_aws():
        sagemaker = boto3.client("sagemaker", region_name="us-east-1")
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=DATA)
        sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
        packages, configs = [], []
        for version in (1, 2):
            report = f"evaluation/job-{version}/evaluation.json"
            s3.put_object(
                Bucket=DATA, Key=report, Body=json.dumps({"labels": LABELS, "metrics": {}}).encode()
            )
            package = sagemaker.create_model_package(
                ModelPackageGroupName=GROUP,
                ModelMetrics={
                    "ModelQuality": {
                        "Statistics": {"ContentType": "application/json", "S3Uri": f"s3://{DATA}/{report}"}
                    }
                },
            )["ModelPackageArn"]
            sagemaker.create_model(
                ModelName=f"ModelRevision{version}",
                ExecutionRoleArn="arn:aws:iam::123456789012:role/model",
                Containers=[{"ModelPackageName": package}],
            )
            sagemaker.create_endpoint_config(
                EndpointConfigName=f"EndpointConfig{version}",
                ProductionVariants=[
                    {
                        "VariantName": "AllTraffic",
                        "ModelName": f"ModelRevision{version}",
                        "InitialInstanceCount": 1,
                        "InstanceType": "ml.m5.xlarge",
                    }
                ],
            )
            packages.append(package)
            configs.append(f"EndpointConfig{version}")
        yield Deployment(sagemaker, s3, packages, configs)


def verify_argv(deployment: Deployment, *, config: int | None = 1, package: int | None = 1) -> list[str]:
    argv = ["--verify", "--endpoint", SERVED]
    if config is not None:
        argv += ["--expect-config", deployment.configs[config]]
    if package is not None:
        argv += ["--expect-package", deployment.packages[package]]
    return argv


def run_verify(
    argv: list[str], deployment: Deployment, runtime: tuple[Any, Stubber], capsys: pytest.CaptureFixture[str]
) -> tuple[int, list[Any], str]:
    client, _ = runtime
    code = invoke.main(argv, runtime=client, sagemaker=deployment.sagemaker, s3=deployment.s3)
    lines, err = output_lines(capsys)
    return code, lines, err


def test_verify_passes_when_the_endpoint_serves_the_deployed_config_and_package(
    deployment: Deployment, runtime: tuple[Any, Stubber], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the endpoint on the new config (package v2), and a model that answers the smoke clip
    deployment.endpoint_on(1)
    _, stubber = runtime
    answer = {"label": "siren", "confidence": 0.8, "probs": {"dog_bark": 0.2, "siren": 0.8}}
    expected = {
        "EndpointName": SERVED,
        "Body": verification.smoke_clip(),
        "ContentType": "audio/wav",
        "Accept": "application/json",
    }
    stubber.add_response("invoke_endpoint", ok(answer), expected)

    # When the deployment is verified
    code, lines, err = run_verify(verify_argv(deployment), deployment, runtime, capsys)

    # Then it passes and says what the endpoint serves, with the labels from the package's report
    assert (code, err) == (0, "")
    (report,) = lines
    assert report["verified"] is True
    assert report["status"] == "InService"
    assert report["endpoint_config"] == "EndpointConfig2"
    assert report["models"] == ["ModelRevision2"]
    assert report["model_packages"] == [deployment.packages[1]]
    assert report["labels"] == LABELS
    assert report["labels_from"] == f"s3://{DATA}/evaluation/job-2/evaluation.json"
    assert report["predictions"] == [{"clip": verification.SMOKE_CLIP_NAME, "response": answer}]


def test_an_endpoint_left_on_the_previous_config_fails_verification(
    deployment: Deployment, runtime: tuple[Any, Stubber], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given CloudFormation created config 2 for package v2, but SageMaker kept the endpoint on config 1 (v1)
    deployment.endpoint_on(0)

    # When the deployment is verified (nothing is invoked: the stubber has no response to give)
    code, lines, err = run_verify(verify_argv(deployment), deployment, runtime, capsys)

    # Then it fails, naming the config served and the one expected, and the package served and expected
    assert code == 1 and lines == []
    assert err.startswith("error: verification failed: ")
    assert (
        f"endpoint '{SERVED}' serves endpoint config 'EndpointConfig1', not 'EndpointConfig2' that the "
        "deployment created: SageMaker kept or rolled back to the previous configuration" in err
    )
    assert (
        f"endpoint '{SERVED}' serves {deployment.packages[0]} (model ModelRevision1 of endpoint config "
        f"'EndpointConfig1'), not the expected model package {deployment.packages[1]}" in err
    )


def test_the_package_check_alone_catches_another_model(
    deployment: Deployment, runtime: tuple[Any, Stubber], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an endpoint serving v1, checked only for package v2 (as a person would, without --expect-config)
    deployment.endpoint_on(0)
    code, _, err = run_verify(verify_argv(deployment, config=None), deployment, runtime, capsys)
    assert code == 1
    assert f"not the expected model package {deployment.packages[1]}" in err
    assert "endpoint config" in err and "EndpointConfig2" not in err


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (
            {"label": "cat", "confidence": 1.0, "probs": {"cat": 1.0}},
            "label 'cat' is not one of the model's labels (dog_bark, siren)",
        ),
        ({"label": "siren"}, "'probs' is None, not an object of label probabilities"),
        (
            {"label": "siren", "confidence": 0.4, "probs": {"dog_bark": 0.6, "siren": 0.4}},
            "'label' 'siren' is not the most probable label",
        ),
        (
            {"label": "siren", "confidence": 0.9, "probs": {"dog_bark": 0.5, "siren": 0.9}},
            "'probs' sum to 1.4000, not 1",
        ),
        (["siren"], "the answer is list, not a JSON object"),
    ],
)
def test_a_wrong_answer_to_the_smoke_clip_fails_verification(
    answer: Any,
    problem: str,
    deployment: Deployment,
    runtime: tuple[Any, Stubber],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the right endpoint config and package, but an answer of the wrong shape or label
    deployment.endpoint_on(1)
    runtime[1].add_response("invoke_endpoint", ok(answer))
    # When the deployment is verified / Then it fails, quoting the answer and saying what is wrong
    code, _, err = run_verify(verify_argv(deployment), deployment, runtime, capsys)
    assert code == 1
    assert f"endpoint '{SERVED}' answered {verification.SMOKE_CLIP_NAME} with " in err
    assert problem in err


def test_a_model_error_on_the_smoke_clip_fails_verification(
    deployment: Deployment, runtime: tuple[Any, Stubber], capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.endpoint_on(1)
    runtime[1].add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        service_message="Received server error (500) from primary",
        http_status_code=424,
        modeled_fields={"OriginalStatusCode": 500, "OriginalMessage": '{"message": "model failed to load"}'},
    )
    code, _, err = run_verify(verify_argv(deployment), deployment, runtime, capsys)
    assert code == 1
    assert "verification failed: endpoint" in err and "the model answered 500: model failed to load" in err


def test_given_clips_and_labels_replace_the_tone_and_the_report(
    deployment: Deployment,
    runtime: tuple[Any, Stubber],
    audio: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a clip of one's own and the labels on the command line
    deployment.endpoint_on(1)
    answer = {"label": "rain", "confidence": 1.0, "probs": {"rain": 1.0}}
    runtime[1].add_response(
        "invoke_endpoint",
        ok(answer),
        {
            "EndpointName": SERVED,
            "Body": audio["siren.FLAC"].read_bytes(),
            "ContentType": "audio/flac",
            "Accept": "application/json",
        },
    )
    argv = [*verify_argv(deployment), "--labels", "rain", str(audio["siren.FLAC"])]
    code, lines, _ = run_verify(argv, deployment, runtime, capsys)
    assert code == 0
    assert lines[0]["labels"] == ["rain"] and lines[0]["labels_from"] == "--labels"
    assert lines[0]["predictions"] == [{"clip": str(audio["siren.FLAC"]), "response": answer}]


def test_without_a_report_the_label_is_checked_against_the_answer(
    deployment: Deployment, runtime: tuple[Any, Stubber], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the package's evaluation report is gone
    deployment.s3.delete_object(Bucket=DATA, Key="evaluation/job-2/evaluation.json")
    deployment.endpoint_on(1)
    runtime[1].add_response("invoke_endpoint", ok(PREDICTION))
    # When verified / Then it passes, with a note that says why the labels came from the answer
    code, lines, _ = run_verify(verify_argv(deployment), deployment, runtime, capsys)
    assert code == 0
    assert lines[0]["labels"] == []
    assert (
        "cannot read the evaluation report s3://acoustic-data/evaluation/job-2/evaluation.json"
        in (lines[0]["notes"][0])
    )


def test_an_async_endpoint_is_verified_without_a_smoke_prediction(
    deployment: Deployment, runtime: tuple[Any, Stubber], capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.sagemaker.create_endpoint_config(
        EndpointConfigName="EndpointConfigAsync",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "ModelRevision2",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.xlarge",
            }
        ],
        AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": f"s3://{DATA}/async-output"}},
    )
    deployment.sagemaker.create_endpoint(EndpointName=SERVED, EndpointConfigName="EndpointConfigAsync")
    code, lines, _ = run_verify(verify_argv(deployment, config=None), deployment, runtime, capsys)
    assert code == 0
    assert lines[0]["predictions"] == [] and "async endpoint" in lines[0]["notes"][0]


def test_a_missing_endpoint_fails_verification_with_the_services_message(
    deployment: Deployment, runtime: tuple[Any, Stubber], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_verify(verify_argv(deployment), deployment, runtime, capsys)
    assert code == 1
    assert "verification failed: ValidationException: Could not find endpoint" in err


class Statuses:
    """A sagemaker client whose endpoint goes through the given statuses."""

    def __init__(self, *statuses: str) -> None:
        self.statuses = list(statuses)

    def describe_endpoint(self, EndpointName: str) -> dict[str, Any]:
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return {"EndpointStatus": status, "EndpointConfigName": "c", "FailureReason": "image pull failed"}


def test_an_updating_endpoint_is_waited_for() -> None:
    slept: list[float] = []
    described = verification.wait_in_service(
        Statuses("Updating", "Updating", "InService"), SERVED, timeout=600, sleep=slept.append
    )
    assert described["EndpointStatus"] == "InService"
    assert slept == [verification.POLL_SECONDS, verification.POLL_SECONDS]


@pytest.mark.parametrize(
    ("statuses", "message"),
    [
        (("Failed",), f"endpoint '{SERVED}' is Failed, not InService: image pull failed."),
        (
            ("Updating",),
            f"endpoint '{SERVED}' is Updating, not InService after waiting 0 s: image pull failed.",
        ),
    ],
)
def test_an_endpoint_that_is_not_in_service_fails(statuses: tuple[str, ...], message: str) -> None:
    with pytest.raises(verification.VerificationError) as failed:
        verification.wait_in_service(Statuses(*statuses), SERVED, timeout=0, sleep=lambda _: None)
    assert str(failed.value).startswith(message)
    assert f"/aws/sagemaker/Endpoints/{SERVED}" in str(failed.value)


def test_the_smoke_clip_is_a_one_second_16_khz_mono_wav() -> None:
    with wave.open(io.BytesIO(verification.smoke_clip())) as clip:
        assert (clip.getnchannels(), clip.getsampwidth(), clip.getframerate()) == (1, 2, 16000)
        assert clip.getnframes() == 16000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--verify", "--url", "http://127.0.0.1:9"],
            "--verify checks a SageMaker endpoint: give --endpoint",
        ),
        (["--endpoint", SERVED, "--expect-package", "arn"], "--expect-package apply to --verify only"),
        (["--endpoint", SERVED], "give at least one FILE to classify"),
    ],
)
def test_verify_options_are_checked(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        invoke.main(argv, runtime=object())
    assert message in capsys.readouterr().err
