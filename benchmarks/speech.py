"""Speech recognition (``--task asr``) on CPU: real-time factor per path and recording length, peak memory on
a long recording, the handler's overhead, and train.py beside the Hugging Face CTC example.

    python -m benchmarks.speech [--reps 3] [--long-reps 2] [--recording-reps 1] [--threads 2]
                                [--example build/hf-example/run_speech_recognition_ctc.py]
                                [--example-python build/hf-example-venv/bin/python]
                                [--out benchmarks/results/speech.json]

The model: the wav2vec2-base architecture (default ``Wav2Vec2Config``, random init: the same compute as the
real checkpoint) with a CTC head over a 30-entry character vocabulary (``<pad>`` the blank, ``<unk>``, ``|``,
a-z and the apostrophe), written as train.py writes a model directory for ``--task asr`` (labels.json with the
task, its 20 s window and the task's hop of two thirds of it, vocab.json and tokenizer_config.json, code/)
plus model.onnx and model.int8.onnx. Recordings: generated noise bursts at syllable rate beside a tone
(spoken-like, not speech: the point is compute), 44.1 kHz stereo 16-bit WAV, as clients send files.

Real-time factor (RTF: compute seconds per second of audio; below 1 is faster than real time), per fast path
(``off``: PyTorch fp32 eager, ``onnx``, ``onnx-int8``):
- 5 s and 60 s (``--lengths``), in this process, interleaved rep by rep (``--reps`` of the 5 s clip,
  ``--long-reps`` of 60 s) so that load from other processes hits every path alike, with a pause and a
  one-window warm-up before each path's turn (as benchmarks/inference.py does): bytes -> JSON through the
  handler's ``parse_request`` (``input_fn``'s work), ``predict_fn`` and ``output_fn``; beside it the bare
  model forward on the same normalized windows in the handler's batches (20 s of audio each).
- 600 s (``--recording-seconds``), through the local server (``python -m tools.serve``: the container
  contract, the handler imported from the model directory's code/, as an asynchronous endpoint runs it; one
  server per path, ``ACOUSTIC_MAX_AUDIO_SECONDS`` and ``ACOUSTIC_MAX_REQUEST_BYTES`` raised to fit the
  recording when the defaults would not), ``--recording-reps`` requests per path in turn. The time is the
  client's, POST to answer; the 106 MB body crosses the loopback in well under 1% of it.
Each path's RTF is reported beside fp32 eager's on the same recording (``speedup_vs_fp32_eager``) and beside
the fp32 floor (the bare fp32 forward on the same windows, where measured). A recording longer than the 20 s
window is read in windows that overlap by a third, so the model hears about 1.5 s per second of audio
(``model_audio_seconds``); ``rtf_per_model_audio_second`` takes that out.

Peak memory of the 600 s recording: the server process's peak resident set size during the request (Linux
``VmHWM``, reset through ``/proc/PID/clear_refs`` just before it; psutil's RSS sampled every 0.1 s beside it
as a cross-check), against the target of 2 GB (2,000,000,000 bytes, 1907 MiB); also its RSS after loading
and its peak while loading; ``over_2gb_ratio`` is the peak over the target. MB in the results are MiB.

Handler overhead, as benchmarks/inference.py measures it: the end-to-end difference (request minus bare
forward, same windows and batches; mostly noise on a shared machine: the multi-threaded forward slows down
when another process takes a core) and, robustly, the handler's own work stage by stage with the model
replaced by a stand-in that returns stored logits of the right shape (random, so that almost every 20 ms
frame decodes to a character: the most text, and so the most decoding and JSON, a model can produce):
decoding and resampling; windows, normalization, stitching and greedy CTC decoding; JSON. Its share of the
request is compared with benchmarks/inference.py's 10% target. For 600 s the stages run in this process and
the request time is the server's; no bare forward is run there (it would cost as much as the request again).

train.py beside the example: the transformers example ``run_speech_recognition_ctc.py``
(examples/pytorch/speech-recognition in huggingface/transformers) and train.py (``--task asr``) train on the
same generated data (tools/rehearse/speech.py ``write_speech_dataset``: spoken digit strings and commands,
synthesized by espeak-ng, whose held-back sentences are never spoken in training), from the same starting
weights (the tiny CTC config training/configs/tiny-wav2vec2-ctc at random init, saved once as a checkpoint
without a CTC head, so that each script puts its own head over its own vocabulary), with the same epochs,
learning rate, batch size, warm-up (a tenth of the steps) and seed, the feature encoder trained by both
(``--freeze_feature_encoder false``: both would freeze a checkpoint's) and no time masking (the config's
0.0; the example's default is 0.05). Everything else is each script's own: how it reads and batches the
data (train.py: whole utterances grouped by length; the example: datasets' audiofolder, random order), and
what it evaluates (train.py: validation after each epoch, the best epoch kept, then validation and test; the
example: the test split once, at the end; both train on the train split only). Each runs once, train.py
first, in its own process with ``--train-threads`` threads (one trains this tiny model as fast as two on
an idle 2-core machine, and far faster when another process takes a core). Reported: wall time (process
start to exit, data loading included), CPU seconds, the Trainer's own ``train_runtime``, the load average
around each, and test WER and CER: as each script reports it (train.py normalizes text first; the example
compares its lower-cased text as is, which for these transcripts is the same; it scores padded evaluation
batches, without an attention mask since the tiny config's feature extractor asks for none), and both models
rescored alike here, each test clip alone (greedy decoding of each model on the clips decoded by
common/audio.py, ``tasks.asr``'s ``error_rates``). From random weights a CTC model first emits only blanks (WER 1.0) for several hundred
steps; the defaults (240 utterances, 30 held back per split, 12 epochs of batches of 4 at 1.5e-3: 720
steps, the rehearsal's epochs, batch size and learning rate on fewer utterances) take train.py past that
in about two minutes of training here.

The example is not part of this repository and nothing is fetched at run time (the benchmark runs
offline): get it once, e.g.

    git clone --filter=blob:none --no-checkout https://github.com/huggingface/transformers build/transformers
    mkdir -p build/hf-example && git -C build/transformers show \\
        5a67f0a7aca8c18de6235e80e47fd00a9ecf9d58:examples/pytorch/speech-recognition/run_speech_recognition_ctc.py \\
        > build/hf-example/run_speech_recognition_ctc.py

(the example as of that commit, written for transformers 5, is the one benchmarks/results/speech.json was
measured with; its git blob is 899a57ce414c102a1a25fbc2b7c6834eab8b37ac). Give it with ``--example`` (the
default is that path, when the file is there); the results record its git blob id, and its commit from
``--example-commit`` or from git when the file is tracked, unchanged, in a checkout. It runs in its own virtual environment (``--example-python``), since it needs
a ``datasets`` that decodes audio without torchcodec (3.6 decodes with soundfile and librosa; it needs pandas
before 3, whose string columns it does not read as strings):

    python3.11 -m venv build/hf-example-venv
    build/hf-example-venv/bin/pip install torch==2.13.0 transformers==<.venv's> datasets==3.6.0 "pandas<3" \\
        soundfile librosa jiwer accelerate

It is run, unchanged, by benchmarks/hf_example_standins/run_example.py. The results list its stand-ins
(``training.hf_example.stand_ins``): that environment's ``datasets``; ``evaluate.load("wer")`` answered
locally with jiwer (benchmarks/hf_example_standins/evaluate.py; the Hub's metric would be downloaded); and a
starting folder without trainer state started afresh where transformers 5 stops (see run_example.py), each
of the last two listed only when it was used. The data reaches it as a local audiofolder
(``--dataset_name`` the folder holding train/, validation/ and test/, each with its metadata.csv;
``--audio_column_name audio --text_column_name transcription``). Without ``--example`` (or with a missing
file or interpreter) that part is recorded as skipped, with the reason.

The machine's load average is sampled throughout and recorded with the results; nothing here asserts a
time.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import gc
import hashlib
import http.client
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
from transformers import AutoConfig, AutoModelForCTC, Wav2Vec2Config, Wav2Vec2FeatureExtractor

import tasks
from benchmarks.inference import (
    OVERHEAD_TARGET_PCT,
    ROOT,
    SETTLE_SECONDS,
    WAV,
    LoadSampler,
    bytes_to_json,
    forward,
    machine,
    median_ms,
    settle,
    summary,
    timed,
    wav_bytes,
)
from common import audio, contract
from serving import inference
from standins.modeldir import copy_code
from tasks import asr
from tools.rehearse.speech import write_speech_dataset
from training.onnx_export import export_model_dir

TASK = "asr"
PATHS = ("off", "onnx", "onnx-int8")
LENGTHS = (5, 60)  # in this process
RECORDING_SECONDS = 600  # through the local server
VOCABULARY = asr.build_vocabulary(["abcdefghijklmnopqrstuvwxyz'"])  # 30 entries: <pad>, <unk>, |, a-z, '
WINDOW_SECONDS = 20.0  # the task's default window (asr.SpeechRecognition.argument_defaults)
RATE = audio.TARGET_SAMPLE_RATE
MEMORY_TARGET_BYTES = 2_000_000_000
MB = 2**20
SERVER_TIMEOUT_S = 3600
MEMORY_SAMPLE_EVERY_S = 0.1

TINY_CTC_CONFIG = ROOT / "training" / "configs" / "tiny-wav2vec2-ctc"
EXAMPLE = ROOT / "build" / "hf-example" / "run_speech_recognition_ctc.py"
EXAMPLE_PYTHON = ROOT / "build" / "hf-example-venv" / "bin" / "python"
RUN_EXAMPLE = ROOT / "benchmarks" / "hf_example_standins" / "run_example.py"
STAND_IN_MARKER = "hf-example stand-in:"  # run_example.py's MARKER
EXAMPLE_PACKAGES = (
    "torch",
    "transformers",
    "datasets",
    "accelerate",
    "soundfile",
    "librosa",
    "jiwer",
    "pandas",
    "numpy",
)
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


# --------------------------------------------------------------------------------------------------
# The model


def build_model_dir(path: Path) -> dict[str, Any]:
    """wav2vec2-base with a CTC head, random init, saved as train.py saves an asr model; returns its facts."""
    task = tasks.load(TASK)
    torch.manual_seed(0)
    model = AutoModelForCTC.from_config(Wav2Vec2Config(**task.config_fields(VOCABULARY))).eval()
    model.save_pretrained(path)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False).save_pretrained(path)
    window = round(WINDOW_SECONDS * RATE)
    (path / contract.LABELS_FILE).write_text(
        json.dumps(
            {
                contract.TASK_KEY: TASK,
                contract.LABELS_KEY: VOCABULARY,
                contract.SAMPLING_RATE_KEY: RATE,
                contract.WINDOW_SECONDS_KEY: WINDOW_SECONDS,
                contract.HOP_SECONDS_KEY: task.hop(window) / RATE,
            }
        )
    )
    (path / contract.METRICS_FILE).write_text("{}")
    for name, text in task.model_files(VOCABULARY).items():
        (path / name).write_text(text + "\n", encoding="utf-8")
    copy_code(path, task)
    start = time.perf_counter()
    export_model_dir(model, path)
    return {
        "architecture": "wav2vec2-base (default Wav2Vec2Config, random init) with a CTC head",
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocabulary": len(VOCABULARY),
        "window_seconds": WINDOW_SECONDS,
        "hop_seconds": round(task.hop(window) / RATE, 3),
        "onnx_export_and_int8_quantization_s": round(time.perf_counter() - start, 1),
    }


def frames(samples: int, config: Any) -> int:
    """The CTC frames the feature encoder makes of ``samples`` (one per 20 ms)."""
    for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
        samples = (samples - kernel) // stride + 1
    return samples


@dataclasses.dataclass
class StoredLogits:
    """A stand-in model: logits of the right shape, drawn once per shape and returned again after that."""

    config: Any
    outputs: int
    cache: dict[tuple[int, int], np.ndarray] = dataclasses.field(default_factory=dict)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        key = (int(batch.shape[0]), int(batch.shape[1]))
        if key not in self.cache:
            rng = np.random.default_rng(key[0] * 1_000_003 + key[1])
            shape = (key[0], frames(key[1], self.config), self.outputs)
            self.cache[key] = rng.standard_normal(shape).astype(np.float32)
        return self.cache[key]


def model_audio_seconds(seconds: float, model: inference.AudioModel) -> float:
    """Seconds of audio the model hears for a recording: its windows, each the window long (or the clip)."""
    total = round(seconds * model.sampling_rate)
    starts = audio.window_starts(total, model.window, model.hop)
    return len(starts) * min(total, model.window) / model.sampling_rate


def own_work(model: inference.AudioModel, body: bytes, stand_in: StoredLogits) -> dict[str, float]:
    """The handler's own stages for one request, the model replaced by the stand-in (seconds each)."""
    decode_s, request = timed(inference.parse_request, body, WAV, model.settings)
    answer_s, prediction = timed(dataclasses.replace(model, backend=stand_in).predict, request)
    json_s = timed(inference.output_fn, prediction, contract.JSON_CONTENT_TYPE)[0]
    return {"decode": decode_s, "windows_normalize_stitch_and_decode": answer_s, "to_json": json_s}


# --------------------------------------------------------------------------------------------------
# RTF and overhead in this process (5 s, 60 s)


def latency(
    models: dict[str, inference.AudioModel],
    stand_in: StoredLogits,
    reps: int,
    long_reps: int,
    lengths: list[int],
) -> dict[str, Any]:
    """Every length x path, interleaved rep by rep: the handler, the bare forward and the handler's own work."""
    first = models["off"]
    bodies = {seconds: wav_bytes(seconds, seed=seconds) for seconds in lengths}
    windows = {s: audio.windows(audio.decode(body), first.window, first.hop) for s, body in bodies.items()}
    for body in bodies.values():  # the stand-in draws its logits for these shapes before anything is timed
        own_work(first, body, stand_in)
    keys = [(s, p) for s in lengths for p in models]
    handler: dict[tuple[int, str], list[float]] = {k: [] for k in keys}
    bare: dict[tuple[int, str], list[float]] = {k: [] for k in keys}
    stages: dict[tuple[int, str], dict[str, list[float]]] = {k: {} for k in keys}
    longest = max(lengths)
    for rep in range(max(reps, long_reps)):
        for seconds in lengths:
            if rep >= (long_reps if seconds == longest and len(lengths) > 1 else reps):
                continue
            body = bodies[seconds]
            for path, model in models.items():
                key = (seconds, path)
                settle(model)
                handler[key].append(timed(bytes_to_json, model, body)[0])
                bare[key].append(timed(forward, model, model.normalize(windows[seconds]))[0])
                for stage, value in own_work(model, body, stand_in).items():
                    stages[key].setdefault(stage, []).append(value)
                print(
                    f"rep {rep + 1} {seconds} s {path}: {handler[key][-1]:.2f} s, "
                    f"load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )

    results: dict[str, Any] = {}
    for seconds in lengths:
        heard = model_audio_seconds(seconds, first)
        entry: dict[str, Any] = {
            "where": "this process: parse_request, predict_fn, output_fn",
            "windows": int(windows[seconds].shape[0]),
            "model_audio_seconds": heard,
            "bytes": len(bodies[seconds]),
        }
        floor = median_ms(bare[(seconds, "off")])
        entry["fp32_floor_rtf"] = round(floor / 1e3 / seconds, 4)
        for path in models:
            key = (seconds, path)
            h, b = summary(handler[key]), summary(bare[key])
            own = {name: median_ms(values) for name, values in stages[key].items()}
            entry[path] = {
                "rtf": round(h["median_ms"] / 1e3 / seconds, 4),
                "rtf_per_model_audio_second": round(h["median_ms"] / 1e3 / heard, 4),
                "bytes_to_json": h,
                "bare_forward": b,
                "bare_forward_rtf": round(b["median_ms"] / 1e3 / seconds, 4),
                "ratio_to_fp32_floor": round(h["median_ms"] / floor, 3),
                "handler_overhead_pct": round(100 * (h["median_ms"] / b["median_ms"] - 1), 1),
                "handler_own_work_ms": round(sum(own.values()), 2),
                "handler_own_work_pct_of_request": round(100 * sum(own.values()) / h["median_ms"], 2),
                "stages_median_ms": {name: round(value, 2) for name, value in own.items()},
            }
        for path in models:
            if path != "off":
                entry[path]["speedup_vs_fp32_eager"] = round(
                    entry["off"]["bytes_to_json"]["median_ms"] / entry[path]["bytes_to_json"]["median_ms"], 2
                )
        results[f"{seconds}s"] = entry
        print(f"{seconds:>3} s: " + json.dumps(entry), flush=True)
    return results


# --------------------------------------------------------------------------------------------------
# The long recording through the local server: RTF and peak memory


def _status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Server:
    """``python -m tools.serve`` on a free port with one fast path; its memory read from /proc and psutil."""

    def __init__(self, model_dir: Path, fast_path: str, threads: int, env: dict[str, str], log: Path) -> None:
        self.fast_path = fast_path
        environment = (
            os.environ | env | {contract.ENV_FAST_PATH: fast_path, contract.ENV_THREADS: str(threads)}
        )
        command = [sys.executable, "-m", "tools.serve", "--model-dir", str(model_dir), "--port", "0"]
        self._log = log
        self._log_handle = log.open("w")
        start = time.perf_counter()
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=self._log_handle, text=True
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        if "http://" not in line:
            self.stop()
            raise RuntimeError(f"the {fast_path} server did not start: {self.log_tail()}")
        self.port = int(line.rsplit(":", 1)[1])
        self.load_s = time.perf_counter() - start
        self.psutil = psutil.Process(self.process.pid)
        self.rss_after_load_mb = self.rss_mb()
        self.peak_while_loading_mb = self.peak_mb()  # before any reset: loading, the warm-up included

    def log_tail(self, lines: int = 20) -> str:
        with self._log.open() as handle:
            return "".join(handle.readlines()[-lines:])

    def rss_mb(self) -> float:
        return self.psutil.memory_info().rss / MB

    def peak_mb(self) -> float | None:
        kib = _status_kib(self.process.pid, "VmHWM")
        return None if kib is None else kib / 1024

    def reset_peak(self) -> bool:
        """Resets the process's peak RSS (VmHWM) to its current RSS, where Linux allows it."""
        try:
            Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def transcribe(self, body: bytes) -> dict[str, Any]:
        """One POST /invocations; its time, the answer, and the RSS peak and samples during it."""
        samples: list[float] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                try:
                    samples.append(self.rss_mb())
                except psutil.Error:
                    return
                done.wait(MEMORY_SAMPLE_EVERY_S)

        before = self.rss_mb()
        load_before = os.getloadavg()[0]
        reset = self.reset_peak()
        sampler = threading.Thread(target=sample, daemon=True)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=SERVER_TIMEOUT_S)
        sampler.start()
        start = time.perf_counter()
        try:
            connection.request("POST", "/invocations", body=body, headers={"Content-Type": WAV})
            response = connection.getresponse()
            payload = response.read()
            elapsed = time.perf_counter() - start
        finally:
            done.set()
            sampler.join()
            connection.close()
        if response.status != 200:
            raise RuntimeError(f"the {self.fast_path} server answered {response.status}: {payload[:500]!r}")
        peak = self.peak_mb() if reset else None
        return {
            "seconds": elapsed,
            "answer": json.loads(payload),
            "rss_before_request_mb": round(before, 1),
            "rss_peak_during_request_mb": None if peak is None else round(peak, 1),
            "rss_peak_read_from": "VmHWM" if reset else "psutil samples",
            "rss_sampled_max_mb": round(max(samples, default=before), 1),
            "rss_samples": len(samples),
            "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_handle.close()


def recording_through_server(
    model_dir: Path,
    seconds: float,
    reps: int,
    threads: int,
    work: Path,
    model: inference.AudioModel,
    stand_in: StoredLogits,
) -> dict[str, Any]:
    """The long recording, ``reps`` requests per path in turn, each path in its own server."""
    body = wav_bytes(seconds, seed=int(seconds))
    env = {
        contract.ENV_MAX_AUDIO_SECONDS: str(max(inference.DEFAULT_MAX_AUDIO_SECONDS, float(seconds))),
        contract.ENV_MAX_REQUEST_BYTES: str(max(inference.DEFAULT_MAX_REQUEST_BYTES, len(body) + MB)),
    }
    heard = model_audio_seconds(seconds, model)
    # The handler's own work on this recording, in this process (the server's request time is its whole).
    stages: dict[str, list[float]] = {}
    own_work(model, body, stand_in)  # untimed: the stand-in draws its logits for these shapes
    for _ in range(max(1, reps)):
        for stage, value in own_work(model, body, stand_in).items():
            stages.setdefault(stage, []).append(value)
    own = {name: median_ms(values) for name, values in stages.items()}
    results: dict[str, Any] = {
        "where": "the local server (python -m tools.serve), one per path; client time, POST to answer",
        "seconds": seconds,
        "bytes": len(body),
        "windows": len(audio.window_starts(round(seconds * RATE), model.window, model.hop)),
        "model_audio_seconds": heard,
        "server_environment": env,
        "reps": reps,
        "handler_own_work_ms": round(sum(own.values()), 2),
        "stages_median_ms": {name: round(value, 2) for name, value in own.items()},
    }
    servers: dict[str, Server] = {}
    runs: dict[str, list[dict[str, Any]]] = {path: [] for path in PATHS}
    try:
        for path in PATHS:
            servers[path] = Server(model_dir, path, threads, env, work / f"server-{path}.log")
            print(f"server {path}: loaded in {servers[path].load_s:.1f} s", flush=True)
        for rep in range(reps):
            for path, server in servers.items():
                time.sleep(SETTLE_SECONDS)
                run = server.transcribe(body)
                runs[path].append(run)
                print(
                    f"rep {rep + 1} {seconds} s {path} (server): {run['seconds']:.1f} s, peak "
                    f"{run['rss_peak_during_request_mb']} MB, load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
        for path, server in servers.items():
            results[path] = _recording_entry(server, runs[path], seconds, heard, own)
    finally:
        for server in servers.values():
            server.stop()
    base = results["off"]["request"]["median_ms"]
    for path in PATHS:
        if path != "off":
            results[path]["speedup_vs_fp32_eager"] = round(base / results[path]["request"]["median_ms"], 2)
    print(f"{seconds} s (server): " + json.dumps(results), flush=True)
    return results


def _recording_entry(
    server: Server, runs: list[dict[str, Any]], seconds: float, heard: float, own: dict[str, float]
) -> dict[str, Any]:
    request = summary([run["seconds"] for run in runs])
    peaks = [run["rss_peak_during_request_mb"] or run["rss_sampled_max_mb"] for run in runs]
    peak = max(peaks)
    answer = runs[-1]["answer"]
    return {
        "rtf": round(request["median_ms"] / 1e3 / seconds, 4),
        "rtf_per_model_audio_second": round(request["median_ms"] / 1e3 / heard, 4),
        "request": request,
        "handler_own_work_pct_of_request": round(100 * sum(own.values()) / request["median_ms"], 2),
        "server_load_s": round(server.load_s, 1),
        "load_1min_before_and_after_each_request": [run["load_1min"] for run in runs],
        "peak_memory": {
            "rss_after_load_mb": round(server.rss_after_load_mb, 1),
            "rss_peak_while_loading_mb": _rounded(server.peak_while_loading_mb),
            "rss_before_each_request_mb": [run["rss_before_request_mb"] for run in runs],
            "rss_peak_during_request_mb": round(peak, 1),
            "rss_peak_during_request_bytes": round(peak * MB),
            "rss_rise_during_request_mb": round(peak - server.rss_after_load_mb, 1),
            "rss_peak_each_request_mb": peaks,
            "rss_peak_read_from": runs[0]["rss_peak_read_from"],
            "rss_sampled_max_mb": max(run["rss_sampled_max_mb"] for run in runs),
            "under_2gb": peak * MB < MEMORY_TARGET_BYTES,
            "over_2gb_ratio": round(peak * MB / MEMORY_TARGET_BYTES, 2),
        },
        "answer": {
            "words": len(answer.get(asr.WORDS_KEY, [])),
            "characters": len(answer.get(asr.TEXT_KEY, "")),
            "problems": asr.TASK.check_answer(answer, VOCABULARY),
        },
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# --------------------------------------------------------------------------------------------------
# train.py beside the Hugging Face example


def start_checkpoint(path: Path, seed: int) -> Path:
    """The tiny CTC config at random init, saved as a checkpoint without its CTC head."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = AutoModelForCTC.from_config(AutoConfig.from_pretrained(TINY_CTC_CONFIG))
    model.save_pretrained(path)
    weights = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("lm_head.")}
    save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})
    Wav2Vec2FeatureExtractor.from_pretrained(TINY_CTC_CONFIG).save_pretrained(path)
    return path


def _where(path: Path) -> str:
    """A path as the results may name it: relative to the repository, or only its name outside it."""
    absolute = Path(os.path.abspath(path))  # a venv's python is a link: name the link, not its target
    try:
        return str(absolute.relative_to(ROOT))
    except ValueError:
        return f"<outside the repository>/{path.name}"


def git_blob(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def example_commit(path: Path, given: str | None) -> dict[str, str | None]:
    """The transformers commit the example comes from: as given, or from git when the file is tracked in a
    checkout (and unchanged there)."""
    if given:
        return {"git_commit": given, "git_commit_from": "--example-commit"}
    git = ["git", "-C", str(path.parent)]
    try:
        tracked = subprocess.run(
            [*git, "ls-files", "--error-unmatch", path.name], capture_output=True, timeout=60, check=False
        )
        changed = subprocess.run([*git, "diff", "--quiet", "HEAD", "--", path.name], timeout=60, check=False)
        run = subprocess.run(
            [*git, "log", "-1", "--format=%H", "--", path.name],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except OSError:
        return {"git_commit": None, "git_commit_from": "unknown: git is not installed"}
    if tracked.returncode != 0 or changed.returncode != 0 or not run.stdout.strip():
        return {"git_commit": None, "git_commit_from": "unknown: not a tracked, unchanged file of a checkout"}
    return {"git_commit": run.stdout.strip(), "git_commit_from": "git log of its checkout"}


def _child_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_script(command: list[str], env: dict[str, str], log: Path, cwd: Path) -> dict[str, Any]:
    """Runs one training process to its end; wall and CPU seconds, load around it, exit status."""
    load_before = os.getloadavg()[0]
    cpu_before = _child_cpu_s()
    start = time.perf_counter()
    with log.open("w") as handle:
        run = subprocess.run(command, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT, check=False)
    return {
        "exit_code": run.returncode,
        "wall_s": round(time.perf_counter() - start, 1),
        "cpu_s": round(_child_cpu_s() - cpu_before, 1),
        "load_1min_before": round(load_before, 2),
        "load_1min_after": round(os.getloadavg()[0], 2),
    }


def _train_runtime(text: str) -> float | None:
    found = re.findall(r"'train_runtime': '?([0-9.]+)", text)
    return float(found[-1]) if found else None


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def split_rows(split: Path) -> list[dict[str, str]]:
    with (split / contract.METADATA_FILE).open(newline="") as handle:
        return list(csv.DictReader(handle))


def rescore_ours(model_dir: Path, split: Path, threads: int) -> dict[str, Any]:
    """train.py's model as the endpoint answers: greedy decoding of each test clip."""
    model = inference.load_model(model_dir, inference.Settings(threads=threads))
    rows = split_rows(split)
    hypotheses = [
        model.predict(inference.AudioRequest(audio.decode(split / row[contract.FILE_NAME_COLUMN]))).answer[
            asr.TEXT_KEY
        ]
        for row in rows
    ]
    return _scored(rows, hypotheses)


def rescore_example(output_dir: Path, split: Path) -> dict[str, Any]:
    """The example's model with its own tokenizer: greedy decoding of each test clip, as it decodes."""
    from transformers import Wav2Vec2CTCTokenizer

    model = AutoModelForCTC.from_pretrained(output_dir).eval()
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(output_dir)
    features = audio.Features.from_preprocessor_config(
        json.loads((output_dir / "preprocessor_config.json").read_text())
    )
    assert features is not None, "the example saved a Wav2Vec2FeatureExtractor"
    rows = split_rows(split)
    hypotheses = []
    with torch.inference_mode():
        for row in rows:
            samples = audio.decode(split / row[contract.FILE_NAME_COLUMN])
            logits = model(input_values=torch.from_numpy(features(samples[None]))).logits
            hypotheses.append(tokenizer.decode(logits.argmax(dim=-1)[0].tolist()))
    return _scored(rows, hypotheses)


def _scored(rows: list[dict[str, str]], hypotheses: list[str]) -> dict[str, Any]:
    references = [row[contract.TRANSCRIPTION_COLUMN] for row in rows]
    rates = asr.error_rates(references, hypotheses)
    return {
        "wer": round(rates["wer"], 4),
        "cer": round(rates["cer"], 4),
        "empty_hypotheses": sum(not h.strip() for h in hypotheses),
        "first": [
            {"reference": r, "hypothesis": h} for r, h in zip(references[:3], hypotheses[:3], strict=True)
        ],
    }


def example_environment(python: Path) -> dict[str, Any]:
    code = (
        "import importlib.metadata as m, json, platform\n"
        f"names = {list(EXAMPLE_PACKAGES)!r}\n"
        "out = {'python': platform.python_version()}\n"
        "for n in names:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: out[n] = None\n"
        "print(json.dumps(out))\n"
    )
    run = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=300, check=False)
    return json.loads(run.stdout) if run.returncode == 0 else {"error": run.stderr[-500:]}


def environment_stand_in(environment: dict[str, Any], python: str) -> dict[str, str]:
    """The example's own virtual environment, said as the stand-in it is."""
    return {
        "name": "datasets",
        "what": f"datasets {environment.get('datasets')} (pandas {environment.get('pandas')}) in its own "
        f"virtual environment ({python}): decodes audio with soundfile and librosa, without torchcodec",
    }


def example_problem(example: Path | None, python: Path) -> str | None:
    """Why the example cannot run here, or None."""
    if example is None:
        return "no --example given (the example is not part of the repository; see the module docstring)"
    if not example.is_file():
        return f"--example {_where(example)}: no such file (see the module docstring for how to get it)"
    if not python.is_file():
        return f"--example-python {_where(python)}: no such interpreter (see the module docstring)"
    if "def main" not in example.read_text(encoding="utf-8", errors="replace"):
        return f"--example {_where(example)} does not look like run_speech_recognition_ctc.py"
    return None


def training_side_by_side(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """The same data, starting weights and hyperparameters through train.py and through the example."""
    hyper = {
        "num_train_epochs": str(args.epochs),
        "learning_rate": str(args.learning_rate),
        "per_device_train_batch_size": str(args.batch_size),
        "per_device_eval_batch_size": str(args.batch_size),
        "warmup_steps": "0.1",  # transformers 5: a value below 1 is a ratio of the steps
        "seed": str(args.seed),
        "freeze_feature_encoder": "false",
        "logging_steps": "10",
        "disable_tqdm": "true",
        "report_to": "none",
    }
    flags = [item for name, value in hyper.items() for item in (f"--{name}", value)]
    data = root / "speech"
    written = write_speech_dataset(
        data, seed=args.seed, train=args.utterances, validation=args.held_back, test=args.held_back
    )
    start = start_checkpoint(root / "start", args.seed)
    env = os.environ | OFFLINE
    env |= {
        "HF_HOME": str(root / "hf-home"),
        "HF_DATASETS_CACHE": str(root / "hf-datasets"),
        "OMP_NUM_THREADS": str(args.train_threads),
        "MKL_NUM_THREADS": str(args.train_threads),
        "TOKENIZERS_PARALLELISM": "false",
        "MPLCONFIGDIR": str(root / "matplotlib"),
    }
    result: dict[str, Any] = {
        "data": {
            "source": "tools/rehearse/speech.py write_speech_dataset (espeak-ng)",
            "seed": args.seed,
            "splits": written["splits"],
        },
        "start": "training/configs/tiny-wav2vec2-ctc at random init (torch seed --seed), saved without a CTC head",
        "same_for_both": hyper,
        "threads": args.train_threads,
        "mask_time_prob": 0.0,
    }
    ours = train_with_train_py(start, data, flags, env, root / "train-py", args.train_threads)
    result["train_py"] = ours
    print(f"train.py: {json.dumps(ours)}", flush=True)
    problem = example_problem(args.example, args.example_python)
    if problem or args.example is None:
        result["hf_example"] = {"skipped": problem}
        print(f"hf example skipped: {problem}", flush=True)
        return result
    theirs = train_with_example(args.example, args, start, data, flags, env, root / "hf-example")
    result["hf_example"] = theirs
    print(f"hf example: {json.dumps(theirs)}", flush=True)
    if "skipped" not in theirs and "failed" not in ours:
        result["example_over_train_py"] = {
            key: round(theirs[key] / ours[key], 3)
            for key in ("wall_s", "cpu_s", "train_runtime_s")
            if ours.get(key) and theirs.get(key)
        }
    return result


def train_with_train_py(
    start: Path, data: Path, flags: list[str], env: dict[str, str], work: Path, threads: int
) -> dict[str, Any]:
    command = [sys.executable, "-m", "training.train", "--task", TASK, "--model_name_or_path", str(start)]
    command += ["--train_dir", str(data / contract.TRAIN_CHANNEL)]
    command += ["--validation_dir", str(data / contract.VALIDATION_CHANNEL)]
    command += ["--test_dir", str(data / contract.TEST_CHANNEL)]
    command += ["--model_dir", str(work / "model"), "--output_data_dir", str(work / "output"), *flags]
    work.mkdir()
    print("training with train.py ...", flush=True)
    ours = run_script(command, env, work / "log.txt", ROOT)
    if ours["exit_code"] != 0:
        return ours | {"failed": _tail(work / "log.txt")}
    metrics = json.loads((work / "output" / contract.METRICS_FILE).read_text())
    return ours | {
        "train_runtime_s": _train_runtime((work / "log.txt").read_text(errors="replace")),
        "test_wer_reported": round(metrics["test_wer"], 4),
        "test_cer_reported": round(metrics["test_cer"], 4),
        "reported_by": "train.py's test metrics (text normalized first: tasks.asr.normalize_text)",
        "evaluates": "validation after every epoch (the best epoch kept), then validation and test",
        "rescored_here": rescore_ours(work / "model", data / contract.TEST_CHANNEL, threads),
    }


def train_with_example(
    example: Path,
    args: argparse.Namespace,
    start: Path,
    data: Path,
    flags: list[str],
    env: dict[str, str],
    work: Path,
) -> dict[str, Any]:
    command = [str(args.example_python), str(RUN_EXAMPLE), str(example.resolve())]
    command += ["--model_name_or_path", str(start), "--dataset_name", str(data)]
    command += ["--train_split_name", contract.TRAIN_CHANNEL, "--eval_split_name", contract.TEST_CHANNEL]
    command += ["--audio_column_name", "audio", "--text_column_name", contract.TRANSCRIPTION_COLUMN]
    command += ["--output_dir", str(work / "out"), "--do_train", "--do_eval"]
    command += ["--eval_metrics", "wer", "cer", "--mask_time_prob", "0.0", *flags]
    work.mkdir()
    print("training with the Hugging Face example ...", flush=True)
    theirs: dict[str, Any] = {
        "script": _where(example),
        "git_blob": git_blob(example),
        **example_commit(example, args.example_commit),
        "python": _where(args.example_python),
        "environment": example_environment(args.example_python),
    }
    theirs |= run_script(command, env, work / "log.txt", work)
    log = (work / "log.txt").read_text(errors="replace")
    theirs["stand_ins"] = [
        environment_stand_in(theirs["environment"], theirs["python"]),
        *(
            json.loads(line.split(STAND_IN_MARKER, 1)[1])
            for line in log.splitlines()
            if STAND_IN_MARKER in line
        ),
    ]
    outcome = work / "out" / "all_results.json"
    if theirs["exit_code"] != 0 or not outcome.is_file():
        return theirs | {
            "skipped": f"the example failed (exit {theirs['exit_code']}): {_tail(work / 'log.txt')}"
        }
    metrics = json.loads(outcome.read_text())
    return theirs | {
        "train_runtime_s": metrics.get("train_runtime"),
        "test_wer_reported": round(metrics["eval_wer"], 4),
        "test_cer_reported": round(metrics["eval_cer"], 4) if "eval_cer" in metrics else None,
        "reported_by": "the example's eval on the test split (--eval_split_name test), its text as is",
        "evaluates": "the test split once, after training",
        "rescored_here": rescore_example(work / "out", data / contract.TEST_CHANNEL),
    }


# --------------------------------------------------------------------------------------------------
# Targets and the run


def targets(report: dict[str, Any]) -> dict[str, Any]:
    """The targets, checked against this run's medians: met or missed, and by how much."""
    out: dict[str, Any] = {}
    rtf = {
        f"{length}/{path}": entry[path]["rtf"]
        for length, entry in {**report.get("latency", {}), **_recording(report)}.items()
        for path in PATHS
        if path in entry
    }
    out["rtf"] = rtf
    out["faster_than_real_time"] = all(value < 1 for value in rtf.values())
    recording = report.get("recording")
    if recording:
        peaks = {path: recording[path]["peak_memory"]["rss_peak_during_request_mb"] for path in PATHS}
        out["peak_memory_target_bytes"] = MEMORY_TARGET_BYTES
        out[f"peak_memory_{recording['seconds']}s_mb"] = peaks
        out["peak_memory_under_2gb"] = {p: recording[p]["peak_memory"]["under_2gb"] for p in PATHS}
        out["peak_memory_over_2gb_ratio"] = {p: recording[p]["peak_memory"]["over_2gb_ratio"] for p in PATHS}
        out["peak_memory_met"] = all(out["peak_memory_under_2gb"].values())
    own = {
        f"{length}/{path}": entry[path]["handler_own_work_pct_of_request"]
        for length, entry in {**report.get("latency", {}), **_recording(report)}.items()
        for path in PATHS
        if path in entry
    }
    out["handler_own_work_at_most_pct_of_request"] = OVERHEAD_TARGET_PCT
    out["handler_own_work_pct_of_request"] = own
    out["handler_own_work_met"] = all(value <= OVERHEAD_TARGET_PCT for value in own.values())
    end_to_end = {
        f"{length}/{path}": entry[path]["handler_overhead_pct"]
        for length, entry in report.get("latency", {}).items()
        for path in PATHS
    }
    out["end_to_end_overhead_vs_bare_forward_pct"] = end_to_end
    return out


def _recording(report: dict[str, Any]) -> dict[str, Any]:
    recording = report.get("recording")
    return {f"{recording['seconds']}s": recording} if recording else {}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions of the short clip per path")
    parser.add_argument("--long-reps", type=int, default=2, help="repetitions of the longest --lengths clip")
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS), help="seconds, in process")
    parser.add_argument("--recording-seconds", type=int, default=RECORDING_SECONDS)
    parser.add_argument(
        "--recording-reps", type=int, default=1, help="requests per path on the recording; 0: skip it"
    )
    parser.add_argument("--threads", type=int, default=inference.Settings.from_env({}).threads)
    parser.add_argument("--utterances", type=int, default=240, help="training utterances; 0: skip training")
    parser.add_argument("--held-back", type=int, default=30, help="validation and test utterances, each")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--learning-rate", type=float, default=1.5e-3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--train-threads", type=int, default=1, help="PyTorch threads of each training")
    parser.add_argument("--example", type=Path, default=EXAMPLE if EXAMPLE.is_file() else None)
    parser.add_argument("--example-commit", help="the transformers commit the example was taken from")
    parser.add_argument("--example-python", type=Path, default=EXAMPLE_PYTHON)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "speech.json")
    return parser.parse_args()


def main() -> None:
    args = parse_args()

    begun = time.perf_counter()
    report: dict[str, Any] = {"machine": machine(args.threads)}
    with LoadSampler() as load, tempfile.TemporaryDirectory(prefix="bench-speech-") as tmp:
        root = Path(tmp)
        model_dir = root / "model"
        report["model"] = build_model_dir(model_dir)
        print(f"model: {json.dumps(report['model'])}", flush=True)
        models = {}
        for path in PATHS:
            start = time.perf_counter()
            models[path] = inference.load_model(
                model_dir, inference.Settings(fast_path=path, threads=args.threads)
            )
            report["model"][f"load_{path}_s"] = round(time.perf_counter() - start, 2)
        stand_in = StoredLogits(AutoConfig.from_pretrained(model_dir), len(VOCABULARY))
        report["latency"] = latency(models, stand_in, args.reps, args.long_reps, sorted(args.lengths))
        fp32 = models["off"]
        del models
        gc.collect()
        if args.recording_reps:
            report["recording"] = recording_through_server(
                model_dir, args.recording_seconds, args.recording_reps, args.threads, root, fp32, stand_in
            )
        del fp32
        gc.collect()
        if args.utterances:
            report["training"] = training_side_by_side(args, root)
        else:
            report["training"] = {"skipped": "--utterances 0"}
        shutil.rmtree(root / "hf-home", ignore_errors=True)
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["machine"]["load_during_run"] = load.summary()
    report["reps"] = {
        f"{min(args.lengths)}s": args.reps,
        f"{max(args.lengths)}s": args.long_reps,
        f"{args.recording_seconds}s": args.recording_reps,
    }
    report["targets"] = targets(report)
    report["run_seconds"] = round(time.perf_counter() - begun, 1)
    print("targets: " + json.dumps(report["targets"]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {_where(args.out)}")


if __name__ == "__main__":
    main()
