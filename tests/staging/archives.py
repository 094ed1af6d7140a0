"""Tiny datasets in the real ESC-50 and FSD50K layouts, built in memory."""

from __future__ import annotations

import csv
import io
import struct
import zipfile

import numpy as np
import soundfile as sf

SAMPLE_RATE = 8_000

# ESC-50: per category (target, esc10); two takes (A, B) of one source recording per fold.
ESC50_CATEGORIES = {"dog": (0, True), "rain": (10, True), "crow": (9, False)}
ESC50_HEADER = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]


def wav(seed: int, seconds: float = 0.1, channels: int = 1) -> bytes:
    """A short distinct PCM-16 WAV: noise from ``seed``, so every seed gives different bytes."""
    rng = np.random.default_rng(seed)
    samples = (rng.standard_normal((int(SAMPLE_RATE * seconds), channels)) * 0.1).astype(np.float32)
    out = io.BytesIO()
    sf.write(out, samples, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return out.getvalue()


CORRUPT = b"RIFF\x24\x00\x00\x00WAVEfmt this is not audio"


def _csv(header: list[str], rows: list[list[object]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def esc50_rows() -> list[list[object]]:
    rows: list[list[object]] = []
    for category, (target, esc10) in ESC50_CATEGORIES.items():
        for fold in range(1, 6):
            src = f"{100 + target}{fold}"
            rows += [
                [f"{fold}-{src}-{take}-{target}.wav", fold, target, category, esc10, src, take]
                for take in "AB"
            ]
    return rows


def esc50_zip(
    *,
    corrupt: str | None = None,
    header: list[str] | None = None,
    rows: list[list[object]] | None = None,
    audio: dict[str, bytes] | None = None,
) -> bytes:
    """``ESC-50-master/audio/*.wav`` and ``ESC-50-master/meta/esc50.csv``, as GitHub's master zip has them.

    ``rows`` replaces the metadata (a member is written for each row's filename, as given); ``audio``
    sets the bytes of some of them.
    """
    rows = esc50_rows() if rows is None else rows
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        names = [str(row[0]) for row in rows]
        columns = header or ESC50_HEADER
        keep = [ESC50_HEADER.index(c) for c in columns if c in ESC50_HEADER]
        archive.writestr("ESC-50-master/meta/esc50.csv", _csv(columns, [[r[i] for i in keep] for r in rows]))
        for seed, name in enumerate(names):
            data = (audio or {}).get(name) or (CORRUPT if name == corrupt else wav(seed))
            archive.writestr(f"ESC-50-master/audio/{name}", data)
    return out.getvalue()


# FSD50K: labels are propagated up the ontology, as in the real ground truth.
FSD50K_DEV = [
    # (fname, labels, split)
    *[(f"{100 + i}", "Bark,Dog,Animal", "train") for i in range(4)],
    *[(f"{110 + i}", "Meow,Cat,Animal", "train") for i in range(4)],
    *[(f"{120 + i}", "Guitar,Music", "train") for i in range(4)],
    *[(f"{130 + i}", "Piano,Music", "train") for i in range(3)],
    ("140", "Bark,Dog,Animal", "val"),
    ("141", "Meow,Cat,Animal", "val"),
    ("142", "Guitar,Music", "val"),
    ("143", "Piano,Music", "val"),
    ("150", "Bark,Dog,Animal,Guitar,Music", "train"),  # two classes: left out
    ("151", "Dog,Animal", "train"),  # only an intermediate label: left out by default
    ("152", "Meow,Cat,Animal,Piano,Music", "val"),  # two classes: left out
]
FSD50K_EVAL = [
    ("200", "Bark,Dog,Animal"),
    ("201", "Meow,Cat,Animal"),
    ("202", "Guitar,Music"),
    ("203", "Piano,Music"),
    ("204", "Bark,Dog,Animal,Meow,Cat"),  # two classes: left out
]


# vocabulary.csv: index,label,mid (no header), one row per label, as in the real ground truth.
FSD50K_VOCABULARY = ["Animal", "Bark", "Cat", "Dog", "Guitar", "Meow", "Music", "Piano"]
FSD50K_MIDS = {label: f"/m/0{index:02d}x" for index, label in enumerate(FSD50K_VOCABULARY)}


def _mids(labels: str) -> str:
    return ",".join(FSD50K_MIDS.get(label, "/m/unknown") for label in labels.split(","))


def fsd50k_ground_truth(
    dev: list[tuple[str, str, str]] | None = None, evaluation: list[tuple[str, str]] | None = None
) -> bytes:
    """``FSD50K.ground_truth/{dev,eval,vocabulary}.csv``; ``dev`` and ``evaluation`` replace the rows."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        dev_rows = [[f, labels, _mids(labels), split] for f, labels, split in dev or FSD50K_DEV]
        archive.writestr("FSD50K.ground_truth/dev.csv", _csv(["fname", "labels", "mids", "split"], dev_rows))
        eval_rows = [[f, labels, _mids(labels)] for f, labels in evaluation or FSD50K_EVAL]
        archive.writestr("FSD50K.ground_truth/eval.csv", _csv(["fname", "labels", "mids"], eval_rows))
        vocabulary = "".join(
            f"{i},{label},{FSD50K_MIDS[label]}\n" for i, label in enumerate(FSD50K_VOCABULARY)
        )
        archive.writestr("FSD50K.ground_truth/vocabulary.csv", vocabulary.encode())
    return out.getvalue()


def audio_zip(folder: str, fnames: list[str], seed: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for i, fname in enumerate(fnames):
            archive.writestr(f"{folder}/{fname}.wav", wav(seed + i))
    return out.getvalue()


def split_zip(data: bytes, part_size: int) -> list[bytes]:
    """Cuts a single-disk zip into Info-ZIP-style parts (``.z01`` …, ``.zip`` last).

    As ``zip -s`` does: the first part starts with the spanning signature, members run across part
    boundaries, and the central directory (last part) gives each member's part number and offset
    within that part.
    """
    archive = zipfile.ZipFile(io.BytesIO(data))
    end = data.rfind(b"PK\x05\x06")
    cd_size, cd_offset = struct.unpack_from("<LL", data, end + 12)
    body = b"PK\x07\x08" + data[:cd_offset]  # every offset moves by the 4-byte signature
    parts = [body[i : i + part_size] for i in range(0, len(body), part_size)]
    last = len(parts) - 1
    directory = bytearray(data[cd_offset : cd_offset + cd_size])
    pos = 0
    for _ in archive.infolist():
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", directory, pos + 28)
        offset = struct.unpack_from("<L", directory, pos + 42)[0] + 4
        struct.pack_into("<H", directory, pos + 34, offset // part_size)
        struct.pack_into("<L", directory, pos + 42, offset % part_size)
        pos += 46 + name_len + extra_len + comment_len
    entries = len(archive.infolist())
    cd_start = len(parts[last])
    eocd = b"PK\x05\x06" + struct.pack("<HHHHLLH", last, last, entries, entries, cd_size, cd_start, 0)
    parts[last] = parts[last] + bytes(directory) + eocd
    return parts


def fsd50k_files(
    part_size: int = 6_000,
    dev: list[tuple[str, str, str]] | None = None,
    evaluation: list[tuple[str, str]] | None = None,
) -> dict[str, bytes]:
    """Every file of the FSD50K Zenodo record that staging needs, by name (``dev``, ``evaluation``:
    other ground-truth rows, each with its clip in the audio archives)."""
    dev, evaluation = dev or FSD50K_DEV, evaluation or FSD50K_EVAL
    files = {"FSD50K.ground_truth.zip": fsd50k_ground_truth(dev, evaluation)}
    for stem, fnames, seed in (
        ("FSD50K.dev_audio", [f for f, _, _ in dev], 1_000),
        ("FSD50K.eval_audio", [f for f, _ in evaluation], 2_000),
    ):
        parts = split_zip(audio_zip(stem, fnames, seed), part_size)
        for index, part in enumerate(parts[:-1], start=1):
            files[f"{stem}.z{index:02d}"] = part
        files[f"{stem}.zip"] = parts[-1]
    return files
