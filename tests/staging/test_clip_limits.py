"""Clips a dataset may not bring in: too long, or decoding to too much, however small the file."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.staging.archives import wav


def silence(sample_rate: int, channels: int, seconds: float) -> bytes:
    """A silent FLAC, written in blocks: hours of it are a few hundred KB."""
    buffer = io.BytesIO()
    frames = round(seconds * sample_rate)
    block = np.zeros((min(frames, 4_000_000 // channels + 1), channels), dtype=np.int16)
    with sf.SoundFile(buffer, "w", samplerate=sample_rate, channels=channels, format="FLAC") as out:
        for start in range(0, frames, block.shape[0]):
            out.write(block[: frames - start])
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _staged(root: Path) -> list[str]:
    return sorted(json.loads(line)["path"] for line in (root / "manifest.jsonl").read_text().splitlines())


def _clips(source: Path) -> None:
    for n, label in enumerate(("alarm", "siren")):
        for i in range(3):
            _write(source / "train" / label / f"{label}{i}.wav", wav(10 * n + i))


def test_clips_over_the_length_or_decoded_size_limits_are_skipped_and_reported(run_stage, tmp_path):
    # Given usable clips, the 6,553 s of silence (a few hundred KB), and 100 s of 96 kHz audio in
    # 8 channels: 76.8 M samples to decode, more than 10 minutes of 48 kHz stereo
    source = tmp_path / "clips"
    _clips(source)
    hours = silence(16_000, 1, 6_553.0)
    assert len(hours) < 1_000_000
    _write(source / "train" / "alarm" / "silence.flac", hours)
    _write(source / "train" / "siren" / "wide.flac", silence(96_000, 8, 100.0))
    out = tmp_path / "out"

    # When the folder is staged with the default limits
    result = run_stage("folder", "--source-url", str(source), "--to", str(out))

    # Then neither is staged; both are counted as skipped, each with the limit it broke
    assert result.code == 0, result.err
    assert _staged(out) == [f"train/{label}/{label}{i}.wav" for label in ("alarm", "siren") for i in range(3)]
    assert "corrupt or missing (skipped): 2" in result.out
    assert "train/alarm/silence.flac: the audio lasts 6553.0 s, longer than the limit of 600 s" in result.out
    assert "train/siren/wide.flac: the audio decodes to 76,800,000 samples" in result.out


def test_max_duration_sets_the_staging_length_limit(run_stage, tmp_path):
    # Given a clip of 700 s at 8 kHz
    source = tmp_path / "clips"
    _clips(source)
    _write(source / "train" / "alarm" / "long.flac", silence(8_000, 1, 700.0))

    # When it is staged with the default limit, and with --max-duration 800
    default = run_stage("folder", "--source-url", str(source), "--to", str(tmp_path / "default"))
    raised = run_stage(
        "folder", "--source-url", str(source), "--to", str(tmp_path / "raised"), "--max-duration", "800"
    )

    # Then it is skipped by default and staged under the raised limit
    assert default.code == 0 and raised.code == 0, default.err + raised.err
    assert "train/alarm/long.flac" not in _staged(tmp_path / "default")
    assert "train/alarm/long.flac" in _staged(tmp_path / "raised")
