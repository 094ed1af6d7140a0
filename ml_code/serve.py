"""A local server on the SageMaker container contract, for trying a model before deploying it.

    python -m ml_code.serve --model-dir MODEL_DIR_OR_MODEL_TAR_GZ --port 8080

``GET /ping`` answers 200 once the model is loaded; ``POST /invocations`` takes the body with its
``Content-Type`` and ``Accept`` headers (and ``X-Amzn-SageMaker-Custom-Attributes``; ``?segments=true`` is
a local shortcut for ``segments=true`` there). The handler is imported from the model directory's
``code/`` exactly as the inference toolkit does (``SAGEMAKER_PROGRAM``, default ``inference.py``), so
what answers here is what the packed model.tar.gz will run on the endpoint.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import json
import logging
import os
import sys
import tarfile
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger("ml_code.serve")

# SageMaker's own ceiling (asynchronous inference); the handler applies its tighter limit itself.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024 * 1024
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
SOCKET_TIMEOUT_SECONDS = 60  # a client that stops sending frees its thread after this long


class _RequestProcessor:
    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = headers

    def get_request_properties(self) -> dict[str, str]:
        return self._headers


@dataclass
class Context:
    """The parts of the model server's context that handler functions may read."""

    model_dir: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def system_properties(self) -> dict[str, Any]:
        return {"model_dir": self.model_dir, "gpu_id": None, "batch_size": 1}

    @property
    def request_processor(self) -> list[_RequestProcessor]:
        return [_RequestProcessor(self.headers)]


def load_handler(model_dir: Path) -> ModuleType:
    """Imports ``code/<SAGEMAKER_PROGRAM>`` the way the toolkit does: ``code/`` first on sys.path."""
    program = os.environ.get("SAGEMAKER_PROGRAM", "inference.py")
    module_name = program[:-3] if program.endswith(".py") else program
    code_dir = model_dir / "code"
    script = code_dir / f"{module_name}.py"
    if not script.is_file():
        raise FileNotFoundError(f"{script} not found; is {model_dir} a model directory?")
    sys.path.insert(0, str(code_dir))
    return importlib.import_module(module_name)


@functools.cache
def _arity(function: Callable[..., Any]) -> int:
    return len(inspect.signature(function).parameters)


def _call(function: Callable[..., Any], args: list[Any], context: Context) -> Any:
    """Passes the context when the function takes one more argument, as the toolkit does."""
    if _arity(function) == len(args) + 1:
        return function(*args, context)
    return function(*args)


class Service:
    """The loaded handler and model; ``invoke`` is one ``/invocations`` call."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.handler = load_handler(model_dir)
        self.model = _call(self.handler.model_fn, [str(model_dir)], Context(str(model_dir)))
        # One request at a time through the model, like one model-server worker: the model already
        # uses every thread it is given. Decoding and encoding of other requests overlap with it.
        self._model_lock = threading.Lock()

    def invoke(self, body: bytes, headers: dict[str, str]) -> tuple[bytes, str]:
        context = Context(str(self.model_dir), headers)
        content_type = _header(headers, "Content-Type")
        accept = _header(headers, "Accept")
        if not accept or accept == "*/*":
            accept = "application/json"
        data = _call(self.handler.input_fn, [body, content_type], context)
        with self._model_lock:
            prediction = _call(self.handler.predict_fn, [data, self.model], context)
        response = _call(self.handler.output_fn, [prediction, accept], context)
        if isinstance(response, tuple):  # (body, content type), which the toolkit also accepts
            response, accept = response
        payload = response.encode() if isinstance(response, str) else bytes(response)
        return payload, accept.split(",")[0].strip()


def _header(headers: dict[str, str], name: str) -> str | None:
    return next((value for key, value in headers.items() if key.lower() == name.lower()), None)


def _status_of(err: Exception) -> int:
    status = getattr(err, "status_code", None)
    if isinstance(status, int) and 400 <= status < 500:
        return status
    return 500


def make_handler(service: Service, max_body_bytes: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = SOCKET_TIMEOUT_SECONDS
        server_version = "acoustic-shield"

        def do_GET(self) -> None:
            if urlsplit(self.path).path == "/ping":
                self._send(HTTPStatus.OK, b"", "text/plain")
            elif urlsplit(self.path).path == "/invocations":
                self._error(HTTPStatus.METHOD_NOT_ALLOWED, "use POST /invocations")
            else:
                self._error(HTTPStatus.NOT_FOUND, "the server answers GET /ping and POST /invocations")

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/invocations":
                self._discard_body_and_error(HTTPStatus.NOT_FOUND, "POST /invocations")
                return
            body = self._read_body()
            if body is None:
                return
            headers = {key: value for key, value in self.headers.items()}
            if any(v.lower() == "true" for v in parse_qs(url.query).get("segments", [])):
                extra = headers.get(CUSTOM_ATTRIBUTES_HEADER, "")
                headers[CUSTOM_ATTRIBUTES_HEADER] = f"{extra};segments=true" if extra else "segments=true"
            try:
                payload, content_type = service.invoke(body, headers)
            except Exception as err:
                status = _status_of(err)
                if status == 500:
                    logger.exception("the handler failed")
                    self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the server log")
                else:
                    logger.info("client error %d: %s", status, err)
                    self._error(HTTPStatus(status), str(err))
                return
            self._send(HTTPStatus.OK, payload, content_type)

        def _read_body(self) -> bytes | None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                message = "send a Content-Length, not a chunked body"
                self._error(HTTPStatus.LENGTH_REQUIRED, message, close=True)
                return None
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if length < 0:
                self._error(HTTPStatus.BAD_REQUEST, "invalid Content-Length header", close=True)
                return None
            if length > max_body_bytes:
                # Not read: answering and closing keeps a huge upload from occupying memory or the thread.
                self._error(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    f"the body has {length} bytes, more than the server's limit of {max_body_bytes}",
                    close=True,
                )
                return None
            body = self.rfile.read(length)
            if len(body) < length:
                self.close_connection = True
                return None
            return body

        def _discard_body_and_error(self, status: HTTPStatus, hint: str) -> None:
            if self._read_body() is not None:
                self._error(status, f"the server answers GET /ping and {hint}")

        def _error(self, status: HTTPStatus, message: str, *, close: bool = False) -> None:
            body = json.dumps({"code": int(status), "type": status.phrase, "message": message}).encode()
            self._send(status, body, "application/json", close=close)

        def _send(self, status: HTTPStatus, body: bytes, content_type: str, *, close: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("%s " + format, self.address_string(), *args)

    return Handler


def unpack(model: Path, workdir: Path) -> Path:
    """A model directory as is, or a SageMaker model.tar.gz unpacked (safely) into ``workdir``."""
    if model.is_dir():
        return model
    if not tarfile.is_tarfile(model):
        raise ValueError(f"{model} is neither a model directory nor a model.tar.gz")
    with tarfile.open(model) as archive:
        archive.extractall(workdir, filter="data")
    return workdir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, required=True, help="a model directory or model.tar.gz")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 inside a container)")
    parser.add_argument("--port", type=int, default=8080, help="port to bind; 0 picks a free one")
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help="bodies larger than this are refused unread (default: 1 GiB, SageMaker's async limit)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    with tempfile.TemporaryDirectory(prefix="acoustic-model-") as workdir:
        model_dir = unpack(args.model_dir, Path(workdir)).resolve()
        service = Service(model_dir)
        server = ThreadingHTTPServer((args.host, args.port), make_handler(service, args.max_body_bytes))
        server.daemon_threads = True
        port = server.server_address[1]
        print(f"serving {model_dir} on http://{args.host}:{port}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


if __name__ == "__main__":
    main()
