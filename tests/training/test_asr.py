"""Speech recognition (tasks/asr.py): text normalization, vocabulary, targets, the collator, metrics,
greedy decoding with word times, stitching long recordings, and the answer's check."""

from __future__ import annotations

import json

import jiwer
import numpy as np
import pytest
import torch

import tasks
from tasks import Windows, asr
from training import audiofolder

TASK = tasks.load("asr")
# A pretrained checkpoint's vocabulary, as facebook/wav2vec2-base-960h's vocab.json orders it (upper case).
CHECKPOINT_VOCABULARY = ["<pad>", "<s>", "</s>", "<unk>", "|", "E", "T", "A", "O", "N", "I", "H", "S", "'"]
CHECKPOINT_VOCABULARY += [
    chr(c) for c in range(ord("A"), ord("Z") + 1) if chr(c) not in CHECKPOINT_VOCABULARY
]


# --- text ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("Turn LEFT, now!", "turn left now"),
        ("  don't   stop ", "don't stop"),
        ("'quoted' words", "quoted words"),  # quotes around a word are punctuation, not apostrophes
        ("rock\u2019n\u2019roll", "rock'n'roll"),  # a typographic apostrophe inside a word is one
        ("\uff26\uff35\uff2c\uff2c width", "full width"),  # full-width letters: compatibility forms (NFKC)
        ("well-known", "well known"),
    ],
)
def test_one_normalization_serves_references_and_hypotheses(text, normalized):
    assert asr.normalize_text(text) == normalized


def test_a_built_vocabulary_is_the_special_tokens_then_the_transcripts_characters():
    vocabulary = TASK.labels(["Turn left", "stop, now!", "café 7"])
    assert vocabulary[:3] == ["<pad>", "<unk>", "|"]  # the blank is id 0
    assert vocabulary[3:] == sorted(set("turnleftstopnowcafé7"))  # lower case, no punctuation or space


def test_targets_follow_the_checkpoints_case_and_drop_what_it_cannot_spell():
    # Given an upper-case checkpoint vocabulary without accents, digits or commas
    spell = asr.Speller(CHECKPOINT_VOCABULARY)
    assert spell.case == "upper"
    # When transcripts become targets
    text, dropped = spell.spell("Café au-lait, 3 cups")
    # Then the case is the vocabulary's, an accent comes off, a dash splits words, the rest is dropped
    assert text == "CAFE AU LAIT CUPS"
    assert dropped == [",", "3"]
    # And a lower-case vocabulary lowers them
    assert asr.Speller(TASK.labels(["ok go"])).spell("OK Go")[0] == "ok go"


def test_the_report_counts_what_normalization_changed_and_an_empty_target_is_unusable():
    vocabulary = TASK.labels(["turn left", "go"])
    described = TASK.describe_targets(["Turn left!", "go", "???"], vocabulary)
    assert described["utterances"] == 3
    assert described["changed"] == 2  # case and punctuation; "???" keeps nothing
    assert described["empty"] == 1
    assert described["dropped_characters"] == {"!": 1, "?": 3}
    assert TASK.usable("go", vocabulary) is None
    assert "keeps no character" in (TASK.usable("???", vocabulary) or "")


def test_a_checkpoints_vocabulary_is_read_in_id_order_from_its_folder(tmp_path):
    (tmp_path / asr.VOCABULARY_FILE).write_text(
        json.dumps({t: i for i, t in enumerate(CHECKPOINT_VOCABULARY)})
    )
    assert TASK.checkpoint_labels(str(tmp_path)) == CHECKPOINT_VOCABULARY
    # A folder without one (a config-only model) gets a vocabulary built from the transcripts
    assert TASK.checkpoint_labels(str(tmp_path / "elsewhere")) is None
    # And a file that is not a vocabulary is an error, not a silent fresh head
    (tmp_path / asr.VOCABULARY_FILE).write_text(json.dumps({"a": 0, "b": 2}))
    with pytest.raises(ValueError, match="not a vocabulary"):
        TASK.checkpoint_labels(str(tmp_path))


# --- batches -------------------------------------------------------------------------------------------------


def test_the_collator_zero_pads_audio_and_pads_token_ids_with_minus_100():
    # Given two utterances of different lengths and their transcripts
    vocabulary = TASK.labels(["go", "stop now"])
    collate = audiofolder.PadBatch(
        padding_value=0.0, wrap=False, targets=lambda targets: TASK.batch_targets(targets, vocabulary)
    )
    examples = [
        {"input_values": np.ones(5, dtype=np.float32), "labels": "go"},
        {"input_values": np.ones(8, dtype=np.float32), "labels": "stop now"},
    ]
    batch = collate(examples)
    # Then the audio is padded with zeros, never repeated (the transcript would not repeat with it)
    assert batch["input_values"][0].tolist() == [1.0] * 5 + [0.0] * 3
    # And the ids are one per character, | between words, -100 (what CTC ignores) after the shorter one
    ids = {token: i for i, token in enumerate(vocabulary)}
    assert batch["labels"].dtype == torch.long
    assert batch["labels"][0].tolist() == [ids["g"], ids["o"]] + [-100] * 6
    assert batch["labels"][1].tolist() == [ids[c] if c != " " else ids["|"] for c in "stop now"]


def test_length_grouped_batches_read_the_clips_known_lengths():
    clips = [audiofolder.Clip(path=None, label="x", num_samples=n) for n in (100, 900, 120, 880)]  # type: ignore[arg-type]
    crops = audiofolder.RandomCrops(clips, lambda label: label, 1000, lambda x: x)
    assert crops.lengths == [100, 900, 120, 880]


# --- metrics -------------------------------------------------------------------------------------------------


def test_error_rates_are_jiwers_after_the_one_normalization_and_can_exceed_one():
    references = ["Turn left.", "stop now"]
    hypotheses = ["turn left", "stop stop now now"]
    rates = asr.error_rates(references, hypotheses)
    # "Turn left." matches after normalization; the second has two insertions: 2 errors over 4 words
    assert rates["wer"] == pytest.approx(0.5)
    assert rates["wer"] == pytest.approx(jiwer.wer(["turn left", "stop now"], hypotheses))
    # And insertions can take an error rate above 1 (so a gate on it cannot assume a fraction)
    assert asr.error_rates(["go"], ["go go go"])["wer"] == pytest.approx(2.0)


def test_the_split_report_names_its_worst_utterances():
    vocabulary = TASK.labels(["turn left", "stop now"])
    ids = {token: i for i, token in enumerate(vocabulary)}

    def frames(text: str) -> list[float]:  # one frame per character, a blank between characters
        return [v for c in text for v in (ids["|" if c == " " else c], 0)]

    rows = [frames("turn left"), frames("stop")]
    width = max(map(len, rows))
    clip = np.array([row + [-1] * (width - len(row)) for row in rows], dtype=np.float64)
    targets = np.array(["turn left", "stop now"])
    report = TASK.report(tasks.SplitScores(clip, targets, clip, targets), vocabulary)
    assert report["wer"] == pytest.approx(0.25) and report["deletions"] == 1
    assert report["worst"] == [{"reference": "stop now", "hypothesis": "stop", "wer": 0.5}]


def test_the_split_report_gives_each_speakers_error_rates_the_worst_first():
    # Given three utterances by two speakers, the second speaker's one heard wrong
    vocabulary = TASK.labels(["turn left", "stop now", "go"])
    ids = {token: i for i, token in enumerate(vocabulary)}

    def frames(text: str) -> list[float]:
        return [v for c in text for v in (ids["|" if c == " " else c], 0)]

    rows = [frames("turn left"), frames("stop"), frames("go")]
    width = max(map(len, rows))
    clip = np.array([row + [-1] * (width - len(row)) for row in rows], dtype=np.float64)
    targets = np.array(["turn left", "stop now", "go"])
    scores = tasks.SplitScores(clip, targets, clip, targets)
    # When the split is reported per speaker
    report = TASK.group_report(scores, vocabulary, ["ann", "bob", "ann"])
    # Then each speaker's WER and CER are jiwer's over their own utterances, the worst speaker first
    assert report["speakers"] == 2
    assert [row["speaker"] for row in report["per_speaker"]] == ["bob", "ann"]
    assert report["per_speaker"][0] == {
        "speaker": "bob",
        "utterances": 1,
        **asr.error_rates(["stop now"], ["stop"]),
    }
    assert report["per_speaker"][1]["wer"] == 0.0 and report["per_speaker"][1]["utterances"] == 2
    # And without known speakers there is no per-speaker report
    assert TASK.group_report(scores, vocabulary, ["", "", ""]) == {}


def test_each_clips_speaker_is_read_from_the_listing_that_names_it(tmp_path):
    # Given a split whose metadata.csv names speakers (one clip in a subfolder), and one whose listing names none
    split, other = tmp_path / "test", tmp_path / "other"
    (split / "clips").mkdir(parents=True)
    other.mkdir()
    (split / "metadata.csv").write_text(
        "file_name,transcription,speaker\nclips/a.wav,go,ann\nb.wav,stop,bob\n"
    )
    (other / "metadata.csv").write_text("file_name,transcription\nc.wav,go\n")
    paths = [split / "clips" / "a.wav", split / "b.wav", other / "c.wav", tmp_path / "d.wav"]
    # When the clips' speakers are looked up / Then each has its listing's, "" where none is known
    assert audiofolder.listed_speakers(paths) == ["ann", "bob", "", ""]


# --- decoding ---------------------------------------------------------------------------------------------


def test_greedy_decoding_merges_repeats_drops_blanks_and_times_each_word():
    labels = ["<pad>", "<unk>", "|", "a", "b", "o", "g"]
    # frames:   g  g  _  o  |  _  a  b  b  _  b  (blank between the b's keeps both)
    ids = [6, 6, 0, 5, 2, 0, 3, 4, 4, 0, 4]
    times = [0.02 * i for i in range(len(ids))]
    text, words = asr.decode(ids, labels, times)
    assert text == "go abb"
    assert words == [
        {"word": "go", "start": 0.0, "end": 0.08},
        {"word": "abb", "start": 0.12, "end": 0.22},
    ]
    # Padding frames (-1) are skipped, and a logits row of -100 (the Trainer's padding) is one
    logits = np.full((3, len(labels)), -100.0)
    logits[0, 6] = 5.0
    assert asr.frame_ids(logits[None])[0].tolist() == [6, -1, -1]


def test_overlapping_windows_are_stitched_so_every_frame_is_read_once():
    # Given a 10 s recording read in 4 s windows every 2.7 s, each window's frames (100 ms) carrying the
    # number of the 100 ms of the recording they hear
    rate, window = 1000, 4000
    total = 10_000
    starts = [0, 2700, 5400, 6000]  # the last one flush with the end
    scores = np.array([[start // 100 + k for k in range(40)] for start in starts], dtype=np.float64)
    ids, times = asr.stitch(Windows(starts, scores, window, total, rate))
    # Then every 100 ms of the recording is read exactly once, in order, each at its own time
    assert ids.tolist() == list(range(100))
    assert times == pytest.approx([0.1 * i for i in range(100)])


def test_the_answer_is_text_and_timed_words_and_its_check_catches_a_broken_one():
    labels = ["<pad>", "<unk>", "|", "o", "g"]
    windows = Windows([0], np.array([[4, 3, 0, 2, 4, 4, 3]], dtype=np.float64), 7 * 320, 7 * 320, 16_000)
    answer = TASK.clip_answer(windows, labels)
    assert answer["text"] == "go go"
    assert [w["word"] for w in answer["words"]] == ["go", "go"]
    assert TASK.check_answer(answer, labels) == []
    assert answer["words"][0]["start"] < answer["words"][1]["start"]
    broken = {"text": "go", "words": [{"word": "go", "start": 0.5, "end": 0.1}]}
    assert TASK.check_answer(broken, labels) == [
        f"word 'go' runs backwards or before the previous word: {broken['words'][0]!r}"
    ]
    assert TASK.check_answer({"text": "a b", "words": [{"word": "a", "start": 0, "end": 1}]}, labels)
