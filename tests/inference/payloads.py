"""Request bodies for every supported content type and encoding, and for every broken-payload class.

Shared by the in-process handler tests, the local-server tests and the toolkit driver, so each layer
is held to the same list. Limits assumed by the oversized cases: ``LIMITS``.
"""

from __future__ import annotations

import base64
import io
import json
import struct
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf

from common import audio, contract
from serving import inference

# Small enough that the oversized cases stay cheap, large enough for every good case.
LIMITS = inference.Settings(threads=1, max_audio_seconds=5.0, max_request_bytes=4_000_000)
LIMITS_ENV = {
    contract.ENV_THREADS: "1",
    contract.ENV_MAX_AUDIO_SECONDS: "5",
    contract.ENV_MAX_REQUEST_BYTES: "4000000",
}
CLIP_SECONDS = 1.2


@dataclass(frozen=True)
class Case:
    """One request: body, headers, and what the answer must be."""

    name: str
    body: bytes
    content_type: str | None
    accept: str | None = "application/json"
    status: int = 200
    message: str = ""  # a fragment the error message must contain
    reference: np.ndarray | None = field(default=None, repr=False)  # the clip at 16 kHz mono, if good

    @property
    def headers(self) -> dict[str, str]:
        headers = {}
        if self.content_type is not None:
            headers["Content-Type"] = self.content_type
        if self.accept is not None:
            headers["Accept"] = self.accept
        return headers


def tone(sample_rate: int, channels: int, seconds: float = CLIP_SECONDS, seed: int = 0) -> np.ndarray:
    """A 250 Hz sine on every channel with a little independent noise: (frames, channels) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    signal = 0.5 * np.sin(2 * np.pi * 250 * t)[:, None] + 0.01 * rng.standard_normal((t.size, channels))
    return signal.astype(np.float32)


def encode(samples: np.ndarray, sample_rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def ideal(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """What a perfect decoder hands the model: channel mean, resampled to 16 kHz."""
    return audio.resample(audio.to_mono(samples), sample_rate)


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def silence(sample_rate: int, channels: int, seconds: float, fmt: str = "FLAC") -> bytes:
    """A silent file, written in blocks: a long multichannel FLAC of silence is only a few hundred KB."""
    buffer = io.BytesIO()
    frames = round(seconds * sample_rate)
    block = np.zeros((min(frames, 4_000_000 // channels + 1), channels), dtype=np.int16)
    with sf.SoundFile(
        buffer, "w", samplerate=sample_rate, channels=channels, format=fmt, subtype="PCM_16"
    ) as out:
        for start in range(0, frames, block.shape[0]):
            out.write(block[: frames - start])
    return buffer.getvalue()


def with_extra_chunks(wav: bytes) -> bytes:
    """A WAV with JUNK before fmt, LIST and bext between fmt and data, and a trailing id3 chunk."""

    def chunk(tag: bytes, payload: bytes) -> bytes:
        return tag + struct.pack("<I", len(payload)) + payload + (b"\x00" if len(payload) % 2 else b"")

    body = wav[12:]
    data_at = body.find(b"data")
    chunks = (
        chunk(b"JUNK", bytes(28))
        + body[:data_at]
        + chunk(b"LIST", b"INFOISFT" + struct.pack("<I", 5) + b"test\x00\x00")
        + chunk(b"bext", b"x" * 603)
        + body[data_at:]
        + chunk(b"id3 ", b"y" * 17)
    )
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


# (content type, container, subtype, sample rate, channels)
FILE_ENCODINGS = [
    ("audio/wav", "WAV", "PCM_16", 44_100, 2),
    ("audio/wav", "WAV", "PCM_U8", 8_000, 1),
    ("audio/x-wav", "WAV", "PCM_24", 96_000, 3),
    ("audio/wave", "WAV", "PCM_32", 22_050, 1),
    ("audio/vnd.wave", "WAV", "FLOAT", 48_000, 6),
    ("audio/wav", "WAV", "DOUBLE", 192_000, 1),
    ("audio/wav", "WAV", "ULAW", 8_000, 1),
    ("audio/x-wav", "WAV", "ALAW", 8_000, 2),
    ("audio/wav", "WAVEX", "PCM_16", 32_000, 4),
    ("audio/flac", "FLAC", "PCM_16", 44_100, 2),
    ("audio/x-flac", "FLAC", "PCM_24", 96_000, 1),
    ("audio/ogg", "OGG", "VORBIS", 44_100, 2),
    ("audio/ogg", "OGG", "OPUS", 48_000, 1),
    ("audio/mpeg", "MP3", "MPEG_LAYER_III", 44_100, 2),
    ("audio/mpeg", "MP3", "MPEG_LAYER_III", 22_050, 1),
    ("application/octet-stream", "WAV", "PCM_16", 16_000, 1),
    ("application/octet-stream", "FLAC", "PCM_16", 16_000, 2),
    ("application/octet-stream", "OGG", "VORBIS", 32_000, 1),
    ("application/octet-stream", "MP3", "MPEG_LAYER_III", 48_000, 1),
]


def good_cases() -> list[Case]:
    """Every content type and encoding; each must decode to (nearly) the same clip."""
    cases = []
    for content_type, fmt, subtype, rate, channels in FILE_ENCODINGS:
        samples = tone(rate, channels)
        cases.append(
            Case(
                name=f"{content_type}-{fmt}-{subtype}-{rate}Hz-{channels}ch",
                body=encode(samples, rate, fmt, subtype),
                content_type=content_type,
                reference=ideal(samples, rate),
            )
        )
    wav = tone(44_100, 2)
    cases += [
        Case(
            "wav-with-extra-chunks",
            with_extra_chunks(encode(wav, 44_100, "WAV", "PCM_16")),
            "audio/wav",
            reference=ideal(wav, 44_100),
        ),
        Case(
            "content-type-with-parameters",
            encode(wav, 44_100, "WAV", "PCM_16"),
            "Audio/WAV; codecs=1",
            reference=ideal(wav, 44_100),
        ),
        Case("no-content-type-is-sniffed", encode(wav, 44_100, "FLAC"), None, reference=ideal(wav, 44_100)),
        Case(
            "accept-any", encode(wav, 44_100, "WAV"), "audio/wav", accept="*/*", reference=ideal(wav, 44_100)
        ),
        Case(
            "json-base64-flac",
            _json(base64=_b64(encode(wav, 44_100, "FLAC"))),
            "application/json",
            reference=ideal(wav, 44_100),
        ),
        Case(
            "json-base64-mp3",
            _json(base64=_b64(encode(wav, 44_100, "MP3"))),
            "application/json",
            reference=ideal(wav, 44_100),
        ),
    ]
    # JSON carrying a file and the fields of raw PCM, as clients of the seed ASR endpoint send it: the
    # file's header wins over "sample_rate" and "channels".
    for fmt in ("WAV", "FLAC", "OGG", "MP3"):
        cases.append(
            Case(
                f"json-base64-{fmt.lower()}-with-a-contradicting-sample-rate",
                _json(base64=_b64(encode(wav, 44_100, fmt)), sample_rate=16_000),
                "application/json",
                reference=ideal(wav, 44_100),
            )
        )
    # Headerless PCM whose first samples (-1, then 18) happen to look like an MPEG frame header.
    like_mp3 = np.concatenate([np.array([[-1 / 32767], [18 / 32767]], np.float32), tone(16_000, 1)])
    mono8k, stereo = tone(8_000, 1), tone(44_100, 2)
    cases += [
        Case(
            "json-raw-pcm16-starting-like-an-mp3-frame",
            _json(base64=_b64(pcm16(like_mp3)), sample_rate=16_000),
            "application/json",
            reference=ideal(like_mp3, 16_000),
        ),
        Case(
            "json-raw-pcm16-8kHz-mono",
            _json(base64=_b64(pcm16(mono8k)), sample_rate=8_000),
            "application/json",
            reference=ideal(mono8k, 8_000),
        ),
        Case(
            "json-raw-pcm16-44kHz-stereo",
            _json(base64=_b64(pcm16(stereo)), sample_rate=44_100, channels=2),
            "application/json; charset=utf-8",
            reference=ideal(stereo, 44_100),
        ),
    ]
    return cases


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _json(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def _patched(wav: bytes, offset: int, value: int, size: int) -> bytes:
    data = bytearray(wav)
    data[offset : offset + size] = value.to_bytes(size, "little")
    return bytes(data)


def bad_cases() -> list[Case]:
    """Every broken-payload class: each must be a 4xx whose message says what was wrong."""
    wav = encode(tone(16_000, 1), 16_000, "WAV", "PCM_16")
    nan = tone(16_000, 1)
    nan[100, 0] = np.nan
    inf = tone(16_000, 2)
    inf[5, 1] = np.inf
    flac = encode(tone(16_000, 1), 16_000, "FLAC")
    long_wav = encode(tone(8_000, 1, seconds=6.0), 8_000, "WAV", "PCM_U8")
    json_type = "application/json"
    return [
        Case("empty-body", b"", "audio/wav", status=400, message="empty"),
        Case("empty-json-body", b"", json_type, status=400, message="empty"),
        Case("undecodable-bytes", b"this is not audio " * 20, "audio/wav", status=400, message="decode"),
        Case(
            "undecodable-octet-stream",
            bytes(range(256)) * 4,
            "application/octet-stream",
            status=400,
            message="decode",
        ),
        Case("truncated-header", wav[:30], "audio/wav", status=400, message="decode"),
        Case("header-without-samples", wav[:44], "audio/wav", status=400, message="no samples"),
        Case("truncated-flac", flac[: len(flac) // 2], "audio/flac", status=400, message="corrupt"),
        Case("zero-channels", _patched(wav, 22, 0, 2), "audio/wav", status=400, message="hannel"),
        Case("zero-sample-rate", _patched(wav, 24, 0, 4), "audio/wav", status=400, message="decode"),
        Case("absurd-sample-rate", _patched(wav, 24, 100, 4), "audio/wav", status=400, message="sample rate"),
        Case("nan-samples", encode(nan, 16_000, "WAV", "FLOAT"), "audio/wav", status=400, message="NaN"),
        Case(
            "inf-samples", encode(inf, 16_000, "WAV", "DOUBLE"), "audio/x-wav", status=400, message="infinite"
        ),
        Case("json-not-json", b"{'base64': ", json_type, status=400, message="not valid JSON"),
        Case("json-not-an-object", b"[1, 2]", json_type, status=400, message="object"),
        Case("json-missing-base64", _json(sample_rate=16_000), json_type, status=400, message="base64"),
        Case("json-empty-base64", _json(base64=""), json_type, status=400, message="base64"),
        Case(
            "json-bad-base64", _json(base64="not*base64!"), json_type, status=400, message="not valid base64"
        ),
        Case(
            "json-base64-of-garbage",
            _json(base64=_b64(b"garbage" * 10)),
            json_type,
            status=400,
            message="decode",
        ),
        Case(
            "json-unknown-field",
            _json(base64=_b64(wav), sampling_rate=16_000),
            json_type,
            status=400,
            message="unknown field",
        ),
        Case(
            "json-sample-rate-not-int",
            _json(base64=_b64(b"\x00\x00"), sample_rate="16k"),
            json_type,
            status=400,
            message="sample_rate",
        ),
        Case(
            "json-channels-without-rate",
            _json(base64=_b64(wav), channels=2),
            json_type,
            status=400,
            message="channels",
        ),
        Case(
            "json-pcm-odd-bytes",
            _json(base64=_b64(b"\x00\x01\x02"), sample_rate=16_000),
            json_type,
            status=400,
            message="16-bit frames",
        ),
        Case(
            "json-segments-not-bool",
            _json(base64=_b64(wav), segments="yes"),
            json_type,
            status=400,
            message="segments",
        ),
        Case("unsupported-content-type", wav, "text/plain", status=415, message="send one of"),
        Case("unsupported-accept", wav, "audio/wav", accept="text/csv", status=406, message="accept"),
        Case("body-too-large", bytes(LIMITS.max_request_bytes + 1), "audio/wav", status=413, message="limit"),
        Case("audio-too-long", long_wav, "audio/wav", status=413, message="longer than the limit"),
        Case(
            "decoded-size-too-large",
            silence(384_000, 8, 2.0),  # 2 s, within the duration limit, but 6.1 M samples to decode
            "audio/flac",
            status=413,
            message="ACOUSTIC_MAX_DECODED_SAMPLES",
        ),
        Case(
            "too-many-channels",
            silence(16_000, 17, 0.1, "WAV"),
            "audio/wav",
            status=413,
            message="ACOUSTIC_MAX_CHANNELS",
        ),
        Case(
            "json-raw-pcm-too-many-channels",
            _json(base64=_b64(bytes(2 * 17 * 160)), sample_rate=16_000, channels=17),
            json_type,
            status=413,
            message="ACOUSTIC_MAX_CHANNELS",
        ),
        Case("json-deeply-nested", b"[" * 100_000, json_type, status=400, message="nested too deeply"),
        Case(
            "json-deeply-nested-field",
            b'{"base64": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            json_type,
            status=400,
            message="nested too deeply",
        ),
        Case(
            "raw-pcm-too-long",
            _json(base64=_b64(bytes(2 * 8_000 * 6)), sample_rate=8_000),
            json_type,
            status=413,
            message="longer than the limit",
        ),
    ]
