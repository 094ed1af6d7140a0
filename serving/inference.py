"""SageMaker inference handler: audio in, the model's task's answer out (for classification: the label and
its probabilities).

The Hugging Face (and PyTorch) inference toolkits import this file from ``/opt/ml/model/code/``
(``SAGEMAKER_PROGRAM=inference.py``) and call ``model_fn`` once per worker, then ``input_fn``,
``predict_fn`` and ``output_fn`` per request. ``python -m tools.serve`` loads it the same way.

Settings come from the environment, read once when the model loads:

- ``ACOUSTIC_FAST_PATH``: ``off`` (default: PyTorch fp32 eager), ``onnx`` (ONNX Runtime fp32) or
  ``onnx-int8`` (ONNX Runtime with int8 dynamic quantization of MatMul/Gemm only). Both ONNX paths need
  ``model.onnx`` in the model directory (``train.py --export_onnx``).
- ``ACOUSTIC_THREADS``: intra-op threads per worker; default: CPUs / ``SAGEMAKER_MODEL_SERVER_WORKERS``.
- ``ACOUSTIC_MAX_AUDIO_SECONDS``: longest clip accepted (default 600).
- ``ACOUSTIC_MAX_DECODED_SAMPLES``: most frames x channels a clip may decode to, at its own rate
  (default: ``ACOUSTIC_MAX_AUDIO_SECONDS`` of 48 kHz stereo, 57,600,000).
- ``ACOUSTIC_MAX_CHANNELS``: most channels a clip may have (default 16).
- ``ACOUSTIC_MAX_REQUEST_BYTES``: largest request body accepted (default 128 MiB).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import tasks
from common import audio, contract
from tasks import OptionError, Task

if TYPE_CHECKING:
    _ToolkitError = Exception
else:
    try:  # the PyTorch inference toolkit turns this base class into the HTTP status it carries
        from sagemaker_inference.errors import BaseInferenceToolkitError as _ToolkitError
    except ImportError:
        _ToolkitError = Exception

logger = logging.getLogger(__name__)

DEFAULT_MAX_AUDIO_SECONDS = audio.DEFAULT_MAX_SECONDS
# Ten minutes of 48 kHz 16-bit stereo WAV is 110 MiB: the largest common file the duration cap lets
# through. Realtime endpoints stop at 6 MB before this matters; async endpoints accept up to 1 GB.
DEFAULT_MAX_REQUEST_BYTES = 128 * 1024 * 1024
# Audio per batch of windows, samples: bounds peak memory on long clips, whatever the window (larger batches
# bring no speed-up on CPU). 20 s at 16 kHz: four 5 s windows, or one 20 s speech window, so that a 10-minute
# recording stays under 2 GB (wav2vec2's first convolution alone holds 512 float32 channels per 5 samples of a
# batch: eight 20 s windows took 4 GB).
SAMPLES_PER_BATCH = 20 * 16_000


def windows_per_batch(window: int) -> int:
    """How many windows of ``window`` samples one batch holds: as many as ``SAMPLES_PER_BATCH`` allows, at
    least one."""
    return max(1, SAMPLES_PER_BATCH // max(1, window))


JSON_FIELDS = ("base64", "sample_rate", "channels", contract.SEGMENTS_KEY)
# Where a recording too long for a real-time invocation (6 MB, 60 s) goes instead, said in the 413.
LONG_AUDIO_HINT = {
    "max_seconds": "; a long recording (up to an hour) goes to an asynchronous endpoint (serving_mode async, "
    "1 GB and an hour per request) or a batch transform job"
}
# The setting behind each of audio.Limits' fields, named in the 413 that the limit causes.
LIMIT_SETTINGS = {
    "max_seconds": contract.ENV_MAX_AUDIO_SECONDS,
    "max_samples": contract.ENV_MAX_DECODED_SAMPLES,
    "max_channels": contract.ENV_MAX_CHANNELS,
}
CUSTOM_ATTRIBUTES_HEADER = contract.CUSTOM_ATTRIBUTES_HEADER


class BadRequest(ValueError, _ToolkitError):
    """A request the handler cannot serve; ``str()`` is the message for the client.

    The Hugging Face toolkit answers every exception from the handler with HTTP 400 and ``str(exc)``;
    the PyTorch toolkit and the local server use ``status_code``.
    """

    def __init__(self, message: str, status_code: int = 400) -> None:
        ValueError.__init__(self, message)
        self.message = message
        self.phrase = message
        self.status_code = status_code

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Settings:
    """Runtime settings, validated once at model load."""

    fast_path: str = "off"
    threads: int = 1
    max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_decoded_samples: int | None = None  # None: max_audio_seconds of 48 kHz stereo
    max_channels: int = audio.DEFAULT_MAX_CHANNELS

    @property
    def limits(self) -> audio.Limits:
        """What one request's audio may decode to."""
        return audio.Limits.default(
            self.max_audio_seconds, max_samples=self.max_decoded_samples, max_channels=self.max_channels
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        fast_path = env.get(contract.ENV_FAST_PATH, "off").strip().lower() or "off"
        if fast_path not in contract.FAST_PATHS:
            raise ValueError(
                f"{contract.ENV_FAST_PATH}={fast_path!r} is not one of {', '.join(contract.FAST_PATHS)}"
            )
        workers = _positive(env, contract.ENV_WORKERS, int, 1)
        return cls(
            fast_path=fast_path,
            threads=_positive(env, contract.ENV_THREADS, int, max(1, _cpu_count() // workers)),
            max_audio_seconds=_positive(
                env, contract.ENV_MAX_AUDIO_SECONDS, float, DEFAULT_MAX_AUDIO_SECONDS
            ),
            max_request_bytes=_positive(env, contract.ENV_MAX_REQUEST_BYTES, int, DEFAULT_MAX_REQUEST_BYTES),
            max_decoded_samples=_positive(env, contract.ENV_MAX_DECODED_SAMPLES, int, None),
            max_channels=_positive(env, contract.ENV_MAX_CHANNELS, int, audio.DEFAULT_MAX_CHANNELS),
        )


def _positive(env: Mapping[str, str], name: str, kind: type[int] | type[float], default: Any) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={raw!r} must be a positive {kind.__name__}")
    return value


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@functools.cache
def current_settings() -> Settings:
    """The settings of this worker, read from the environment on first use (``cache_clear`` reads again)."""
    return Settings.from_env()


# --------------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True)
class AudioRequest:
    """A decoded request: mono float32 samples at the model's rate, and what to return."""

    samples: np.ndarray
    segments: bool = False
    notes: tuple[str, ...] = ()  # what the handler ignored in the request, returned with the answer
    options: Mapping[str, str] = field(default_factory=dict)  # the other custom attributes, for the task


def _media_type(header: str | None) -> tuple[str, dict[str, str]]:
    """``'Audio/WAV; codecs=1'`` -> ``('audio/wav', {'codecs': '1'})``."""
    if not header:
        return "", {}
    kind, *params = header.split(";")
    parsed = {}
    for param in params:
        key, _, value = param.partition("=")
        parsed[key.strip().lower()] = value.strip().strip('"').lower()
    return kind.strip().lower(), parsed


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes")


def _attributes(text: str | None) -> dict[str, str]:
    """``'segments=true; foo=bar'`` -> dict; SageMaker passes this header through untouched."""
    pairs = (part.partition("=") for part in (text or "").replace(",", ";").split(";"))
    return {key.strip().lower(): value.strip() for key, _, value in pairs if key.strip()}


def _request_header(context: Any, name: str) -> str | None:
    """A request header from the model server's context (MMS and the local server build the same shape)."""
    try:
        properties = context.request_processor[0].get_request_properties()
    except (AttributeError, IndexError, TypeError):
        return None
    for key, value in properties.items():
        if key.lower() == name.lower():
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def parse_request(
    body: bytes | bytearray | str | None,
    content_type: str | None,
    settings: Settings,
    *,
    segments: bool = False,
) -> AudioRequest:
    """Checks and decodes one request body; raises BadRequest saying what to send instead."""
    kind, _ = _media_type(content_type)
    kind = kind or contract.SNIFFED_CONTENT_TYPE  # a client that names no type sends bytes: sniff them
    if kind not in contract.AUDIO_CONTENT_TYPES and kind != contract.JSON_CONTENT_TYPE:
        raise BadRequest(
            f"unsupported content type {content_type!r}; send one of {', '.join(contract.REQUEST_CONTENT_TYPES)}",
            415,
        )
    if body is None or len(body) == 0:
        raise BadRequest('empty request body; send the audio file as the body, or JSON {"base64": "..."}')
    if len(body) > settings.max_request_bytes:
        raise BadRequest(
            f"the request has {len(body)} bytes, more than the limit of {settings.max_request_bytes}; "
            f"send a shorter or compressed (FLAC, OGG, MP3) clip, or raise the endpoint's {contract.ENV_MAX_REQUEST_BYTES}",
            413,
        )
    try:
        if kind == contract.JSON_CONTENT_TYPE:
            return _parse_json(body, settings, segments=segments)
        raw = body.encode() if isinstance(body, str) else bytes(body)
        return AudioRequest(audio.decode(raw, limits=settings.limits), segments=segments)
    except audio.AudioTooLargeError as err:
        raise BadRequest(
            f"{err}, or raise the endpoint's {LIMIT_SETTINGS[err.limit]}{LONG_AUDIO_HINT.get(err.limit, '')}",
            413,
        ) from err
    except audio.AudioDecodeError as err:
        raise BadRequest(str(err)) from err


_JSON_HELP = (
    'send {"base64": "<base64 of a WAV/FLAC/OGG/MP3 file>"} or, for raw 16-bit little-endian PCM, '
    '{"base64": "...", "sample_rate": 16000, "channels": 1}; optional "segments": true'
)


def _parse_json(body: bytes | bytearray | str, settings: Settings, *, segments: bool) -> AudioRequest:
    try:
        payload = json.loads(body)
    except RecursionError as err:  # the parser recurses per level: 100,000 "[" would be a 500
        raise BadRequest(f"the JSON body is nested too deeply; {_JSON_HELP}") from err
    except (UnicodeDecodeError, ValueError) as err:
        raise BadRequest(f"the body is not valid JSON ({err}); {_JSON_HELP}") from err
    if not isinstance(payload, dict):
        raise BadRequest(f"the JSON body must be an object; {_JSON_HELP}")
    unknown = sorted(set(payload) - set(JSON_FIELDS))
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(unknown)}; {_JSON_HELP}")
    encoded = payload.get("base64")
    if not isinstance(encoded, str) or not encoded:
        raise BadRequest(f'missing or empty field "base64"; {_JSON_HELP}')
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as err:
        raise BadRequest(f'field "base64" is not valid base64 ({err}); {_JSON_HELP}') from err
    wants_segments = payload.get(contract.SEGMENTS_KEY, False)
    if not isinstance(wants_segments, bool):
        raise BadRequest('field "segments" must be true or false')
    segments = segments or wants_segments
    sample_rate, channels = payload.get("sample_rate"), payload.get("channels")
    if sample_rate is None and channels is not None:
        raise BadRequest('field "channels" only applies to raw PCM; give "sample_rate" too')
    for name, value in (("sample_rate", sample_rate), ("channels", channels)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise BadRequest(f'field "{name}" must be a positive integer; {_JSON_HELP}')
    container = audio.sniff(raw) if sample_rate is not None else None
    if sample_rate is None or container is not None:
        # A file's header says how to read it; "sample_rate"/"channels" only describe headerless PCM.
        decoded = audio.read(raw, limits=settings.limits)
        notes = _ignored_fields(container, decoded.info, sample_rate, channels)
        return AudioRequest(decoded.samples, segments=segments, notes=notes)
    samples = audio.decode_pcm16(raw, sample_rate=sample_rate, channels=channels or 1, limits=settings.limits)
    return AudioRequest(samples, segments=segments)


def _ignored_fields(
    container: str | None, info: audio.AudioInfo, sample_rate: int | None, channels: int | None
) -> tuple[str, ...]:
    """A note for the client when its PCM fields contradict the file it sent (they are ignored)."""
    if sample_rate in (None, info.sample_rate) and channels in (None, info.channels):
        return ()
    given = ", ".join(
        f'"{name}": {value}'
        for name, value in (("sample_rate", sample_rate), ("channels", channels))
        if value
    )
    note = (
        f"ignored {given}: the base64 holds a {container} file, read by its header ({info.sample_rate} Hz, "
        f"{info.channels} channel(s)); sample_rate and channels describe headerless PCM only"
    )
    logger.info("%s", note)
    return (note,)


# --------------------------------------------------------------------------------------------------
# Model

Backend = Callable[[np.ndarray], np.ndarray]  # normalized windows (n, samples) -> logits (n, labels)


@dataclass
class AudioModel:
    """A loaded model and its task: windows a clip, runs the backend in batches, scores each window and
    pools the windows' scores with the task's rule (which training's clip-level metrics use too)."""

    task: Task
    labels: list[str]
    sampling_rate: int
    window: int
    hop: int
    backend: Backend
    normalize: Callable[[np.ndarray], np.ndarray]
    settings: Settings = field(default_factory=Settings)

    def window_scores(self, samples: np.ndarray, hop: int | None = None) -> tuple[list[int], np.ndarray]:
        """Window start offsets and each window's scores (float64, the task's ``scores``); ``hop``: samples
        between windows (default the model's)."""
        starts = audio.window_starts(samples.shape[0], self.window, hop or self.hop)
        scores = [self._scores(batch) for batch in self._batches(samples, starts)]
        return starts, np.concatenate(scores)

    def _batches(self, samples: np.ndarray, starts: list[int]) -> Iterator[np.ndarray]:
        # A clip shorter than the window is one window of its own length (training crops are too): it
        # costs what it lasts. Every window of a longer clip is full, so a batch never needs padding.
        size = windows_per_batch(self.window)
        for i in range(0, len(starts), size):
            chunk = starts[i : i + size]
            yield np.stack([audio.fit_window(samples[s : s + self.window], self.window) for s in chunk])

    def _scores(self, batch: np.ndarray) -> np.ndarray:
        logits = np.asarray(self.backend(self.normalize(batch)), dtype=np.float64)
        # (windows, outputs), or (windows, frames, outputs) for a model that answers per frame (CTC)
        shape = (batch.shape[0], self.task.outputs(self.labels))
        if (logits.shape[0], logits.shape[-1]) != shape or logits.ndim > 3 or not np.isfinite(logits).all():
            raise RuntimeError(f"the model returned unusable logits of shape {logits.shape}")
        return self.task.scores(logits)

    def predict(self, request: AudioRequest) -> Prediction:
        """The task's answer for the clip; its segments from the same windows, or (asked for, when the task
        reads segments at a hop of its own) from windows at that hop."""
        task = self.task.for_request(request.options)
        starts, scores = self.window_scores(request.samples)
        total = request.samples.shape[0]
        windows = tasks.Windows(starts, scores, self.window, total, self.sampling_rate)
        answer = task.clip_answer(windows, self.labels)
        if request.segments and task.segment_hop_seconds:
            starts, scores = self.window_scores(
                request.samples, max(1, round(task.segment_hop_seconds * self.sampling_rate))
            )
        # The model's work is done here (the server runs predict_fn alone); the segments themselves are only
        # read from the scores when an answer asks for them.
        segments = functools.partial(
            task.segments, starts, scores, self.window, total, self.sampling_rate, self.labels
        )
        return Prediction(
            answer=answer, read_segments=segments, segments_requested=request.segments, notes=request.notes
        )


@dataclass(frozen=True)
class Prediction:
    """The task's answer for one clip, with every window's answer (read, and returned, only when asked for)."""

    answer: dict[str, Any]
    read_segments: Callable[[], list[dict[str, Any]]]
    segments_requested: bool = False
    notes: tuple[str, ...] = ()

    @functools.cached_property
    def segments(self) -> list[dict[str, Any]]:
        """The answer's segments, read from the windows' scores on first use."""
        return self.read_segments()

    def to_json(self, *, segments: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = dict(self.answer)
        if segments or self.segments_requested:
            body[contract.SEGMENTS_KEY] = self.segments
        if self.notes:
            body[contract.NOTES_KEY] = list(self.notes)
        return body


def load_model(model_dir: str | Path, settings: Settings) -> AudioModel:
    """Reads the model directory (see ``contract``), loads its task and builds the backend the settings ask
    for."""
    model_dir = Path(model_dir)
    meta = _read_json(model_dir / contract.LABELS_FILE)
    task = tasks.load(meta.get(contract.TASK_KEY)).configured(meta.get(contract.TASK_SETTINGS_KEY) or {})
    labels = [str(label) for label in meta[contract.LABELS_KEY]]
    sampling_rate = int(meta.get(contract.SAMPLING_RATE_KEY, audio.TARGET_SAMPLE_RATE))
    if sampling_rate != audio.TARGET_SAMPLE_RATE:
        raise ValueError(f"{contract.LABELS_FILE}: sampling_rate {sampling_rate} is not 16000")
    config_labels = _read_json(model_dir / "config.json").get("id2label", {})
    if len(config_labels) != len(labels):
        raise ValueError(
            f"{contract.LABELS_FILE} has {len(labels)} labels but config.json has {len(config_labels)}"
        )
    window = round(float(meta.get(contract.WINDOW_SECONDS_KEY, 5.0)) * sampling_rate)
    # The hop training evaluated with; models from before it was recorded used the contract's rule.
    hop_seconds = meta.get(contract.HOP_SECONDS_KEY)
    hop = (
        contract.window_hop(window)
        if hop_seconds is None
        else max(1, round(float(hop_seconds) * sampling_rate))
    )

    if settings.fast_path == "off":
        backend = _torch_backend(model_dir, settings.threads, task)
    else:
        backend = _onnx_backend(model_dir, settings)
    model = AudioModel(
        task=task,
        labels=labels,
        sampling_rate=sampling_rate,
        window=window,
        hop=hop,
        backend=backend,
        normalize=_normalizer(model_dir, sampling_rate),
        settings=settings,
    )
    model.window_scores(np.zeros(window, dtype=np.float32))  # warm up before the first request
    return model


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise FileNotFoundError(f"the model directory has no {path.name}; is it a train.py output?") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} must hold a JSON object")
    return data


def _normalizer(model_dir: Path, sampling_rate: int) -> Callable[[np.ndarray], np.ndarray]:
    """The feature extractor saved with the model, applied exactly as in training.

    A ``Wav2Vec2FeatureExtractor`` (every model this pipeline trains) is ``audio.Features``: the same numpy
    arithmetic that training uses, without transformers' per-call list conversions. Any other extractor
    is loaded with transformers and called as training calls it.
    """
    features = audio.Features.from_preprocessor_config(_read_json(model_dir / "preprocessor_config.json"))
    if features is not None:
        return features

    from transformers import AutoFeatureExtractor

    extractor = AutoFeatureExtractor.from_pretrained(model_dir)

    def normalize(batch: np.ndarray) -> np.ndarray:
        features = extractor(list(batch), sampling_rate=sampling_rate, return_tensors="np")
        return np.ascontiguousarray(features["input_values"], dtype=np.float32)

    return normalize


def _torch_backend(model_dir: Path, threads: int, task: Task) -> Backend:
    import torch
    import transformers

    torch.set_num_threads(threads)
    model = getattr(transformers, task.auto_model).from_pretrained(model_dir).eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(input_values=torch.from_numpy(batch)).logits.float().numpy()

    return run


def _onnx_backend(model_dir: Path, settings: Settings) -> Backend:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    onnx_path = _onnx_file(model_dir, settings.fast_path)
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def run(batch: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(["logits"], {"input_values": batch})[0])

    return run


def _onnx_file(model_dir: Path, fast_path: str) -> Path:
    # No export at load time: that would need torch's exporter in the serving image and minutes per
    # worker; a missing file fails the start-up health check instead, so a blue/green deployment rolls back.
    onnx_path = model_dir / contract.ONNX_FILE
    int8_path = model_dir / contract.ONNX_INT8_FILE
    if fast_path == "onnx-int8" and int8_path.is_file():
        return int8_path
    if not onnx_path.is_file():
        raise FileNotFoundError(
            f"{contract.ENV_FAST_PATH}={fast_path} needs {contract.ONNX_FILE} in the model directory; "
            f"train with --export_onnx, or set {contract.ENV_FAST_PATH}=off"
        )
    if fast_path == "onnx":
        return onnx_path
    logger.info("no %s: quantizing %s at load", contract.ONNX_INT8_FILE, contract.ONNX_FILE)
    return quantize_int8(onnx_path, Path(tempfile.mkdtemp(prefix="acoustic-int8-")) / contract.ONNX_INT8_FILE)


def quantize_int8(onnx_path: Path, out_path: Path) -> Path:
    """int8 dynamic quantization of MatMul/Gemm weights only; int8 convolutions run slower than fp32."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as err:  # the quantizer needs the onnx package, which serving images lack
        raise FileNotFoundError(
            f"{contract.ENV_FAST_PATH}=onnx-int8 needs {contract.ONNX_INT8_FILE} in the model directory (written "
            "with model.onnx at export time) or the onnx package to quantize at load; "
            f"or use {contract.ENV_FAST_PATH}=onnx"
        ) from err
    quantize_dynamic(
        str(onnx_path), str(out_path), op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8
    )
    return out_path


# --------------------------------------------------------------------------------------------------
# The SageMaker handler contract


def model_fn(model_dir: str) -> AudioModel:
    """Loads the model once per worker, with the settings from the environment."""
    settings = current_settings()
    logger.info("loading %s with %s", model_dir, settings)
    return load_model(model_dir, settings)


def input_fn(body: bytes | str, content_type: str | None, context: Any = None) -> AudioRequest:
    """Decodes the body; ``segments=true`` in the custom-attributes header asks for per-window labels."""
    attributes = _attributes(_request_header(context, CUSTOM_ATTRIBUTES_HEADER))
    segments = _true(attributes.pop(contract.SEGMENTS_KEY, None))
    request = parse_request(body, content_type, current_settings(), segments=segments)
    return dataclasses.replace(request, options=attributes) if attributes else request


def predict_fn(data: AudioRequest, model: AudioModel) -> Prediction:
    """The task's answer for the whole clip (windowed) and, when asked, for each window."""
    if not isinstance(data, AudioRequest):
        raise BadRequest("the request was not decoded by this handler's input_fn")
    try:
        return model.predict(data)
    except OptionError as err:
        raise BadRequest(str(err)) from err


def output_fn(prediction: Prediction, accept: str | None) -> str:
    """JSON only; ``Accept: application/json; segments=true`` also asks for per-window labels."""
    for option in (accept or contract.JSON_CONTENT_TYPE).split(","):
        kind, params = _media_type(option)
        if kind in ("", contract.JSON_CONTENT_TYPE, "application/*", "*/*"):
            return json.dumps(prediction.to_json(segments=_true(params.get(contract.SEGMENTS_KEY))))
    raise BadRequest(f"unsupported accept type {accept!r}; accept {contract.JSON_CONTENT_TYPE}", 406)
