"""The three sources (ESC-50, FSD50K, your own folder) as lists of candidate clips with labels and splits.

URLs and archive layouts are constants at the top, so a mirror or a new release is a one-line change
(or ``--source-url`` at run time).
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .. import audio
from . import SPLITS, StagingError
from .fetch import Log, fetch
from .splitzip import MultiPartZip, disk_count, part_paths
from .stores import LocalTree, S3Tree, Tree, is_s3, s3_client, s3_reader, split_s3, unsafe_name

# ESC-50 (https://github.com/karolpiczak/ESC-50): 2,000 five-second clips, 50 classes, 5 folds. The
# archive's top folder is "ESC-50-master/"; it is found from the metadata file, not assumed.
ESC50_URL = "https://github.com/karolpiczak/ESC-50/archive/refs/heads/master.zip"
ESC50_META = "meta/esc50.csv"
ESC50_AUDIO = "audio/"
ESC50_COLUMNS = ("filename", "fold", "category", "esc10", "src_file")
ESC50_FOLDS = (1, 2, 3, 4, 5)

# FSD50K (https://zenodo.org/records/4060432): split zips (".z01" … + ".zip") and the ground truth.
FSD50K_BASE_URL = "https://zenodo.org/records/4060432/files"
FSD50K_GROUND_TRUTH = "FSD50K.ground_truth.zip"  # FSD50K.ground_truth/{dev,eval}.csv
FSD50K_DEV_AUDIO = "FSD50K.dev_audio.zip"  # FSD50K.dev_audio/<fname>.wav, parts .z01-.z05
FSD50K_EVAL_AUDIO = "FSD50K.eval_audio.zip"  # FSD50K.eval_audio/<fname>.wav, part .z01
FSD50K_DEV_COLUMNS = ("fname", "labels", "split")  # also "mids"
FSD50K_EVAL_COLUMNS = ("fname", "labels")
FSD50K_SPLITS = {"train": "train", "val": "validation"}

FOLDER_COLUMNS = ("path", "label")  # and an optional "split"

Reader = Callable[[], bytes]


@dataclass(frozen=True)
class Candidate:
    """A clip a source offers: where it is, its label, and its split when the source fixes one."""

    origin: str  # relative to the source, so the manifest reads the same on every machine
    label: str
    split: str | None
    group: str  # clips of one group (e.g. one source recording) land in the same split
    name: str  # file name under <split>/<label>/
    read: Reader = field(compare=False, repr=False)


@dataclass
class SourceSet:
    """What a source offers, plus what it left out before any audio was read."""

    title: str
    candidates: list[Candidate]
    left_out: Counter[tuple[str, str]] = field(default_factory=Counter)  # (reason, split) -> clips
    missing: list[tuple[str, str]] = field(default_factory=list)  # (origin, reason)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (origin, reason): unsafe name or link
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SourceOptions:
    source_url: str | None
    cache_dir: Path
    sha256: dict[str, str]  # archive file name (or "" for the only one) -> pinned hex digest
    progress: bool
    log: Log
    fold: int = 5
    esc10: bool = False
    classes: tuple[str, ...] | None = None


def read_csv(text: str, where: str, required: Iterable[str], expected: str) -> list[dict[str, str]]:
    """Rows of a CSV with a header; errors name the file, the row and what was expected."""
    try:
        reader = csv.DictReader(io.StringIO(text))
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in required if c not in columns]
        if not columns:
            raise StagingError(f"{where} is empty; expected a header row with {expected}")
        if missing:
            raise StagingError(
                f"{where} has no {', '.join(repr(c) for c in missing)} column; "
                f"its columns are {', '.join(columns)}; expected {expected}"
            )
        reader.fieldnames = columns
        rows = []
        for row in reader:
            if None in row or any(value is None for value in row.values()):
                extra = row.pop(None, None) or []
                fields = sum(value is not None for value in row.values()) + len(extra)
                raise StagingError(
                    f"{where} line {reader.line_num}: {fields} field(s) where the header has "
                    f"{len(columns)}; expected {expected}"
                )
            rows.append({key: value.strip() for key, value in row.items()})
        return rows
    except csv.Error as err:
        raise StagingError(f"{where} is not a valid CSV ({err}); expected {expected}") from err
    except UnicodeDecodeError as err:
        raise StagingError(f"{where} is not UTF-8 text; expected a CSV with {expected}") from err


def check_label(label: str, where: str) -> str:
    """A label becomes a folder name: it must be one plain path segment."""
    reason = unsafe_name(label)
    if reason:
        raise StagingError(f"{where}: label {label!r} cannot be a folder name ({reason}); rename it")
    return label


def unsafe_file_name(name: str, kind: str) -> str | None:
    """Why a source's file name cannot name a staged clip, or None; only a plain name may reach the output."""
    reason = unsafe_name(name)
    return f"{kind} {name!r} is not a plain file name: {reason}" if reason else None


def unsafe_member(name: str) -> str | None:
    """Why an archive member's name is not a relative path inside the archive, or None."""
    if name.startswith("/") or "\\" in name or (name[:1].isalpha() and name[1:2] == ":"):
        return f"archive member {name!r} is absolute or holds a drive letter or backslash"
    if ".." in name.split("/"):
        return f"archive member {name!r} climbs out of the archive ('..')"
    return None


def _archive(name: str, url: str | None, options: SourceOptions, cache: str) -> Path:
    pinned = options.sha256.get(name) or options.sha256.get("")
    return fetch(
        url or name,
        options.cache_dir / cache,
        name=name,
        expected_sha256=pinned,
        progress=options.progress,
        log=options.log,
    )


def _open_zip(path: Path, options: SourceOptions) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        hint = "check --source-url"
        if path.is_relative_to(options.cache_dir):
            # A download that ended early without an error is checksummed as it is; drop it.
            path.unlink()
            path.with_name(path.name + ".sha256").unlink(missing_ok=True)
            hint = "removed it from the cache; run again to download it afresh, or check --source-url"
        raise StagingError(f"{path.name} is not a zip archive ({err}); {hint}") from err


# --- ESC-50 -----------------------------------------------------------------------------------------


def esc50(options: SourceOptions) -> SourceSet:
    """Folds to splits: ``--fold`` (default 5) is ``test``; the rest train (validation carved later)."""
    if options.fold not in ESC50_FOLDS:
        raise StagingError(f"--fold {options.fold} is not an ESC-50 fold; use 1 to 5")
    archive = _open_zip(
        _archive("ESC-50-master.zip", options.source_url or ESC50_URL, options, "esc50"), options
    )
    path = Path(str(archive.filename))
    names = set(archive.namelist())
    meta = next((n for n in sorted(names) if n.endswith(ESC50_META)), None)
    if meta is None:
        raise StagingError(f"{path.name} has no {ESC50_META}; is it the ESC-50 archive?")
    root = meta[: -len(ESC50_META)]
    expected = "the ESC-50 columns filename,fold,target,category,esc10,src_file,take"
    rows = read_csv(archive.read(meta).decode("utf-8"), meta, ESC50_COLUMNS, expected)
    found = SourceSet(title="ESC-50" + (" (ESC-10 subset)" if options.esc10 else ""), candidates=[])
    for number, row in enumerate(rows, start=2):
        if options.esc10 and row["esc10"].lower() != "true":
            continue
        try:
            fold = int(row["fold"])
        except ValueError:
            raise StagingError(f"{meta} line {number}: fold {row['fold']!r} is not a number") from None
        member = root + ESC50_AUDIO + row["filename"]
        origin = member
        refusal = unsafe_file_name(row["filename"], "filename") or unsafe_member(member)
        if refusal:
            found.refused.append((origin, refusal))
            continue
        if member not in names:
            found.missing.append((origin, "listed in the metadata but missing from the archive"))
            continue
        found.candidates.append(
            Candidate(
                origin=origin,
                label=check_label(row["category"], f"{meta} line {number}"),
                split="test" if fold == options.fold else None,
                group=row["src_file"] or row["filename"],
                name=row["filename"],
                read=_zip_reader(archive, member),
            )
        )
    found.notes.append(
        f"fold {options.fold} is the test split; folds {_others(options.fold)} train/validation"
    )
    return found


def _others(fold: int) -> str:
    return ",".join(str(f) for f in ESC50_FOLDS if f != fold)


def _zip_reader(archive: zipfile.ZipFile, member: str) -> Reader:
    def read() -> bytes:
        return archive.read(member)

    return read


# --- FSD50K -----------------------------------------------------------------------------------------


def fsd50k(options: SourceOptions) -> SourceSet:
    """Dev ``train``/``val`` and ``eval`` from the ground truth; single-class clips only (see map_labels)."""
    base = options.source_url or FSD50K_BASE_URL

    def get(name: str) -> Path:
        if base.startswith(("http://", "https://", "s3://")):
            return _archive(name, base.rstrip("/") + "/" + name, options, "fsd50k")
        return _archive(name, str(Path(base).expanduser() / name), options, "fsd50k")

    if "" in options.sha256:
        raise StagingError("fsd50k downloads several archives; pin each one with --sha256 FILE=HEX")
    truth = _open_zip(get(FSD50K_GROUND_TRUTH), options)
    dev_rows = _fsd_rows(truth, "dev.csv", FSD50K_DEV_COLUMNS)
    eval_rows = _fsd_rows(truth, "eval.csv", FSD50K_EVAL_COLUMNS)

    clips: list[tuple[str, str, frozenset[str], str]] = []  # (archive, fname, labels, split)
    for number, row in enumerate(dev_rows, start=2):
        split = FSD50K_SPLITS.get(row["split"])
        if split is None:
            raise StagingError(f"dev.csv line {number}: split {row['split']!r} is not train or val")
        clips.append((FSD50K_DEV_AUDIO, row["fname"], _labels(row["labels"]), split))
    clips += [(FSD50K_EVAL_AUDIO, row["fname"], _labels(row["labels"]), "test") for row in eval_rows]

    vocabulary = {label for _, _, labels, _ in clips for label in labels}
    notes: list[str] = []
    if options.classes:
        unknown = sorted(set(options.classes) - vocabulary)
        if unknown:
            raise StagingError(
                f"--classes: {', '.join(unknown)} not in FSD50K's labels "
                f"(e.g. {', '.join(sorted(vocabulary)[:5])})"
            )
        classes = set(options.classes)
    else:
        classes, merged = leaf_labels([labels for _, _, labels, _ in clips])
        for alias, kept in sorted(merged.items()):
            if kept in classes:
                notes.append(f"{alias} is on exactly the clips {kept} is on; they are one class, {kept}")

    found = SourceSet(title="FSD50K", candidates=[], notes=notes)
    archives: dict[str, MultiPartZip] = {}
    for archive_name, fname, labels, split in clips:
        refusal = unsafe_file_name(f"{fname}.wav", "file name")
        if refusal:
            found.refused.append((f"{archive_name}:{fname}.wav", refusal))
            continue
        label, reason = map_labels(labels, classes)
        if label is None:
            found.left_out[(reason, split)] += 1
            continue
        if archive_name not in archives:
            last = get(archive_name)  # first: its end record says how many parts there are
            earlier = [get(part.name) for part in part_paths(last, disk_count(last))[:-1]]
            archives[archive_name] = MultiPartZip([*earlier, last])
        archive = archives[archive_name]
        member = _member(archive, archive_name, fname)
        if member is not None and (refusal := unsafe_member(member)):
            found.refused.append((member, refusal))
            continue
        if member is None:
            found.missing.append(
                (f"{archive_name}:{fname}.wav", "in the ground truth but not in the archive")
            )
            continue
        found.candidates.append(
            Candidate(
                origin=member,
                label=check_label(label, f"FSD50K label {label!r}"),
                split=split,
                group=fname,
                name=PurePosixPath(member).name,
                read=_split_zip_reader(archive, member),
            )
        )
    rule = "--classes" if options.classes else f"the {len(classes)} leaf labels"
    found.notes.append(f"a clip is kept when exactly one of its labels is among {rule}")
    return found


def _fsd_rows(truth: zipfile.ZipFile, name: str, required: tuple[str, ...]) -> list[dict[str, str]]:
    member = next((n for n in sorted(truth.namelist()) if PurePosixPath(n).name == name), None)
    if member is None:
        raise StagingError(f"{FSD50K_GROUND_TRUTH} has no {name}; is it FSD50K's ground truth?")
    return read_csv(truth.read(member).decode("utf-8"), member, required, ",".join(required))


def _labels(field_value: str) -> frozenset[str]:
    return frozenset(label.strip() for label in field_value.split(",") if label.strip())


def _member(archive: MultiPartZip, archive_name: str, fname: str) -> str | None:
    folder = archive_name.removesuffix(".zip")
    for candidate in (f"{folder}/{fname}.wav", f"{fname}.wav"):
        if candidate in archive.members:
            return candidate
    return None


def _split_zip_reader(archive: MultiPartZip, member: str) -> Reader:
    def read() -> bytes:
        return archive.read(member)

    return read


def leaf_labels(label_sets: list[frozenset[str]]) -> tuple[set[str], dict[str, str]]:
    """Labels that are no other label's ancestor, with the hierarchy recovered from the ground truth.

    FSD50K propagates every label up the AudioSet ontology (a "Bark" clip also carries "Dog",
    "Domestic_animals_and_pets" and "Animal"), so A is an ancestor of B when every clip with B also
    has A and A has more clips. Two labels on exactly the same clips cannot be told apart (both names
    fit every one of those clips): they become one class named after the alphabetically first, and the
    second value maps each merged label to that name.
    """
    count: Counter[str] = Counter()
    together: Counter[tuple[str, str]] = Counter()
    for labels in label_sets:
        count.update(labels)
        together.update((b, a) for b in labels for a in labels if a != b)
    implied = [(b, a) for (b, a), n in together.items() if n == count[b]]  # every clip with b has a
    ancestors = {a for b, a in implied if count[a] > count[b]}
    merged = {a: b for b, a in implied if count[a] == count[b] and b < a}
    for label, kept in list(merged.items()):
        while kept in merged:
            kept = merged[kept]
        merged[label] = kept
    return set(count) - ancestors - set(merged), merged


def map_labels(labels: frozenset[str], classes: set[str]) -> tuple[str | None, str]:
    """The clip's one class, or None and why it is left out."""
    hits = labels & classes
    if len(hits) == 1:
        return next(iter(hits)), ""
    if hits:
        return None, "labels in several classes"
    return None, "no label among the classes"


# --- your own folder --------------------------------------------------------------------------------


def folder(options: SourceOptions) -> SourceSet:
    """``label/clip.wav`` or ``split/label/clip.wav`` trees (local or S3), or a CSV of path,label[,split]."""
    url = options.source_url
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


SOURCES: dict[str, Callable[[SourceOptions], SourceSet]] = {
    "esc50": esc50,
    "fsd50k": fsd50k,
    "folder": folder,
}
