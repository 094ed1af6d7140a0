"""FSD50K: its ground-truth CSVs to labels and splits, from the split zips."""

from __future__ import annotations

import zipfile
from collections import Counter
from pathlib import Path, PurePosixPath

from .. import StagingError
from ..splitzip import MultiPartZip, disk_count, part_paths
from .common import (
    Candidate,
    Reader,
    SourceOptions,
    SourceSet,
    cached_archive,
    check_label,
    open_zip,
    read_csv,
    unsafe_file_name,
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


def fsd50k(options: SourceOptions) -> SourceSet:
    """Dev ``train``/``val`` and ``eval`` from the ground truth; single-class clips only (see map_labels)."""
    base = options.source_url or FSD50K_BASE_URL

    def get(name: str) -> Path:
        if base.startswith(("http://", "https://", "s3://")):
            return cached_archive(name, base.rstrip("/") + "/" + name, options, "fsd50k")
        return cached_archive(name, str(Path(base).expanduser() / name), options, "fsd50k")

    if "" in options.sha256:
        raise StagingError("fsd50k downloads several archives; pin each one with --sha256 FILE=HEX")
    truth = open_zip(get(FSD50K_GROUND_TRUTH), options)
    dev_rows = _fsd_rows(truth, "dev.csv", FSD50K_DEV_COLUMNS)
    eval_rows = _fsd_rows(truth, "eval.csv", FSD50K_EVAL_COLUMNS)
    clips = _fsd_clips(dev_rows, eval_rows)
    classes, notes = _fsd_classes(options, [labels for _, _, labels, _ in clips])

    found = SourceSet(title="FSD50K", candidates=[], notes=notes)
    archives: dict[str, MultiPartZip] = {}
    for archive_name, fname, labels, split in clips:
        refusal = unsafe_file_name(f"{fname}.wav", "file name")
        if refusal:
            found.refused.append((f"{archive_name}:{fname}.wav", refusal))
            continue
        label, reason = map_labels(labels, classes)
        if label is None:
            found.left_out[(reason, split)] += 1
            continue
        if archive_name not in archives:
            last = get(archive_name)  # first: its end record says how many parts there are
            earlier = [get(part.name) for part in part_paths(last, disk_count(last))[:-1]]
            archives[archive_name] = MultiPartZip([*earlier, last])
        _add_clip(found, archives[archive_name], archive_name, fname, label, split)
    rule = "--classes" if options.classes else f"the {len(classes)} leaf labels"
    found.notes.append(f"a clip is kept when exactly one of its labels is among {rule}")
    return found


_Clip = tuple[str, str, frozenset[str], str]  # (archive, fname, labels, split)


def _fsd_clips(dev_rows: list[dict[str, str]], eval_rows: list[dict[str, str]]) -> list[_Clip]:
    """Every clip of the ground truth with its archive, labels and split (dev's train/val, eval's test)."""
    clips: list[_Clip] = []
    for number, row in enumerate(dev_rows, start=2):
        split = FSD50K_SPLITS.get(row["split"])
        if split is None:
            raise StagingError(f"dev.csv line {number}: split {row['split']!r} is not train or val")
        clips.append((FSD50K_DEV_AUDIO, row["fname"], _labels(row["labels"]), split))
    clips += [(FSD50K_EVAL_AUDIO, row["fname"], _labels(row["labels"]), "test") for row in eval_rows]
    return clips


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
    found: SourceSet, archive: MultiPartZip, archive_name: str, fname: str, label: str, split: str
) -> None:
    """The clip's member of the split zip as a candidate; refused when unsafe, missing when absent."""
    member = _member(archive, archive_name, fname)
    if member is not None and (refusal := unsafe_member(member)):
        found.refused.append((member, refusal))
        return
    if member is None:
        found.missing.append((f"{archive_name}:{fname}.wav", "in the ground truth but not in the archive"))
        return
    found.candidates.append(
        Candidate(
            origin=member,
            label=check_label(label, f"FSD50K label {label!r}"),
            split=split,
            group=fname,
            name=PurePosixPath(member).name,
            read=_split_zip_reader(archive, member),
        )
    )


def _fsd_rows(truth: zipfile.ZipFile, name: str, required: tuple[str, ...]) -> list[dict[str, str]]:
    member = next((n for n in sorted(truth.namelist()) if PurePosixPath(n).name == name), None)
    if member is None:
        raise StagingError(f"{FSD50K_GROUND_TRUTH} has no {name}; is it FSD50K's ground truth?")
    return read_csv(truth.read(member).decode("utf-8"), member, required, ",".join(required))


def _labels(field_value: str) -> frozenset[str]:
    return frozenset(label.strip() for label in field_value.split(",") if label.strip())


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


def leaf_labels(label_sets: list[frozenset[str]]) -> tuple[set[str], dict[str, str]]:
    """Labels that are no other label's ancestor, with the hierarchy recovered from the ground truth.

    FSD50K propagates every label up the AudioSet ontology (a "Bark" clip also carries "Dog",
    "Domestic_animals_and_pets" and "Animal"), so A is an ancestor of B when every clip with B also
    has A and A has more clips. Two labels on exactly the same clips cannot be told apart (both names
    fit every one of those clips): they become one class named after the alphabetically first, and the
    second value maps each merged label to that name.
    """
    count: Counter[str] = Counter()
    together: Counter[tuple[str, str]] = Counter()
    for labels in label_sets:
        count.update(labels)
        together.update((b, a) for b in labels for a in labels if a != b)
    implied = [(b, a) for (b, a), n in together.items() if n == count[b]]  # every clip with b has a
    ancestors = {a for b, a in implied if count[a] > count[b]}
    merged = {a: b for b, a in implied if count[a] == count[b] and b < a}
    for label, kept in list(merged.items()):
        while kept in merged:
            kept = merged[kept]
        merged[label] = kept
    return set(count) - ancestors - set(merged), merged


def map_labels(labels: frozenset[str], classes: set[str]) -> tuple[str | None, str]:
    """The clip's one class, or None and why it is left out."""
    hits = labels & classes
    if len(hits) == 1:
        return next(iter(hits)), ""
    if hits:
        return None, "labels in several classes"
    return None, "no label among the classes"


# --- your own folder --------------------------------------------------------------------------------
