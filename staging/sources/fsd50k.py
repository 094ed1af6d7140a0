"""FSD50K: its ground-truth CSVs to labels and splits, from the split zips."""

from __future__ import annotations

import csv
import io
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .. import MULTILABEL, StagingError
from ..splitzip import MultiPartZip, disk_count, part_paths
from .common import (
    LEAF_LABELS,
    Candidate,
    Reader,
    SourceOptions,
    SourceSet,
    cached_archive,
    check_label,
    open_zip,
    read_csv,
    unsafe_file_name,
    unsafe_label,
    unsafe_member,
)

# FSD50K (https://zenodo.org/records/4060432): split zips (".z01" … + ".zip") and the ground truth.
FSD50K_BASE_URL = "https://zenodo.org/records/4060432/files"
FSD50K_GROUND_TRUTH = "FSD50K.ground_truth.zip"  # FSD50K.ground_truth/{dev,eval}.csv
FSD50K_DEV_AUDIO = "FSD50K.dev_audio.zip"  # FSD50K.dev_audio/<fname>.wav, parts .z01-.z05
FSD50K_EVAL_AUDIO = "FSD50K.eval_audio.zip"  # FSD50K.eval_audio/<fname>.wav, part .z01
FSD50K_DEV_COLUMNS = ("fname", "labels", "split")  # also "mids"
FSD50K_EVAL_COLUMNS = ("fname", "labels")
FSD50K_SPLITS = {"train": "train", "val": "validation"}
FSD50K_VOCABULARY = "vocabulary.csv"  # FSD50K.ground_truth/vocabulary.csv: index,label,mid, no header


def fsd50k(options: SourceOptions) -> SourceSet:
    """Dev ``train``/``val`` and ``eval`` from the ground truth: single-class clips only (see map_labels),
    or, with ``--task multilabel``, every clip with its labels (see whole)."""
    if "" in options.sha256:
        raise StagingError("fsd50k downloads several archives; pin each one with --sha256 FILE=HEX")
    get = _getter(options)
    truth = open_zip(get(FSD50K_GROUND_TRUTH), options)
    dev_rows = _fsd_rows(truth, "dev.csv", FSD50K_DEV_COLUMNS)
    eval_rows = _fsd_rows(truth, "eval.csv", FSD50K_EVAL_COLUMNS)
    clips = _fsd_clips(dev_rows, eval_rows)
    if options.task == MULTILABEL:
        return whole(options, _vocabulary(truth), clips, _Archives(get))
    return _single_class(options, clips, _Archives(get))


def _getter(options: SourceOptions) -> Callable[[str], Path]:
    """A local path to one of the record's files, by name, fetched (and cached) from ``--source-url``."""
    base = options.source_url or FSD50K_BASE_URL

    def get(name: str) -> Path:
        if base.startswith(("http://", "https://", "s3://")):
            return cached_archive(name, base.rstrip("/") + "/" + name, options, "fsd50k")
        return cached_archive(name, str(Path(base).expanduser() / name), options, "fsd50k")

    return get


class _Archives:
    """The split audio zips, each fetched and opened the first time a clip needs it."""

    def __init__(self, get: Callable[[str], Path]) -> None:
        self.get = get
        self.opened: dict[str, MultiPartZip] = {}

    def __call__(self, archive_name: str) -> MultiPartZip:
        if archive_name not in self.opened:
            last = self.get(archive_name)  # first: its end record says how many parts there are
            earlier = [self.get(part.name) for part in part_paths(last, disk_count(last))[:-1]]
            self.opened[archive_name] = MultiPartZip([*earlier, last])
        return self.opened[archive_name]


@dataclass(frozen=True)
class _Clip:
    """One row of the ground truth."""

    archive: str  # the audio archive holding it
    fname: str
    labels: tuple[str, ...]  # as given, in order
    mids: tuple[str, ...]  # the labels' AudioSet ids, when the row has them
    split: str
    where: str  # "dev.csv line 5"

    @property
    def origin(self) -> str:
        return f"{self.archive}:{self.fname}.wav"


def _single_class(options: SourceOptions, clips: list[_Clip], archives: _Archives) -> SourceSet:
    """Clips with exactly one label among the classes, staged under it."""
    classes, notes = _fsd_classes(options, [frozenset(clip.labels) for clip in clips])
    found = SourceSet(title="FSD50K", candidates=[], notes=notes)
    for clip in clips:
        refusal = unsafe_file_name(f"{clip.fname}.wav", "file name")
        if refusal:
            found.refused.append((clip.origin, refusal))
            continue
        label, reason = map_labels(frozenset(clip.labels), classes)
        if label is None:
            found.left_out[(reason, clip.split)] += 1
            continue
        _add_clip(found, archives(clip.archive), clip, label)
    rule = "--classes" if options.classes else f"the {len(classes)} leaf labels"
    found.notes.append(f"a clip is kept when exactly one of its labels is among {rule}")
    return found


def _fsd_clips(dev_rows: list[dict[str, str]], eval_rows: list[dict[str, str]]) -> list[_Clip]:
    """Every clip of the ground truth with its archive, labels and split (dev's train/val, eval's test)."""
    clips: list[_Clip] = []
    for number, row in enumerate(dev_rows, start=2):
        split = FSD50K_SPLITS.get(row["split"])
        if split is None:
            raise StagingError(f"dev.csv line {number}: split {row['split']!r} is not train or val")
        clips.append(_clip(FSD50K_DEV_AUDIO, row, split, f"dev.csv line {number}"))
    clips += [
        _clip(FSD50K_EVAL_AUDIO, row, "test", f"eval.csv line {number}")
        for number, row in enumerate(eval_rows, start=2)
    ]
    return clips


def _clip(archive: str, row: dict[str, str], split: str, where: str) -> _Clip:
    labels, mids = _labels(row["labels"]), _labels(row.get("mids", ""))
    return _Clip(archive, row["fname"], labels, mids, split, where)


def _fsd_classes(options: SourceOptions, clip_labels: list[frozenset[str]]) -> tuple[set[str], list[str]]:
    """The classes to keep (``--classes``, else the leaf labels) and notes on labels merged into one."""
    vocabulary = {label for labels in clip_labels for label in labels}
    notes: list[str] = []
    if options.classes:
        unknown = sorted(set(options.classes) - vocabulary)
        if unknown:
            raise StagingError(
                f"--classes: {', '.join(unknown)} not in FSD50K's labels "
                f"(e.g. {', '.join(sorted(vocabulary)[:5])})"
            )
        return set(options.classes), notes
    classes, merged = leaf_labels(clip_labels)
    for alias, kept in sorted(merged.items()):
        if kept in classes:
            notes.append(f"{alias} is on exactly the clips {kept} is on; they are one class, {kept}")
    return classes, notes


def _add_clip(
    found: SourceSet, archive: MultiPartZip, clip: _Clip, label: str, labels: tuple[str, ...] | None = None
) -> None:
    """The clip's member of the split zip as a candidate; refused when unsafe, missing when absent.

    A single-class clip has its ``label``; a multi-label one its ``labels`` (and an empty ``label``).
    """
    member = _member(archive, clip.archive, clip.fname)
    if member is not None and (refusal := unsafe_member(member)):
        found.refused.append((member, refusal))
        return
    if member is None:
        found.missing.append((clip.origin, "in the ground truth but not in the archive"))
        return
    found.candidates.append(
        Candidate(
            origin=member,
            label=label if labels is not None else check_label(label, f"FSD50K label {label!r}"),
            split=clip.split,
            group=clip.fname,
            name=PurePosixPath(member).name,
            read=_split_zip_reader(archive, member),
            labels=labels,
        )
    )


def _truth_member(truth: zipfile.ZipFile, name: str) -> str:
    member = next((n for n in sorted(truth.namelist()) if PurePosixPath(n).name == name), None)
    if member is None:
        raise StagingError(f"{FSD50K_GROUND_TRUTH} has no {name}; is it FSD50K's ground truth?")
    return member


def _fsd_rows(truth: zipfile.ZipFile, name: str, required: tuple[str, ...]) -> list[dict[str, str]]:
    member = _truth_member(truth, name)
    return read_csv(truth.read(member).decode("utf-8"), member, required, ",".join(required))


def _labels(field_value: str) -> tuple[str, ...]:
    """A comma-separated field's items, in order, each once."""
    return tuple(dict.fromkeys(label.strip() for label in field_value.split(",") if label.strip()))


def _member(archive: MultiPartZip, archive_name: str, fname: str) -> str | None:
    folder = archive_name.removesuffix(".zip")
    for candidate in (f"{folder}/{fname}.wav", f"{fname}.wav"):
        if candidate in archive.members:
            return candidate
    return None


def _split_zip_reader(archive: MultiPartZip, member: str) -> Reader:
    def read() -> bytes:
        return archive.read(member)

    return read


def label_ancestry(label_sets: list[frozenset[str]]) -> tuple[dict[str, set[str]], dict[str, str]]:
    """Each label's ancestors, recovered from the ground truth, and the labels that cannot be told apart.

    FSD50K propagates every label up the AudioSet ontology (a "Bark" clip also carries "Dog",
    "Domestic_animals_and_pets" and "Animal"), so A is an ancestor of B when every clip with B also
    has A and A has more clips. Two labels on exactly the same clips cannot be told apart: the second
    value maps the alphabetically later of each such pair (after following chains) to the first.
    """
    count: Counter[str] = Counter()
    together: Counter[tuple[str, str]] = Counter()
    for labels in label_sets:
        count.update(labels)
        together.update((b, a) for b in labels for a in labels if a != b)
    implied = [(b, a) for (b, a), n in together.items() if n == count[b]]  # every clip with b has a
    ancestors: dict[str, set[str]] = {label: set() for label in count}
    for b, a in implied:
        if count[a] > count[b]:
            ancestors[b].add(a)
    merged = {a: b for b, a in implied if count[a] == count[b] and b < a}
    for label, kept in list(merged.items()):
        while kept in merged:
            kept = merged[kept]
        merged[label] = kept
    return ancestors, merged


def leaf_labels(label_sets: list[frozenset[str]]) -> tuple[set[str], dict[str, str]]:
    """Labels that are no other label's ancestor (see label_ancestry), as single-label classes.

    Two labels on exactly the same clips (both names fit every one of those clips) become one class
    named after the alphabetically first, and the second value maps each merged label to that name.
    """
    ancestors, merged = label_ancestry(label_sets)
    every_ancestor = {a for found in ancestors.values() for a in found}
    return set(ancestors) - every_ancestor - set(merged), merged


def most_specific(labels: tuple[str, ...], ancestors: dict[str, set[str]]) -> tuple[str, ...]:
    """The clip's labels that are no ancestor of another of its labels, in their order."""
    return tuple(
        label
        for label in labels
        if not any(label in ancestors.get(other, ()) for other in labels if other != label)
    )


def map_labels(labels: frozenset[str], classes: set[str]) -> tuple[str | None, str]:
    """The clip's one class, or None and why it is left out."""
    hits = labels & classes
    if len(hits) == 1:
        return next(iter(hits)), ""
    if hits:
        return None, "labels in several classes"
    return None, "no label among the classes"


# --- multi-label: every clip, every label -----------------------------------------------------------


@dataclass(frozen=True)
class Vocabulary:
    """FSD50K's labels (vocabulary.csv: ``index,label,mid``, no header): names, and names by AudioSet id."""

    names: frozenset[str]
    by_mid: dict[str, str]

    def name(self, clip: _Clip) -> tuple[tuple[str, ...], str]:
        """The clip's labels by their vocabulary names (a label unknown by name is looked up by its mid),
        in order; or () and why a label has no name."""
        mids = clip.mids if len(clip.mids) == len(clip.labels) else ("",) * len(clip.labels)
        names: list[str] = []
        unknown: list[str] = []
        for label, mid in zip(clip.labels, mids, strict=True):
            name = label if label in self.names else self.by_mid.get(mid)
            if name is None:
                unknown.append(label)
            elif name not in names:
                names.append(name)
        if unknown:
            return (), f"label(s) {', '.join(unknown)} not in {FSD50K_VOCABULARY}"
        return tuple(names), ""


def _vocabulary(truth: zipfile.ZipFile) -> Vocabulary:
    member = _truth_member(truth, FSD50K_VOCABULARY)
    expected = "rows of index,label,mid (no header)"
    try:
        rows = list(csv.reader(io.StringIO(truth.read(member).decode("utf-8"))))
    except (csv.Error, UnicodeDecodeError) as err:
        raise StagingError(f"{member} is not a readable CSV ({err}); expected {expected}") from err
    names: set[str] = set()
    by_mid: dict[str, str] = {}
    for number, row in enumerate(rows, start=1):
        if not row:
            continue
        if len(row) != 3:
            raise StagingError(f"{member} line {number}: {len(row)} field(s); expected {expected}")
        name, mid = row[1].strip(), row[2].strip()
        reason = unsafe_label(name)
        if reason:
            raise StagingError(f"{member} line {number}: {reason}")
        names.add(name)
        by_mid[mid] = name
    if not names:
        raise StagingError(f"{member} is empty; expected {expected}")
    return Vocabulary(frozenset(names), by_mid)


def whole(
    options: SourceOptions, vocabulary: Vocabulary, clips: list[_Clip], archives: _Archives
) -> SourceSet:
    """Every clip with its labels by vocabulary name: all of them (``--labels all``, the default: they
    include their ancestors in the ontology) or only the most specific ones (``--labels leaf``)."""
    found = SourceSet(title="FSD50K (multi-label)", candidates=[])
    named: list[tuple[_Clip, tuple[str, ...]]] = []
    for clip in clips:
        refusal = unsafe_file_name(f"{clip.fname}.wav", "file name")
        if refusal:
            found.refused.append((clip.origin, refusal))
            continue
        labels, problem = vocabulary.name(clip)
        if problem:
            found.bad_rows.append((clip.where, f"{clip.fname}: {problem}"))
            continue
        named.append((clip, labels))
    for clip, labels in _at_level(options.label_level, named, found.notes):
        _add_clip(found, archives(clip.archive), clip, "", labels)
    found.notes.append(
        "splits from the ground truth: dev train -> train, dev val -> validation, eval -> test"
    )
    return found


def _at_level(
    level: str, named: list[tuple[_Clip, tuple[str, ...]]], notes: list[str]
) -> list[tuple[_Clip, tuple[str, ...]]]:
    """The clips with all their labels, or with their most specific ones (leaf), and a note on which."""
    if level != LEAF_LABELS:
        notes.append("every label of each clip kept (--labels all), ancestors in the ontology included")
        return named
    ancestors, merged = label_ancestry([frozenset(labels) for _, labels in named])
    kept = [(clip, most_specific(labels, ancestors)) for clip, labels in named]
    dropped = sum(len(labels) for _, labels in named) - sum(len(labels) for _, labels in kept)
    notes.append(
        f"only the most specific labels of each clip kept (--labels leaf): {dropped} ancestor label(s) dropped"
    )
    notes += [
        f"{alias} and {name} are on exactly the same clips: neither is known to be the more specific; both kept"
        for alias, name in sorted(merged.items())
    ]
    return kept


# --- your own folder --------------------------------------------------------------------------------
