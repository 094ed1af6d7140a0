"""Multi-label sound event detection on CPU: what events with times cost on a long recording, and what
per-class thresholds do to micro-F1.

    python -m benchmarks.events [--seeds 1 2 3] [--clips 120] [--reps 3] [--memory-reps 3]
                                [--recording-seconds 600] [--out benchmarks/results/events.json]

The models: the shipped tiny config (hidden 64, 2 layers, random init) trained briefly with ``--task
multilabel`` on the rehearsal's vehicle-event mixtures (tools/rehearse/sounds.py: 3 s of engine rumble with
0, 1 or 2 of TireSkid, EmergencyBraking and CollisionImminent laid over it), 1 s windows, 12 epochs, staged
into train/validation/test with the staging tool (``--test-fraction 0.2``). One model per seed (data,
split and training seed alike), trained with ``--threads`` PyTorch threads; events use the first seed's model.

Events, on one 600 s recording at 16 kHz (engine rumble throughout, events laid over it at known times,
never overlapping), loaded as the endpoint loads a model (fp32 eager, ``--threads`` threads):
- ``segments=False`` (the baseline): the clip's answer from the model's own windows (hop = window / 2);
- ``segments=True``: the same, plus events with times read from windows every 0.25 s.
Both alternate repetition by repetition after one untimed run each, so that load from other processes hits
them alike; medians and the ratio events / baseline, the windows each evaluates, and the events found
(scored against the laid-over events with the task's event-based F1, 200 ms onset collar, and 500 ms for
comparison; and how far found onsets fall from the laid-over ones).
Peak memory of each is measured in fresh processes (``--memory-reps`` per variant, alternating; spawned,
the model loaded and warmed up on a 10 s clip, the recording loaded; medians): the peak resident set size during one request minus the resident set
size just before it (Linux ``VmHWM`` after resetting it through ``/proc/self/clear_refs``; elsewhere
``ru_maxrss``, which cannot be reset, so the rise over the process's earlier peak), which counts
everything, PyTorch's activations included; and tracemalloc's peak over a second request, which counts only
what Python and NumPy allocate (the handler's own arrays: window batches, scores, events), not PyTorch's
tensors. The rise is a few MB over a process of about 500 MB and moves by several MB from process to
process (what the allocator keeps from the warm-up varies), so its ratio is noisy; the peak itself is not.

Thresholds, per seed: the held-out test split's clip scores, computed as the endpoint computes them (the
model's windows, the loudest window per label), scored with the task's ``split_metrics`` twice: with the
thresholds training fitted on the validation split (labels.json ``task_settings``) and with 0.5 for every
label; beside them, each label's lowest and highest clip score, how many (clip, label) pairs each answers,
and the trivial reference: every label answered for every clip. The
validation split's figures (where the thresholds were fitted: an optimistic, in-sample view) and
training's own test micro-F1 (a cross-check of the scoring path) are reported beside them.
The machine's load average is sampled throughout and recorded with the results.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.inference import ROOT, LoadSampler, machine, timed
from common import audio, contract
from serving import inference
from staging import cli as staging
from tasks import SplitScores, multilabel
from tools.rehearse.sounds import BACKGROUND, EVENTS, MIX_RATE, generate_mixtures, synthesize
from training import train

TINY_CONFIG = ROOT / "training" / "configs" / "tiny-wav2vec2"
WINDOW_SECONDS = 1.0
TRAINING = {
    "--max_length_seconds": str(WINDOW_SECONDS),
    "--num_train_epochs": "12",
    "--learning_rate": "3e-3",
    "--per_device_train_batch_size": "8",
    "--disable_tqdm": "true",
}
TEST_FRACTION = 0.2
RECORDING_SECONDS = 600.0
EVENT_GAP_SECONDS = (4.0, 16.0)  # silence (rumble only) between one event's end and the next one's start
WARM_UP_SECONDS = 10.0
ONSET_SEARCH_SECONDS = 1.0
MEMORY_KEYS = ("rss_peak_during_request_mb", "rss_peak_delta_mb", "tracemalloc_peak_mb")
EVERY_LABEL = 1e-9  # a threshold every score reaches: the trivial answer, every label for every clip
MB = 2**20


# --------------------------------------------------------------------------------------------------
# Data and models


def stage_and_train(root: Path, clips: int, seed: int, threads: int) -> dict[str, Any]:
    """Generated mixtures, staged multi-label into train/validation/test, and a model trained on them."""
    raw, data, model_dir = root / "raw", root / "data", root / "model"
    generate_mixtures(raw, root / "held-back", clips=clips, seed=seed)
    source = ["--source-url", str(raw), "--to", str(data), "--seed", str(seed)]
    split_args = ["--test-fraction", str(TEST_FRACTION), "--no-progress"]
    if staging.main(["folder", "--task", "multilabel", *source, *split_args]) != 0:
        raise RuntimeError(f"staging the mixtures of seed {seed} failed")
    argv = [
        "--task",
        "multilabel",
        "--model_name_or_path",
        str(TINY_CONFIG),
        "--train_dir",
        str(data / contract.TRAIN_CHANNEL),
        "--validation_dir",
        str(data / contract.VALIDATION_CHANNEL),
        "--test_dir",
        str(data / contract.TEST_CHANNEL),
        "--model_dir",
        str(model_dir),
        "--output_data_dir",
        str(root / "output"),
        "--seed",
        str(seed),
        *(item for pair in TRAINING.items() for item in pair),
    ]
    # Loading a model sets PyTorch's threads too: each training starts from the same count. One thread trains
    # this model about as fast as two on an idle 2-CPU machine, and far faster when another process takes a
    # core (two threads then slowed one training ten-fold and more).
    torch.set_num_threads(threads)
    train_s, outcome = timed(train.main, argv)
    return {
        "model_dir": model_dir,
        "data": data,
        "train_s": train_s,
        "steps": outcome.global_step,
        "load_1min_after_training": round(os.getloadavg()[0], 2),
        "metrics": outcome.metrics,
    }


def split_scores(model: inference.AudioModel, folder: Path) -> SplitScores:
    """A staged split's window and clip scores as the endpoint computes them (the model's windows, pooled
    by the task's rule), with the targets from its metadata.csv."""
    with (folder / contract.METADATA_FILE).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    windows, window_targets, clips, clip_targets = [], [], [], []
    for row in rows:
        target = model.task.target(row[contract.LABELS_COLUMN], model.labels)
        samples = audio.decode(folder / row[contract.FILE_NAME_COLUMN])
        scores = model.window_scores(samples)[1]
        windows.append(scores)
        window_targets.append(np.repeat(target[None], scores.shape[0], axis=0))
        clips.append(model.task.pool(scores))
        clip_targets.append(target)
    return SplitScores(
        np.concatenate(windows), np.concatenate(window_targets), np.stack(clips), np.stack(clip_targets)
    )


def recording(seconds: float, seed: int) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """``seconds`` of engine rumble at 16 kHz with events laid over it, one after another with a few seconds
    of rumble between them, as the mixtures lay them (``tools/rehearse/sounds.py``: ``mixture``); and each
    event's (label, start, end) in seconds."""
    rng = np.random.default_rng(seed)
    n = int(MIX_RATE * seconds)
    mix = 0.35 * synthesize(BACKGROUND, rng, MIX_RATE, seconds)[:n]
    events: list[tuple[str, float, float]] = []
    start = float(rng.uniform(*EVENT_GAP_SECONDS))
    while True:
        length = float(rng.uniform(0.8, 1.6))
        if start + length > seconds:
            break
        label = EVENTS[len(events) % len(EVENTS)]
        lo = int(start * MIX_RATE)
        sound = synthesize(label, rng, MIX_RATE, length)
        mix[lo : lo + sound.shape[0]] += 0.8 * sound[: n - lo]
        events.append((label, round(start, 3), round(start + length, 3)))
        start += length + float(rng.uniform(*EVENT_GAP_SECONDS))
    peak = float(np.abs(mix).max()) + 1e-9
    return (mix / peak * 0.9).astype(np.float32), events


# --------------------------------------------------------------------------------------------------
# Events: time and memory


def _peak_rss_reset() -> str:
    """Resets the peak resident set size where Linux allows it; returns how the peak is read."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return "VmHWM"
    except OSError:
        return "ru_maxrss"


def _rss_mb(field: str) -> float:
    """``VmRSS`` or ``VmHWM`` from /proc/self/status, or the process's peak (``ru_maxrss``) elsewhere."""
    if field == "ru_maxrss":
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (MB if sys.platform == "darwin" else 1024)  # bytes on macOS, KiB on Linux
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _memory_child(model_dir: str, recording_path: str, segments: bool, threads: int, answers: Any) -> None:
    """In a fresh process: one request's peak memory (resident set, then tracemalloc over a second one)."""
    model = inference.load_model(model_dir, inference.Settings(threads=threads))
    samples = np.load(recording_path)
    warm = samples[: round(WARM_UP_SECONDS * model.sampling_rate)]
    model.predict(inference.AudioRequest(warm, segments=segments))  # full batches, the events' hop
    how = _peak_rss_reset()
    before = _rss_mb("VmRSS") if how == "VmHWM" else _rss_mb("ru_maxrss")
    model.predict(inference.AudioRequest(samples, segments=segments))
    peak = _rss_mb("VmHWM") if how == "VmHWM" else _rss_mb("ru_maxrss")
    tracemalloc.start()
    model.predict(inference.AudioRequest(samples, segments=segments))
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    answers.put(
        {
            "rss_before_request_mb": round(before, 1),
            "rss_peak_during_request_mb": round(peak, 1),
            "rss_peak_delta_mb": round(peak - before, 1),
            "rss_peak_read_from": how,
            "tracemalloc_peak_mb": round(traced / MB, 2),
        }
    )


def peak_memory(model_dir: Path, recording_path: Path, segments: bool, threads: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    answers = context.Queue()
    args = (str(model_dir), str(recording_path), segments, threads, answers)
    process = context.Process(target=_memory_child, args=args)
    process.start()
    try:
        return dict(answers.get(timeout=900))
    finally:
        process.join(timeout=60)


def windows_evaluated(model: inference.AudioModel, samples: np.ndarray, segments: bool) -> int:
    """How many windows a request runs through the model: the clip's, plus the events' when asked for."""
    total = samples.shape[0]
    count = len(audio.window_starts(total, model.window, model.hop))
    if segments and model.task.segment_hop_seconds:
        hop = max(1, round(model.task.segment_hop_seconds * model.sampling_rate))
        count += len(audio.window_starts(total, model.window, hop))
    return count


def event_cost(
    model_dir: Path, seconds: float, reps: int, memory_reps: int, threads: int, work: Path, seed: int
) -> dict[str, Any]:
    samples, reference = recording(seconds, seed)
    recording_path = work / "recording.npy"
    np.save(recording_path, samples)
    model = inference.load_model(model_dir, inference.Settings(threads=threads))
    variants = {"baseline_clip_answer": False, "events": True}
    times: dict[str, list[float]] = {name: [] for name in variants}
    predictions: dict[str, inference.Prediction] = {}
    for rep in range(reps + 1):  # the first round warms up and is not timed
        for name, segments in variants.items():
            elapsed, predictions[name] = timed(
                model.predict, inference.AudioRequest(samples, segments=segments)
            )
            if rep:
                times[name].append(elapsed)
            print(f"events rep {rep} {name}: {elapsed:.2f} s, load {os.getloadavg()[0]:.2f}", flush=True)
    found = predictions["events"].segments
    estimated = [(e[multilabel.LABEL_KEY], e["start"], e["end"]) for e in found]
    results: dict[str, Any] = {
        "recording": {
            "seconds": seconds,
            "sampling_rate": MIX_RATE,
            "events_laid_over": len(reference),
            "per_label": {label: sum(e[0] == label for e in reference) for label in EVENTS},
            "event_seconds": [0.8, 1.6],
            "rumble_between_events_seconds": list(EVENT_GAP_SECONDS),
        },
        "model_window_seconds": model.window / model.sampling_rate,
        "model_hop_seconds": model.hop / model.sampling_rate,
        "event_hop_seconds": model.task.segment_hop_seconds,
        "threads": threads,
        "reps": reps,
        "memory_reps": memory_reps,
    }
    for name, segments in variants.items():
        median = statistics.median(times[name])
        windows = windows_evaluated(model, samples, segments)
        results[name] = {
            "segments": segments,
            "seconds_median": round(median, 3),
            "seconds_min": round(min(times[name]), 3),
            "seconds_max": round(max(times[name]), 3),
            "seconds_per_audio_minute": round(60 * median / seconds, 3),
            "windows_evaluated": windows,
            "ms_per_window": round(1e3 * median / windows, 3),
        }
    del model
    memory: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for _ in range(memory_reps):
        for name, segments in variants.items():
            memory[name].append(peak_memory(model_dir, recording_path, segments, threads))
            print(f"memory {name}: {memory[name][-1]}", flush=True)
    for name, runs in memory.items():
        results[name]["peak_memory"] = {
            "processes": len(runs),
            "rss_peak_read_from": runs[0]["rss_peak_read_from"],
            **{f"{key}_median": _median(runs, key) for key in MEMORY_KEYS},
            "rss_peak_delta_mb_each": [run["rss_peak_delta_mb"] for run in runs],
        }
    base, events = results["baseline_clip_answer"], results["events"]
    results["events_over_baseline"] = {
        "seconds": round(events["seconds_median"] / base["seconds_median"], 3),
        "windows": round(events["windows_evaluated"] / base["windows_evaluated"], 3),
        **{
            key: _ratio(events["peak_memory"][f"{key}_median"], base["peak_memory"][f"{key}_median"])
            for key in MEMORY_KEYS
        },
    }
    results["events_found"] = {
        "total": len(found),
        "per_label": {label: sum(e[0] == label for e in estimated) for label in EVENTS},
        "event_f1_onset_collar_200ms": round(multilabel.event_f1(reference, estimated), 3),
        "event_f1_onset_collar_500ms": round(multilabel.event_f1(reference, estimated, collar=0.5), 3),
        "onset_error_s": onset_errors(reference, estimated),
        "clip_answer_labels": [e[multilabel.LABEL_KEY] for e in predictions["events"].answer["labels"]],
        "baseline_segments_from_model_windows": len(predictions["baseline_clip_answer"].segments),
    }
    return results


def onset_errors(
    reference: list[tuple[str, float, float]], estimated: list[tuple[str, float, float]]
) -> dict[str, Any]:
    """Found onset minus the nearest laid-over onset of the same label, for the found events within
    ``ONSET_SEARCH_SECONDS`` of one (negative: found early)."""
    errors = []
    for label, onset, _ in estimated:
        nearest = min((ref[1] - onset for ref in reference if ref[0] == label), key=abs, default=None)
        if nearest is not None and abs(nearest) <= ONSET_SEARCH_SECONDS:
            errors.append(-nearest)
    return {
        "matched_within_s": ONSET_SEARCH_SECONDS,
        "matched": len(errors),
        "median": round(statistics.median(errors), 3) if errors else None,
        "min": round(min(errors), 3) if errors else None,
        "max": round(max(errors), 3) if errors else None,
    }


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(run[key] for run in runs), 2)


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b > 0 else None


# --------------------------------------------------------------------------------------------------
# Thresholds


def threshold_effect(trained: dict[str, Any], threads: int) -> dict[str, Any]:
    """The test split's (and validation's) metrics with the fitted thresholds vs 0.5 for every label."""
    model = inference.load_model(trained["model_dir"], inference.Settings(threads=threads))
    meta = json.loads((trained["model_dir"] / contract.LABELS_FILE).read_text())
    fitted = meta.get(contract.TASK_SETTINGS_KEY) or {}
    tuned = multilabel.TASK.configured(fitted)
    fixed = multilabel.TASK.configured(
        {multilabel.THRESHOLDS_SETTING: [multilabel.DEFAULT_THRESHOLD] * len(model.labels)}
    )
    every = multilabel.TASK.configured({multilabel.THRESHOLDS_SETTING: [EVERY_LABEL] * len(model.labels)})
    result: dict[str, Any] = {
        "labels": model.labels,
        "fitted_thresholds": fitted.get(multilabel.THRESHOLDS_SETTING),
        "train_s": round(trained["train_s"], 1),
        "train_steps": trained["steps"],
        "load_1min_after_training": trained["load_1min_after_training"],
    }
    for split in (contract.TEST_CHANNEL, contract.VALIDATION_CHANNEL):
        scores = split_scores(model, trained["data"] / split)
        with_tuned = tuned.split_metrics(scores, model.labels)
        with_fixed = fixed.split_metrics(scores, model.labels)
        result[split] = {
            "clips": int(scores.clip.shape[0]),
            "positives_per_label": dict(
                zip(model.labels, scores.clip_targets.sum(axis=0).astype(int).tolist(), strict=True)
            ),
            "clip_score_range_per_label": {
                label: [round(float(low), 4), round(float(high), 4)]
                for label, low, high in zip(
                    model.labels, scores.clip.min(axis=0), scores.clip.max(axis=0), strict=True
                )
            },
            "labels_answered_tuned": _answered(tuned, scores, model.labels),
            "labels_answered_fixed_0_5": _answered(fixed, scores, model.labels),
            "micro_f1_tuned": round(with_tuned["micro_f1"], 4),
            "micro_f1_fixed_0_5": round(with_fixed["micro_f1"], 4),
            "micro_f1_difference": round(with_tuned["micro_f1"] - with_fixed["micro_f1"], 4),
            "micro_f1_every_label_answered": round(every.split_metrics(scores, model.labels)["micro_f1"], 4),
            "macro_f1_tuned": round(with_tuned["macro_f1"], 4),
            "macro_f1_fixed_0_5": round(with_fixed["macro_f1"], 4),
            "map": round(with_tuned["map"], 4),
        }
    result[contract.TEST_CHANNEL]["micro_f1_reported_by_training"] = round(
        trained["metrics"]["test_micro_f1"], 4
    )
    return result


def _answered(task: multilabel.MultiLabel, scores: SplitScores, labels: list[str]) -> int:
    """How many (clip, label) pairs the task answers at its thresholds."""
    return int((scores.clip >= task.decision_thresholds(len(labels))).sum())


def summarize(per_seed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for split in (contract.TEST_CHANNEL, contract.VALIDATION_CHANNEL):
        rows = [seed[split] for seed in per_seed.values()]
        differences = [row["micro_f1_difference"] for row in rows]
        summary[split] = {
            "micro_f1_tuned_median": round(statistics.median(r["micro_f1_tuned"] for r in rows), 4),
            "micro_f1_fixed_0_5_median": round(statistics.median(r["micro_f1_fixed_0_5"] for r in rows), 4),
            "micro_f1_difference_median": round(statistics.median(differences), 4),
            "seeds_where_0_5_answers_nothing": sum(r["labels_answered_fixed_0_5"] == 0 for r in rows),
            "seeds_better_same_worse": [
                sum(d > 0 for d in differences),
                sum(d == 0 for d in differences),
                sum(d < 0 for d in differences),
            ],
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="one trained model each")
    parser.add_argument("--clips", type=int, default=120, help="generated mixtures per seed (all splits)")
    parser.add_argument("--reps", type=int, default=3, help="timed requests per variant on the recording")
    parser.add_argument(
        "--memory-reps", type=int, default=3, help="fresh processes per variant measuring peak memory"
    )
    parser.add_argument("--recording-seconds", type=float, default=RECORDING_SECONDS)
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads, training and serving")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "events.json")
    args = parser.parse_args()

    start = time.perf_counter()
    report: dict[str, Any] = {"machine": machine(args.threads)}
    report["models"] = {
        "config": "tiny-wav2vec2 (hidden 64, 2 layers), random init",
        "task": "multilabel",
        "data": f"{args.clips} generated vehicle-event mixtures of 3 s per seed, test fraction {TEST_FRACTION}",
        "training": {key.lstrip("-"): value for key, value in TRAINING.items()},
        "threads": args.threads,
        "seeds": args.seeds,
    }
    with LoadSampler() as load, tempfile.TemporaryDirectory(prefix="bench-events-") as tmp:
        root = Path(tmp)
        trained = {
            seed: stage_and_train(root / f"seed-{seed}", args.clips, seed, args.threads)
            for seed in args.seeds
        }
        per_seed = {}
        for seed, run in trained.items():
            per_seed[f"seed_{seed}"] = threshold_effect(run, args.threads)
            print(f"thresholds seed {seed}: {json.dumps(per_seed[f'seed_{seed}'])}", flush=True)
        report["thresholds"] = {"per_seed": per_seed, "summary": summarize(per_seed)}
        first = trained[args.seeds[0]]["model_dir"]
        report["events"] = event_cost(
            first,
            args.recording_seconds,
            args.reps,
            args.memory_reps,
            args.threads,
            root,
            seed=args.seeds[0],
        )
        report["events"]["model"] = f"seed_{args.seeds[0]}"
        print(f"events: {json.dumps(report['events'])}", flush=True)
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["machine"]["load_during_run"] = load.summary()
    report["run_seconds"] = round(time.perf_counter() - start, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
