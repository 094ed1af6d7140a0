"""Your own multi-label or speech clips: a folder (local or S3) whose metadata file lists each clip.

The folder holds ``metadata.csv`` with the columns ``file_name,labels`` (``--task multilabel``) or
``file_name,transcription`` and optionally ``speaker`` (``--task asr``), and optionally ``split``:
``file_name`` relative to the folder, the labels in one cell separated by ``;`` (an empty cell: a clip
without any event), the transcription as text (its white space runs become single spaces), ``split`` one
of train, validation, test or empty (the split is then assigned; for speech, whole speakers at a time).
Or, already split, ``train/metadata.csv``, ``validation/metadata.csv``, ``test/metadata.csv``, each
listing the clips of its split relative to its own folder (the layout this tool writes).

A row that cannot be staged is skipped and named, never fatal: a path leading outside the folder
(refused), a file that is not there (missing), a repeated file name, a short or long row, an unknown
split, a bad label, an empty transcription (bad rows). Only files the folder listing holds can be read,
so no row reaches outside the folder, whatever it says.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from common import audio, contract

from .. import ASR, MULTILABEL, SPLITS, StagingError
from ..stores import LocalTree, S3Tree, Tree, is_s3, s3_client
from .common import (
    Candidate,
    SourceSet,
    speaker_group,
    speaker_of,
    transcription_of,
    unsafe_file_name,
    unsafe_label,
    unsafe_relative_path,
)

SPLIT_COLUMN = "split"
EXPECTED = (
    f"a header with {contract.FILE_NAME_COLUMN},{contract.LABELS_COLUMN}[,{SPLIT_COLUMN}] "
    f"(labels separated by {contract.LABEL_SEPARATOR!r}, an empty cell for none; "
    f"split: {', '.join(SPLITS)} or empty)"
)
EXPECTED_ASR = (
    f"a header with {contract.FILE_NAME_COLUMN},{contract.TRANSCRIPTION_COLUMN}"
    f"[,{contract.SPEAKER_COLUMN}][,{SPLIT_COLUMN}] (a transcription per clip, never empty; "
    f"split: {', '.join(SPLITS)} or empty)"
)
# Each task's columns: the required ones and the optional ones, and what the error messages expect.
COLUMNS = {
    MULTILABEL: ((contract.FILE_NAME_COLUMN, contract.LABELS_COLUMN), (SPLIT_COLUMN,), EXPECTED),
    ASR: (
        (contract.FILE_NAME_COLUMN, contract.TRANSCRIPTION_COLUMN),
        (contract.SPEAKER_COLUMN, SPLIT_COLUMN),
        EXPECTED_ASR,
    ),
}


def listed_folder(url: str, task: str = MULTILABEL) -> SourceSet:
    """The clips a folder's metadata file (or its split folders' files) lists, with their labels (multi-label)
    or transcriptions and speakers (speech)."""
    tree = _tree(url, task)
    files, refused = tree.files()
    present = set(files)
    listing = _Listing(tree, present, dict(refused), task)
    for prefix, split in _tables(present, tree.url, task):
        listing.read(prefix, split)
    found = listing.found
    unlisted = [
        f for f in files if f.lower().endswith(audio.AUDIO_EXTENSIONS) and f not in listing.first_seen
    ]
    if unlisted:
        found.notes.append(f"{len(unlisted)} audio file(s) not listed in {contract.METADATA_FILE}: ignored")
    kind = "transcriptions" if task == ASR else "labels"
    found.notes.append(f"{kind} from {contract.METADATA_FILE}")
    return found


def _tree(url: str, task: str) -> Tree:
    """The folder: ``url`` itself, or the folder of the metadata file ``url`` names."""
    base = url
    if url.rstrip("/").rsplit("/", 1)[-1] == contract.METADATA_FILE:
        base = url.rstrip("/")[: -len(contract.METADATA_FILE)] or "."
    elif url.lower().endswith(".csv"):
        raise StagingError(
            f"{url}: with --task {task}, --source-url is the folder holding {contract.METADATA_FILE} "
            f"({COLUMNS[task][2]})"
        )
    return S3Tree(s3_client(), base) if is_s3(base) else LocalTree(Path(base).expanduser())


def _tables(present: set[str], url: str, task: str) -> list[tuple[str, str | None]]:
    """(folder prefix, its fixed split) of each metadata file: the folder's own, else each split's."""
    if contract.METADATA_FILE in present:
        return [("", None)]
    per_split: list[tuple[str, str | None]] = [
        (f"{s}/", s) for s in SPLITS if f"{s}/{contract.METADATA_FILE}" in present
    ]
    if not per_split:
        raise StagingError(
            f"{url} has no {contract.METADATA_FILE} (nor train/{contract.METADATA_FILE}, ...); "
            f"expected {COLUMNS[task][2]}"
        )
    return per_split


def read_table(
    data: bytes, where: str, task: str = MULTILABEL
) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the (line, cells) of each non-blank row; a missing column stops the run, since no
    row could be read without it."""
    required, _, expected = COLUMNS[task]
    try:
        reader = csv.reader(io.StringIO(data.decode("utf-8-sig")))
        header = [cell.strip() for cell in next(reader, [])]
        rows = [(reader.line_num, [cell.strip() for cell in cells]) for cells in reader if cells]
    except UnicodeDecodeError as err:
        raise StagingError(f"{where} is not UTF-8 text; expected {expected}") from err
    except csv.Error as err:
        raise StagingError(f"{where} is not a valid CSV ({err}); expected {expected}") from err
    if not header:
        raise StagingError(f"{where} is empty; expected {expected}")
    missing = [c for c in required if c not in header]
    if missing:
        raise StagingError(
            f"{where} has no {', '.join(repr(c) for c in missing)} column; its columns are "
            f"{', '.join(header)}; expected {expected}"
        )
    return header, rows


def parse_labels(cell: str) -> tuple[tuple[str, ...], str]:
    """A cell's labels, in order, each once (an empty cell: none); or () and why one is unusable."""
    labels = tuple(dict.fromkeys(p.strip() for p in cell.split(contract.LABEL_SEPARATOR) if p.strip()))
    for label in labels:
        reason = unsafe_label(label)
        if reason:
            return (), reason
    return labels, ""


@dataclass
class _Listing:
    """Reads metadata files row by row into candidates, and every unusable row into its list."""

    tree: Tree
    present: set[str]  # every readable file of the folder (links leading out of it are not)
    links: dict[str, str]  # refused links: path -> why
    task: str = MULTILABEL
    found: SourceSet = field(init=False)
    first_seen: dict[str, str] = field(default_factory=dict)  # path -> the row that listed it

    def __post_init__(self) -> None:
        self.found = SourceSet(title=f"folder {self.tree.url} ({contract.METADATA_FILE})", candidates=[])

    def read(self, prefix: str, split: str | None) -> None:
        table = prefix + contract.METADATA_FILE
        header, rows = read_table(self.tree.reader(table)(), table, self.task)
        required, optional, expected = COLUMNS[self.task]
        extra = [c for c in header if c not in (*required, *optional)]
        if extra:
            self.found.notes.append(f"{table}: column(s) {', '.join(extra)} ignored")
        for number, cells in rows:
            where = f"{table} line {number}"
            if len(cells) != len(header):
                reason = f"{len(cells)} field(s) where the header has {len(header)}; expected {expected}"
                self.found.bad_rows.append((where, reason))
                continue
            self.row(dict(zip(header, cells, strict=True)), where, prefix, split)

    def row(self, row: dict[str, str], where: str, prefix: str, fixed_split: str | None) -> None:
        file_name = row[contract.FILE_NAME_COLUMN]
        if not file_name:
            self.found.bad_rows.append((where, f"an empty {contract.FILE_NAME_COLUMN}"))
            return
        refusal = _unsafe_path(file_name)
        if refusal:
            self.found.refused.append((file_name, f"{where}: {refusal}"))
            return
        path = prefix + PurePosixPath(file_name).as_posix()
        labels: tuple[str, ...] | None = None
        transcription = speaker = None
        if self.task == ASR:
            transcription, problem = transcription_of(row[contract.TRANSCRIPTION_COLUMN])
            if not problem:
                speaker, problem = speaker_of(row.get(contract.SPEAKER_COLUMN, ""))
        else:
            labels, problem = parse_labels(row[contract.LABELS_COLUMN])
        split = fixed_split or row.get(SPLIT_COLUMN) or None
        problem = problem or self._row_problem(path, split)
        if problem:
            self.found.bad_rows.append((where, f"{contract.FILE_NAME_COLUMN} {file_name!r}: {problem}"))
            return
        self.first_seen[path] = where
        if path in self.links:
            self.found.refused.append((path, f"{where}: {self.links[path]}"))
        elif path not in self.present:
            self.found.missing.append((path, f"{where}: listed but not in the folder"))
        else:
            self.found.candidates.append(
                Candidate(
                    origin=path,
                    label="",
                    split=split,
                    group=speaker_group(speaker, path),
                    name=PurePosixPath(path).name,
                    read=self.tree.reader(path),
                    labels=labels,
                    transcription=transcription,
                    speaker=speaker,
                )
            )

    def _row_problem(self, path: str, split: str | None) -> str:
        """Why a row with a safe path cannot be staged, or ""."""
        if not path.lower().endswith(audio.AUDIO_EXTENSIONS):
            return f"not an audio file (extensions: {', '.join(audio.AUDIO_EXTENSIONS)})"
        if path in self.first_seen:
            return f"listed again (first on {self.first_seen[path]})"
        if split is not None and split not in SPLITS:
            return f"split {split!r} is not one of {', '.join(SPLITS)} (or empty)"
        return ""


def _unsafe_path(file_name: str) -> str | None:
    """Why a file_name cannot name a file inside the folder (or stage under its base name), or None."""
    return unsafe_relative_path(file_name, contract.FILE_NAME_COLUMN) or unsafe_file_name(
        PurePosixPath(file_name).name, "file name"
    )
