"""What every source shares: candidate clips, the set a source offers, its options, CSV and archive helpers."""

from __future__ import annotations

import csv
import io
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from common import contract

from .. import CLASSIFICATION, StagingError
from ..fetch import Log, fetch
from ..stores import unsafe_name

Reader = Callable[[], bytes]
# --labels (fsd50k, multi-label): every label of a clip, or only its most specific ones.
ALL_LABELS, LEAF_LABELS = "all", "leaf"
LABEL_LEVELS = (ALL_LABELS, LEAF_LABELS)


@dataclass(frozen=True)
class Candidate:
    """A clip a source offers: where it is, its label(s), and its split when the source fixes one.

    A single-label source gives ``label``; a multi-label one gives ``labels`` (possibly empty: a clip
    without any event) and leaves ``label`` empty. Clips without a fixed split are assigned one per
    ``label``, so the clips of a multi-label source share one pool. A speech source (``--task asr``) gives
    ``transcription`` (never empty: a CTC target cannot be) and ``speaker`` when it knows it, leaves
    ``label`` empty, and groups a speaker's clips (``group``) so that an assigned split keeps each
    speaker in one split.
    """

    origin: str  # relative to the source, so the manifest reads the same on every machine
    label: str
    split: str | None
    group: str  # clips of one group (e.g. one source recording) land in the same split
    name: str  # file name under <split>/<label>/ (or <split>/ for a multi-label or speech dataset)
    read: Reader = field(compare=False, repr=False)
    labels: tuple[str, ...] | None = None
    transcription: str | None = None
    speaker: str | None = None

    @property
    def all_labels(self) -> tuple[str, ...]:
        """Every label of the clip: ``labels``, or the one ``label`` of a single-label source."""
        return self.labels if self.labels is not None else (self.label,)


@dataclass
class SourceSet:
    """What a source offers, plus what it left out before any audio was read."""

    title: str
    candidates: list[Candidate]
    left_out: Counter[tuple[str, str]] = field(default_factory=Counter)  # (reason, split) -> clips
    missing: list[tuple[str, str]] = field(default_factory=list)  # (origin, reason)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (origin, reason): unsafe name or link
    notes: list[str] = field(default_factory=list)
    bad_rows: list[tuple[str, str]] = field(default_factory=list)  # (where, reason): a table's unusable row


@dataclass(frozen=True)
class SourceOptions:
    source_url: str | None
    cache_dir: Path
    sha256: dict[str, str]  # archive file name (or "" for the only one) -> pinned hex digest
    progress: bool
    log: Log
    fold: int = 5
    esc10: bool = False
    classes: tuple[str, ...] | None = None
    task: str = CLASSIFICATION
    label_level: str = ALL_LABELS  # fsd50k --task multilabel: see LABEL_LEVELS
    subsets: tuple[str, ...] | None = None  # librispeech: the subsets to stage (None: its default)


def read_csv(text: str, where: str, required: Iterable[str], expected: str) -> list[dict[str, str]]:
    """Rows of a CSV with a header; errors name the file, the row and what was expected."""
    try:
        reader = csv.DictReader(io.StringIO(text))
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in required if c not in columns]
        if not columns:
            raise StagingError(f"{where} is empty; expected a header row with {expected}")
        if missing:
            raise StagingError(
                f"{where} has no {', '.join(repr(c) for c in missing)} column; "
                f"its columns are {', '.join(columns)}; expected {expected}"
            )
        reader.fieldnames = columns
        rows = []
        for row in reader:
            if None in row or any(value is None for value in row.values()):
                extra = row.pop(None, None) or []
                fields = sum(value is not None for value in row.values()) + len(extra)
                raise StagingError(
                    f"{where} line {reader.line_num}: {fields} field(s) where the header has "
                    f"{len(columns)}; expected {expected}"
                )
            rows.append({key: value.strip() for key, value in row.items()})
        return rows
    except csv.Error as err:
        raise StagingError(f"{where} is not a valid CSV ({err}); expected {expected}") from err
    except UnicodeDecodeError as err:
        raise StagingError(f"{where} is not UTF-8 text; expected a CSV with {expected}") from err


def check_label(label: str, where: str) -> str:
    """A label becomes a folder name: it must be one plain path segment."""
    reason = unsafe_name(label)
    if reason:
        raise StagingError(f"{where}: label {label!r} cannot be a folder name ({reason}); rename it")
    return label


def unsafe_label(label: str) -> str | None:
    """Why a label cannot be one of a clip's labels in a metadata file, or None.

    Labels share one cell, separated by the contract's separator, so none may hold it; and none may be
    empty or hold a control character (a line break would cut the row).
    """
    if not label:
        return "an empty label"
    if contract.LABEL_SEPARATOR in label:
        return f"label {label!r} holds {contract.LABEL_SEPARATOR!r}, which separates labels"
    if any(ord(c) < 32 or ord(c) == 127 for c in label):
        return f"label {label!r} holds a control character"
    if label != label.strip():
        return f"label {label!r} starts or ends with white space"
    return None


def transcription_of(text: str) -> tuple[str, str]:
    """A transcription as staged: its words joined by single spaces (a line break or tab would only cut a
    metadata row); or "" and why it cannot be a CTC target (empty, or holding a control character)."""
    words = " ".join(text.split())
    if not words:
        return "", "an empty transcription (a CTC target cannot be empty)"
    if any(ord(c) < 32 or ord(c) == 127 for c in words):
        return "", "the transcription holds a control character"
    return words, ""


def speaker_of(cell: str) -> tuple[str | None, str]:
    """A speaker cell as staged (empty: None, an unknown speaker); or None and why it is unusable."""
    speaker = " ".join(cell.split())
    if any(ord(c) < 32 or ord(c) == 127 for c in speaker):
        return None, f"speaker {cell!r} holds a control character"
    return speaker or None, ""


def speaker_group(speaker: str | None, origin: str) -> str:
    """A clip's split group: its speaker (so a speaker's clips share one split), else the clip alone."""
    return f"speaker\0{speaker}" if speaker else origin


def unsafe_relative_path(path: str, kind: str) -> str | None:
    """Why a path from a table cannot name a file inside the table's folder, or None."""
    if path.startswith("/") or "\\" in path or (path[:1].isalpha() and path[1:2] == ":"):
        return f"{kind} {path!r} is absolute or holds a drive letter or backslash"
    if ".." in path.split("/"):
        return f"{kind} {path!r} climbs out of the folder ('..')"
    return None


def unsafe_file_name(name: str, kind: str) -> str | None:
    """Why a source's file name cannot name a staged clip, or None; only a plain name may reach the output."""
    reason = unsafe_name(name)
    return f"{kind} {name!r} is not a plain file name: {reason}" if reason else None


def unsafe_member(name: str) -> str | None:
    """Why an archive member's name is not a relative path inside the archive, or None."""
    if name.startswith("/") or "\\" in name or (name[:1].isalpha() and name[1:2] == ":"):
        return f"archive member {name!r} is absolute or holds a drive letter or backslash"
    if ".." in name.split("/"):
        return f"archive member {name!r} climbs out of the archive ('..')"
    return None


def cached_archive(name: str, url: str | None, options: SourceOptions, cache: str) -> Path:
    pinned = options.sha256.get(name) or options.sha256.get("")
    return fetch(
        url or name,
        options.cache_dir / cache,
        name=name,
        expected_sha256=pinned,
        progress=options.progress,
        log=options.log,
    )


def open_zip(path: Path, options: SourceOptions) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        hint = "check --source-url"
        if path.is_relative_to(options.cache_dir):
            # A download that ended early without an error is checksummed as it is; drop it.
            path.unlink()
            path.with_name(path.name + ".sha256").unlink(missing_ok=True)
            hint = "removed it from the cache; run again to download it afresh, or check --source-url"
        raise StagingError(f"{path.name} is not a zip archive ({err}); {hint}") from err


# --- ESC-50 -----------------------------------------------------------------------------------------
