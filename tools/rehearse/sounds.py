"""The sample dataset: the four vehicle events the product was first built for, synthesized.

Each class sounds like what it names and differs from the others in spectrum and time structure, not in
loudness: ``Normal`` is engine rumble with road noise, ``TireSkid`` a wavering high squeal over hiss,
``EmergencyBraking`` a brake squeal pulsed by the anti-lock system over a falling engine note, and
``CollisionImminent`` a fast two-tone warning chime. Clips come in mixed sample rates and channel counts,
with one corrupt file that staging must skip.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from common import contract

CLASSES = ("Normal", "TireSkid", "EmergencyBraking", "CollisionImminent")
RATES = (8_000, 16_000, 22_050, 44_100)


def _noise(rng: np.random.Generator, n: int, smooth: int) -> np.ndarray:
    """Noise low-passed by a moving average of ``smooth`` samples."""
    white = rng.standard_normal(n + smooth)
    return np.convolve(white, np.ones(smooth) / smooth, mode="valid")[:n]


def synthesize(label: str, rng: np.random.Generator, rate: int, seconds: float) -> np.ndarray:
    """One mono clip of ``label``, peak-normalized to a random level."""
    n = int(rate * seconds)
    t = np.arange(n) / rate
    if label == "Normal":  # engine firing frequency and harmonics, plus broadband road noise
        f0 = rng.uniform(30, 55) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(0.2, 0.5) * t))
        phase = 2 * np.pi * np.cumsum(f0) / rate
        x = sum(np.sin(k * phase) / k for k in range(1, 7)) + 0.8 * _noise(rng, n, 8)
    elif label == "TireSkid":  # a squeal whose pitch wavers, over tyre hiss
        f = rng.uniform(1100, 1800) * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(4, 9) * t))
        x = np.sin(2 * np.pi * np.cumsum(f) / rate) + 0.4 * rng.standard_normal(n)
    elif label == "EmergencyBraking":  # brake squeal pulsed ~15 Hz (ABS) over a falling engine note
        squeal = np.sin(2 * np.pi * rng.uniform(2500, 3500) * t)
        pulse = (np.sin(2 * np.pi * rng.uniform(12, 18) * t) > 0).astype(float)
        f0 = np.linspace(rng.uniform(60, 80), rng.uniform(25, 35), n)
        x = 0.8 * pulse * squeal + np.sin(2 * np.pi * np.cumsum(f0) / rate) + 0.2 * _noise(rng, n, 4)
    elif label == "CollisionImminent":  # two alternating chime tones, fast
        rate_hz = rng.uniform(5, 8)
        high = (np.floor(t * rate_hz) % 2).astype(bool)
        tone = np.where(high, rng.uniform(2800, 3200), rng.uniform(1900, 2300))
        gate = (((t * rate_hz) % 1.0) < 0.7).astype(float)
        x = gate * np.sin(2 * np.pi * np.cumsum(tone) / rate)
    else:
        raise ValueError(f"unknown class {label!r}; known: {', '.join(CLASSES)}")
    x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.3, 0.9)
    return (x + 0.01 * rng.standard_normal(n)).astype(np.float32)


def generate(
    raw: Path, held_back: Path, *, clips_per_class: int, held_back_per_class: int = 2, seed: int = 7
) -> dict[str, int]:
    """``raw/<class>/*.wav`` to stage and ``held_back/<class>/*.wav`` to classify at the end."""
    rng = np.random.default_rng(seed)
    counts = {}
    for label in CLASSES:
        for folder, count in ((raw, clips_per_class), (held_back, held_back_per_class)):
            (folder / label).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                rate = RATES[i % len(RATES)]
                clip = synthesize(label, rng, rate, rng.uniform(0.8, 2.5))
                if i % 3 == 0:  # some stereo clips, the second channel quieter
                    clip = np.stack([clip, 0.8 * clip], axis=1)
                sf.write(folder / label / f"{label}-{i:03d}.wav", clip, rate)
        counts[label] = clips_per_class
    (raw / CLASSES[0] / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    return counts


# The multi-label sample: engine rumble throughout, and the other three events laid over it at known times.
EVENTS = CLASSES[1:]
BACKGROUND = CLASSES[0]
MIX_RATE = 16_000


def mixture(
    rng: np.random.Generator, seconds: float, count: int
) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """``seconds`` of engine rumble with ``count`` distinct events laid over it (they may overlap), and
    each event's (label, start, end) in seconds."""
    n = int(MIX_RATE * seconds)
    mix = 0.35 * synthesize(BACKGROUND, rng, MIX_RATE, seconds)[:n]
    events = []
    for label in rng.choice(EVENTS, size=count, replace=False):
        length = float(rng.uniform(0.8, min(1.6, seconds)))
        start = float(rng.uniform(0.0, seconds - length))
        lo = int(start * MIX_RATE)
        sound = synthesize(str(label), rng, MIX_RATE, length)
        mix[lo : lo + sound.shape[0]] += 0.8 * sound[: n - lo]
        events.append((str(label), round(start, 3), round(start + length, 3)))
    peak = float(np.abs(mix).max()) + 1e-9
    return (mix / peak * 0.9).astype(np.float32), sorted(events, key=lambda event: event[1])


def generate_mixtures(
    raw: Path, held_back: Path, *, clips: int, held_back_clips: int = 6, seconds: float = 3.0, seed: int = 11
) -> dict[str, int]:
    """``raw/metadata.csv`` (``file_name,labels``) and its mixtures to stage, some with no event, some with
    one, some with two overlapping; ``held_back/`` the same with ``events.json``, each mixture's events with
    their times, to answer at the end."""
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {label: 0 for label in EVENTS}
    for folder, count in ((raw, clips), (held_back, held_back_clips)):
        folder.mkdir(parents=True, exist_ok=True)
        rows, truth = [f"{contract.FILE_NAME_COLUMN},{contract.LABELS_COLUMN}"], {}
        for i in range(count):
            sound, events = mixture(rng, seconds, i % 3)  # 0, 1, 2 events in turn
            name = f"mix-{i:03d}.wav"
            sf.write(folder / name, sound, MIX_RATE)
            labels = sorted({label for label, _, _ in events})
            rows.append(f"{name},{contract.LABEL_SEPARATOR.join(labels)}")
            truth[name] = [{"label": label, "start": start, "end": end} for label, start, end in events]
            if folder == raw:
                for label in labels:
                    counts[label] += 1
        (folder / contract.METADATA_FILE).write_text("\n".join(rows) + "\n")
        if folder == held_back:
            (folder / "events.json").write_text(json.dumps(truth, indent=2) + "\n")
    return counts
