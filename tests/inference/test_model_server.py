"""The packed model served by the real multi-model-server, started as the Hugging Face inference image does.

``model.tar.gz`` is packed as SageMaker packs ``SM_MODEL_DIR`` and unpacked into
``<base>/model`` as the endpoint unpacks it into ``/opt/ml/model``; ``mms_launcher.py`` then runs the
toolkit's start-up in the parity environment (``.venv-toolkit``): the properties file with
``default_service_handler=sagemaker_huggingface_inference_toolkit.handler_service``, the
``pip install -r code/requirements.txt``, and ``multi-model-server --start``. The model server is Java:
``make install`` installs a headless JRE when ``java`` is missing. One server for the whole module, on a
free 127.0.0.1 port.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from serving import inference
from tests.inference.parity import handler_env, toolkit_python
from tests.inference.payloads import LIMITS, Case, bad_cases, good_cases

LAUNCHER = Path(__file__).with_name("mms_launcher.py")
START_TIMEOUT = 240  # seconds: the JVM, then one worker importing torch and transformers, then model_fn
REQUEST_TIMEOUT = 120
GOOD = {case.name: case for case in good_cases()}
BAD = {case.name: case for case in bad_cases()}
WAV = GOOD["audio/wav-WAV-PCM_16-44100Hz-2ch"]
FLAC = GOOD["audio/flac-FLAC-PCM_16-44100Hz-2ch"]
JSON_BASE64 = GOOD["json-base64-flac"]
SEGMENTS_HEADER = {"X-Amzn-SageMaker-Custom-Attributes": "segments=true"}


@dataclass
class ModelServer:
    """A running multi-model-server: its port, and its logs for failure messages."""

    port: int
    work: Path

    def logs(self, chars: int = 4000) -> str:
        """The tail of every log the server wrote: its console and MMS's own log files."""
        parts = []
        for path in [self.work / "server.log", *sorted((self.work / "logs").glob("*.log"))]:
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def request(self, method: str, path: str, body: bytes = b"", headers=None) -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT)
        try:
            connection.request(method, path, body=body if method == "POST" else None, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read().decode(errors="replace")
        finally:
            connection.close()

    def invoke(self, case: Case, headers: dict[str, str] | None = None) -> tuple[int, str]:
        return self.request("POST", "/invocations", case.body, case.headers | (headers or {}))


def _free_port() -> int:
    """A free 127.0.0.1 port below 32767: MMS refuses higher ones, where the kernel's ephemeral ports lie."""
    for port in random.sample(range(20_000, 32_767), 50):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail("no free port between 20000 and 32766 on 127.0.0.1")


def _unpacked_model(model_dir: Path, work: Path) -> Path:
    """``<work>/opt/ml``, holding ``model/``: model.tar.gz packed as SageMaker does, unpacked as the endpoint does."""
    archive = work / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for item in sorted(model_dir.iterdir()):
            tar.add(item, arcname=item.name)
    base = work / "opt" / "ml"
    (base / "model").mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(base / "model", filter="data")
    return base


def _frontend_alive(tmp: Path) -> bool:
    """Whether the JVM that ``multi-model-server --start`` spawned (its pid file is under TMPDIR) still runs."""
    try:
        pid = int((tmp / ".model_server.pid").read_text())
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ValueError, IndexError):
        return False
    return state != "Z"  # a zombie: exited, not yet reaped by whoever adopted it


def _wait_until_healthy(server: ModelServer, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() not in (None, 0):
            pytest.fail(f"the launcher failed with exit code {process.returncode}\n{server.logs()}")
        if process.poll() == 0 and not _frontend_alive(server.work / "tmp"):
            pytest.fail(f"the model server exited while starting\n{server.logs()}")
        try:
            if server.request("GET", "/ping")[0] == 200:
                return
        except OSError:
            pass  # not listening yet
        time.sleep(1)
    pytest.fail(f"/ping did not answer 200 within {START_TIMEOUT} s\n{server.logs()}")


def _stop(env: dict[str, str], process: subprocess.Popen, work: Path) -> None:
    """``multi-model-server --stop`` (it reads the pid file under TMPDIR), then the whole process group."""
    mms = toolkit_python().parent / "multi-model-server"
    try:
        subprocess.run([str(mms), "--stop"], env=env, cwd=work, capture_output=True, timeout=60, check=False)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the JVM and its workers, whatever --stop left
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    """The model server on a free 127.0.0.1 port with one worker; stopped after the module's tests."""
    with serving(model_dir, tmp_path_factory) as started:
        yield started


@contextlib.contextmanager
def serving(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    """The model server serving ``model_dir`` packed and unpacked as SageMaker does, until the block ends."""
    toolkit_python()
    work = tmp_path_factory.mktemp("mms")
    base = _unpacked_model(model_dir, work)
    (work / "tmp").mkdir()
    port = _free_port()
    env = handler_env(
        SAGEMAKER_BASE_DIR=str(base),  # the toolkit's /opt/ml
        SAGEMAKER_BIND_TO_PORT=str(port),
        SAGEMAKER_MODEL_SERVER_WORKERS="1",
        # MMS's pid file, the JVM's temp dir and the workers' sockets: private to this server.
        TMPDIR=str(work / "tmp"),
        TEMP=str(work / "tmp"),
        LOG_LOCATION=str(work / "logs"),
        METRICS_LOCATION=str(work / "logs"),
        # The toolkit's `pip install -r code/requirements.txt` runs offline: everything is installed already.
        PIP_NO_INDEX="1",
    )
    server = ModelServer(port=port, work=work)
    with (work / "server.log").open("w") as log:
        process = subprocess.Popen(
            [str(toolkit_python()), str(LAUNCHER), str(work / "sagemaker-mms.properties")],
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the JVM and its workers stay in this group, so one kill ends them all
        )
        try:
            _wait_until_healthy(server, process)
            yield server
        finally:
            _stop(env, process, work)


@pytest.fixture(scope="module")
def classifier(model_dir: Path) -> inference.AudioModel:
    return inference.load_model(model_dir, LIMITS)


def _in_process(classifier: inference.AudioModel, case: Case) -> dict:
    request = inference.parse_request(case.body, case.content_type, LIMITS)
    return json.loads(inference.output_fn(classifier.predict(request), "application/json"))


@pytest.mark.slow
def test_ping_answers_200_once_the_model_is_loaded(server):
    # Given the started model server
    # When it is pinged
    status, body = server.request("GET", "/ping")

    # Then it is healthy
    assert status == 200, f"{body}\n{server.logs()}"


@pytest.mark.slow
@pytest.mark.parametrize("case", [WAV, FLAC, JSON_BASE64], ids=lambda case: case.name)
def test_the_model_server_answers_as_the_handler_does_in_process(server, classifier, case):
    # Given the answer the handler gives in-process (the main environment: transformers 5, numpy 2)
    expected = _in_process(classifier, case)

    # When the request goes through the model server, the toolkit's handler service and our code/
    status, raw = server.invoke(case)

    # Then it is 200 with the same label, confidence and probabilities
    assert status == 200, f"{raw}\n{server.logs()}"
    body = json.loads(raw)
    assert set(body) == {"label", "confidence", "probs"}
    assert body["label"] == expected["label"]
    assert body["confidence"] == pytest.approx(expected["confidence"], abs=1e-4)
    assert body["probs"] == pytest.approx(expected["probs"], abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_a_broken_payload_is_a_400_with_our_message_and_the_server_keeps_answering(server, case):
    # Given a broken request
    # When it is posted
    status, raw = server.invoke(case)

    # Then the model server answers 400 carrying the handler's message, without a traceback: the toolkit
    # turns every handler error into PredictionException(str(error), 400), 406/413/415 included
    assert status == 400, f"{raw}\n{server.logs()}"
    assert case.message in json.loads(raw)["message"]
    assert "Traceback" not in raw
    # And a good request right after is still answered
    assert server.invoke(WAV)[0] == 200


@pytest.mark.slow
def test_the_custom_attributes_header_reaches_the_handler(server):
    # Given a request with segments=true in the header SageMaker passes through
    # When it is posted
    status, raw = server.invoke(WAV, SEGMENTS_HEADER)

    # Then the answer carries per-window labels
    assert status == 200, raw
    assert json.loads(raw)["segments"]


@pytest.mark.slow
def test_a_file_in_the_asr_json_shape_is_answered_as_the_file_with_a_note(server, classifier):
    # Given a WAV in JSON with "sample_rate": 16000 that its header contradicts, as ASR clients send it
    case = GOOD["json-base64-wav-with-a-contradicting-sample-rate"]
    expected = _in_process(classifier, case)

    # When it goes through the model server
    status, raw = server.invoke(case)

    # Then the file is classified as in-process, and the answer notes the ignored field
    assert status == 200, f"{raw}\n{server.logs()}"
    body = json.loads(raw)
    assert body["label"] == expected["label"]
    assert body["probs"] == pytest.approx(expected["probs"], abs=1e-4)
    assert body["notes"] == expected["notes"] and "sample_rate" in body["notes"][0]
