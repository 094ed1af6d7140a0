"""Your own clips: a label/clip tree (local or S3), or a CSV of path,label[,split]; multi-label and speech
(``--task asr``): a folder with a metadata file (see listing)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from common import audio, contract

from .. import LISTED_TASKS, SPLITS, StagingError
from ..stores import LocalTree, S3Tree, Tree, is_s3, s3_client, s3_reader, split_s3
from .common import (
    Candidate,
    Reader,
    SourceOptions,
    SourceSet,
    check_label,
    read_csv,
    unsafe_file_name,
)
from .listing import listed_folder

FOLDER_COLUMNS = ("path", "label")  # and an optional "split"


def folder(options: SourceOptions) -> SourceSet:
    """``label/clip.wav`` or ``split/label/clip.wav`` trees (local or S3), or a CSV of path,label[,split];
    with ``--task multilabel`` or ``--task asr``, a folder whose metadata file lists the clips."""
    url = options.source_url
    if options.task in LISTED_TASKS:
        if not url:
            raise StagingError(
                f"the folder source with --task {options.task} needs --source-url: a directory or "
                f"s3://bucket/prefix/ holding {contract.METADATA_FILE}"
            )
        return listed_folder(url, options.task)
    if not url:
        raise StagingError(
            "the folder source needs --source-url: a directory, s3://bucket/prefix/, "
            "or a CSV of path,label[,split]"
        )
    if url.lower().endswith(".csv"):
        return _from_csv(url)
    tree: Tree = S3Tree(s3_client(), url) if is_s3(url) else LocalTree(Path(url).expanduser())
    return _from_tree(tree)


def _from_tree(tree: Tree) -> SourceSet:
    files, refused = tree.files()
    found = SourceSet(title=f"folder {tree.url}", candidates=[], refused=refused)
    audio_files = [f for f in files if f.lower().endswith(audio.AUDIO_EXTENSIONS)]
    if not audio_files:
        raise StagingError(
            f"{tree.url} has no audio files ({', '.join(audio.AUDIO_EXTENSIONS)}); "
            "expected label/clip.wav or train/label/clip.wav"
        )
    tops = {f.split("/", 1)[0] for f in audio_files if "/" in f}
    by_split = bool(tops) and tops <= set(SPLITS)
    for path in audio_files:
        parts = path.split("/")
        depth = 3 if by_split else 2
        if len(parts) < depth:
            found.missing.append((path, "not inside a label folder"))
            continue
        split, label = (parts[0], parts[1]) if by_split else (None, parts[0])
        # Names come from the source as they are (an S3 key may hold '..'); only plain ones are staged.
        refusal = unsafe_file_name(label, "label folder") or unsafe_file_name(parts[-1], "file name")
        if refusal:
            found.refused.append((path, refusal))
            continue
        found.candidates.append(
            Candidate(
                origin=path, label=label, split=split, group=path, name=parts[-1], read=tree.reader(path)
            )
        )
    ignored = len(files) - len(audio_files)
    if ignored:
        found.notes.append(f"{ignored} file(s) that are not audio ignored")
    found.notes.append(
        "splits from the train/validation/test folders" if by_split else "labels from folder names"
    )
    return found


def _from_csv(url: str) -> SourceSet:
    expected = "columns path,label[,split] (split: train, validation or test)"
    if is_s3(url):
        client = s3_client()
        bucket, key = split_s3(url)
        try:
            text = s3_reader(client, bucket, key)().decode("utf-8")
        except client.exceptions.NoSuchKey:
            raise StagingError(f"{url}: no such object") from None
        base = url.rsplit("/", 1)[0]
    else:
        csv_path = Path(url).expanduser()
        if not csv_path.is_file():
            raise StagingError(f"{url}: no such file")
        text, base = csv_path.read_bytes().decode("utf-8", errors="strict"), str(csv_path.parent)
    rows = read_csv(text, url, FOLDER_COLUMNS, expected)
    resolve = _Resolver(base)
    found = SourceSet(title=f"CSV {url}", candidates=[])
    for number, row in enumerate(rows, start=2):
        where = f"{url} line {number}"
        if not row["path"]:
            raise StagingError(f"{where}: empty path; {expected}")
        split = row.get("split") or None
        if split is not None and split not in SPLITS:
            raise StagingError(f"{where}: split {split!r} is not one of {', '.join(SPLITS)} (or empty)")
        name = PurePosixPath(row["path"]).name
        refusal = unsafe_file_name(name, "file name")
        if refusal:
            found.refused.append((row["path"], f"line {number}: {refusal}"))
            continue
        found.candidates.append(
            Candidate(
                origin=row["path"],
                label=check_label(row["label"], where),
                split=split,
                group=row["path"],
                name=name,
                read=resolve(row["path"]),
            )
        )
    return found


class _Resolver:
    """CSV paths: s3:// URIs, absolute local paths, or paths relative to the CSV's folder."""

    def __init__(self, base: str) -> None:
        self.base = base
        self._client: object | None = None

    def _s3(self) -> object:
        if self._client is None:
            self._client = s3_client()
        return self._client

    def __call__(self, path: str) -> Reader:
        if is_s3(path):
            return s3_reader(self._s3(), *split_s3(path))
        if is_s3(self.base):
            bucket, prefix = split_s3(self.base)
            return s3_reader(self._s3(), bucket, f"{prefix}/{path}".lstrip("/"))
        target = Path(path) if Path(path).is_absolute() else Path(self.base) / path
        return target.read_bytes
