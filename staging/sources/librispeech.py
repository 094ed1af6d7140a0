"""LibriSpeech: read audiobook utterances with their transcripts and speakers, in the corpus's own splits.

OpenSLR resource 12 (``https://www.openslr.org/resources/12/``) releases one ``<subset>.tar.gz`` per
subset, each holding ``LibriSpeech/<subset>/<speaker>/<chapter>/`` with the utterances
``<speaker>-<chapter>-<utt>.flac`` and one ``<speaker>-<chapter>.trans.txt`` whose lines are
``<speaker>-<chapter>-<utt> TRANSCRIPT IN CAPITALS``. Subsets: ``train-*`` -> train, ``dev-*`` ->
validation, ``test-*`` -> test; the speakers of the subsets are disjoint. ``dev-other`` and ``test-other``
(the harder recordings) are staged only when ``--subsets`` names them, since their clips would otherwise
join the clean validation and test splits and change what those measure. The speaker is the speaker id.

An utterance listed without its file, or a file without a transcript line, is skipped and counted
(missing); a transcript line with an empty transcript, of another chapter, or repeated is a bad row; an
utterance id that is not a plain file name is refused, never followed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .. import StagingError
from ..stores import LocalTree, S3Tree, Tree, is_s3, s3_client
from .common import (
    Candidate,
    SourceOptions,
    SourceSet,
    cached_archive,
    speaker_group,
    transcription_of,
    unsafe_file_name,
)
from .speech import archive_name, is_archive, unpacked

LIBRISPEECH_BASE_URL = "https://www.openslr.org/resources/12"
LIBRISPEECH_SUBSETS = (
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
)
LIBRISPEECH_DEFAULT = ("train-clean-100", "dev-clean", "test-clean")  # what is downloaded unless asked
ASKED_ONLY = ("dev-other", "test-other")  # staged only when --subsets names them
TRANSCRIPT_SUFFIX = ".trans.txt"
AUDIO_SUFFIX = ".flac"
_SUBSET = re.compile(r"(train|dev|test)-[A-Za-z0-9-]+")
_SPLIT_OF = {"train": "train", "dev": "validation", "test": "test"}


def split_of(subset: str) -> str:
    """train-* -> train, dev-* -> validation, test-* -> test."""
    return _SPLIT_OF[subset.split("-", 1)[0]]


def librispeech(options: SourceOptions) -> SourceSet:
    """The utterances of the chosen subsets (see ``--subsets``), from a folder, one archive, or the folder
    (URL base, s3:// prefix or path) holding the released archives."""
    asked = _asked(options.subsets)
    url = options.source_url or LIBRISPEECH_BASE_URL
    found = SourceSet(title="LibriSpeech", candidates=[])
    trees: list[Tree] = []
    if is_archive(url):
        archive = cached_archive(archive_name(url), url, options, "librispeech")
        folder, refused = unpacked(archive, options, "librispeech", _needed)
        found.refused += refused
        trees.append(LocalTree(folder))
    elif url.startswith(("http://", "https://")):
        trees += _archives(url, asked or LIBRISPEECH_DEFAULT, options, found)
    else:
        tree: Tree = S3Tree(s3_client(), url) if is_s3(url) else LocalTree(Path(url).expanduser())
        files, _ = tree.files()
        released = [s for s in LIBRISPEECH_SUBSETS if f"{s}.tar.gz" in files]
        if released:  # a mirror of the released archives
            chosen = asked or tuple(s for s in released if s not in ASKED_ONLY)
            trees += _archives(url, chosen, options, found)
        else:
            trees.append(tree)
    _Corpus(found, asked).read(trees)
    return found


def _asked(subsets: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if not subsets:
        return None
    unknown = [s for s in subsets if s not in LIBRISPEECH_SUBSETS]
    if unknown:
        raise StagingError(
            f"--subsets: {', '.join(unknown)} is not a LibriSpeech subset; use {', '.join(LIBRISPEECH_SUBSETS)}"
        )
    return tuple(dict.fromkeys(subsets))


def _archives(base: str, subsets: tuple[str, ...], options: SourceOptions, found: SourceSet) -> list[Tree]:
    """Each subset's released archive, fetched into the cache (local paths as they are) and unpacked."""
    if len(subsets) > 1 and "" in options.sha256:
        raise StagingError("librispeech reads several archives; pin each one with --sha256 FILE=HEX")
    trees: list[Tree] = []
    for subset in subsets:
        name = f"{subset}.tar.gz"
        if base.startswith(("http://", "https://", "s3://")):
            url = base.rstrip("/") + "/" + name
        else:
            url = str(Path(base).expanduser() / name)
        archive = cached_archive(name, url, options, "librispeech")
        folder, refused = unpacked(archive, options, "librispeech", _needed)
        found.refused += refused
        trees.append(LocalTree(folder))
    return trees


def _needed(name: str) -> bool:
    """What an archive's unpacking keeps: the utterances and the transcripts."""
    return name.endswith((AUDIO_SUFFIX, TRANSCRIPT_SUFFIX))


@dataclass
class _Chapter:
    """One ``<subset>/<speaker>/<chapter>/`` folder of a tree: its transcript and its utterances' files."""

    tree: Tree
    folder: str  # the folder's path in the tree, ending in "/"
    subset: str
    speaker: str
    chapter: str
    transcript: str | None = None
    audio: dict[str, str] = field(default_factory=dict)  # utterance id -> path


@dataclass
class _Corpus:
    """Finds the chapters of every tree, picks the subsets, and reads each chapter's transcript."""

    found: SourceSet
    asked: tuple[str, ...] | None
    seen: dict[str, str] = field(default_factory=dict)  # utterance id -> where it was first listed

    def read(self, trees: list[Tree]) -> None:
        chapters: list[_Chapter] = []
        for tree in trees:
            files, links = tree.files()
            self.found.refused += links
            chapters += _chapters(tree, files)
        present = sorted({c.subset for c in chapters})
        if not present:
            raise StagingError(
                "no LibriSpeech chapters found; expected [LibriSpeech/]<subset>/<speaker>/<chapter>/ with "
                f"<speaker>-<chapter>{TRANSCRIPT_SUFFIX} and <speaker>-<chapter>-<utt>{AUDIO_SUFFIX} files"
            )
        chosen = self._choose(present)
        for chapter in chapters:
            if chapter.subset in chosen:
                self._chapter(chapter)
        self.found.notes.append(
            f"subsets {', '.join(s for s in present if s in chosen)}: train-* -> train, dev-* -> validation, "
            "test-* -> test; the speaker is the speaker id"
        )

    def _choose(self, present: list[str]) -> set[str]:
        if self.asked is None:
            skipped = [s for s in present if s in ASKED_ONLY]
            if skipped:
                self.found.notes.append(f"{', '.join(skipped)} skipped: name them in --subsets to stage them")
            return {s for s in present if s not in ASKED_ONLY}
        absent = [s for s in self.asked if s not in present]
        if absent:
            raise StagingError(
                f"--subsets: {', '.join(absent)} not in the source; it holds {', '.join(present)}"
            )
        return set(self.asked)

    def _chapter(self, chapter: _Chapter) -> None:
        """The chapter's utterances with a transcript line and a file; the others counted."""
        if chapter.transcript is None:
            name = f"{chapter.speaker}-{chapter.chapter}{TRANSCRIPT_SUFFIX}"
            for path in chapter.audio.values():
                self.found.missing.append((path, f"no transcript: {chapter.folder}{name} is missing"))
            return
        try:
            text = chapter.tree.reader(chapter.transcript)().decode("utf-8")
        except UnicodeDecodeError as err:
            raise StagingError(f"{chapter.transcript} is not UTF-8 text ({err})") from err
        listed: set[str] = set()
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                utterance = self._line(chapter, line, f"{chapter.transcript} line {number}")
                listed.add(utterance or "")
        for utterance, path in sorted(chapter.audio.items()):
            if utterance not in listed:
                self.found.missing.append((path, f"no line in {chapter.transcript}"))

    def _line(self, chapter: _Chapter, line: str, where: str) -> str | None:
        """One transcript line as a candidate (or counted); the utterance id it accounts for, or None."""
        utterance, _, rest = line.strip().partition(" ")
        refusal = unsafe_file_name(utterance + AUDIO_SUFFIX, "utterance")
        if refusal:
            self.found.refused.append((utterance, f"{where}: {refusal}"))
            return None
        transcription, problem = transcription_of(rest)
        if not problem and not utterance.startswith(f"{chapter.speaker}-{chapter.chapter}-"):
            problem = f"not an utterance of chapter {chapter.speaker}-{chapter.chapter}"
        if not problem and utterance in self.seen:
            problem = f"listed again (first on {self.seen[utterance]})"
        if problem:
            self.found.bad_rows.append((where, f"{utterance}: {problem}"))
            # An empty transcript accounts for its file: the line is counted, the file is not missing.
            return utterance
        self.seen[utterance] = where
        path = chapter.audio.get(utterance)
        if path is None:
            missing = f"{chapter.folder}{utterance}{AUDIO_SUFFIX}"
            self.found.missing.append((missing, f"{where}: listed but the file is missing"))
            return utterance
        self.found.candidates.append(
            Candidate(
                origin="/".join(path.split("/")[-4:]),  # <subset>/...: the same from a folder or an archive
                label="",
                split=split_of(chapter.subset),
                group=speaker_group(chapter.speaker, path),
                name=utterance + AUDIO_SUFFIX,
                read=chapter.tree.reader(path),
                transcription=transcription,
                speaker=chapter.speaker,
            )
        )
        return utterance


def _chapters(tree: Tree, files: list[str]) -> list[_Chapter]:
    """Every ``<subset>/<speaker>/<chapter>/`` folder holding a transcript or an utterance."""
    chapters: dict[str, _Chapter] = {}
    for path in files:
        parts = path.split("/")
        if len(parts) < 4 or not _SUBSET.fullmatch(parts[-4]):
            continue
        subset, speaker, number, file = parts[-4:]
        if unsafe_file_name(speaker, "speaker") or unsafe_file_name(number, "chapter"):
            continue  # not a name LibriSpeech gives; never staged
        folder = path[: -len(file)]
        chapter = chapters.setdefault(folder, _Chapter(tree, folder, subset, speaker, number))
        if file == f"{speaker}-{number}{TRANSCRIPT_SUFFIX}":
            chapter.transcript = path
        elif file.endswith(AUDIO_SUFFIX):
            chapter.audio[file[: -len(AUDIO_SUFFIX)]] = path
    return list(chapters.values())
