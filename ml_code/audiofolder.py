"""The ``audiofolder`` layout, ``<root>/<label>/<clip>.{wav,flac,ogg,mp3}``, as torch datasets.

Labels are the top-level folder names. Every clip is decoded once while scanning, with the shared audio
module, so a corrupt or empty file is skipped and reported before training starts instead of failing
half-way through an epoch; so is a clip over ``audio.Limits`` (by default longer than 600 s, decoding to
more than that much 48 kHz stereo, or with more than 16 channels), which a small file can be. Decoded
clips stay in memory up to a budget; beyond it they are decoded again when read.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __package__:
    from . import audio
else:  # run from the source dir, as the SageMaker containers do
    import audio  # type: ignore[no-redef]

logger = logging.getLogger(__name__)

Featurize = Callable[[np.ndarray], np.ndarray]


class DatasetLayoutError(ValueError):
    """A data folder is missing, empty or not in the audiofolder layout; the message names the path."""


@dataclass(frozen=True)
class Skipped:
    """A file that could not be used, and why."""

    path: str  # relative to the split's root
    reason: str


@dataclass
class Clip:
    """One usable clip: its file, label and length at the model's rate; ``samples`` when cached."""

    path: Path
    label: str
    num_samples: int
    samples: np.ndarray | None = field(default=None, repr=False)

    def load(self) -> np.ndarray:
        """Mono float32 at 16 kHz."""
        return self.samples if self.samples is not None else audio.decode(self.path)


@dataclass
class Split:
    """The usable clips of one split (train, validation or test) and the files that were skipped."""

    name: str
    root: Path
    clips: list[Clip]
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        """Labels that have at least one usable clip, sorted."""
        return sorted({clip.label for clip in self.clips})

    def counts(self) -> dict[str, int]:
        """Usable clips per label, sorted by label."""
        return dict(sorted(Counter(clip.label for clip in self.clips).items()))

    def describe(self) -> str:
        per_label = ", ".join(f"{label}: {n}" for label, n in self.counts().items())
        seconds = sum(clip.num_samples for clip in self.clips) / audio.TARGET_SAMPLE_RATE
        return (
            f"{self.name}: {len(self.clips)} clips ({seconds:.1f} s) in {len(self.counts())} classes "
            f"({per_label}) from {self.root}; {len(self.skipped)} skipped"
        )


class DecodeCache:
    """How many bytes of decoded audio may stay in memory, shared by all splits."""

    def __init__(self, max_bytes: int) -> None:
        self.free = max_bytes

    def keep(self, samples: np.ndarray) -> np.ndarray | None:
        if samples.nbytes > self.free:
            return None
        self.free -= samples.nbytes
        return samples


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def find_files(name: str, root: Path) -> list[tuple[str, Path]]:
    """(label, path) for every audio file under ``root/<label>/``; raises on a wrong layout."""
    if not root.is_dir():
        raise DatasetLayoutError(f"the {name} data folder {root} does not exist or is not a folder")
    loose = sorted(
        p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in audio.AUDIO_EXTENSIONS
    )
    if loose:
        raise DatasetLayoutError(
            f"the {name} data folder {root} holds audio files directly ({len(loose)}, e.g. {loose[0]}); "
            f"put each clip in a folder named after its label: {root}/<label>/{loose[0]}"
        )
    label_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not label_dirs:
        raise DatasetLayoutError(
            f"the {name} data folder {root} has no label folders; expected {root}/<label>/<clip>.wav "
            f"(extensions: {', '.join(audio.AUDIO_EXTENSIONS)})"
        )
    found = []
    for label_dir in label_dirs:
        for path in sorted(label_dir.rglob("*")):
            if path.suffix.lower() in audio.AUDIO_EXTENSIONS and path.is_file() and not _hidden(path, root):
                found.append((label_dir.name, path))
    return found


def _decode(path: Path, limits: audio.Limits) -> np.ndarray | str:
    try:
        return audio.decode(path, limits=limits)
    except (audio.AudioDecodeError, OSError, RuntimeError) as err:
        return str(err) or type(err).__name__


def scan(
    name: str,
    root: str | Path,
    cache: DecodeCache,
    *,
    workers: int | None = None,
    limits: audio.Limits | None = None,
) -> Split:
    """Finds and decodes every clip of a split; unusable files are skipped and listed, never fatal.

    Unusable: corrupt, empty, or over ``limits`` (default ``audio.Limits.default()``).
    """
    root = Path(root)
    limits = audio.Limits.default() if limits is None else limits
    files = find_files(name, root)
    clips, skipped = [], []
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        decoded_clips = pool.map(lambda path: _decode(path, limits), (p for _, p in files))
        for (label, path), decoded in zip(files, decoded_clips, strict=True):
            relative = str(path.relative_to(root))
            if isinstance(decoded, str):
                skipped.append(Skipped(relative, decoded))
                logger.warning("skipping %s file %s: %s", name, path, decoded)
                continue
            clips.append(Clip(path, label, int(decoded.shape[0]), cache.keep(decoded)))
    if not clips:
        raise DatasetLayoutError(
            f"the {name} data folder {root} has no usable audio clips "
            f"({len(files)} audio files found, {len(skipped)} skipped); "
            f"expected {root}/<label>/<clip>.wav (extensions: {', '.join(audio.AUDIO_EXTENSIONS)})"
        )
    return Split(name, root, clips, skipped)


def check_labels(split: Split, labels: Iterable[str]) -> None:
    """Every label of an evaluation split must be one the model is trained on."""
    unknown = sorted(set(split.labels) - set(labels))
    if unknown:
        raise DatasetLayoutError(
            f"the {split.name} data folder {split.root} has label folders the training data lacks: "
            f"{', '.join(unknown)}; the model can only predict {', '.join(labels)}"
        )


def stratified_split(train: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Holds out ``fraction`` of each label's clips (at least one, never the last) for validation."""
    rng = np.random.default_rng(seed)
    kept: list[Clip] = []
    held_out: list[Clip] = []
    for label in train.labels:
        clips = [clip for clip in train.clips if clip.label == label]
        order = rng.permutation(len(clips))
        n_held = min(max(1, round(fraction * len(clips))), len(clips) - 1)
        if n_held == 0:
            logger.warning(
                "label %s has a single training clip: none of it is held out for validation", label
            )
        held_out += [clips[i] for i in order[:n_held]]
        kept += [clips[i] for i in order[n_held:]]
    if not held_out:
        raise DatasetLayoutError(
            f"too few clips in {train.root} to hold out a validation split; "
            "add clips or provide a validation folder"
        )
    return (
        Split(train.name, train.root, kept, train.skipped),
        Split("validation", train.root, held_out),
    )


class RandomCrops(torch.utils.data.Dataset):
    """Training examples: a fresh random crop of ``length`` samples of each clip per epoch."""

    def __init__(self, clips: list[Clip], label2id: dict[str, int], length: int, featurize: Featurize):
        self.clips, self.label2id, self.length, self.featurize = clips, label2id, length, featurize

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict[str, Any]:
        clip = self.clips[i]
        # torch's generator is seeded by the Trainer and differs per dataloader worker.
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        crop = audio.random_crop(clip.load(), self.length, rng)
        return {"input_values": self.featurize(crop), "labels": self.label2id[clip.label]}


class Windows(torch.utils.data.Dataset):
    """Evaluation examples: every ``audio.windows`` window of every clip, in clip order.

    ``clip_ids`` maps each window to its clip, so window predictions can be aggregated per clip
    exactly as the endpoint aggregates them.
    """

    def __init__(
        self, clips: list[Clip], label2id: dict[str, int], length: int, hop: int, featurize: Featurize
    ):
        self.clips, self.length, self.featurize = clips, length, featurize
        self.index = [
            (ci, start)
            for ci, clip in enumerate(clips)
            for start in audio.window_starts(clip.num_samples, length, hop)
        ]
        self.clip_ids = np.array([ci for ci, _ in self.index], dtype=np.int64)
        self.clip_labels = np.array([label2id[clip.label] for clip in clips], dtype=np.int64)
        self.window_labels = self.clip_labels[self.clip_ids]
        self._last: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.index)

    def _samples(self, ci: int) -> np.ndarray:
        # Windows are read in clip order: keep the current clip instead of decoding it per window.
        if self._last is None or self._last[0] != ci:
            self._last = (ci, self.clips[ci].load())
        return self._last[1]

    def __getitem__(self, i: int) -> dict[str, Any]:
        ci, start = self.index[i]
        window = audio.fit_length(self._samples(ci)[start : start + self.length], self.length)
        return {"input_values": self.featurize(window), "labels": int(self.window_labels[i])}
