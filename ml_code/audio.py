"""Audio decoding shared by training, serving and dataset staging.

One decoder for every path, so the model sees identical features in training and in production:
soundfile (libsndfile: WAV in every PCM/float/µ-law/A-law flavour, FLAC, OGG/Vorbis, MP3), mono by
channel mean, then soxr's anti-aliasing resampler to the model's rate.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

TARGET_SAMPLE_RATE = 16_000
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")

Source = str | Path | bytes | BinaryIO


class AudioDecodeError(ValueError):
    """The input is not audio this module can use; the message says why and what to send."""


class AudioTooLongError(AudioDecodeError):
    """The audio is longer than the caller's ``max_seconds``."""


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, checked for sanity."""

    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _open(source: Source) -> sf.SoundFile:
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise AudioDecodeError("empty audio: the body has no bytes; send a WAV, FLAC, OGG or MP3 file")
        source = io.BytesIO(bytes(source))
    try:
        return sf.SoundFile(source)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioDecodeError(
            f"could not decode audio ({_reason(err)}); send a WAV, FLAC, OGG or MP3 file"
        ) from err


def _reason(err: Exception) -> str:
    text = str(err).strip()
    # libsndfile prefixes the reason with the file object's repr, which means nothing to a client.
    if "Error opening" in text and ":" in text:
        text = text.rsplit(":", 1)[-1].strip()
    return text or type(err).__name__


def _check_header(handle: sf.SoundFile, max_seconds: float | None) -> AudioInfo:
    info = AudioInfo(
        sample_rate=int(handle.samplerate),
        channels=int(handle.channels),
        frames=int(handle.frames),
        format=str(handle.format),
        subtype=str(handle.subtype),
    )
    if info.channels < 1:
        raise AudioDecodeError("the audio has zero channels")
    if not MIN_SAMPLE_RATE <= info.sample_rate <= MAX_SAMPLE_RATE:
        raise AudioDecodeError(
            f"unsupported sample rate {info.sample_rate} Hz; "
            f"send audio between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz"
        )
    check_duration(info.duration, max_seconds)
    return info


def check_duration(seconds: float, max_seconds: float | None) -> None:
    """Raises AudioTooLongError when ``seconds`` exceeds ``max_seconds`` (None: no limit)."""
    if max_seconds is not None and seconds > max_seconds:
        raise AudioTooLongError(
            f"the audio lasts {seconds:.1f} s, longer than the limit of {max_seconds:g} s; "
            "split it into shorter clips"
        )


def probe(source: Source) -> AudioInfo:
    """Reads only the header: sample rate, channels, length and format."""
    with _open(source) as handle:
        return _check_header(handle, max_seconds=None)


def to_mono(samples: np.ndarray) -> np.ndarray:
    """(frames, channels) or (frames,) -> (frames,), by channel mean."""
    if samples.ndim == 1:
        return samples
    return samples.mean(axis=1, dtype=np.float32)


def resample(samples: np.ndarray, orig_sr: int, target_sr: int = TARGET_SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling (soxr, high quality); a no-op when the rates match."""
    if orig_sr == target_sr or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    return np.asarray(soxr.resample(samples, orig_sr, target_sr, quality="HQ"), dtype=np.float32)


def _check_samples(samples: np.ndarray) -> None:
    if samples.size == 0:
        raise AudioDecodeError("the audio has no samples")
    if not np.isfinite(samples).all():
        raise AudioDecodeError("the audio contains NaN or infinite samples")


def _read(source: Source, max_seconds: float | None) -> tuple[np.ndarray, AudioInfo]:
    """Every frame as float32 (frames, channels), checked, with the header's description."""
    with _open(source) as handle:
        info = _check_header(handle, max_seconds)
        try:
            samples = handle.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioDecodeError(f"the audio data is corrupt ({_reason(err)})") from err
    _check_samples(samples)
    return samples, info


def decode(
    source: Source, *, target_sr: int = TARGET_SAMPLE_RATE, max_seconds: float | None = None
) -> np.ndarray:
    """Decodes a file, path or bytes to mono float32 at ``target_sr``.

    Raises AudioDecodeError (a ValueError) with a client-readable message for anything unusable:
    empty or undecodable bytes, zero channels, absurd rates, NaN/Inf samples, or audio longer than
    ``max_seconds`` (AudioTooLongError, checked from the header before anything is decoded).
    """
    samples, info = _read(source, max_seconds)
    return resample(to_mono(samples), info.sample_rate, target_sr)


def decode_pcm16(
    raw: bytes, *, sample_rate: int, channels: int = 1, target_sr: int = TARGET_SAMPLE_RATE
) -> np.ndarray:
    """Headerless little-endian 16-bit PCM (interleaved when ``channels`` > 1) to mono float32."""
    if channels < 1:
        raise AudioDecodeError("channels must be at least 1")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioDecodeError(
            f"unsupported sample_rate {sample_rate}; send a rate between {MIN_SAMPLE_RATE} and "
            f"{MAX_SAMPLE_RATE} Hz"
        )
    frame_bytes = 2 * channels
    if len(raw) == 0 or len(raw) % frame_bytes:
        raise AudioDecodeError(
            f"raw PCM must be a whole number of 16-bit frames ({frame_bytes} bytes each for "
            f"{channels} channel(s)); got {len(raw)} bytes"
        )
    samples = (np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0).reshape(-1, channels)
    _check_samples(samples)
    return resample(to_mono(samples), sample_rate, target_sr)


def fit_length(samples: np.ndarray, length: int) -> np.ndarray:
    """Zero-pads to ``length`` samples (short clips are padded, never rejected) or truncates."""
    if samples.shape[0] >= length:
        return samples[:length]
    return np.pad(samples, (0, length - samples.shape[0]))


def random_crop(samples: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``length``-sample window (training augmentation); shorter clips are zero-padded."""
    if samples.shape[0] <= length:
        return fit_length(samples, length)
    start = int(rng.integers(0, samples.shape[0] - length + 1))
    return samples[start : start + length]


def window_starts(total: int, length: int, hop: int) -> list[int]:
    """Start offsets of windows of ``length`` every ``hop`` samples, the last one flush with the end."""
    if total <= length:
        return [0]
    starts = list(range(0, total - length + 1, hop))
    if starts[-1] + length < total:
        starts.append(total - length)
    return starts


def windows(samples: np.ndarray, length: int, hop: int) -> np.ndarray:
    """Overlapping windows as a (n_windows, length) array; a short clip becomes one padded window."""
    starts = window_starts(samples.shape[0], length, hop)
    return np.stack([fit_length(samples[s : s + length], length) for s in starts])


def validate(source: Source, *, max_seconds: float | None = None) -> AudioInfo:
    """Decodes every sample (no resampling) and returns what the file really holds.

    The same checks as ``decode``, for dataset staging: a clip that passes here decodes in training.
    ``frames`` is the number of frames actually read, which a truncated file makes shorter than its header.
    """
    samples, info = _read(source, max_seconds)
    return dataclasses.replace(info, frames=int(samples.shape[0]))
