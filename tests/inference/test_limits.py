"""Hostile and careless input: what a request may decode to, and how JSON carrying a file is read."""

from __future__ import annotations

import base64
import io
import json
import time
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from common import audio, contract
from serving import inference
from tests.inference.payloads import encode, silence, tone

DEFAULTS = inference.Settings(threads=1)  # every limit at its default


@pytest.fixture(scope="module")
def flac_bomb() -> bytes:
    """The issue's request: 120 s at 384 kHz in 8 channels, 1.47 GB as float32, a few hundred KB as FLAC."""
    return silence(384_000, 8, 120.0)


def test_a_small_flac_that_would_decode_to_gigabytes_is_refused_with_413_naming_the_setting(flac_bomb):
    # Given the 0.4 MB FLAC, within the duration limit, the endpoint's default limits
    assert len(flac_bomb) < 1_000_000

    # When the handler reads it
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(inference.BadRequest) as caught:
            inference.parse_request(flac_bomb, "audio/flac", DEFAULTS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Then it is a 413 naming the limit and the setting that changes it, refused from the header at once
    assert caught.value.status_code == 413
    message = str(caught.value)
    assert "368,640,000 samples" in message
    assert "limit of 57,600,000" in message
    assert contract.ENV_MAX_DECODED_SAMPLES in message
    assert time.perf_counter() - started < 2.0
    assert peak < 20 * 2**20


def test_decoding_a_multichannel_clip_never_holds_all_its_channels_in_float32():
    # Given an allowed clip of 60 s at 48 kHz in 8 channels: 92 MB as float32 frames x channels
    frames, channels = 60 * 48_000, 8
    flac = silence(48_000, channels, 60.0)

    # When it is decoded
    tracemalloc.start()
    try:
        samples = audio.decode(flac, limits=audio.Limits.default())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Then it is 60 s of 16 kHz mono, and the decoder never held more than a quarter of that at once
    assert samples.shape == (60 * 16_000,)
    assert peak < frames * channels * 4 / 4


def test_decoding_in_blocks_gives_exactly_the_whole_clip_decoding():
    # Given a 3 s stereo clip at 44.1 kHz, longer than one decoding block
    clip = tone(44_100, 2, seconds=3.0)
    flac = encode(clip, 44_100, "FLAC", "PCM_24")

    # When it is decoded block by block, with the resampler streaming
    samples = audio.decode(flac)

    # Then the result is the clip's channel mean resampled in one go, bit for bit
    frames, _ = sf.read(io.BytesIO(flac), dtype="float32", always_2d=True)
    whole = audio.resample(audio.to_mono(frames), 44_100)
    np.testing.assert_array_equal(samples, whole)


def test_decode_and_validate_refuse_the_same_clips():
    # Given a WAV longer than the limit
    wav = encode(np.zeros((16_000 * 3, 1), np.float32), 16_000, "WAV", "PCM_16")
    limits = audio.Limits(max_seconds=2.0)

    # When it is decoded or validated
    # Then both refuse it
    with pytest.raises(audio.AudioTooLongError):
        audio.decode(wav, limits=limits)
    with pytest.raises(audio.AudioTooLongError):
        audio.validate(wav, limits=limits)


def streamed(flac: bytes) -> bytes:
    """The FLAC as a stream encoder writes it: 0 (unknown) as the total number of samples."""
    data = bytearray(flac)
    data[21] &= 0xF0  # STREAMINFO's 36-bit total starts in the low nibble of its 14th byte
    data[22:26] = bytes(4)
    return bytes(data)


def test_a_file_that_does_not_declare_its_length_decodes_and_is_held_to_the_limits_while_decoding():
    # Given a 3 s FLAC whose header does not say how long it is
    flac = encode(tone(16_000, 1, seconds=3.0), 16_000, "FLAC")
    unknown = streamed(flac)
    assert not audio.probe(unknown).length_known

    # When it is decoded without limits, and with a 2 s limit
    samples = audio.decode(unknown)

    # Then it decodes to what the complete file holds, and the limit stops it while it decodes
    np.testing.assert_array_equal(samples, audio.decode(flac))
    assert audio.validate(unknown).frames == 48_000
    with pytest.raises(audio.AudioTooLongError, match="longer than the limit of 2 s"):
        audio.decode(unknown, limits=audio.Limits(max_seconds=2.0))


@pytest.mark.parametrize(
    ("name", "value", "field", "expected"),
    [
        ("ACOUSTIC_MAX_DECODED_SAMPLES", "1000000", "max_decoded_samples", 1_000_000),
        ("ACOUSTIC_MAX_CHANNELS", "2", "max_channels", 2),
    ],
)
def test_the_decoded_size_limits_are_settings(name, value, field, expected):
    # Given an environment that sets a limit
    # When the settings are read
    settings = inference.Settings.from_env({name: value})

    # Then the handler applies it
    assert getattr(settings, field) == expected
    assert getattr(settings.limits, field.replace("_decoded", "")) == expected


def test_the_default_decoded_size_is_the_duration_limit_in_48_khz_stereo():
    # Given the default settings, and a longer duration limit
    # When their limits are computed
    default = inference.Settings.from_env({}).limits
    longer = inference.Settings.from_env({"ACOUSTIC_MAX_AUDIO_SECONDS": "1200"}).limits

    # Then 10 minutes of 48 kHz stereo decode, and the decoded size follows the duration limit
    assert default == audio.Limits(max_seconds=600.0, max_samples=57_600_000, max_channels=16)
    assert longer.max_samples == 115_200_000


@pytest.mark.parametrize("value", ["0", "-3", "1.5", "many"])
@pytest.mark.parametrize("name", ["ACOUSTIC_MAX_DECODED_SAMPLES", "ACOUSTIC_MAX_CHANNELS"])
def test_invalid_decoded_size_limits_fail_at_load_naming_the_variable(name, value):
    # Given a misconfigured limit
    # When the settings are read
    # Then the error names the variable
    with pytest.raises(ValueError, match=name):
        inference.Settings.from_env({name: value})


@pytest.mark.parametrize(
    ("case", "status", "setting"),
    [
        ("long", 413, "ACOUSTIC_MAX_AUDIO_SECONDS"),
        ("big", 413, "ACOUSTIC_MAX_REQUEST_BYTES"),
    ],
)
def test_every_limit_message_names_its_setting(case, status, setting):
    # Given a clip over the duration limit, and a body over the size limit
    settings = inference.Settings(threads=1, max_audio_seconds=1.0, max_request_bytes=100_000)
    body = encode(np.zeros((16_000 * 2, 1), np.float32), 16_000, "WAV") if case == "long" else bytes(100_001)

    # When the handler reads it
    with pytest.raises(inference.BadRequest) as caught:
        inference.parse_request(body, "audio/wav", settings)

    # Then the message says which setting would let it through
    assert caught.value.status_code == status
    assert setting in str(caught.value)


def test_a_wav_in_json_with_the_asr_fields_is_decoded_as_the_file_it_is():
    # Given the request: a 2 s stereo 44.1 kHz WAV with "sample_rate": 16000, as the seed
    # ASR endpoint's clients send it
    wav = encode(tone(44_100, 2, seconds=2.0), 44_100, "WAV", "PCM_16")
    body = json.dumps({"base64": base64.b64encode(wav).decode(), "sample_rate": 16_000, "channels": 1})

    # When the handler reads it
    request = inference.parse_request(body.encode(), "application/json", DEFAULTS)

    # Then it is 2 s of audio (not 11 s of noise), and the ignored fields are noted for the client
    assert request.samples.shape == (32_000,)
    np.testing.assert_allclose(request.samples, audio.decode(wav), atol=1e-6)
    assert len(request.notes) == 1
    assert all(word in request.notes[0] for word in ("sample_rate", "channels", "44100", "WAV"))


def test_fields_that_agree_with_the_file_need_no_note():
    # Given a 16 kHz mono FLAC sent with "sample_rate": 16000
    flac = encode(tone(16_000, 1), 16_000, "FLAC")
    body = json.dumps({"base64": base64.b64encode(flac).decode(), "sample_rate": 16_000})

    # When the handler reads it
    request = inference.parse_request(body.encode(), "application/json", DEFAULTS)

    # Then nothing is noted
    assert request.notes == ()


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "WAV"),
        (b"RF64\xff\xff\xff\xffWAVEds64", "WAV"),
        (b"fLaC\x00\x00\x00\x22", "FLAC"),
        (b"OggS\x00\x02\x00\x00", "OGG"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x0a", "MP3"),
        (b"\xff\xff\xff\xff\x00\x00", None),  # int16 -1, -1, 0: silence with a little dither
        (b"\x00\x00\x01\x00", None),
    ],
)
def test_sniffing_names_the_container_of_a_file_and_nothing_for_headerless_pcm(head, kind):
    # Given the first bytes of a file, or of headerless PCM
    # When they are sniffed
    # Then the container is named only for a file
    assert audio.sniff(head + bytes(64)) == kind


def test_sniffing_finds_mp3_by_two_consecutive_frames():
    # Given an MP3 without an ID3 tag (as libsndfile writes it), and PCM shaped like one frame header
    mp3 = encode(tone(22_050, 1), 22_050, "MP3")
    one_header = b"\xff\xfb\x90\x00" + bytes(800)

    # When they are sniffed
    # Then only the real MP3 is a file
    assert audio.sniff(mp3) == "MP3"
    assert audio.sniff(one_header) is None


def test_a_recording_too_long_for_the_endpoint_is_a_413_that_names_the_asynchronous_path():
    # Given a handler limited to 2 s and a 3 s recording
    from serving import inference

    settings = inference.Settings.from_env({contract.ENV_MAX_AUDIO_SECONDS: "2"})
    wav = encode(np.zeros((16_000 * 3, 1), np.float32), 16_000, "WAV", "PCM_16")
    # When it is sent
    with pytest.raises(inference.BadRequest) as refused:
        inference.parse_request(wav, "audio/wav", settings)
    # Then the answer is a 413 saying where a long recording goes instead
    assert refused.value.status_code == 413
    assert "asynchronous endpoint (serving_mode async" in str(refused.value)
    assert "batch transform" in str(refused.value)
