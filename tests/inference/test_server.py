"""The local server over HTTP: the SageMaker container contract, errors, and staying alive."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.inference.payloads import LIMITS, LIMITS_ENV, Case, bad_cases, good_cases
from tools import serve

ROOT = Path(__file__).resolve().parents[2]
SERVER_BODY_LIMIT = 8_000_000
START_TIMEOUT = 180
GOOD = good_cases()
BAD = bad_cases()


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The server on a free 127.0.0.1 port, serving the model as a packed model.tar.gz."""
    work = tmp_path_factory.mktemp("server")
    archive = work / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for item in sorted(model_dir.iterdir()):
            tar.add(item, arcname=item.name)
    log = (work / "server.log").open("w")
    command = [sys.executable, "-m", "tools.serve", "--model-dir", str(archive), "--port", "0"]
    command += ["--max-body-bytes", str(SERVER_BODY_LIMIT)]
    process = subprocess.Popen(
        command, cwd=ROOT, env=os.environ | LIMITS_ENV, stdout=subprocess.PIPE, stderr=log, text=True
    )
    watchdog = threading.Timer(START_TIMEOUT, process.kill)  # a server that never starts fails the test
    watchdog.start()
    line = process.stdout.readline() if process.stdout else ""
    watchdog.cancel()
    if "http://127.0.0.1:" not in line:
        process.kill()
        pytest.fail(f"the server did not start: {line!r}\n{(work / 'server.log').read_text()[-3000:]}")
    yield int(line.rsplit(":", 1)[1])
    process.terminate()
    process.wait(timeout=30)
    log.close()


def request(port: int, method: str, path: str, body: bytes = b"", headers=None) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request(method, path, body=body or None, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def invoke(port: int, case: Case, path: str = "/invocations") -> tuple[int, dict]:
    status, _, body = request(port, "POST", path, case.body, case.headers)
    return status, json.loads(body)


def assert_alive(port: int) -> None:
    assert request(port, "GET", "/ping")[0] == 200
    status, body = invoke(port, GOOD[0])
    assert status == 200 and body["label"]


def test_ping_answers_once_the_model_is_loaded(server):
    # Given a started server
    # When it is pinged
    status, _, _ = request(server, "GET", "/ping")

    # Then it is healthy
    assert status == 200


@pytest.mark.parametrize("case", GOOD, ids=[c.name for c in GOOD])
def test_every_content_type_is_answered_with_the_json_contract(server, case):
    # Given a request in one of the supported content types
    # When it is posted to /invocations
    status, headers, raw = request(server, "POST", "/invocations", case.body, case.headers)

    # Then the answer is JSON with a label, its confidence and probabilities summing to 1
    assert status == 200, raw
    assert headers["Content-Type"] == "application/json"
    body = json.loads(raw)
    assert body["label"] in body["probs"]
    assert sum(body["probs"].values()) == pytest.approx(1.0)


@pytest.mark.parametrize("case", BAD, ids=[c.name for c in BAD])
def test_every_bad_request_is_a_4xx_with_a_message_and_the_server_stays_up(server, case):
    # Given a broken request
    # When it is posted
    status, body = invoke(server, case)

    # Then the answer is the client error, as JSON without a traceback, and the server still answers
    assert status == case.status
    assert case.message in body["message"]
    assert "Traceback" not in json.dumps(body)
    assert_alive(server)


def test_segments_can_be_asked_for_by_query_or_custom_attributes_header(server):
    # Given one clip
    case = GOOD[0]
    headers = case.headers | {"X-Amzn-SageMaker-Custom-Attributes": "segments=true"}

    # When it is posted plainly, with ?segments=true, and with the custom-attributes header
    _, plain = invoke(server, case)
    _, by_query = invoke(server, case, "/invocations?segments=true")
    by_header = json.loads(request(server, "POST", "/invocations", case.body, headers)[2])

    # Then only the asking requests get per-window labels
    assert "segments" not in plain
    assert by_query["segments"] == by_header["segments"]
    assert len(by_query["segments"]) >= 2


def test_concurrent_requests_are_all_answered_consistently(server):
    # Given four clients sending different clips at once
    cases = GOOD[:4] * 3

    # When they post concurrently
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda case: invoke(server, case), cases))

    # Then every request is answered, the same clip always the same way
    assert all(status == 200 for status, _ in answers)
    for i, (_, body) in enumerate(answers):
        assert body == answers[i % 4][1]


def test_a_body_over_the_server_limit_is_refused_unread(server):
    # Given a client announcing more bytes than the server accepts
    connection = http.client.HTTPConnection("127.0.0.1", server, timeout=60)
    connection.putrequest("POST", "/invocations")
    connection.putheader("Content-Type", "audio/wav")
    connection.putheader("Content-Length", str(SERVER_BODY_LIMIT + 1))
    connection.endheaders()

    # When it waits for the answer without sending the body
    response = connection.getresponse()

    # Then it gets 413 at once, and the server is fine
    assert response.status == 413
    assert "limit" in json.loads(response.read())["message"]
    connection.close()
    assert_alive(server)


def test_clients_that_stall_or_hang_up_do_not_block_the_server(server):
    # Given one client that sends half its headers and one that sends half its body, then hangs up
    stalled = socket.create_connection(("127.0.0.1", server), timeout=30)
    stalled.sendall(b"POST /invocations HTTP/1.1\r\nContent-Type: audio/wav\r\n")
    quitter = socket.create_connection(("127.0.0.1", server), timeout=30)
    quitter.sendall(
        b"POST /invocations HTTP/1.1\r\nContent-Type: audio/wav\r\nContent-Length: 1000\r\n\r\nRIFF"
    )
    quitter.close()

    # When another client calls
    # Then it is answered while the first is still connected
    try:
        assert_alive(server)
    finally:
        stalled.close()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/invocations", 405), ("GET", "/models", 404), ("POST", "/ping", 405), ("POST", "/models", 404)],
)
def test_other_routes_answer_with_a_json_error(server, method, path, status):
    # Given a route outside the contract
    # When it is called
    answer_status, _, body = request(server, method, path, b"x" if method == "POST" else b"")

    # Then the status says so and the body explains the contract
    assert answer_status == status
    assert "/invocations" in json.loads(body)["message"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/invocations", "POST"),
        ("DELETE", "/invocations", "POST"),
        ("PATCH", "/invocations", "POST"),
        ("OPTIONS", "/invocations", "POST"),
        ("GET", "/invocations", "POST"),
        ("PUT", "/ping", "GET, HEAD"),
        ("DELETE", "/ping", "GET, HEAD"),
    ],
)
def test_other_methods_get_405_with_a_json_body_and_the_allowed_ones(server, method, path, allow):
    # Given a method the route does not take, with a body where the method has one
    body = b"x" * 100 if method in ("PUT", "PATCH") else b""

    # When it is called
    status, headers, raw = request(server, method, path, body)

    # Then it is a 405 saying what to use, as JSON, and the server answers the next request
    assert status == 405
    assert headers["Content-Type"] == "application/json"
    assert headers["Allow"] == allow
    assert json.loads(raw)["code"] == 405
    assert_alive(server)


def test_an_unknown_method_is_answered_with_a_json_error(server):
    # Given a method HTTP does not define
    # When it is called
    status, headers, raw = request(server, "BREW", "/invocations")

    # Then the error is JSON like every other, not an HTML page
    assert status == 501
    assert headers["Content-Type"] == "application/json"
    assert json.loads(raw)["code"] == 501
    assert_alive(server)


def test_head_ping_answers_without_a_body(server):
    # Given a health check by HEAD
    # When it is sent
    status, _, raw = request(server, "HEAD", "/ping")

    # Then it is healthy, without a body
    assert status == 200
    assert raw == b""


def test_twenty_concurrent_clients_are_all_answered(server):
    # Given twenty clients that connect and post at the same moment
    start = threading.Barrier(20)

    def call(case: Case) -> int:
        start.wait(timeout=60)
        return invoke(server, case)[0]

    # When they post
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(call, GOOD[:4] * 5))

    # Then every one is answered (no connection reset), within a bounded time
    assert statuses == [200] * 20
    assert time.monotonic() - began < 120


@pytest.mark.parametrize("declared", [LIMITS.max_request_bytes + 1, 10**15], ids=["just-over", "huge"])
def test_a_declared_body_over_the_handlers_limit_is_refused_before_it_is_read(server, declared):
    # Given a client announcing more bytes than the handler accepts (but fewer than --max-body-bytes for
    # the first), sending a few of them and waiting
    connection = socket.create_connection(("127.0.0.1", server), timeout=10)
    began = time.monotonic()
    connection.sendall(
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
        + f"Content-Length: {declared}\r\n\r\nRIFF".encode()
    )

    # When it reads the answer
    answer = http.client.HTTPResponse(connection)
    answer.begin()

    # Then it is a 413 at once, naming the setting, and the server is fine
    assert answer.status == 413
    assert time.monotonic() - began < 5
    assert "ACOUSTIC_MAX_REQUEST_BYTES" in json.loads(answer.read())["message"]
    connection.close()
    assert_alive(server)


SLOW_HANDLER = """
import time

calls = []


def model_fn(model_dir):
    return "model"


def input_fn(body, content_type):
    return body


def predict_fn(data, model):
    calls.append(data)
    time.sleep(float(data))
    return data


def output_fn(prediction, accept):
    return '{"seconds": %s}' % prediction.decode()
"""


@pytest.fixture
def slow_server(tmp_path, monkeypatch):
    """The server in-process with a handler whose predict_fn sleeps as many seconds as the body says."""
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "slow_handler.py").write_text(SLOW_HANDLER)
    monkeypatch.setenv("SAGEMAKER_PROGRAM", "slow_handler.py")
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "slow_handler", raising=False)
    service = serve.Service(tmp_path)
    httpd = serve.make_server("127.0.0.1", 0, service, max_body_bytes=1000, threads=4)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd.server_address[1], service.handler.calls
    httpd.shutdown()
    httpd.server_close()
    sys.modules.pop("slow_handler", None)


def test_a_request_abandoned_while_waiting_for_the_model_is_not_run(slow_server):
    # Given a request that keeps the model busy for a second
    port, calls = slow_server
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(request, port, "POST", "/invocations", b"1.0")
        while not calls:
            time.sleep(0.01)

        # When a second client posts and hangs up while it waits for the model
        quitter = socket.create_connection(("127.0.0.1", port), timeout=10)
        quitter.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n0.0")
        time.sleep(0.2)
        quitter.close()
        assert first.result(timeout=30)[0] == 200
    time.sleep(0.5)

    # Then the model never runs for it, and the server still answers
    assert calls == [b"1.0"]
    assert request(port, "POST", "/invocations", b"0.0")[0] == 200


def test_sigterm_stops_the_server_and_removes_its_unpacked_model(model_dir: Path, tmp_path: Path) -> None:
    # Given a server that unpacked a model.tar.gz into its temporary folder
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for item in sorted(model_dir.iterdir()):
            tar.add(item, arcname=item.name)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.serve", "--model-dir", str(archive), "--port", "0"],
        cwd=ROOT,
        env=os.environ | LIMITS_ENV | {"TMPDIR": str(scratch)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    watchdog = threading.Timer(START_TIMEOUT, process.kill)
    watchdog.start()
    line = process.stdout.readline() if process.stdout else ""
    watchdog.cancel()
    assert "http://127.0.0.1:" in line
    assert [p.name for p in scratch.iterdir() if p.name.startswith("acoustic-model-")]
    # When it gets SIGTERM (what a supervisor or the rehearsal sends)
    process.terminate()
    process.wait(timeout=30)
    # Then it has stopped and left no unpacked model behind
    assert not list(scratch.iterdir())
