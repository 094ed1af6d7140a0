"""Training-time augmentation of crops: time shift, background clips and white noise at a random SNR, gain.

Each transform takes the generator to draw from, so one seed reproduces a crop exactly (``RandomCrops``
seeds one generator per item from torch's, which the Trainer seeds with ``--seed``). Evaluation windows
are never augmented.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SAMPLE_RATE = 16_000


def gain(samples: np.ndarray, rng: np.random.Generator, max_db: float) -> np.ndarray:
    """Scales by a gain drawn uniformly from [-max_db, +max_db] dB."""
    db = rng.uniform(-max_db, max_db)
    return (samples * np.float32(10.0 ** (db / 20.0))).astype(np.float32, copy=False)


def time_shift(samples: np.ndarray, rng: np.random.Generator, max_samples: int) -> np.ndarray:
    """Rotates by a whole number of samples drawn uniformly from [-max_samples, +max_samples].

    What falls off one end comes back at the other: the crop keeps its length and all of its sound.
    """
    limit = min(max_samples, samples.shape[0] - 1)
    if limit <= 0:
        return samples
    return np.roll(samples, int(rng.integers(-limit, limit + 1)))


def _power(samples: np.ndarray) -> float:
    return float(np.mean(np.square(samples, dtype=np.float64))) if samples.size else 0.0


def mix_at_snr(samples: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``samples`` plus ``noise`` scaled so that signal power / noise power is ``snr_db``.

    A silent crop, or silent noise, is returned unchanged: there is no level to set the noise against.
    """
    signal_power, noise_power = _power(samples), _power(noise)
    if signal_power == 0.0 or noise_power == 0.0:
        return samples
    scale = np.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (samples + np.float32(scale) * noise).astype(np.float32, copy=False)


def white_noise(samples: np.ndarray, rng: np.random.Generator, snr_db: float) -> np.ndarray:
    """Adds Gaussian white noise at ``snr_db``."""
    noise = np.asarray(rng.standard_normal(samples.shape[0], dtype=np.float32))
    return mix_at_snr(samples, noise, snr_db)


def background_piece(noise: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """``length`` samples of a background clip from a random offset, looped when the clip is shorter."""
    if noise.shape[0] == 0:
        return np.zeros(length, dtype=np.float32)
    start = int(rng.integers(0, noise.shape[0]))
    return np.asarray(noise[(start + np.arange(length)) % noise.shape[0]], dtype=np.float32)


@dataclass(frozen=True)
class Augmentation:
    """The transforms applied to each training crop, in this order: time shift, background, noise, gain.

    ``background`` holds loaders of background clips (16 kHz mono float32, e.g. ``Clip.load``).
    """

    gain_db: float = 6.0
    noise_probability: float = 0.5
    background_probability: float = 0.5
    min_snr_db: float = 10.0
    max_snr_db: float = 40.0
    time_shift_seconds: float = 0.5
    background: Sequence[Callable[[], np.ndarray]] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        for name in ("noise_probability", "background_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {getattr(self, name)}")
        if self.gain_db < 0 or self.time_shift_seconds < 0:
            raise ValueError("gain_db and time_shift_seconds must not be negative")
        if self.min_snr_db > self.max_snr_db:
            raise ValueError(f"min_snr_db ({self.min_snr_db}) is above max_snr_db ({self.max_snr_db})")

    def __call__(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """An augmented copy of ``samples`` (mono float32 at 16 kHz); the input is left unchanged."""
        out = np.asarray(samples, dtype=np.float32)
        if self.time_shift_seconds > 0:
            out = time_shift(out, rng, round(self.time_shift_seconds * SAMPLE_RATE))
        if self.background and rng.random() < self.background_probability:
            noise = self.background[int(rng.integers(0, len(self.background)))]()
            piece = background_piece(noise, out.shape[0], rng)
            out = mix_at_snr(out, piece, rng.uniform(self.min_snr_db, self.max_snr_db))
        if rng.random() < self.noise_probability:
            out = white_noise(out, rng, rng.uniform(self.min_snr_db, self.max_snr_db))
        if self.gain_db > 0:
            out = gain(out, rng, self.gain_db)
        return out if out is not samples else out.copy()

    def describe(self) -> dict[str, Any]:
        """The settings, for the log and evaluation.json."""
        return {
            "gain_db": self.gain_db,
            "noise_probability": self.noise_probability,
            "background_probability": self.background_probability if self.background else 0.0,
            "background_clips": len(self.background),
            "snr_db": [self.min_snr_db, self.max_snr_db],
            "time_shift_seconds": self.time_shift_seconds,
        }
