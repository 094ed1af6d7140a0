"""Training throughput on CPU: clips/s, seconds per epoch, and the data pipeline's share of each step.

    python -m benchmarks.training [--clips 128] [--epochs 5] [--out benchmarks/results/training.json]

Generated data (standins/synthetic.py: four tone/noise classes, 1 to 8 s, mixed formats, rates and
channels), scanned as train.py scans it. Two model sizes, both random init as the offline default starts
(so the feature encoder trains): the shipped tiny config (hidden 64, 2 layers) and a small one (hidden
128, 4 layers, 4 heads, intermediate 512; the same feature encoder). train.py's defaults otherwise:
5 s random crops, augmentation on, batches of 8 padded to their longest crop, AdamW.

Per model, in one run:
- ``pipeline``: the Trainer on train.py's dataset (decoded clips cached, crop + augmentation +
  normalization per item) and collator; the time spent getting items and collating them is measured
  inside the step loop (``dataloader_num_workers`` 0, train.py's CPU default), so its share is exact;
- ``cached_inputs`` (the baseline): the same steps on inputs prepared once before training, so that a
  step is the model's forward, backward and optimizer step plus collation only.
The two alternate epoch by epoch (each run is repeated ``--repeats`` times, interleaved), so that load
from other processes hits them alike; the load average is sampled and recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import TrainingArguments

import tasks
from benchmarks.inference import ROOT, LoadSampler, machine
from common import audio
from serving import inference
from standins.synthetic import make_audiofolder
from training import audiofolder, train

TINY_CONFIG = ROOT / "training" / "configs" / "tiny-wav2vec2"
SMALL = {"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 512}
BATCH = 8


class TimedDataset(torch.utils.data.Dataset):
    """Counts the seconds spent producing items."""

    def __init__(self, inner: torch.utils.data.Dataset) -> None:
        self.inner, self.seconds = inner, 0.0

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> Any:
        start = time.perf_counter()
        item = self.inner[i]
        self.seconds += time.perf_counter() - start
        return item


class TimedCollator:
    """Counts the seconds spent collating batches."""

    def __init__(self, inner: Callable[[Any], Any]) -> None:
        self.inner, self.seconds = inner, 0.0

    def __call__(self, examples: Any) -> Any:
        start = time.perf_counter()
        batch = self.inner(examples)
        self.seconds += time.perf_counter() - start
        return batch


class Cached(torch.utils.data.Dataset):
    """One epoch of ``inner``'s items, made once: a step then costs the model alone."""

    def __init__(self, inner: torch.utils.data.Dataset) -> None:
        self.items = [inner[i] for i in range(len(inner))]  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]


def config_dir(root: Path, name: str, overrides: dict[str, Any]) -> Path:
    """A config-only model folder (random init, as train.py's offline default)."""
    folder = root / name
    folder.mkdir(parents=True)
    config = json.loads((TINY_CONFIG / "config.json").read_text()) | overrides
    (folder / "config.json").write_text(json.dumps(config))
    shutil.copy(TINY_CONFIG / "preprocessor_config.json", folder)
    return folder


def epoch_run(
    model_path: Path, dataset: torch.utils.data.Dataset, collator: Any, work: Path, seed: int
) -> dict[str, float]:
    """One epoch of train.py's Trainer set-up on ``dataset``: wall seconds and where they went."""
    labels = ["high", "low", "mid", "noise"]
    model_args = train.parse_arguments(["--model_name_or_path", str(model_path)])[0]
    model = train.load_model(model_args, labels, tasks.load(None)).model
    timed_data, timed_collator = TimedDataset(dataset), TimedCollator(collator)
    args = TrainingArguments(
        output_dir=str(work),
        per_device_train_batch_size=BATCH,
        num_train_epochs=1,
        learning_rate=3e-3,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        seed=seed,
    )
    trainer = audiofolder.AudioTrainer(
        model=model, args=args, data_collator=timed_collator, train_dataset=timed_data
    )
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "items_s": timed_data.seconds,
        "collate_s": timed_collator.seconds,
        "steps": trainer.state.global_step,
    }


def benchmark_model(
    name: str, model_path: Path, split: audiofolder.Split, epochs: int, work: Path
) -> dict[str, Any]:
    labels = split.labels
    label2id = {label: i for i, label in enumerate(labels)}
    model_args = train.parse_arguments(["--model_name_or_path", str(model_path)])[0]
    loaded = train.load_model(model_args, labels, tasks.load(None))
    featurize, collator, padding = train.model_inputs(loaded.extractor, loaded.model.config)
    data_args = train.parse_arguments([])[1]
    augmentation = train.build_augmentation(data_args, bool(loaded.extractor.do_normalize), None)
    length = round(data_args.max_length_seconds * audio.TARGET_SAMPLE_RATE)
    pipeline = audiofolder.RandomCrops(split.clips, label2id.__getitem__, length, featurize, augmentation)
    torch.manual_seed(0)
    cached = Cached(pipeline)
    runs: dict[str, list[dict[str, float]]] = {"pipeline": [], "cached_inputs": []}
    for epoch in range(epochs):
        for variant, dataset in (("pipeline", pipeline), ("cached_inputs", cached)):
            runs[variant].append(epoch_run(model_path, dataset, collator, work / f"{name}-{variant}", epoch))
            print(name, variant, epoch, {k: round(v, 2) for k, v in runs[variant][-1].items()}, flush=True)

    def med(variant: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[variant])

    clips = len(split.clips)
    result: dict[str, Any] = {
        "parameters": sum(p.numel() for p in loaded.model.parameters()),
        "feature_encoder": "trained" if not loaded.frozen else "frozen",
        "padding": padding,
        "clips_per_epoch": clips,
        "steps_per_epoch": int(med("pipeline", "steps")),
        "epochs_measured": epochs,
    }
    for variant in runs:
        wall = med(variant, "wall_s")
        data = med(variant, "items_s") + med(variant, "collate_s")
        result[variant] = {
            "seconds_per_epoch_median": round(wall, 2),
            "clips_per_s": round(clips / wall, 2),
            "seconds_per_step": round(wall / med(variant, "steps"), 3),
            "data_pipeline_s_per_epoch": round(data, 3),
            "data_pipeline_share_pct": round(100 * data / wall, 1),
            "items_s_per_epoch": round(med(variant, "items_s"), 3),
            "collate_s_per_epoch": round(med(variant, "collate_s"), 3),
        }
    result["pipeline_over_cached_inputs"] = round(
        result["pipeline"]["seconds_per_epoch_median"] / result["cached_inputs"]["seconds_per_epoch_median"],
        3,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=128, help="training clips (split over four classes)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs measured per model and variant")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "training.json")
    args = parser.parse_args()

    torch.set_num_threads(inference.Settings.from_env({}).threads)
    report: dict[str, Any] = {"machine": machine(torch.get_num_threads())}
    report["machine"]["torch_threads"] = torch.get_num_threads()
    with LoadSampler() as load, tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = Path(tmp)
        make_audiofolder(root / "train", per_class=args.clips // 4, seed=1, seconds=(1.0, 8.0))
        start = time.perf_counter()
        split = audiofolder.scan("train", root / "train", audiofolder.DecodeCache(2**30))
        scan_s = time.perf_counter() - start
        seconds = sum(c.num_samples for c in split.clips) / audio.TARGET_SAMPLE_RATE
        report["data"] = {
            "clips": len(split.clips),
            "audio_seconds": round(seconds, 1),
            "clip_seconds": [1.0, 8.0],
            "scan_and_decode_s": round(scan_s, 2),
            "scan_clips_per_s": round(len(split.clips) / scan_s, 1),
            "crop_seconds": train.parse_arguments([])[1].max_length_seconds,
            "batch_size": BATCH,
        }
        models = {
            "tiny (hidden 64, 2 layers)": TINY_CONFIG,
            "small (hidden 128, 4 layers)": config_dir(root, "small", SMALL),
        }
        report["models"] = {
            name: benchmark_model(name.split()[0], path, split, args.epochs, root / "work")
            for name, path in models.items()
        }
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["machine"]["load_during_run"] = load.summary()
    print(json.dumps(report["models"], indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
