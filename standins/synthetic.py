"""Generated audiofolder data sets: a separable task in every format the decoder must handle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from common import contract

# Each class is a tone band (or broadband noise); the classes differ only in spectrum.
TONES = {"low": 250.0, "mid": 900.0, "high": 2800.0, "noise": None}
RATES = (8_000, 16_000, 22_050, 44_100)
FORMATS = (("wav", "PCM_16"), ("flac", "PCM_16"), ("wav", "FLOAT"), ("ogg", "VORBIS"))


def clip(label: str, rate: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A mono clip of ``label``: a jittered tone with background noise, or noise alone."""
    t = np.arange(int(rate * seconds)) / rate
    noise = rng.normal(0.0, 1.0, t.shape)
    tone = TONES[label]
    if tone is None:
        signal = 0.3 * noise
    else:
        freq = tone * rng.uniform(0.93, 1.07)
        signal = rng.uniform(0.3, 0.8) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
        signal += 0.03 * noise
    return signal.astype(np.float32)


def make_audiofolder(
    root: Path,
    per_class: int,
    *,
    seed: int,
    labels: tuple[str, ...] = tuple(TONES),
    seconds: tuple[float, float] = (0.5, 2.6),
    broken: bool = False,
) -> Path:
    """``root/<label>/<n>.<ext>`` in mixed rates, formats and channel counts; ``broken`` adds bad files."""
    rng = np.random.default_rng(seed)
    for label in labels:
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            rate = RATES[n % len(RATES)]
            ext, subtype = FORMATS[n % len(FORMATS)]
            samples = clip(label, rate, rng.uniform(*seconds), rng)
            if n % 3 == 1:  # stereo: the same signal, one channel quieter
                samples = np.stack([samples, 0.5 * samples], axis=1)
            sf.write(folder / f"{label}-{n:03d}.{ext}", samples, rate, subtype=subtype)
    if broken:
        (root / labels[0] / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage, not audio")
        (root / labels[-1] / "empty.flac").write_bytes(b"")
        (root / "README.txt").write_text("not audio: ignored")
    return root


def make_multilabel_folder(
    root: Path,
    clips: int,
    *,
    seed: int,
    labels: tuple[str, ...] = ("low", "mid", "high"),
    seconds: float = 1.5,
) -> Path:
    """``root/metadata.csv`` (``file_name,labels``) and its clips: each a mix of zero to all of ``labels``'
    tones over a little noise, its labels those it holds (an empty cell when none), 16 kHz WAV."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = [f"{contract.FILE_NAME_COLUMN},{contract.LABELS_COLUMN}"]
    for n in range(clips):
        chosen = [label for label in labels if rng.random() < 0.45]
        mix = rng.normal(0.0, 0.02, int(16_000 * seconds)).astype(np.float32)
        for label in chosen:
            mix += clip(label, 16_000, seconds, rng)[: mix.shape[0]] / max(1, len(chosen))
        name = f"clips/mix-{n:03d}.wav"
        (root / "clips").mkdir(exist_ok=True)
        sf.write(root / name, mix, 16_000, subtype="PCM_16")
        rows.append(f"{name},{contract.LABEL_SEPARATOR.join(chosen)}")
    (root / contract.METADATA_FILE).write_text("\n".join(rows) + "\n")
    return root
