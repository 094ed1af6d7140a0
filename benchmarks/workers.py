"""Workers x threads on this machine: 1 worker with N threads vs N workers with 1 thread each.

    python -m benchmarks.workers [--paths off onnx-int8] [--requests 16] [--out benchmarks/results/workers.json]

N is the number of CPUs this process may use. Each worker is a process that loads the handler's
classifier once (``ACOUSTIC_THREADS`` threads) and takes requests from one shared queue, as the model
server's workers take them from its frontend; clients send a 5 s, 44.1 kHz stereo WAV (the bytes go
through the queue, as MMS passes them to its workers) and wait for the JSON. For 1, 2 and 4 concurrent
clients: requests/s and the latency median and p95. The model is the inference benchmark's
(wav2vec2-base architecture, random init). The configurations alternate client level by client level,
so that load from other processes hits them alike; the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.inference import ROOT, WAV, LoadSampler, build_model_dir, machine, summary, wav_bytes
from common import contract
from serving import inference

CLIENT_LEVELS = (1, 2, 4)


def _worker(model_dir: str, fast_path: str, threads: int, requests: Any, answers: Any) -> None:
    classifier = inference.load_model(model_dir, inference.Settings(fast_path=fast_path, threads=threads))
    answers.put(("ready", os.getpid()))
    while (item := requests.get()) is not None:
        request_id, body = item
        request = inference.parse_request(body, WAV, classifier.settings)
        answers.put((request_id, inference.output_fn(inference.predict_fn(request, classifier), None)))


class Pool:
    """``workers`` processes with ``threads`` threads each, behind one request queue."""

    def __init__(self, model_dir: Path, fast_path: str, workers: int, threads: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.requests, self.answers = context.Queue(), context.Queue()
        self.processes = [
            context.Process(
                target=_worker, args=(str(model_dir), fast_path, threads, self.requests, self.answers)
            )
            for _ in range(workers)
        ]
        for process in self.processes:
            process.start()
        for _ in self.processes:
            self.answers.get(timeout=300)
        self._waiting: dict[int, tuple[threading.Event, list[Any]]] = {}
        self._lock = threading.Lock()
        self._next = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                request_id, answer = self.answers.get(timeout=1)
            except queue.Empty:
                if not any(p.is_alive() for p in self.processes):
                    return
                continue
            event, box = self._waiting.pop(request_id)
            box.append(answer)
            event.set()

    def call(self, body: bytes) -> float:
        """One request, start to answer, in seconds."""
        event, box = threading.Event(), []
        with self._lock:
            request_id, self._next = self._next, self._next + 1
            self._waiting[request_id] = (event, box)
        start = time.perf_counter()
        self.requests.put((request_id, body))
        if not event.wait(timeout=600):
            raise TimeoutError("a worker did not answer within 600 s")
        assert '"label"' in box[0]
        return time.perf_counter() - start

    def close(self) -> None:
        for _ in self.processes:
            self.requests.put(None)
        for process in self.processes:
            process.join(timeout=60)


def level(pool: Pool, body: bytes, clients: int, requests: int) -> dict[str, Any]:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as threads:
        latencies = list(threads.map(lambda _: pool.call(body), range(requests)))
    wall = time.perf_counter() - start
    return {"requests_per_s": round(requests / wall, 2), "latency": summary(latencies)}


def compare(model_dir: Path, fast_path: str, cpus: int, requests: int, body: bytes) -> dict[str, Any]:
    layouts = {f"1_worker_x_{cpus}_threads": (1, cpus), f"{cpus}_workers_x_1_thread": (cpus, 1)}
    pools = {}
    try:
        for name, (workers, threads) in layouts.items():
            pools[name] = Pool(model_dir, fast_path, workers, threads)
            for _ in range(workers):  # warm every worker
                pools[name].call(body)
        results: dict[str, Any] = {name: {} for name in layouts}
        for clients in CLIENT_LEVELS:
            for name, pool in pools.items():
                time.sleep(0.2)  # let the other pool's threads stop spin-waiting
                results[name][f"{clients}_clients"] = level(pool, body, clients, requests)
                print(fast_path, name, clients, results[name][f"{clients}_clients"], flush=True)
        return results
    finally:
        for pool in pools.values():
            pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--paths", nargs="+", default=["off", "onnx-int8"], choices=contract.FAST_PATHS)
    parser.add_argument("--requests", type=int, default=16, help="requests per client level")
    parser.add_argument("--clip-seconds", type=float, default=5.0)
    parser.add_argument("--model-dir", type=Path, help="reuse a benchmark model directory (with ONNX files)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "workers.json")
    args = parser.parse_args()

    cpus = inference.Settings.from_env({}).threads
    report: dict[str, Any] = {
        "machine": machine(cpus),
        "clip": f"{args.clip_seconds:g} s, 44.1 kHz stereo WAV",
        "requests_per_client_level": args.requests,
    }
    body = wav_bytes(args.clip_seconds, seed=5)
    with LoadSampler() as load, tempfile.TemporaryDirectory(prefix="bench-model-") as tmp:
        model_dir = args.model_dir or Path(tmp)
        if args.model_dir is None:
            build_model_dir(model_dir)
        report["results"] = {path: compare(model_dir, path, cpus, args.requests, body) for path in args.paths}
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["machine"]["load_during_run"] = load.summary()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
