"""Speech recognition (CTC): what was said, as text with each word's start and end.

Dataset: a split folder's ``metadata.csv`` (``file_name,transcription[,speaker]``; staging writes it from
a folder, Common Voice or LibriSpeech). Model: ``AutoModelForCTC`` (wav2vec2 and its family), one output per
vocabulary entry per 20 ms frame; the CTC blank is the vocabulary's first entry, ``<pad>`` (id 0).

Vocabulary: a pretrained checkpoint's own tokenizer (``vocab.json``, e.g. ``facebook/wav2vec2-base-960h``:
upper-case letters, the apostrophe, ``|`` between words), whose CTC head is kept; else one built from the
training transcripts (lower-case letters, digits and the apostrophe), with a fresh head. A transcript becomes
a training target in the vocabulary's case (``target``): accents are taken off a letter the vocabulary lacks
(``é`` -> ``e``), a dash or slash becomes a word break, any other character outside the vocabulary is dropped,
whitespace collapses; the report counts what was changed and dropped (``describe_targets``), and a clip whose
transcript keeps nothing is skipped and counted (``usable``).

Training reads whole utterances (``whole_clips``: no crop, rotation or repetition cuts a word off its
transcript), zero-padded in batches of similar length.

Metrics: word and character error rate (WER, CER: substitutions, deletions and insertions per reference word or
character, over the whole split), computed with jiwer after one normalization (``normalize_text``: lower
case, punctuation removed except an apostrophe inside a word, whitespace collapsed) applied alike to the
reference and the hypothesis. Lower is better; both can exceed 1 (insertions). The best model has the lowest
validation WER; the gate checks WER and CER.

Answer: ``{"text": "turn left", "words": [{"word": "turn", "start": 0.32, "end": 0.58}, ...]}``. Decoding is
greedy (each frame's most likely entry, repeats merged, blanks dropped); a word starts at its first character's
frame and ends after its last one's. A recording longer than the model's window is read in windows that
overlap by a third (``hop``); each window speaks for the middle of its overlaps with its neighbours, so every
frame comes from a window that heard context on both sides, and the frames are stitched before decoding.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import contract
from tasks import Metric, SplitScores, Task, Windows

if TYPE_CHECKING:
    import numpy as np

PAD, UNK, WORD_DELIMITER = "<pad>", "<unk>", "|"
SPECIAL_TOKENS = (PAD, UNK, WORD_DELIMITER)  # a built vocabulary's first entries, in this order
BLANK_ID = 0  # the CTC blank: the padding token, first in every vocabulary this task makes or reads
VOCABULARY_FILE = "vocab.json"  # a Wav2Vec2CTCTokenizer's, in a checkpoint and in the model directory
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
# Hyphen-minus, the Unicode hyphens and dashes (U+2010..U+2014), slash and underscore.
WORD_BREAKS = frozenset(
    "-\u2010\u2011\u2012\u2013\u2014/_"
)  # outside the vocabulary, these separate words rather than vanish
WORST_UTTERANCES = 10  # the report's worst utterances, reference beside hypothesis
SPEAKERS_REPORTED = 50  # the report's speakers, the worst WER first
# The answer's keys.
TEXT_KEY, WORDS_KEY, WORD_KEY, START_KEY, END_KEY = "text", "words", "word", "start", "end"
DEFAULT_CHECKPOINT = "facebook/wav2vec2-base-960h"


NORMALIZATION = (
    "NFKC, lower case, punctuation removed (an apostrophe inside a word kept), whitespace collapsed"
)


# --- text ------------------------------------------------------------------------------------------------
def normalize_text(text: str) -> str:
    """The one normalization WER and CER are computed after, on references and hypotheses alike: Unicode
    compatibility forms (NFKC), lower case, punctuation removed (an apostrophe between two letters kept:
    ``don't``), any run of whitespace one space, none at either end."""
    text = unicodedata.normalize("NFKC", text).lower()
    kept = []
    for i, char in enumerate(text):
        if unicodedata.category(char).startswith("P"):
            inside = (
                char in "'\u2019"
                and 0 < i < len(text) - 1
                and text[i - 1].isalpha()
                and text[i + 1].isalpha()
            )
            kept.append("'" if inside else " ")
        else:
            kept.append(char)
    return " ".join("".join(kept).split())


def vocabulary_case(labels: Sequence[str]) -> str:
    """``upper`` when the vocabulary's letters are all upper case, ``lower`` when all lower case, else
    ``mixed`` (a transcript then keeps its own case)."""
    letters = [
        token for token in labels if len(token) == 1 and token.isalpha() and token.lower() != token.upper()
    ]
    if letters and all(letter.isupper() for letter in letters):
        return "upper"
    if letters and all(letter.islower() for letter in letters):
        return "lower"
    return "mixed"


class Speller:
    """Transcripts in a vocabulary's terms: its case, its characters, words separated by one space."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = tuple(labels)
        self.ids = {token: i for i, token in enumerate(self.labels)}
        self.case = vocabulary_case(self.labels)
        self.characters = frozenset(
            token for token in self.labels if len(token) == 1 and token != WORD_DELIMITER
        )

    def spell(self, transcript: str) -> tuple[str, list[str]]:
        """The target text and the characters dropped on the way (see the module's docstring)."""
        text = unicodedata.normalize("NFKC", transcript)
        text = text.upper() if self.case == "upper" else text.lower() if self.case == "lower" else text
        out: list[str] = []
        dropped: list[str] = []
        for char in text:
            if char.isspace() or (char in WORD_BREAKS and char not in self.characters):
                out.append(" ")
            elif char in self.characters:
                out.append(char)
            else:
                bare = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
                if bare and all(c in self.characters for c in bare):
                    out.append(bare)
                else:
                    dropped.append(char)
        return " ".join("".join(out).split()), dropped

    def encode(self, text: str) -> list[int]:
        """Token ids of a target text: one per character, ``|`` between words."""
        return [self.ids[WORD_DELIMITER] if char == " " else self.ids[char] for char in text]


@lru_cache(maxsize=8)
def speller(labels: tuple[str, ...]) -> Speller:
    return Speller(labels)


def build_vocabulary(transcripts: Sequence[str]) -> list[str]:
    """A character vocabulary from training transcripts: the special tokens, then every lower-case letter,
    digit and apostrophe they use (accents kept: ``é`` is a letter of its own), sorted."""
    characters: set[str] = set()
    for transcript in transcripts:
        for char in unicodedata.normalize("NFKC", transcript).lower():
            if char.isalnum() or char == "'":
                characters.add(char)
    return [*SPECIAL_TOKENS, *sorted(characters)]


# --- decoding ----------------------------------------------------------------------------------------------
def frame_ids(logits: np.ndarray) -> np.ndarray:
    """Each frame's most likely entry (greedy CTC), float64; -1 marks a padding frame (the Trainer pads the
    logits of shorter utterances with -100 throughout)."""
    import numpy as np

    logits = np.asarray(logits)
    if logits.ndim == 2:  # already ids (a window's, or reduced while evaluating)
        ids = logits.astype(np.float64)
        ids[ids < 0] = -1
        return ids
    ids = logits.argmax(axis=-1).astype(np.float64)
    ids[(logits == -100).all(axis=-1)] = -1
    return ids


def decode(
    ids: Sequence[float] | np.ndarray, labels: Sequence[str], times: Sequence[float] | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """Greedy CTC decoding of frame ids (negative: padding, skipped): repeats merged, blanks dropped, ``|``
    (or a space token) between words. With each frame's start time (``times``, seconds) and the frame length,
    each word's start and end."""
    words: list[dict[str, Any]] = []
    current: list[str] = []
    start = end = 0.0
    previous = -1
    step = (times[1] - times[0]) if times is not None and len(times) > 1 else 0.02

    def close() -> None:
        if current:
            words.append({WORD_KEY: "".join(current), START_KEY: round(start, 3), END_KEY: round(end, 3)})
            current.clear()

    for frame, value in enumerate(ids):
        token = int(value)
        if token < 0:
            continue
        if token == previous:
            if current and times is not None:
                end = times[frame] + step
            continue
        previous = token
        if token == BLANK_ID:
            continue
        piece = labels[token] if token < len(labels) else UNK
        if piece in (WORD_DELIMITER, " "):
            close()
            continue
        if len(piece) != 1 and piece.startswith("<"):  # <unk>, <s>, </s>: no text
            continue
        if not current and times is not None:
            start = times[frame]
        current.append(piece)
        if times is not None:
            end = times[frame] + step
    close()
    return " ".join(word[WORD_KEY] for word in words), words


def stitch(windows: Windows) -> tuple[np.ndarray, np.ndarray]:
    """One clip's frame ids and each frame's start time (seconds) from its overlapping windows' frame ids:
    each window keeps the frames between the middles of its overlaps with the previous and the next window."""
    import numpy as np

    starts = list(windows.starts)
    ids_parts, time_parts = [], []
    for i, (start, row) in enumerate(zip(starts, windows.scores, strict=True)):
        row = np.asarray(row)
        row = row[row >= 0] if (row < 0).any() else row
        length = min(windows.window, windows.total - start)
        frame = length / max(1, len(row)) / windows.rate  # seconds per frame
        times = start / windows.rate + frame * np.arange(len(row))
        low = 0.0 if i == 0 else (start + starts[i - 1] + windows.window) / 2 / windows.rate
        high = (
            windows.total / windows.rate
            if i == len(starts) - 1
            else (starts[i + 1] + start + windows.window) / 2 / windows.rate
        )
        keep = (times + frame / 2 >= low) & (times + frame / 2 < high)
        ids_parts.append(row[keep])
        time_parts.append(times[keep])
    return np.concatenate(ids_parts), np.concatenate(time_parts)


# --- the task ------------------------------------------------------------------------------------------------
class SpeechRecognition(Task):
    name = "asr"
    metrics = (
        Metric(
            "wer", False, "word error rate: word substitutions, deletions and insertions per reference word"
        ),
        Metric("cer", False, "character error rate: the same over characters"),
    )
    objective = "wer"
    gated = ("wer", "cer")
    finetuning_task = "automatic-speech-recognition"
    label_column = contract.TRANSCRIPTION_COLUMN
    auto_model = "AutoModelForCTC"
    whole_clips = True
    staging_sources = ("librispeech", "commonvoice", "folder")

    # --- dataset ---------------------------------------------------------------------------------------------
    def labels(self, clip_labels: Sequence[str]) -> list[str]:
        return build_vocabulary(clip_labels)

    def target(self, label: str, labels: Sequence[str]) -> str:
        return speller(tuple(labels)).spell(label)[0]

    def usable(self, label: str, labels: Sequence[str]) -> str | None:
        if self.target(label, labels):
            return None
        return (
            f"its transcription {label!r} keeps no character of the vocabulary (a CTC target cannot be empty)"
        )

    def unknown_labels(self, split_labels: Sequence[str], train_labels: Sequence[str]) -> list[str]:
        return []  # characters outside the vocabulary are dropped and counted, never fatal

    def checkpoint_labels(self, source: str) -> list[str] | None:
        """The checkpoint's tokenizer vocabulary (``vocab.json``) in id order: a folder's file, or the Hub's;
        None when the checkpoint has none (``facebook/wav2vec2-base``: a fresh head on built vocabulary)."""
        folder = Path(source).expanduser()
        if folder.is_dir():
            path = folder / VOCABULARY_FILE
            return read_vocabulary(path) if path.is_file() else None
        try:
            from huggingface_hub import hf_hub_download

            return read_vocabulary(Path(hf_hub_download(source, VOCABULARY_FILE)))
        except Exception:  # no such file in the repository, or no Hub: no tokenizer to keep
            return None

    def describe_targets(self, clip_labels: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
        spell = speller(tuple(labels))
        changed = empty = 0
        dropped: Counter[str] = Counter()
        for label in clip_labels:
            text, lost = spell.spell(label)
            changed += text != " ".join(label.split())
            empty += not text
            dropped.update(lost)
        return {
            "utterances": len(clip_labels),
            "changed": changed,
            "empty": empty,
            "case": spell.case,
            "dropped_characters": dict(dropped.most_common()),
        }

    def batch_targets(self, targets: Sequence[Any], labels: Sequence[str]) -> Any:
        """Token ids per target text, padded with -100 (what CTC losses ignore) to the longest."""
        import torch

        spell = speller(tuple(labels))
        encoded = [spell.encode(str(target)) for target in targets]
        batch = torch.full((len(encoded), max(1, *map(len, encoded))), -100, dtype=torch.long)
        for row, ids in enumerate(encoded):
            batch[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return batch

    def argument_defaults(self) -> dict[str, Any]:
        return {
            "model_name_or_path": DEFAULT_CHECKPOINT,
            # The endpoint's window over a long recording; training reads whole utterances.
            "max_length_seconds": 20.0,
            "max_clip_seconds": 30.0,
            "time_shift_seconds": 0.0,
            "learning_rate": 1e-4,
            "train_sampling_strategy": "group_by_length",
        }

    def hop(self, window: int) -> int:
        return max(1, window - window // 3)

    # --- model head ------------------------------------------------------------------------------------------
    def config_fields(self, labels: Sequence[str]) -> dict[str, Any]:
        return {
            **super().config_fields(labels),
            "vocab_size": len(labels),
            "pad_token_id": BLANK_ID,
            "ctc_loss_reduction": "mean",
            "ctc_zero_infinity": True,
        }

    def model_files(self, labels: Sequence[str]) -> dict[str, str]:
        """A ``Wav2Vec2CTCTokenizer``'s files, so the model directory is a complete Hugging Face checkpoint."""
        vocabulary = {token: i for i, token in enumerate(labels)}
        tokenizer = {
            "tokenizer_class": "Wav2Vec2CTCTokenizer",
            "pad_token": PAD,
            "unk_token": UNK if UNK in vocabulary else labels[BLANK_ID],
            "word_delimiter_token": WORD_DELIMITER,
            "do_lower_case": False,
        }
        return {
            VOCABULARY_FILE: json.dumps(vocabulary, ensure_ascii=False),
            TOKENIZER_CONFIG_FILE: json.dumps(tokenizer),
        }

    # --- outputs ---------------------------------------------------------------------------------------------
    def scores(self, logits: np.ndarray) -> np.ndarray:
        return frame_ids(logits)

    def pool(self, window_scores: np.ndarray) -> np.ndarray:
        """A clip evaluated whole is one window: its frame ids."""
        if len(window_scores) != 1:
            raise ValueError("a speech clip's windows are stitched by their starts (clip_answer), not pooled")
        return window_scores[0]

    # --- metrics and report ----------------------------------------------------------------------------------
    def hypotheses(self, scores: SplitScores, labels: Sequence[str]) -> list[str]:
        return [decode(row, labels)[0] for row in scores.clip]

    def split_metrics(self, scores: SplitScores, labels: Sequence[str]) -> dict[str, float]:
        references = [str(target) for target in scores.clip_targets]
        return error_rates(references, self.hypotheses(scores, labels))

    def group_report(
        self, scores: SplitScores, labels: Sequence[str], groups: Sequence[str]
    ) -> dict[str, Any]:
        """WER and CER per speaker (where the split names speakers), the worst first; at most
        ``SPEAKERS_REPORTED`` of them."""
        if not any(groups):
            return {}
        references = [str(target) for target in scores.clip_targets]
        hypotheses = self.hypotheses(scores, labels)
        by_speaker: dict[str, list[int]] = {}
        for i, speaker in enumerate(groups):
            if speaker:
                by_speaker.setdefault(speaker, []).append(i)
        rows: list[dict[str, Any]] = [
            {
                "speaker": speaker,
                "utterances": len(clips),
                **error_rates([references[i] for i in clips], [hypotheses[i] for i in clips]),
            }
            for speaker, clips in by_speaker.items()
        ]
        rows.sort(key=lambda row: (-row["wer"], row["speaker"]))
        return {"speakers": len(rows), "per_speaker": rows[:SPEAKERS_REPORTED]}

    def card_use(self, labels: Sequence[str], window: str) -> str:
        return (
            "Transcribing speech like the training recordings (language, accents, vocabulary, recording "
            f"conditions) into text, in {window}, through the AcousticShield endpoint (the handler in the "
            "model directory's `code/`), which answers with the text and word timings."
        )

    def card_limitation(self, labels: Sequence[str]) -> str:
        return (
            f"Its output is the {len(labels)} tokens of its vocabulary, without a language model: other "
            "characters or languages cannot be written, and spelling follows the training transcripts."
        )

    def report(self, scores: SplitScores, labels: Sequence[str]) -> dict[str, Any]:
        import jiwer

        references = [str(target) for target in scores.clip_targets]
        hypotheses = self.hypotheses(scores, labels)
        pairs = [(normalize_text(r), normalize_text(h)) for r, h in zip(references, hypotheses, strict=True)]
        measured = jiwer.process_words([r for r, _ in pairs], [h for _, h in pairs])
        per_utterance: list[dict[str, Any]] = [
            {"reference": r, "hypothesis": h, "wer": round(jiwer.wer(r, h), 4)} for r, h in pairs
        ]
        worst = sorted(per_utterance, key=lambda row: -row["wer"])[:WORST_UTTERANCES]
        return {
            "labels": list(labels),
            "utterances": len(references),
            **error_rates(references, hypotheses),
            "words": sum(len(r.split()) for r, _ in pairs),
            "substitutions": measured.substitutions,
            "deletions": measured.deletions,
            "insertions": measured.insertions,
            "normalization": NORMALIZATION,
            "worst": [row for row in worst if row["wer"] > 0],
        }

    # --- the handler's answer --------------------------------------------------------------------------------
    def answer(self, clip_scores: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
        text, _ = decode(clip_scores, labels)
        return {TEXT_KEY: text, WORDS_KEY: [{WORD_KEY: word} for word in text.split()]}

    def clip_answer(self, windows: Windows, labels: Sequence[str]) -> dict[str, Any]:
        ids, times = stitch(windows)
        text, words = decode(ids, labels, [float(t) for t in times] if len(times) else None)
        for word in words:  # a word never ends after the recording does
            word[END_KEY] = round(min(word[END_KEY], windows.total / windows.rate), 3)
        return {TEXT_KEY: text, WORDS_KEY: words}

    def window_answer(self, window_scores: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
        return {TEXT_KEY: decode(window_scores, labels)[0]}

    def check_answer(self, answer: dict[str, Any], labels: Sequence[str] | None) -> list[str]:
        problems = []
        text, words = answer.get(TEXT_KEY), answer.get(WORDS_KEY)
        if not isinstance(text, str):
            problems.append(f"'{TEXT_KEY}' is not a string: {text!r}")
        if not isinstance(words, list):
            return [*problems, f"'{WORDS_KEY}' is not a list: {words!r}"]
        previous = 0.0
        for word in words:
            if not isinstance(word, Mapping) or not isinstance(word.get(WORD_KEY), str):
                problems.append(f"a word is not {{'{WORD_KEY}': text, ...}}: {word!r}")
                continue
            start, end = word.get(START_KEY), word.get(END_KEY)
            if not all(
                isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in (start, end)
            ):
                problems.append(f"word {word[WORD_KEY]!r} has no start and end in seconds: {word!r}")
            elif end < start or start < previous:  # type: ignore[operator]
                problems.append(
                    f"word {word[WORD_KEY]!r} runs backwards or before the previous word: {word!r}"
                )
            else:
                previous = float(start)  # type: ignore[arg-type]
        if isinstance(text, str) and text.split() != [
            w.get(WORD_KEY) for w in words if isinstance(w, Mapping)
        ]:
            problems.append(f"'{TEXT_KEY}' is not its words joined: {text!r}")
        return problems


def read_vocabulary(path: Path) -> list[str]:
    """A ``vocab.json`` (token -> id) as the tokens in id order."""
    vocabulary = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(vocabulary, dict) or sorted(vocabulary.values()) != list(range(len(vocabulary))):
        raise ValueError(f"{path} is not a vocabulary (token -> id, ids 0..n-1)")
    return [token for token, _ in sorted(vocabulary.items(), key=lambda item: item[1])]


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
    """WER and CER over a split (``normalize_text`` on both sides), as jiwer computes them; a reference that
    normalizes to nothing is left out (an error rate per reference word has no words to count there)."""
    import jiwer

    pairs = [(normalize_text(r), normalize_text(h)) for r, h in zip(references, hypotheses, strict=True)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        return {"wer": 1.0, "cer": 1.0}
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    return {"wer": float(jiwer.wer(refs, hyps)), "cer": float(jiwer.cer(refs, hyps))}


TASK = SpeechRecognition()
