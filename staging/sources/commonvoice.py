"""Common Voice: a release's clips with their sentences and speakers, in the release's own splits.

A release (one locale, downloaded by hand from commonvoice.mozilla.org after accepting its terms) is a
``.tar.gz`` holding ``cv-corpus-<version>/<locale>/`` with ``clips/*.mp3`` and tab-separated tables;
``train.tsv``, ``dev.tsv`` and ``test.tsv`` are its speaker-disjoint splits (train -> train, dev ->
validation, test -> test), each with a header naming ``client_id`` (the speaker), ``path`` (a file name in
``clips/``) and ``sentence`` (the transcription) among other columns, which are ignored. The tables are
written without quoting, so they are read with none (a quote is part of a sentence). Clips of the other
tables (validated-only, other, invalidated) are not staged.

A row that cannot be staged is skipped and counted, never fatal: a ``path`` that is not a plain file name
(``../x``, an absolute path: refused, never followed), a clip missing from ``clips/`` (missing), an empty
sentence, a short or long row, or a clip listed again (bad rows).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path, PurePosixPath

from common import audio

from .. import StagingError
from ..stores import LocalTree, S3Tree, Tree, is_s3, s3_client
from .common import (
    Candidate,
    SourceOptions,
    SourceSet,
    cached_archive,
    speaker_group,
    speaker_of,
    transcription_of,
    unsafe_file_name,
)
from .speech import archive_name, is_archive, unpacked

CV_SPLITS = {"train.tsv": "train", "dev.tsv": "validation", "test.tsv": "test"}
CV_CLIPS = "clips"
CV_SPEAKER, CV_PATH, CV_SENTENCE = "client_id", "path", "sentence"
CV_COLUMNS = (CV_SPEAKER, CV_PATH, CV_SENTENCE)
EXPECTED = f"a tab-separated header naming {', '.join(CV_COLUMNS)} (a Common Voice release's table)"


def commonvoice(options: SourceOptions) -> SourceSet:
    """The clips of a release's train.tsv, dev.tsv and test.tsv, with their sentences and speakers."""
    url = options.source_url
    if not url:
        raise StagingError(
            "the commonvoice source needs --source-url: a Common Voice release's folder (clips/, "
            "train.tsv, dev.tsv, test.tsv) or its .tar.gz (a path, http(s):// or s3:// URL); releases "
            "are downloaded from commonvoice.mozilla.org after accepting their terms"
        )
    refused: list[tuple[str, str]] = []
    tree: Tree
    if is_archive(url):
        archive = cached_archive(archive_name(url), url, options, "commonvoice")
        folder, refused = unpacked(archive, options, "commonvoice", _needed)
        tree, title = LocalTree(folder), f"Common Voice {archive.name}"
    else:
        tree = S3Tree(s3_client(), url) if is_s3(url) else LocalTree(Path(url).expanduser())
        title = f"Common Voice {tree.url}"
    files, links = tree.files()
    root = _release_root(files, tree.url)
    found = SourceSet(title=title, candidates=[], refused=refused)
    reader = _Tables(tree, root, set(files), dict(links), found)
    for table, split in CV_SPLITS.items():
        if root + table in reader.present:
            reader.read(table, split)
        else:
            found.notes.append(f"{root + table} is missing: no {split} clips from it")
    clips = [f for f in files if f.startswith(root + CV_CLIPS + "/")]
    unlisted = len(clips) - len(reader.first_seen.keys() & set(clips))
    if unlisted:
        found.notes.append(
            f"{unlisted} clip(s) in {root}{CV_CLIPS}/ not in {', '.join(CV_SPLITS)} (other tables): ignored"
        )
    found.notes.append(
        "splits from the release: train.tsv -> train, dev.tsv -> validation, test.tsv -> test; "
        f"the speaker is {CV_SPEAKER}"
    )
    return found


def _needed(name: str) -> bool:
    """What an archive's unpacking keeps: the split tables and the clips."""
    parts = name.split("/")
    return parts[-1] in CV_SPLITS or (len(parts) >= 2 and parts[-2] == CV_CLIPS)


def _release_root(files: list[str], url: str) -> str:
    """The folder (``""`` or ``cv-corpus-<v>/<locale>/``) holding the split tables; one, or an error."""
    roots = sorted({f[: -len(PurePosixPath(f).name)] for f in files if PurePosixPath(f).name in CV_SPLITS})
    if not roots:
        raise StagingError(
            f"{url} has no {', '.join(CV_SPLITS)}; expected a Common Voice release (a locale's folder "
            f"with {CV_CLIPS}/ and its .tsv tables)"
        )
    if len(roots) > 1:
        shown = ", ".join(r or "./" for r in roots[:3]) + (", ..." if len(roots) > 3 else "")
        raise StagingError(
            f"{url} holds several Common Voice releases or locales ({shown}); point --source-url at one"
        )
    return roots[0]


class _Tables:
    """Reads the split tables row by row into candidates, and every unusable row into its list."""

    def __init__(
        self, tree: Tree, root: str, present: set[str], links: dict[str, str], found: SourceSet
    ) -> None:
        self.tree, self.root, self.present, self.links, self.found = tree, root, present, links, found
        self.first_seen: dict[str, str] = {}  # clip path -> the row that listed it

    def read(self, table: str, split: str) -> None:
        where_table = self.root + table
        header, rows = _read_tsv(self.tree.reader(where_table)(), where_table)
        for number, cells in rows:
            where = f"{where_table} line {number}"
            if len(cells) != len(header):
                self.found.bad_rows.append(
                    (where, f"{len(cells)} field(s) where the header has {len(header)}; expected {EXPECTED}")
                )
                continue
            self.row(dict(zip(header, cells, strict=True)), where, split)

    def row(self, row: dict[str, str], where: str, split: str) -> None:
        name = row[CV_PATH]
        refusal = unsafe_file_name(name, CV_PATH)
        if refusal:
            self.found.refused.append((name, f"{where}: {refusal}"))
            return
        path = f"{self.root}{CV_CLIPS}/{name}"
        transcription, problem = transcription_of(row[CV_SENTENCE])
        speaker, speaker_problem = speaker_of(row[CV_SPEAKER])
        problem = problem or speaker_problem
        if not problem and not name.lower().endswith(audio.AUDIO_EXTENSIONS):
            problem = f"not an audio file (extensions: {', '.join(audio.AUDIO_EXTENSIONS)})"
        if not problem and path in self.first_seen:
            problem = f"listed again (first on {self.first_seen[path]})"
        if problem:
            self.found.bad_rows.append((where, f"{CV_PATH} {name!r}: {problem}"))
            return
        self.first_seen[path] = where
        if path in self.links:
            self.found.refused.append((path, f"{where}: {self.links[path]}"))
        elif path not in self.present:
            self.found.missing.append((path, f"{where}: listed but not in {CV_CLIPS}/"))
        else:
            self.found.candidates.append(
                Candidate(
                    origin=path[len(self.root) :],  # the same for the release's folder, archive or parent
                    label="",
                    split=split,
                    group=speaker_group(speaker, path),
                    name=name,
                    read=self.tree.reader(path),
                    transcription=transcription,
                    speaker=speaker,
                )
            )


def _read_tsv(data: bytes, where: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the (line, cells) of each non-blank row of a table written without quoting."""
    try:
        lines = data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise StagingError(f"{where} is not UTF-8 text; expected {EXPECTED}") from err
    reader = csv.reader(io.StringIO("\n".join(lines)), delimiter="\t", quoting=csv.QUOTE_NONE)
    try:
        header = [cell.strip() for cell in next(reader, [])]
        rows = [(reader.line_num, [cell.strip() for cell in cells]) for cells in reader if any(cells)]
    except csv.Error as err:
        raise StagingError(f"{where} is not a readable table ({err}); expected {EXPECTED}") from err
    missing = [c for c in CV_COLUMNS if c not in header]
    if missing:
        raise StagingError(
            f"{where} has no {', '.join(repr(c) for c in missing)} column; its columns are "
            f"{', '.join(header) or 'none'}; expected {EXPECTED}"
        )
    return header, rows
