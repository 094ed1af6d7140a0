"""Tiny speech datasets (Common Voice and LibriSpeech release layouts, folders with metadata) and reading back
a staged speech dataset: its manifest, each split's metadata file, and the layout check."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf

from common import contract

SPLITS = ("train", "validation", "test")
CLIP = re.compile(r"(train|validation|test)/[^/\\.][^/\\]*")  # split/clip, nothing deeper, not hidden
RATE = 16_000


def audio(seed: int, fmt: str = "FLAC", seconds: float = 0.1) -> bytes:
    """A short distinct clip (noise from ``seed``) in ``fmt``: FLAC, MP3 (libsndfile 1.1+) or WAV."""
    rng = np.random.default_rng(seed)
    samples = (rng.standard_normal(int(RATE * seconds)) * 0.1).astype(np.float32)
    out = io.BytesIO()
    sf.write(out, samples, RATE, format=fmt)
    return out.getvalue()


def mp3(seed: int) -> bytes:
    return audio(seed, "MP3")


def flac(seed: int) -> bytes:
    return audio(seed, "FLAC")


def write_files(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def tar_gz(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A .tar.gz of ``files`` by member name, as given (hostile names included), plus symbolic links."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return out.getvalue()


# --- Common Voice -------------------------------------------------------------------------------------

CV_ROOT = "cv-corpus-17.0-2024-03-15/en/"
CV_HEADER = [
    "client_id",
    "path",
    "sentence_id",
    "sentence",
    "sentence_domain",
    "up_votes",
    "down_votes",
    "age",
    "gender",
    "accents",
    "variant",
    "locale",
    "segment",
]


def cv_row(client: str, path: str, sentence: str) -> list[str]:
    return [client, path, "s1", sentence, "", "2", "0", "", "", "", "", "en", ""]


def cv_table(rows: Iterable[list[str]]) -> bytes:
    """A Common Voice table as released: tab-separated, never quoted."""
    return "".join("\t".join(r) + "\n" for r in [CV_HEADER, *rows]).encode()


def commonvoice_files(
    tables: dict[str, list[list[str]]], clips: Iterable[str], seed: int = 0
) -> dict[str, bytes]:
    """A release's files under ``CV_ROOT``: ``clips/<name>`` (MP3) and each table (``train.tsv``...)."""
    files = {f"{CV_ROOT}clips/{name}": mp3(seed + i) for i, name in enumerate(clips)}
    files |= {CV_ROOT + name: cv_table(rows) for name, rows in tables.items()}
    return files


# --- LibriSpeech --------------------------------------------------------------------------------------


def librispeech_files(
    subset: str, speakers: dict[str, dict[str, dict[str, str]]], seed: int = 0
) -> dict[str, bytes]:
    """``LibriSpeech/<subset>/<speaker>/<chapter>/``: a FLAC per utterance and the chapter's transcript.

    ``speakers``: speaker -> chapter -> utterance number -> transcript.
    """
    files: dict[str, bytes] = {"LibriSpeech/README.TXT": b"LibriSpeech ASR corpus\n"}
    n = seed
    for speaker, chapters in speakers.items():
        for chapter, utterances in chapters.items():
            folder = f"LibriSpeech/{subset}/{speaker}/{chapter}/"
            lines = []
            for utt, text in utterances.items():
                uid = f"{speaker}-{chapter}-{utt}"
                files[f"{folder}{uid}.flac"] = flac(n)
                lines.append(f"{uid} {text}\n")
                n += 1
            files[f"{folder}{speaker}-{chapter}.trans.txt"] = "".join(lines).encode()
    return files


# --- Reading a staged speech dataset back -------------------------------------------------------------


def manifest(files: dict[str, bytes]) -> list[dict[str, object]]:
    return [json.loads(line) for line in files[contract.MANIFEST_FILE].decode().splitlines()]


def metadata(files: dict[str, bytes], split: str) -> dict[str, dict[str, str]]:
    """file_name -> its row of a split's metadata file, checking the header and that rows are sorted."""
    text = files[f"{split}/{contract.METADATA_FILE}"].decode()
    header = next(csv.reader(io.StringIO(text)))
    assert header[:2] == [contract.FILE_NAME_COLUMN, contract.TRANSCRIPTION_COLUMN], header
    assert header[2:] in ([], [contract.SPEAKER_COLUMN]), header
    rows = list(csv.DictReader(io.StringIO(text)))
    names = [row[contract.FILE_NAME_COLUMN] for row in rows]
    assert names == sorted(names) and len(set(names)) == len(names)
    assert all(row[contract.TRANSCRIPTION_COLUMN] for row in rows)
    return {row[contract.FILE_NAME_COLUMN]: row for row in rows}


def assert_speech_layout(files: dict[str, bytes]) -> dict[str, dict[str, dict[str, str]]]:
    """Every file is the manifest, a split's metadata file or a clip directly in a split folder; the
    metadata files list exactly the manifest's clips with its transcriptions and speakers, and each clip's
    hash is recorded. Returns split -> file_name -> row."""
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
    listed = {
        f"{split}/{name}": (row[contract.TRANSCRIPTION_COLUMN], row.get(contract.SPEAKER_COLUMN) or None)
        for split, table in tables.items()
        for name, row in table.items()
    }
    assert listed == {
        e["path"]: (e[contract.TRANSCRIPTION_COLUMN], e.get(contract.SPEAKER_COLUMN)) for e in entries
    }
    assert all(e["split"] == str(e["path"]).split("/")[0] and "label" not in e for e in entries)
    return tables


def speakers_by_split(tables: dict[str, dict[str, dict[str, str]]]) -> dict[str, set[str]]:
    return {
        split: {row[contract.SPEAKER_COLUMN] for row in table.values() if row.get(contract.SPEAKER_COLUMN)}
        for split, table in tables.items()
    }
