"""ESC-50: folds to splits, from its zip (the official archive or a mirror)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from .. import StagingError
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

# ESC-50 (https://github.com/karolpiczak/ESC-50): 2,000 five-second clips, 50 classes, 5 folds. The
# archive's top folder is "ESC-50-master/"; it is found from the metadata file, not assumed.
ESC50_URL = "https://github.com/karolpiczak/ESC-50/archive/refs/heads/master.zip"
ESC50_META = "meta/esc50.csv"
ESC50_AUDIO = "audio/"
ESC50_COLUMNS = ("filename", "fold", "category", "esc10", "src_file")
ESC50_FOLDS = (1, 2, 3, 4, 5)


def esc50(options: SourceOptions) -> SourceSet:
    """Folds to splits: ``--fold`` (default 5) is ``test``; the rest train (validation carved later)."""
    if options.fold not in ESC50_FOLDS:
        raise StagingError(f"--fold {options.fold} is not an ESC-50 fold; use 1 to 5")
    archive = open_zip(
        cached_archive("ESC-50-master.zip", options.source_url or ESC50_URL, options, "esc50"), options
    )
    path = Path(str(archive.filename))
    names = set(archive.namelist())
    meta = next((n for n in sorted(names) if n.endswith(ESC50_META)), None)
    if meta is None:
        raise StagingError(f"{path.name} has no {ESC50_META}; is it the ESC-50 archive?")
    root = meta[: -len(ESC50_META)]
    expected = "the ESC-50 columns filename,fold,target,category,esc10,src_file,take"
    rows = read_csv(archive.read(meta).decode("utf-8"), meta, ESC50_COLUMNS, expected)
    found = SourceSet(title="ESC-50" + (" (ESC-10 subset)" if options.esc10 else ""), candidates=[])
    for number, row in enumerate(rows, start=2):
        if options.esc10 and row["esc10"].lower() != "true":
            continue
        try:
            fold = int(row["fold"])
        except ValueError:
            raise StagingError(f"{meta} line {number}: fold {row['fold']!r} is not a number") from None
        member = root + ESC50_AUDIO + row["filename"]
        origin = member
        refusal = unsafe_file_name(row["filename"], "filename") or unsafe_member(member)
        if refusal:
            found.refused.append((origin, refusal))
            continue
        if member not in names:
            found.missing.append((origin, "listed in the metadata but missing from the archive"))
            continue
        found.candidates.append(
            Candidate(
                origin=origin,
                label=check_label(row["category"], f"{meta} line {number}"),
                split="test" if fold == options.fold else None,
                group=row["src_file"] or row["filename"],
                name=row["filename"],
                read=_zip_reader(archive, member),
            )
        )
    found.notes.append(
        f"fold {options.fold} is the test split; folds {_others(options.fold)} train/validation"
    )
    return found


def _others(fold: int) -> str:
    return ",".join(str(f) for f in ESC50_FOLDS if f != fold)


def _zip_reader(archive: zipfile.ZipFile, member: str) -> Reader:
    def read() -> bytes:
        return archive.read(member)

    return read


# --- FSD50K -----------------------------------------------------------------------------------------
