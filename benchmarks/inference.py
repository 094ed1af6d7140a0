"""Inference latency and throughput on CPU: handler vs bare forward, fast paths vs fp32 eager.

    python -m benchmarks.inference [--reps 7] [--out benchmarks/results/inference.json]

The model is the wav2vec2-base architecture (default Wav2Vec2Config, random init: the same compute as
the real checkpoint), with 50 labels and 5 s windows, written as train.py writes a model directory
(plus model.onnx and model.int8.onnx). Clips of 1/5/10 s at 44.1 kHz stereo (16-bit WAV).

Measured in one run, interleaved so that load from other processes hits every variant alike:
- bytes -> JSON through input_fn/predict_fn/output_fn, per fast path (median and p95);
- the bare model forward on the same normalized windows, per fast path;
- top-1 agreement of each fast path with fp32 eager on generated clips;
- requests/s of the local server (python -m ml_code.serve) with 1, 2 and 4 concurrent clients.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import soundfile as sf
import torch
import transformers
from transformers import AutoModelForAudioClassification, Wav2Vec2Config, Wav2Vec2FeatureExtractor

from ml_code import audio, inference, layout
from ml_code.onnx_export import export_model_dir
from tests.inference.modeldir import clip, copy_code

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("off", "onnx", "onnx-int8")
CLIP_SECONDS = (1, 5, 10)
LABELS = [f"class_{i:02d}" for i in range(50)]
WINDOW_SECONDS = 5.0


def build_model_dir(path: Path) -> dict[str, float]:
    """wav2vec2-base, random init, saved as a train.py model directory; returns build timings."""
    torch.manual_seed(0)
    config = Wav2Vec2Config(
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    model = AutoModelForAudioClassification.from_config(config).eval()
    model.save_pretrained(path)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False).save_pretrained(path)
    (path / layout.LABELS_FILE).write_text(
        json.dumps({"labels": LABELS, "sampling_rate": 16_000, "max_length_seconds": WINDOW_SECONDS})
    )
    (path / layout.METRICS_FILE).write_text("{}")
    copy_code(path)
    start = time.perf_counter()
    export_model_dir(model, path)
    return {"onnx_export_and_int8_quantization_s": round(time.perf_counter() - start, 1)}


def wav_bytes(seconds: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    left = clip("pulses", seconds * 44_100 / 16_000, rng)  # generated at 16 kHz, written as 44.1 kHz
    right = clip("tone", seconds * 44_100 / 16_000, rng)
    buffer = io.BytesIO()
    sf.write(buffer, np.stack([left, right], axis=1), 44_100, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "median_ms": round(1e3 * statistics.median(ordered), 1),
        "p95_ms": round(1e3 * p95, 1),
        "n": len(ordered),
    }


def latency(classifiers: dict[str, inference.Classifier], reps: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for seconds in CLIP_SECONDS:
        body = wav_bytes(seconds, seed=seconds)
        samples = audio.decode(body)
        windows = np.stack(
            [
                audio.fit_length(samples[s : s + classifiers["off"].window], classifiers["off"].window)
                for s in audio.window_starts(
                    samples.shape[0], classifiers["off"].window, classifiers["off"].hop
                )
            ]
        )
        handler: dict[str, list[float]] = {p: [] for p in classifiers}
        bare: dict[str, list[float]] = {p: [] for p in classifiers}
        for _ in range(reps):
            for path, classifier in classifiers.items():
                start = time.perf_counter()
                request = inference.parse_request(body, "audio/wav", classifier.settings)
                inference.output_fn(inference.predict_fn(request, classifier), "application/json")
                handler[path].append(time.perf_counter() - start)
                normalized = classifier.normalize(windows)
                start = time.perf_counter()
                classifier.backend(normalized)
                bare[path].append(time.perf_counter() - start)
        entry: dict[str, Any] = {"windows": int(windows.shape[0]), "bytes": len(body)}
        for path in classifiers:
            h, b = summary(handler[path]), summary(bare[path])
            entry[path] = {
                "bytes_to_json": h,
                "bare_forward": b,
                "handler_overhead_pct": round(100 * (h["median_ms"] / b["median_ms"] - 1), 1),
            }
        for path in classifiers:
            if path != "off":
                entry[path]["speedup_vs_fp32_eager"] = round(
                    entry["off"]["bytes_to_json"]["median_ms"] / entry[path]["bytes_to_json"]["median_ms"], 2
                )
        results[f"{seconds}s"] = entry
        print(f"{seconds:>3} s: " + json.dumps(entry), flush=True)
    return results


def agreement(classifiers: dict[str, inference.Classifier], clips: int) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    kinds = ("tone", "noise", "pulses")
    test_set = [clip(kinds[i % 3], rng.uniform(1.0, 5.0), rng) for i in range(clips)]
    labels = {
        path: [c.classify(inference.AudioRequest(samples)).label for samples in test_set]
        for path, c in classifiers.items()
    }
    return {
        "clips": clips,
        "model": "wav2vec2-base, random init (small logit margins: a harsh case for quantization)",
        **{
            f"{path}_top1_agreement_with_fp32": round(
                float(np.mean([a == b for a, b in zip(labels["off"], labels[path], strict=True)])), 3
            )
            for path in classifiers
            if path != "off"
        },
    }


def server_throughput(model_dir: Path, fast_path: str, threads: int, requests: int) -> dict[str, Any]:
    env = os.environ | {inference.ENV_FAST_PATH: fast_path, inference.ENV_THREADS: str(threads)}
    command = [sys.executable, "-m", "ml_code.serve", "--model-dir", str(model_dir), "--port", "0"]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        port = int(line.rsplit(":", 1)[1])
        body = wav_bytes(5, seed=5)

        def call(_: int) -> float:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            start = time.perf_counter()
            connection.request("POST", "/invocations", body=body, headers={"Content-Type": "audio/wav"})
            response = connection.getresponse()
            response.read()
            connection.close()
            assert response.status == 200
            return time.perf_counter() - start

        call(0)
        results: dict[str, Any] = {"clip": "5 s, 44.1 kHz stereo WAV", "requests_per_level": requests}
        for clients in (1, 2, 4):
            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=clients) as pool:
                latencies = list(pool.map(call, range(requests)))
            wall = time.perf_counter() - start
            results[f"{clients}_clients"] = {
                "requests_per_s": round(requests / wall, 2),
                "latency": summary(latencies),
            }
        return results
    finally:
        process.terminate()
        process.wait(timeout=60)


def machine(threads: int) -> dict[str, Any]:
    cpu = platform.processor()
    with contextlib.suppress(OSError, StopIteration):  # /proc/cpuinfo is Linux only
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    return {
        "cpu": cpu,
        "cpus_available": inference.Settings.from_env({}).threads,
        "threads_per_worker": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions per clip length and path")
    parser.add_argument("--agreement-clips", type=int, default=30)
    parser.add_argument("--server-requests", type=int, default=8, help="requests per concurrency level")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "inference.json")
    args = parser.parse_args()

    threads = inference.Settings.from_env({}).threads
    report: dict[str, Any] = {"machine": machine(threads)}
    with tempfile.TemporaryDirectory(prefix="bench-model-") as tmp:
        model_dir = Path(tmp)
        report["model"] = {"architecture": "wav2vec2-base (random init)", "labels": len(LABELS)}
        report["model"] |= build_model_dir(model_dir)
        classifiers = {}
        for path in PATHS:
            start = time.perf_counter()
            classifiers[path] = inference.load_classifier(
                model_dir, inference.Settings(fast_path=path, threads=threads)
            )
            report["model"][f"load_{path}_s"] = round(time.perf_counter() - start, 2)
        report["latency"] = latency(classifiers, args.reps)
        report["agreement"] = agreement(classifiers, args.agreement_clips)
        print("agreement: " + json.dumps(report["agreement"]), flush=True)
        del classifiers
        report["server"] = {
            path: server_throughput(model_dir, path, threads, args.server_requests)
            for path in ("off", "onnx-int8")
        }
        print("server: " + json.dumps(report["server"]), flush=True)
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["reps"] = args.reps
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
