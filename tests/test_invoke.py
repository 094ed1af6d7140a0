"""The invoke CLI, against a stubbed sagemaker-runtime client and a local container-contract server."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from ml_code import invoke

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
