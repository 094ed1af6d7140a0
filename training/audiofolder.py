"""The ``audiofolder`` layout, ``<root>/<label>/<clip>.{wav,flac,ogg,mp3}``, as torch datasets.

Labels are the top-level folder names. Every clip is decoded once while scanning, with the shared audio
module, so a corrupt or empty file is skipped and reported before training starts instead of failing
half-way through an epoch; so is a clip over ``audio.Limits`` (by default longer than 600 s, decoding to
more than that much 48 kHz stereo, or with more than 16 channels), which a small file can be, and one
shorter than the caller's minimum. Decoded clips stay in memory up to a budget; beyond it they are
decoded again when read.

Model inputs have the length of the audio they hold, up to the window: a clip shorter than the window is
cropped (and served) at its own length. ``PadBatch`` pads a training batch to its longest input (by
repeating shorter inputs when the model takes no attention mask), and ``AudioTrainer`` evaluates a padded
batch length by length in that case, so that evaluation scores exactly what the endpoint answers.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer

from common import audio, contract

logger = logging.getLogger(__name__)

Featurize = Callable[[np.ndarray], np.ndarray]
Target = Callable[[str], Any]  # a clip's training target from its label (the task's ``target``)
Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]
# Why a file was skipped: Skipped.kind
CORRUPT, TOO_SHORT, TOO_LONG, TOO_LARGE = "corrupt", "too_short", "too_long", "too_large"
UNLISTABLE = "bad_row"  # a metadata.csv row that names no usable file
NO_TARGET = "no_target"  # a clip whose label gives the task no target (Task.usable)


class DatasetLayoutError(ValueError):
    """A data folder is missing, empty or not in the audiofolder layout; the message names the path."""


@dataclass(frozen=True)
class Skipped:
    """A file that could not be used, and why."""

    path: str  # relative to the split's root
    reason: str
    kind: str = CORRUPT  # CORRUPT, TOO_SHORT, TOO_LONG or TOO_LARGE


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

    def skipped_counts(self) -> dict[str, int]:
        """Skipped files per reason kind (corrupt, too_short, too_long, too_large), sorted."""
        return dict(sorted(Counter(skipped.kind for skipped in self.skipped).items()))

    def describe(self) -> str:
        seconds = sum(clip.num_samples for clip in self.clips) / audio.TARGET_SAMPLE_RATE
        classes = ""
        if self.labels != [""]:  # background noise has no labels
            per_label = ", ".join(f"{label}: {n}" for label, n in self.counts().items())
            classes = f" in {len(self.counts())} classes ({per_label})"
        kinds = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in self.skipped_counts().items())
        return (
            f"{self.name}: {len(self.clips)} clips ({seconds:.1f} s){classes} from {self.root}; "
            f"{len(self.skipped)} skipped" + (f" ({kinds})" if kinds else "")
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


def find_listed_files(name: str, root: Path, column: str) -> tuple[list[tuple[str, Path]], list[Skipped]]:
    """(cell of ``column``, path) for every row of ``root/metadata.csv``, and the rows that name no usable
    file (missing, outside ``root``, listed twice, not audio), each with why."""
    listing = root / contract.METADATA_FILE
    with listing.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {contract.FILE_NAME_COLUMN, column} - set(reader.fieldnames or [])
        if missing:
            raise DatasetLayoutError(
                f"{listing} lacks the column(s) {', '.join(sorted(missing))}; expected "
                f"{contract.FILE_NAME_COLUMN},{column}"
            )
        rows = [(row[contract.FILE_NAME_COLUMN] or "", row[column] or "") for row in reader]
    found: list[tuple[str, Path]] = []
    skipped: list[Skipped] = []
    seen: set[Path] = set()
    for line, (file_name, cell) in enumerate(rows, start=2):
        path = (root / file_name).resolve()
        problem = _listing_problem(file_name, path, root.resolve(), seen)
        if problem:
            skipped.append(Skipped(file_name or f"{contract.METADATA_FILE}:{line}", problem, UNLISTABLE))
            continue
        seen.add(path)
        found.append((cell.strip(), root / file_name))
    return found, skipped


def listed_speakers(paths: Sequence[Path]) -> list[str]:
    """Each clip's speaker, from the ``speaker`` column of the ``metadata.csv`` that lists it (the nearest one
    above the clip); "" where none is known."""
    tables: dict[Path, dict[Path, str]] = {}

    def table(listing: Path) -> dict[Path, str]:
        if listing not in tables:
            with listing.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.DictReader(handle)
                rows = list(reader) if contract.SPEAKER_COLUMN in (reader.fieldnames or []) else []
            tables[listing] = {
                (listing.parent / (row.get(contract.FILE_NAME_COLUMN) or "")).resolve(): (
                    row.get(contract.SPEAKER_COLUMN) or ""
                ).strip()
                for row in rows
            }
        return tables[listing]

    speakers = []
    for path in paths:
        resolved = Path(path).resolve()
        listing = next(
            (p / contract.METADATA_FILE for p in resolved.parents if (p / contract.METADATA_FILE).is_file()),
            None,
        )
        speakers.append(table(listing).get(resolved, "") if listing is not None else "")
    return speakers


def _listing_problem(file_name: str, path: Path, root: Path, seen: set[Path]) -> str | None:
    if not file_name or not path.is_relative_to(root) or Path(file_name).is_absolute():
        return f"{contract.FILE_NAME_COLUMN} {file_name!r} is not a path inside the split folder"
    if path in seen:
        return "listed twice"
    if path.suffix.lower() not in audio.AUDIO_EXTENSIONS:
        return f"not an audio file (extensions: {', '.join(audio.AUDIO_EXTENSIONS)})"
    if not path.is_file():
        return "no such file"
    return None


def find_unlabelled_files(name: str, root: Path) -> list[tuple[str, Path]]:
    """("", path) for every audio file anywhere under ``root`` (background noise has no labels)."""
    if not root.is_dir():
        raise DatasetLayoutError(f"the {name} data folder {root} does not exist or is not a folder")
    return [
        ("", path)
        for path in sorted(root.rglob("*"))
        if path.suffix.lower() in audio.AUDIO_EXTENSIONS and path.is_file() and not _hidden(path, root)
    ]


def _files(
    name: str, root: Path, labelled: bool, column: str
) -> tuple[list[tuple[str, Path]], list[Skipped]]:
    """The split's (label, path) pairs in either layout, and the listed rows already unusable."""
    if not labelled:
        return find_unlabelled_files(name, root), []
    if (root / contract.METADATA_FILE).is_file():
        return find_listed_files(name, root, column)
    return find_files(name, root), []


def _decode(path: Path, limits: audio.Limits, min_samples: int) -> np.ndarray | Skipped:
    """The clip, or why it is skipped (``Skipped.path`` filled in by the caller)."""
    try:
        samples = audio.decode(path, limits=limits)
    except audio.AudioTooLongError as err:
        return Skipped("", f"{err} (--max_clip_seconds)", TOO_LONG)
    except audio.AudioTooLargeError as err:
        return Skipped("", str(err), TOO_LARGE)
    except (audio.AudioDecodeError, OSError, RuntimeError) as err:
        return Skipped("", str(err) or type(err).__name__, CORRUPT)
    if samples.shape[0] < min_samples:
        seconds = samples.shape[0] / audio.TARGET_SAMPLE_RATE
        minimum = min_samples / audio.TARGET_SAMPLE_RATE
        return Skipped(
            "", f"the clip lasts {seconds:.3f} s, shorter than {minimum:g} s (--min_clip_seconds)", TOO_SHORT
        )
    return samples


def scan(
    name: str,
    root: str | Path,
    cache: DecodeCache,
    *,
    workers: int | None = None,
    limits: audio.Limits | None = None,
    min_seconds: float = 0.0,
    labelled: bool = True,
    column: str = contract.LABELS_COLUMN,
) -> Split:
    """Finds and decodes every clip of a split; unusable files are skipped and listed, never fatal.

    A split folder with a ``metadata.csv`` lists its clips there (``file_name`` and ``column``, whose cell
    is the clip's label); any other is ``<label>/<clip>`` folders. Unusable: corrupt, empty, over ``limits``
    (default ``audio.Limits.default()``: ``max_seconds`` is the longest clip kept), shorter than
    ``min_seconds``, or a listed row without a usable file. ``labelled=False`` reads every audio file under
    ``root`` with the label "" (background noise).
    """
    root = Path(root)
    limits = audio.Limits.default() if limits is None else limits
    min_samples = math.ceil(min_seconds * audio.TARGET_SAMPLE_RATE)
    files, skipped = _files(name, root, labelled, column)
    clips = []
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        decoded_clips = pool.map(lambda path: _decode(path, limits, min_samples), (p for _, p in files))
        for (label, path), decoded in zip(files, decoded_clips, strict=True):
            relative = str(path.relative_to(root))
            if isinstance(decoded, Skipped):
                skipped.append(Skipped(relative, decoded.reason, decoded.kind))
                logger.warning("skipping %s file %s: %s", name, path, decoded.reason)
                continue
            clips.append(Clip(path, label, int(decoded.shape[0]), cache.keep(decoded)))
    if not clips:
        raise DatasetLayoutError(
            f"the {name} data folder {root} has no usable audio clips "
            f"({len(files)} audio files found, {len(skipped)} skipped); expected "
            + (f"{root}/<label>/<clip>.wav" if labelled else f"audio files anywhere under {root}")
            + f" (extensions: {', '.join(audio.AUDIO_EXTENSIONS)})"
        )
    return Split(name, root, clips, skipped)


def check_labels(
    split: Split, labels: Iterable[str], vocabulary: Callable[[Sequence[str]], list[str]] | None = None
) -> None:
    """Every label of an evaluation split must be one the model is trained on: the clips' labels as the
    task reads them (``vocabulary``: a task's ``labels``; default the labels as they are)."""
    vocabulary = vocabulary or (lambda found: sorted(set(found)))
    unknown = sorted(set(vocabulary(split.labels)) - set(vocabulary(list(labels))))
    if unknown:
        raise DatasetLayoutError(
            f"the {split.name} data folder {split.root} has labels the training data lacks: "
            f"{', '.join(unknown)}; the model can only predict {', '.join(vocabulary(list(labels)))}"
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
    if not held_out and len(train.clips) > 1:
        # Every label has one clip (transcripts, say): a random share of all the clips instead.
        order = rng.permutation(len(train.clips))
        n_held = min(max(1, round(fraction * len(train.clips))), len(train.clips) - 1)
        held_out = [train.clips[i] for i in sorted(order[:n_held])]
        kept = [train.clips[i] for i in sorted(order[n_held:])]
    if not held_out:
        raise DatasetLayoutError(
            f"too few clips in {train.root} to hold out a validation split; "
            "add clips or provide a validation folder"
        )
    return (
        Split(train.name, train.root, kept, train.skipped),
        Split(contract.VALIDATION_CHANNEL, train.root, held_out),
    )


@dataclass(frozen=True)
class Mixing:
    """Laying another training clip's crop over a crop with ``probability``, at a random level; the target is
    ``union`` of both targets (the task's ``mix``)."""

    union: Callable[[Any, Any], Any]
    probability: float


class RandomCrops(torch.utils.data.Dataset):
    """Training examples: a fresh random crop of each clip per epoch, augmented when ``augment`` is given.

    A crop is ``length`` samples of a longer clip, or a shorter clip whole (``audio.random_crop``): the
    lengths the endpoint runs.

    Every random draw of an item (crop, then augmentation) comes from one generator seeded from
    torch's, which the Trainer seeds with ``--seed``: a run is reproducible.
    """

    def __init__(
        self,
        clips: list[Clip],
        target: Target,
        length: int,
        featurize: Featurize,
        augment: Augment | None = None,
        mixing: Mixing | None = None,
    ):
        self.clips, self.target, self.length = clips, target, length
        self.featurize, self.augment, self.mixing = featurize, augment, mixing

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def lengths(self) -> list[int]:
        """Each example's length in samples (at most the crop length): what length-grouped batches read."""
        return [min(clip.num_samples, self.length) for clip in self.clips]

    def __getitem__(self, i: int) -> dict[str, Any]:
        clip = self.clips[i]
        # torch's generator is seeded by the Trainer and differs per dataloader worker.
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        crop = audio.random_crop(clip.load(), self.length, rng)
        target = self.target(clip.label)
        if self.mixing is not None and rng.random() < self.mixing.probability:
            other = self.clips[int(rng.integers(len(self.clips)))]
            crop = overlay(crop, audio.random_crop(other.load(), self.length, rng), rng)
            target = self.mixing.union(target, self.target(other.label))
        if self.augment is not None:
            crop = self.augment(crop, rng)
        return {"input_values": self.featurize(crop), "labels": target}


def overlay(crop: np.ndarray, other: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``other`` laid over ``crop`` at a random offset (when shorter) and a level between 0.3 and 1 of its own,
    the sum kept within [-1, 1]."""
    mixed = crop.astype(np.float32, copy=True)
    length = min(other.shape[0], mixed.shape[0])
    start = int(rng.integers(0, mixed.shape[0] - length + 1))
    mixed[start : start + length] += float(rng.uniform(0.3, 1.0)) * other[:length]
    peak = float(np.abs(mixed).max())
    return mixed / peak if peak > 1.0 else mixed


class Windows(torch.utils.data.Dataset):
    """Evaluation examples: every ``audio.windows`` window of every clip, in clip order.

    ``clip_ids`` maps each window to its clip, so window predictions can be aggregated per clip
    exactly as the endpoint aggregates them. A clip shorter than the window is one window of its own
    length, as the endpoint runs it.
    """

    def __init__(self, clips: list[Clip], target: Target, length: int, hop: int, featurize: Featurize):
        self.clips, self.length, self.featurize = clips, length, featurize
        self.index = [
            (ci, start)
            for ci, clip in enumerate(clips)
            for start in audio.window_starts(clip.num_samples, length, hop)
        ]
        self.clip_ids = np.array([ci for ci, _ in self.index], dtype=np.int64)
        self.clip_labels = np.stack([np.asarray(target(clip.label)) for clip in clips])
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
        window = audio.fit_window(self._samples(ci)[start : start + self.length], self.length)
        return {"input_values": self.featurize(window), "labels": self.window_labels[i]}


INPUT_LENGTHS = "input_lengths"  # PadBatch's record of each row's length, for AudioTrainer only


@dataclass(frozen=True)
class PadBatch:
    """Collates inputs of different lengths into one batch as long as its longest.

    With ``attention_mask`` (models trained with one, such as wav2vec2-large-lv60) shorter inputs are
    padded with ``padding_value`` and the batch carries the mask. Without one (wav2vec2-base and the
    tiny config: a group-normalized feature encoder, ``return_attention_mask: false``), nothing tells the
    model where padding starts, and zero padding changes what it computes: the feature encoder's group
    norm and the mean pooling both average over the padding. ``wrap`` then pads an input by repeating it
    (the endpoint never pads: it runs a short clip at its own length), which keeps those averages close
    to the unpadded input's. ``input_lengths`` records each row's length for ``AudioTrainer``.
    """

    padding_value: float = 0.0
    attention_mask: bool = False
    wrap: bool = False  # pad by repeating the input instead of padding_value
    # The batch's targets as the model's loss takes them (the task's ``batch_targets``); default: stacked.
    targets: Callable[[list[Any]], torch.Tensor] | None = None

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        lengths = [int(np.shape(example["input_values"])[-1]) for example in examples]
        values = np.full((len(examples), max(lengths)), self.padding_value, dtype=np.float32)
        for row, (example, length) in enumerate(zip(examples, lengths, strict=True)):
            if self.wrap:
                values[row] = np.resize(
                    np.asarray(example["input_values"], dtype=np.float32), values.shape[1]
                )
            else:
                values[row, :length] = example["input_values"]
        batch = {
            "input_values": torch.from_numpy(values),
            # The task's targets: class indices (int64), float vectors (float32), padded token ids...
            "labels": self._targets([example["labels"] for example in examples]),
            INPUT_LENGTHS: torch.tensor(lengths, dtype=torch.long),
        }
        if self.attention_mask:
            batch["attention_mask"] = (
                torch.arange(values.shape[1])[None, :] < batch[INPUT_LENGTHS][:, None]
            ).long()
        return batch

    def _targets(self, targets: list[Any]) -> torch.Tensor:
        if self.targets is not None:
            return self.targets(targets)
        return torch.from_numpy(np.stack([np.asarray(target) for target in targets]))


class AudioTrainer(Trainer):
    """A Trainer for ``PadBatch`` batches: trains on them as padded, evaluates them as served.

    Without an attention mask, padding changes what the model computes; the endpoint never pads (a batch
    of windows of one clip all have one length). So evaluation runs each length of a padded batch as its
    own unpadded batch and puts the logits back in order: the scores are those of the endpoint.
    """

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        """Batches of clips of similar length (``--train_sampling_strategy group_by_length``) from the
        clips' known lengths, without reading any of them."""
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        grouped = getattr(self.args, "train_sampling_strategy", None) == "group_by_length" or getattr(
            self.args, "group_by_length", False
        )
        lengths = getattr(dataset, "lengths", None)
        if not grouped or lengths is None:
            return super()._get_train_sampler(*(() if train_dataset is None else (train_dataset,)))
        from transformers.trainer_pt_utils import LengthGroupedSampler

        return LengthGroupedSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths=list(lengths)
        )

    def _get_eval_sampler(self, eval_dataset: Any) -> Any:
        """Evaluation in the dataset's order, always. With ``group_by_length`` the Trainer would also group
        evaluation sets by length (a shuffled order), and its predictions would come back out of the order of
        the windows' clips and targets they are scored against."""
        if getattr(self.args, "train_sampling_strategy", None) != "group_by_length":
            return super()._get_eval_sampler(eval_dataset)
        from torch.utils.data import SequentialSampler

        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    def compute_loss(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        inputs = {key: value for key, value in inputs.items() if key != INPUT_LENGTHS}
        return super().compute_loss(model, inputs, *args, **kwargs)

    def prediction_step(
        self,
        model: Any,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[Any, Any, Any]:
        inputs = dict(inputs)
        lengths = inputs.pop(INPUT_LENGTHS, None)
        if lengths is None or "attention_mask" in inputs or bool((lengths == lengths.max()).all()):
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        losses, logits, labels = [], [], []
        order = []
        for length in torch.unique(lengths).tolist():
            rows = torch.nonzero(lengths == length).flatten()
            part = {
                key: (value[rows, :length] if key == "input_values" else value[rows])
                for key, value in inputs.items()
            }
            loss, part_logits, part_labels = super().prediction_step(
                model, part, prediction_loss_only, ignore_keys
            )
            order.append(rows)
            if loss is not None:
                losses.append(loss.detach() * rows.numel())
            logits.append(part_logits)
            labels.append(part_labels)
        inverse = torch.argsort(torch.cat(order))
        total_loss = torch.stack(losses).sum() / lengths.numel() if losses else None

        def merge(parts: list[Any]) -> Any:
            if any(part is None for part in parts):
                return None
            if isinstance(parts[0], tuple):  # several model outputs: merge each
                return tuple(merge([part[i] for part in parts]) for i in range(len(parts[0])))
            if parts[0].dim() > 2:  # per-frame outputs: shorter inputs have fewer frames, padded as the
                # Trainer pads across batches (-100)
                frames = max(part.shape[1] for part in parts)
                parts = [
                    torch.nn.functional.pad(
                        part, (0, 0) * (part.dim() - 2) + (0, frames - part.shape[1]), value=-100
                    )
                    for part in parts
                ]
            return torch.cat(parts)[inverse.to(parts[0].device)]

        return total_loss, merge(logits), merge(labels)
