"""Audio decoding and model inputs, shared by training, serving and dataset staging.

One decoder for every path, so the model sees identical features in training and in production:
soundfile (libsndfile: WAV in every PCM/float/µ-law/A-law flavour, FLAC, OGG/Vorbis, MP3), mono by
channel mean, then soxr's anti-aliasing resampler to the model's rate.

A few hundred KB of FLAC can declare hours of audio, or 384 kHz in 8 channels: ``Limits`` caps what one
clip may decode to, checked from the header before any sample is decoded and again while decoding (a
header may understate the length). Decoding runs in blocks of ``BLOCK_SAMPLES``, each mixed down to mono
and fed to a streaming resampler at once, so all channels of a whole clip are never held in float32.

Model inputs are made here too, for training and serving alike: windows of the training length, a
shorter clip at its own length (``fit_window``), normalized as the model's feature extractor does
(``Features``).
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Iterator
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

# Default limits of one clip, for serving, staging and training's scan alike.
DEFAULT_MAX_SECONDS = 600.0
DEFAULT_MAX_CHANNELS = 16  # 7.1.4 surround, third-order ambisonics, 16-track recorders
# The decoded-size budget, per second of the duration limit: 48 kHz stereo. Ten minutes of that is
# 57.6 M samples (230 MB if it were held as float32 frames x channels, which decoding never does).
SAMPLES_PER_SECOND = 48_000 * 2
BLOCK_SAMPLES = 1 << 18  # frames x channels decoded at a time: 1 MiB of float32
# The shortest model input: 0.1 s at 16 kHz. wav2vec2's feature encoder needs 400 samples (25 ms) for one
# frame; a clip shorter than this is zero-padded to it, in training and in serving alike.
MIN_MODEL_SAMPLES = 1_600
# libsndfile reports SF_COUNT_MAX frames when the header does not know the length (a FLAC written to a
# stream has 0 as its total); such a file is held to the limits while it decodes.
UNKNOWN_FRAMES = 2**62

Source = str | Path | bytes | BinaryIO


class AudioDecodeError(ValueError):
    """The input is not audio this module can use; the message says why and what to send."""


class AudioTooLargeError(AudioDecodeError):
    """The audio is over one of the caller's ``Limits``; ``limit`` names which field."""

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit  # "max_seconds", "max_samples" or "max_channels"


class AudioTooLongError(AudioTooLargeError):
    """The audio is longer than the caller's ``max_seconds``."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "max_seconds")


@dataclass(frozen=True)
class Limits:
    """What one clip may decode to; None: no limit.

    ``max_samples`` counts frames x channels at the file's own rate: what decoding costs in time, and what
    a decoder that held the whole clip would hold in memory.
    """

    max_seconds: float | None = None
    max_samples: int | None = None
    max_channels: int | None = None

    @classmethod
    def default(
        cls,
        max_seconds: float | None = None,
        *,
        max_samples: int | None = None,
        max_channels: int | None = None,
    ) -> Limits:
        """``max_seconds`` (600 s), that many seconds of 48 kHz stereo as ``max_samples``, 16 channels."""
        seconds = DEFAULT_MAX_SECONDS if max_seconds is None else max_seconds
        return cls(
            max_seconds=seconds,
            max_samples=default_max_samples(seconds) if max_samples is None else max_samples,
            max_channels=DEFAULT_MAX_CHANNELS if max_channels is None else max_channels,
        )


def default_max_samples(max_seconds: float) -> int:
    """The decoded size ``max_seconds`` of 48 kHz stereo comes to."""
    return math.ceil(max_seconds * SAMPLES_PER_SECOND)


NO_LIMITS = Limits()


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

    @property
    def length_known(self) -> bool:
        return self.frames < UNKNOWN_FRAMES


@dataclass(frozen=True)
class Decoded:
    """Mono float32 samples at the rate asked for, and the file's description (``frames``: as decoded)."""

    samples: np.ndarray
    info: AudioInfo


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


def _check_header(handle: sf.SoundFile, limits: Limits) -> AudioInfo:
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
    frames = info.frames if info.length_known else 0  # unknown: checked while decoding
    check_size(frames=frames, channels=info.channels, sample_rate=info.sample_rate, limits=limits)
    return info


def check_duration(seconds: float, max_seconds: float | None) -> None:
    """Raises AudioTooLongError when ``seconds`` exceeds ``max_seconds`` (None: no limit)."""
    if max_seconds is not None and seconds > max_seconds:
        raise AudioTooLongError(
            f"the audio lasts {seconds:.1f} s, longer than the limit of {max_seconds:g} s; "
            "split it into shorter clips"
        )


def check_size(*, frames: int, channels: int, sample_rate: int, limits: Limits) -> None:
    """Raises AudioTooLargeError when audio of this shape is over ``limits``: channels, length, decoded size."""
    if limits.max_channels is not None and channels > limits.max_channels:
        raise AudioTooLargeError(
            f"the audio has {channels} channels, more than the limit of {limits.max_channels}; "
            "mix it down to fewer channels",
            "max_channels",
        )
    check_duration(frames / sample_rate, limits.max_seconds)
    samples = frames * channels
    if limits.max_samples is not None and samples > limits.max_samples:
        raise AudioTooLargeError(
            f"the audio decodes to {samples:,} samples ({frames / sample_rate:.1f} s x {sample_rate} Hz x "
            f"{channels} channel(s)), more than the limit of {limits.max_samples:,}; send fewer channels, "
            "a lower sample rate or a shorter clip",
            "max_samples",
        )


def probe(source: Source, *, limits: Limits = NO_LIMITS) -> AudioInfo:
    """Reads only the header: sample rate, channels, length and format."""
    with _open(source) as handle:
        return _check_header(handle, limits)


def to_mono(samples: np.ndarray) -> np.ndarray:
    """(frames, channels) or (frames,) -> (frames,), by channel mean."""
    if samples.ndim == 1:
        return samples
    if samples.shape[1] == 1:
        return np.ascontiguousarray(samples[:, 0])
    # Column by column: numpy's mean over the short channel axis of a (frames, channels) array is a
    # strided reduction, 4x slower (the largest cost of a request besides the model).
    mono = samples[:, 0] + samples[:, 1]
    for channel in range(2, samples.shape[1]):
        mono += samples[:, channel]
    mono /= np.float32(samples.shape[1])
    return mono


def resample(samples: np.ndarray, orig_sr: int, target_sr: int = TARGET_SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling (soxr, high quality); a no-op when the rates match."""
    if orig_sr == target_sr or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    return np.asarray(soxr.resample(samples, orig_sr, target_sr, quality="HQ"), dtype=np.float32)


def _mono_blocks(handle: sf.SoundFile, info: AudioInfo, limits: Limits) -> Iterator[np.ndarray]:
    """The file as mono float32 blocks at its own rate, checked as they come.

    Only one block of all channels is in memory at a time. The limits are held again on the frames
    decoded so far, because a header may understate the length (FLAC and MP3 may not know it).
    """
    frames_per_block = max(1, BLOCK_SAMPLES // info.channels)
    read_block = _read_block if info.length_known else _read_block_of_unknown_length
    decoded = 0
    while True:
        try:
            block = read_block(handle, frames_per_block)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioDecodeError(f"the audio data is corrupt ({_reason(err)})") from err
        if block.shape[0] == 0:
            return
        decoded += block.shape[0]
        check_size(frames=decoded, channels=info.channels, sample_rate=info.sample_rate, limits=limits)
        if not np.isfinite(block).all():
            raise AudioDecodeError("the audio contains NaN or infinite samples")
        yield to_mono(block)


def _read_block(handle: sf.SoundFile, frames: int) -> np.ndarray:
    return handle.read(frames, dtype="float32", always_2d=True)


def _read_block_of_unknown_length(handle: sf.SoundFile, frames: int) -> np.ndarray:
    # soundfile's read() asks libsndfile for the position first, which fails when the length is unknown;
    # libsndfile itself reads such a file to its end.
    out = np.empty((frames, handle.channels), dtype=np.float32)
    got = sf._snd.sf_readf_float(handle._file, sf._ffi.cast("float *", out.ctypes.data), frames)
    if got < 0 or handle._errorcode:
        raise sf.LibsndfileError(handle._errorcode)
    return out[:got]


def _resampled(blocks: Iterator[np.ndarray], orig_sr: int, target_sr: int | None) -> tuple[np.ndarray, int]:
    """Streams mono blocks through soxr (identical to resampling the whole clip at once); (samples, frames in)."""
    stream = None
    if target_sr is not None and target_sr != orig_sr:
        stream = soxr.ResampleStream(orig_sr, target_sr, 1, dtype="float32", quality="HQ")
    pieces, frames = [], 0
    for block in blocks:
        frames += block.shape[0]
        pieces.append(block if stream is None else stream.resample_chunk(block))
    if frames == 0:
        raise AudioDecodeError("the audio has no samples")
    if stream is not None:
        pieces.append(stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    return np.concatenate(pieces).astype(np.float32, copy=False), frames


def read(
    source: Source, *, target_sr: int | None = TARGET_SAMPLE_RATE, limits: Limits = NO_LIMITS
) -> Decoded:
    """Decodes a file, path or bytes to mono float32 at ``target_sr`` (None: the file's rate), with its info.

    Raises AudioDecodeError (a ValueError) with a client-readable message for anything unusable:
    empty or undecodable bytes, zero channels, absurd rates, NaN/Inf samples; AudioTooLargeError for
    audio over ``limits``, checked from the header before anything is decoded, and while decoding.
    """
    with _open(source) as handle:
        info = _check_header(handle, limits)
        samples, frames = _resampled(_mono_blocks(handle, info, limits), info.sample_rate, target_sr)
    return Decoded(samples, dataclasses.replace(info, frames=frames))


def decode(source: Source, *, target_sr: int = TARGET_SAMPLE_RATE, limits: Limits = NO_LIMITS) -> np.ndarray:
    """Decodes a file, path or bytes to mono float32 at ``target_sr``; see ``read``."""
    return read(source, target_sr=target_sr, limits=limits).samples


def decode_pcm16(
    raw: bytes,
    *,
    sample_rate: int,
    channels: int = 1,
    target_sr: int = TARGET_SAMPLE_RATE,
    limits: Limits = NO_LIMITS,
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
    check_size(frames=len(raw) // frame_bytes, channels=channels, sample_rate=sample_rate, limits=limits)
    if len(raw) == 0 or len(raw) % frame_bytes:
        raise AudioDecodeError(
            f"raw PCM must be a whole number of 16-bit frames ({frame_bytes} bytes each for "
            f"{channels} channel(s)); got {len(raw)} bytes"
        )
    ints = np.frombuffer(raw, dtype="<i2").reshape(-1, channels)  # a view: nothing is copied yet
    step = max(1, BLOCK_SAMPLES // channels)
    blocks = (to_mono(ints[i : i + step].astype(np.float32) / 32768.0) for i in range(0, ints.shape[0], step))
    return _resampled(blocks, sample_rate, target_sr)[0]


# --------------------------------------------------------------------------------------------------
# Telling a file from headerless PCM

# MPEG audio frame headers: bitrates (kbit/s) by (MPEG-1?, layer), sample rates by version bits.
_MP3_BITRATES = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44_100, 48_000, 32_000), 2: (22_050, 24_000, 16_000), 0: (11_025, 12_000, 8_000)}


def _mp3_frame(data: bytes, at: int) -> tuple[int, int, int, int] | None:
    """(length in bytes, version, layer, rate index) of an MPEG audio frame header at ``at``, or None."""
    if at + 4 > len(data) or data[at] != 0xFF or data[at + 1] & 0xE0 != 0xE0:
        return None
    version, layer_bits = (data[at + 1] >> 3) & 3, (data[at + 1] >> 1) & 3
    bitrate_index, rate_index = data[at + 2] >> 4, (data[at + 2] >> 2) & 3
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None  # reserved values, or free format (no length to check)
    layer = 4 - layer_bits
    bitrate = 1000 * _MP3_BITRATES[(version == 3, layer)][bitrate_index]
    rate = _MP3_RATES[version][rate_index]
    padding = (data[at + 2] >> 1) & 1
    if layer == 1:
        length = (12 * bitrate // rate + padding) * 4
    elif layer == 3 and version != 3:
        length = 72 * bitrate // rate + padding
    else:
        length = 144 * bitrate // rate + padding
    return length, version, layer, rate_index


def sniff(data: bytes) -> str | None:
    """The container of an audio file ("WAV", "FLAC", "OGG", "MP3") from its first bytes; None otherwise.

    Tells a file from headerless PCM: a signature of four or more bytes, an ID3v2 tag, or an MPEG audio
    frame header followed by a second one where the first says it ends (one plausible frame header is
    only two 16-bit samples, common in PCM: -1, then a small positive value).
    """
    head = bytes(data[:12])
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "WAV"
    if head[:4] == b"fLaC":
        return "FLAC"
    if head[:4] == b"OggS" and head[4:5] == b"\x00":
        return "OGG"
    if head[:3] == b"ID3" and head[3:4] in (b"\x02", b"\x03", b"\x04") and all(b < 0x80 for b in head[6:10]):
        return "MP3"
    first = _mp3_frame(data, 0)
    if first is not None:
        second = _mp3_frame(data, first[0])
        if second is not None and second[1:] == first[1:]:
            return "MP3"
    return None


def fit_length(samples: np.ndarray, length: int) -> np.ndarray:
    """Zero-pads to exactly ``length`` samples, or truncates."""
    if samples.shape[0] >= length:
        return samples[:length]
    return np.pad(samples, (0, length - samples.shape[0]))


def fit_window(samples: np.ndarray, length: int, min_length: int = MIN_MODEL_SAMPLES) -> np.ndarray:
    """The model's input for one window: at most ``length`` samples.

    A shorter clip keeps its own length, so that it costs what it lasts, not a whole window; only a clip
    shorter than ``min_length`` (the feature encoder's minimum) is zero-padded, to that.
    """
    if samples.shape[0] >= length:
        return samples[:length]
    return fit_length(samples, min(length, min_length)) if samples.shape[0] < min_length else samples


def random_crop(samples: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``length``-sample piece of a longer clip; a shorter clip whole, as ``fit_window`` gives it."""
    if samples.shape[0] <= length:
        return fit_window(samples, length)
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
    """Overlapping windows as a (n_windows, length) array; a shorter clip is one window of its own length."""
    starts = window_starts(samples.shape[0], length, hop)
    return np.stack([fit_window(samples[s : s + length], length) for s in starts])


def normalize(samples: np.ndarray) -> np.ndarray:
    """Zero mean and unit variance per row (the last axis), as float32.

    The same arithmetic as ``Wav2Vec2FeatureExtractor(do_normalize=True)`` on one unpadded input (it is
    what that extractor computes, not an approximation), without its list conversions and padding logic.
    """
    rows = np.asarray(samples, dtype=np.float32)
    if rows.ndim == 1:
        return _normalize_row(rows)
    return np.stack([_normalize_row(row) for row in rows]) if rows.shape[0] else rows.copy()


def _normalize_row(x: np.ndarray) -> np.ndarray:
    return np.asarray((x - x.mean()) / np.sqrt(x.var() + 1e-7), dtype=np.float32)


@dataclass(frozen=True)
class Features:
    """What turns 16 kHz samples into a model input, read from the model's ``preprocessor_config.json``.

    Only ``Wav2Vec2FeatureExtractor`` (wav2vec2, HuBERT, WavLM, data2vec-audio...) is described here;
    ``from_preprocessor_config`` returns None for any other extractor, which callers then run themselves.
    """

    do_normalize: bool = True

    @classmethod
    def from_preprocessor_config(cls, config: dict) -> Features | None:
        if config.get("feature_extractor_type") != "Wav2Vec2FeatureExtractor":
            return None
        if int(config.get("feature_size", 1)) != 1:
            return None
        return cls(do_normalize=bool(config.get("do_normalize", True)))

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """One input (samples,) or a batch of equal-length inputs (n, samples), as float32."""
        if self.do_normalize:
            return normalize(samples)
        return np.ascontiguousarray(samples, dtype=np.float32)


def validate(source: Source, *, limits: Limits = NO_LIMITS) -> AudioInfo:
    """Decodes every sample (no resampling, nothing kept) and returns what the file really holds.

    The same checks as ``decode``, for dataset staging: a clip that passes here decodes in training.
    ``frames`` is the number of frames actually read, which a truncated file makes shorter than its header.
    """
    with _open(source) as handle:
        info = _check_header(handle, limits)
        frames = sum(block.shape[0] for block in _mono_blocks(handle, info, limits))
    if frames == 0:
        raise AudioDecodeError("the audio has no samples")
    return dataclasses.replace(info, frames=frames)
