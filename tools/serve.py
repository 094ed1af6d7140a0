"""A local server on the SageMaker container contract, for trying a model before deploying it.

    python -m tools.serve --model-dir MODEL_DIR_OR_MODEL_TAR_GZ --port 8080

``GET /ping`` answers 200 once the model is loaded; ``POST /invocations`` takes the body with its
``Content-Type`` and ``Accept`` headers (and ``X-Amzn-SageMaker-Custom-Attributes``; ``?segments=true`` is
a local shortcut for ``segments=true`` there). The handler is imported from the model directory's
``code/`` exactly as the inference toolkit does (``SAGEMAKER_PROGRAM``, default ``inference.py``), so
what answers here is what the packed model.tar.gz will run on the endpoint.

Requests are served by a bounded pool of threads (``--threads``) behind a listen backlog that holds a
burst of clients; a body larger than the limit (``--max-body-bytes``, and the handler's own
``ACOUSTIC_MAX_REQUEST_BYTES``) is refused from its Content-Length, unread; a request whose client has
hung up is dropped before it reaches the model.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import inspect
import json
import logging
import logging.handlers
import os
import select
import signal
import socket
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from common import cli, contract

logger = logging.getLogger("tools.serve")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# SageMaker's own ceiling (asynchronous inference); the handler applies its tighter limit itself.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024 * 1024
CUSTOM_ATTRIBUTES_HEADER = contract.CUSTOM_ATTRIBUTES_HEADER
SOCKET_TIMEOUT_SECONDS = 60  # a client that stops sending frees its thread after this long
DEFAULT_THREADS = 32  # connections served at once; more wait in the listen backlog
LISTEN_BACKLOG = 128  # connections the kernel holds until a thread is free (socketserver's default: 5)
# Before closing, read what the client still sends for a moment: closing a socket with unread data
# sends a reset, which can destroy the answer (a 413, say) before the client has read it.
LINGER_SECONDS = 2.0
LINGER_BYTES = 8 * 1024 * 1024
MAX_BODY_SETTING = contract.ENV_MAX_REQUEST_BYTES  # the handler's own body limit, when it has one


class Abandoned(Exception):
    """The client hung up before its request reached the model; nobody would read the answer."""


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


def handler_script(model_dir: Path) -> Path:
    """``code/<SAGEMAKER_PROGRAM>`` (default ``inference.py``) of a model directory."""
    program = os.environ.get(contract.ENV_PROGRAM, contract.HANDLER_FILE)
    module_name = program[:-3] if program.endswith(".py") else program
    return model_dir / "code" / f"{module_name}.py"


def load_handler(model_dir: Path) -> ModuleType:
    """Imports ``code/<SAGEMAKER_PROGRAM>`` the way the toolkit does: ``code/`` first on sys.path."""
    script = handler_script(model_dir)
    if not script.is_file():
        raise FileNotFoundError(f"{script} not found; is {model_dir} a model directory?")
    sys.path.insert(0, str(script.parent))
    return importlib.import_module(script.stem)


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

    def body_limit(self) -> int | None:
        """The handler's own request body limit, when it exposes its settings as ours does."""
        settings = getattr(self.handler, "current_settings", None)
        limit = getattr(settings(), "max_request_bytes", None) if callable(settings) else None
        return limit if isinstance(limit, int) else None

    def invoke(
        self, body: bytes, headers: dict[str, str], gone: Callable[[], bool] = lambda: False
    ) -> tuple[bytes, str]:
        """One request; raises Abandoned, before decoding or before the model, once ``gone()`` is true."""
        context = Context(str(self.model_dir), headers)
        content_type = _header(headers, "Content-Type")
        accept = _header(headers, "Accept")
        if not accept or accept == "*/*":
            accept = contract.JSON_CONTENT_TYPE
        if gone():
            raise Abandoned
        data = _call(self.handler.input_fn, [body, content_type], context)
        with self._model_lock:
            if gone():  # it waited here while other requests ran
                raise Abandoned
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


def _client_gone(connection: socket.socket) -> bool:
    """Whether the client closed its side: readable, yet nothing to read (a pipelined request is data)."""
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):  # reset, or already closed
        return True


ROUTES = {"/ping": ("GET", "HEAD"), "/invocations": ("POST",)}
CONTRACT = "the server answers GET /ping and POST /invocations"


def make_handler(service: Service, max_body_bytes: int) -> type[BaseHTTPRequestHandler]:
    """The request handler class for this service, with the tighter of the two body limits."""
    handler_limit = service.body_limit()
    if handler_limit is not None and handler_limit < max_body_bytes:
        limit, source = handler_limit, f"the handler's {MAX_BODY_SETTING}"
    else:
        limit, source = max_body_bytes, "the server's --max-body-bytes"

    class Handler(ContractHandler):
        pass

    Handler.service, Handler.body_limit, Handler.limit_source = service, limit, source
    return Handler


class ContractHandler(BaseHTTPRequestHandler):
    """Answers the container contract's routes; ``make_handler`` sets the service and the body limit."""

    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT_SECONDS
    server_version = "acoustic-shield"
    service: Service
    body_limit: int
    limit_source: str

    def do_GET(self) -> None:
        if self._route_allows():
            self._send(HTTPStatus.OK, b"", "text/plain")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        if not self._route_allows():
            return
        body = self._read_body()
        if body is None:
            return
        headers = _with_segments_attribute(dict(self.headers.items()), urlsplit(self.path).query)
        try:
            payload, content_type = self.service.invoke(body, headers, lambda: _client_gone(self.connection))
        except Abandoned:
            logger.info("the client hung up before its request reached the model; dropped")
            self.close_connection = True
            return
        except Exception as err:
            self._answer_failure(err)
            return
        self._send(HTTPStatus.OK, payload, content_type)

    def _answer_failure(self, err: Exception) -> None:
        status = _status_of(err)
        if status == 500:
            logger.exception("the handler failed")
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the server log")
        else:
            logger.info("client error %d: %s", status, err)
            self._error(HTTPStatus(status), str(err))

    def _not_allowed(self) -> None:
        self._route_allows()

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed

    def _route_allows(self) -> bool:
        """True when the route takes this method; otherwise answers 404 or 405 (with Allow) and closes
        the connection if a body may follow, so that it is never read."""
        allowed = ROUTES.get(urlsplit(self.path).path)
        if allowed is not None and self.command in allowed:
            return True
        has_body = self.headers.get("Content-Length", "0").strip() not in ("", "0") or (
            "Transfer-Encoding" in self.headers
        )
        if allowed is None:
            self._error(HTTPStatus.NOT_FOUND, CONTRACT, close=has_body)
        else:
            self._error(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"{self.command} is not allowed on {urlsplit(self.path).path}; {CONTRACT}",
                close=has_body,
                headers={"Allow": ", ".join(allowed)},
            )
        return False

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The errors http.server raises itself (bad request line, unknown method...) as JSON too."""
        status = HTTPStatus(code)
        self._error(status, message or status.description, close=True)

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
        if length > self.body_limit:
            # Not read: answering and closing keeps a huge upload from occupying memory or the thread.
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the body has {length} bytes, more than the limit of {self.body_limit} "
                f"({self.limit_source}); send a shorter or compressed (FLAC, OGG, MP3) clip",
                close=True,
            )
            return None
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            return None
        return body

    def _error(
        self,
        status: HTTPStatus,
        message: str,
        *,
        close: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        body = json.dumps({"code": int(status), "type": status.phrase, "message": message}).encode()
        self._send(status, body, contract.JSON_CONTENT_TYPE, close=close, headers=headers)

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        *,
        close: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)


def _with_segments_attribute(headers: dict[str, str], query: str) -> dict[str, str]:
    """``?segments=true`` (the local shortcut) added to the custom attributes header."""
    if any(v.lower() == "true" for v in parse_qs(query).get("segments", [])):
        extra = headers.get(CUSTOM_ATTRIBUTES_HEADER, "")
        headers[CUSTOM_ATTRIBUTES_HEADER] = (
            f"{extra};{contract.SEGMENTS_ATTRIBUTE}" if extra else contract.SEGMENTS_ATTRIBUTE
        )
    return headers


class PooledHTTPServer(HTTPServer):
    """An HTTP server whose connections are served by a fixed pool of threads.

    While every thread is busy the accept loop waits, and new clients wait in the listen backlog (the
    kernel's queue) instead of getting a thread each, or a reset once a short backlog overflows.
    """

    request_queue_size = LISTEN_BACKLOG

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *, threads: int
    ) -> None:
        # Before binding: a failed bind calls server_close, which shuts the pool down.
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="serve")
        self._free = threading.BoundedSemaphore(threads)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._free.acquire()
        self._pool.submit(self._serve, request, client_address)

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self._free.release()

    def shutdown_request(self, request: Any) -> None:
        with contextlib.suppress(OSError):
            request.shutdown(socket.SHUT_WR)  # the answer is complete: the client sees the end of it
            request.settimeout(LINGER_SECONDS)
            deadline, drained = time.monotonic() + LINGER_SECONDS, 0
            while drained < LINGER_BYTES and time.monotonic() < deadline:
                chunk = request.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        self.close_request(request)

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def make_server(
    host: str, port: int, service: Service, *, max_body_bytes: int, threads: int = DEFAULT_THREADS
) -> PooledHTTPServer:
    """The server for ``service`` on ``host:port`` (0: a free port); call ``serve_forever`` to run it."""
    return PooledHTTPServer((host, port), make_handler(service, max_body_bytes), threads=threads)


def unpack(model: Path, workdir: Path) -> Path:
    """A model directory as is, or a SageMaker model.tar.gz unpacked (safely) into ``workdir``."""
    if model.is_dir():
        return model
    if not tarfile.is_tarfile(model):
        raise ValueError(f"{model} is neither a model directory nor a model.tar.gz")
    with tarfile.open(model) as archive:
        archive.extractall(workdir, filter="data")
    return workdir


def model_path_problem(model: Path) -> str | None:
    """What makes ``model`` unusable as ``--model-dir`` before anything is unpacked or loaded, or None."""
    if not model.exists():
        return f"--model-dir {model}: no such file or directory"
    if model.is_dir():
        return None
    try:
        archive = tarfile.is_tarfile(model)
    except OSError as err:
        return f"--model-dir {model}: {err.strerror or err}"
    return None if archive else f"--model-dir {model} is neither a model directory nor a model.tar.gz"


def load_service(model: Path, workdir: Path) -> Service:
    """The model ``--model-dir`` names, unpacked into ``workdir`` if it is an archive, and loaded; raises
    CommandError (one line) when it is no model or its handler or model_fn fails."""
    try:
        model_dir = unpack(model, workdir).resolve()
    except (tarfile.TarError, OSError) as err:
        raise cli.CommandError(f"cannot unpack {model}: {err}") from err
    script = handler_script(model_dir)
    if not script.is_file():
        raise cli.CommandError(
            f"{model} is not a model: it has no code/{script.name} (give --model-dir the model directory "
            f"a training job wrote, or its {contract.MODEL_ARCHIVE})"
        )
    try:
        return Service(model_dir)
    except Exception as err:  # the handler's import or model_fn: a broken or incomplete model
        where = "" if cli.tracebacks_wanted() else f" ({cli.TRACEBACK_VARIABLE}=1 shows where)"
        raise cli.CommandError(
            f"cannot load the model in {model}: {type(err).__name__}: {err}{where}"
        ) from err


@contextlib.contextmanager
def _logs_once_loaded() -> Iterator[None]:
    """Holds what loading the model logs until it has loaded: a model that cannot be loaded is one line
    (with ``ACOUSTIC_TRACEBACK`` set, its log comes out before the traceback)."""
    root = logging.getLogger()
    shown = root.handlers[:]
    held = logging.handlers.BufferingHandler(capacity=1_000_000)
    root.handlers[:] = [held]
    loaded = False
    try:
        yield
        loaded = True
    finally:
        root.handlers[:] = shown
        if loaded or cli.tracebacks_wanted():
            for record in held.buffer:
                root.handle(record)
        held.close()


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Serves until Ctrl-C or SIGTERM; a missing or broken model raises CommandError: one line, status 2."""
    parser = cli.Parser(
        prog="python -m tools.serve",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model-dir", type=Path, required=True, help="a model directory or model.tar.gz")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 inside a container)")
    parser.add_argument("--port", type=int, default=8080, help="port to bind; 0 picks a free one")
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help="bodies larger than this, or than the handler's ACOUSTIC_MAX_REQUEST_BYTES, are refused "
        "unread (default: 1 GiB, SageMaker's async limit)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        help="connections served at once; more wait in the listen backlog (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.threads < 1 or args.max_body_bytes < 0:
        parser.error("--threads must be at least 1 and --max-body-bytes at least 0")
    problem = model_path_problem(args.model_dir)
    if problem:
        parser.error(problem)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    # SIGTERM (a supervisor, `kill`, the rehearsal stopping its server) unwinds like Ctrl-C, so the
    # unpacked model's temporary folder is removed either way.
    signal.signal(signal.SIGTERM, _stop)

    with tempfile.TemporaryDirectory(prefix="acoustic-model-") as workdir:
        with _logs_once_loaded():
            service = load_service(args.model_dir, Path(workdir))
        try:
            server = make_server(
                args.host, args.port, service, max_body_bytes=args.max_body_bytes, threads=args.threads
            )
        except OSError as err:  # the port is taken, the address is not this machine's
            raise cli.CommandError(
                f"cannot listen on {args.host}:{args.port}: {err.strerror or err}"
            ) from err
        port = server.server_address[1]
        print(f"serving {service.model_dir} on http://{args.host}:{port}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


if __name__ == "__main__":
    sys.exit(cli.run_command(main))
