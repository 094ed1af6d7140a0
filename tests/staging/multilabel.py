"""Reading back a multi-label dataset: its manifest, each split's metadata file, and the layout check."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re

from common import contract

SPLITS = ("train", "validation", "test")
CLIP = re.compile(r"(train|validation|test)/[^/\\.][^/\\]*")  # split/clip, nothing deeper, not hidden


def manifest(files: dict[str, bytes]) -> list[dict[str, object]]:
    return [json.loads(line) for line in files[contract.MANIFEST_FILE].decode().splitlines()]


def metadata(files: dict[str, bytes], split: str) -> dict[str, list[str]]:
    """file_name -> labels of a split's metadata file, checking its header and that rows are sorted."""
    text = files[f"{split}/{contract.METADATA_FILE}"].decode()
    assert text.splitlines()[0] == f"{contract.FILE_NAME_COLUMN},{contract.LABELS_COLUMN}"
    rows = list(csv.DictReader(io.StringIO(text)))
    names = [row[contract.FILE_NAME_COLUMN] for row in rows]
    assert names == sorted(names) and len(set(names)) == len(names)
    return {
        row[contract.FILE_NAME_COLUMN]: row[contract.LABELS_COLUMN].split(contract.LABEL_SEPARATOR)
        if row[contract.LABELS_COLUMN]
        else []
        for row in rows
    }


def assert_multilabel_layout(files: dict[str, bytes]) -> dict[str, dict[str, list[str]]]:
    """Every file is the manifest, a split's metadata file or a clip directly in a split folder; the
    metadata files list exactly the manifest's clips with its labels, and each clip's hash is recorded.
    Returns split -> file_name -> labels."""
    entries = manifest(files)
    tables = {
        split: metadata(files, split) for split in SPLITS if f"{split}/{contract.METADATA_FILE}" in files
    }
    clips = {
        path: data
        for path, data in files.items()
        if path != contract.MANIFEST_FILE and not path.endswith(f"/{contract.METADATA_FILE}")
    }
    assert [path for path in clips if not CLIP.fullmatch(path)] == []
    assert {e["path"]: e["sha256"] for e in entries} == {
        path: hashlib.sha256(data).hexdigest() for path, data in clips.items()
    }
    listed = {f"{split}/{name}": labels for split, table in tables.items() for name, labels in table.items()}
    assert listed == {e["path"]: e["labels"] for e in entries}
    assert all(e["split"] == str(e["path"]).split("/")[0] and "label" not in e for e in entries)
    return tables
