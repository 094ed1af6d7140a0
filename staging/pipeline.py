"""Validate, de-duplicate, split, and sync candidate clips to a destination with a manifest.

Idempotency comes from the manifest: a clip whose path is in the destination's manifest with the same
sha256 (and whose file is there with the same size) is not written again, so a rerun writes nothing.
The split folders always end up equal to the manifest: training reads every file in them, so a file
left from an earlier run with other splits would put one clip in two splits.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

from tqdm import tqdm

from common import audio, contract

from . import ASR, CLASSIFICATION, LISTED_TASKS, MANIFEST, MULTILABEL, SPLITS, StagingError
from .sources import Candidate, SourceSet
from .stores import Destination

_SPLIT_PRIORITY = {"test": 0, "validation": 1, "train": 2, None: 3}
NO_LABEL = "(no label)"  # the summary's row for multi-label clips without any label
UTTERANCES, SPEAKERS = "(utterances)", "(speakers)"  # the summary's rows of a speech dataset


@dataclass(frozen=True)
class CheckedClip:
    """A candidate that decoded, with its content hash and what the audio really holds."""

    candidate: Candidate
    sha256: str
    size: int
    info: audio.AudioInfo
    split: str = ""
    path: str = ""

    def manifest_entry(self, task: str = CLASSIFICATION) -> dict[str, object]:
        # A multi-label clip's labels are a list (maybe empty), a speech clip's transcription (and speaker,
        # when known) a string, under the names of the metadata files' columns.
        labels: dict[str, object]
        if task == MULTILABEL:
            labels = {contract.LABELS_COLUMN: list(self.candidate.all_labels)}
        elif task == ASR:
            labels = {contract.TRANSCRIPTION_COLUMN: self.candidate.transcription or ""}
            if self.candidate.speaker:
                labels[contract.SPEAKER_COLUMN] = self.candidate.speaker
        else:
            labels = {"label": self.candidate.label}
        return {
            "path": self.path,
            **labels,
            "split": self.split,
            "sha256": self.sha256,
            "size": self.size,
            "duration": round(self.info.duration, 6),
            "sample_rate": self.info.sample_rate,
            "channels": self.info.channels,
            "source": self.candidate.origin,
        }


@dataclass(frozen=True)
class Settings:
    validation_fraction: float
    test_fraction: float
    seed: int
    jobs: int
    max_duration: float | None
    keep_duplicates: bool
    dry_run: bool
    progress: bool
    task: str = CLASSIFICATION


@dataclass
class Report:
    """Everything the summary says, for people (``render``) and for ``--report`` files and tests."""

    title: str
    destination: str
    clips: list[CheckedClip] = field(default_factory=list)
    corrupt: list[tuple[str, str]] = field(default_factory=list)  # (origin, reason)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (origin, reason): unsafe name or link
    bad_rows: list[tuple[str, str]] = field(default_factory=list)  # (where, reason): unusable table rows
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (skipped origin, kept origin)
    left_out: Counter[tuple[str, str]] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    validated: int = 0
    validation_seconds: float = 0.0
    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)  # or, in a dry run, what would be
    manifest_changed: bool = False
    dry_run: bool = False
    task: str = CLASSIFICATION

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed or self.manifest_changed)

    def counts(self) -> dict[str, Counter[str]]:
        """Clips per label per split (a multi-label clip counts under each of its labels); a speech dataset,
        with no labels: its utterances, and its speakers when it names them, per split."""
        if self.task == ASR:
            rows = {UTTERANCES: self.split_totals()}
            speakers = {(c.split, c.candidate.speaker) for c in self.clips if c.candidate.speaker}
            if speakers:
                rows[SPEAKERS] = Counter(split for split, _ in speakers)
            return rows
        per_label: dict[str, Counter[str]] = defaultdict(Counter)
        for clip in self.clips:
            for label in clip.candidate.all_labels or (NO_LABEL,):
                per_label[label][clip.split] += 1
        return dict(per_label)

    def split_totals(self) -> Counter[str]:
        """Clips per split."""
        return Counter(clip.split for clip in self.clips)

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.title,
            "destination": self.destination,
            "counts": {label: dict(c) for label, c in sorted(self.counts().items())},
            "corrupt": [{"source": o, "reason": r} for o, r in self.corrupt],
            "refused": [{"source": o, "reason": r} for o, r in self.refused],
            # Only the tables of multi-label and speech sources have rows that are skipped, not fatal.
            **({"bad_rows": [{"row": w, "reason": r} for w, r in self.bad_rows]} if self.bad_rows else {}),
            "duplicates": [{"source": o, "same_as": k} for o, k in self.duplicates],
            "left_out": [
                {"reason": r, "split": s, "clips": n} for (r, s), n in sorted(self.left_out.items())
            ],
            "validated": self.validated,
            "validation_seconds": round(self.validation_seconds, 3),
            "written": len(self.written),
            "unchanged": self.unchanged,
            "removed": len(self.removed),
            "manifest_changed": self.manifest_changed,
            "dry_run": self.dry_run,
        }


def _bar(total: int, desc: str, unit: str, enabled: bool) -> tqdm:
    tty = sys.stderr.isatty()
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        disable=not enabled,
        mininterval=0.5 if tty else 30.0,
        file=sys.stderr,
    )


def validate(
    candidates: Sequence[Candidate], settings: Settings
) -> tuple[list[CheckedClip], list[tuple[str, str]], float]:
    """Reads, hashes and fully decodes every candidate, in parallel; corrupt ones are listed, not fatal."""

    def check(candidate: Candidate) -> CheckedClip | tuple[str, str]:
        try:
            data = candidate.read()
            # 600 s (or --max-duration), that much 48 kHz stereo, 16 channels: a small file may hold hours.
            info = audio.validate(data, limits=audio.Limits.default(settings.max_duration))
        except audio.AudioDecodeError as err:
            return candidate.origin, str(err)
        except Exception as err:  # one unreadable clip must not sink a 50,000-clip run
            return candidate.origin, f"could not read it ({type(err).__name__}: {err})"
        return CheckedClip(
            candidate=candidate, sha256=hashlib.sha256(data).hexdigest(), size=len(data), info=info
        )

    clips: list[CheckedClip] = []
    corrupt: list[tuple[str, str]] = []
    started = time.perf_counter()
    with (
        ThreadPoolExecutor(max_workers=settings.jobs) as pool,
        _bar(len(candidates), "validate", "clip", settings.progress) as bar,
    ):
        for outcome in pool.map(check, candidates):
            if isinstance(outcome, CheckedClip):
                clips.append(outcome)
            else:
                corrupt.append(outcome)
            bar.update(1)
    return clips, corrupt, time.perf_counter() - started


def deduplicate(
    clips: Sequence[CheckedClip],
) -> tuple[list[CheckedClip], list[tuple[CheckedClip, CheckedClip]]]:
    """One clip per content hash; the copy in a fixed test (then validation) split wins, so no split leaks."""
    by_hash: dict[str, list[CheckedClip]] = defaultdict(list)
    for clip in clips:
        by_hash[clip.sha256].append(clip)
    dropped = []
    keepers = set()
    for group in by_hash.values():
        keeper = min(group, key=lambda c: _SPLIT_PRIORITY[c.candidate.split])
        keepers.add(id(keeper))
        dropped += [(clip, keeper) for clip in group if clip is not keeper]
    kept = [clip for clip in clips if id(clip) in keepers]
    return kept, dropped


def duplicate_groups(clips: Sequence[CheckedClip]) -> list[tuple[CheckedClip, CheckedClip]]:
    """Pairs (clip, first clip with the same content), for reporting when duplicates are kept."""
    first: dict[str, CheckedClip] = {}
    pairs = []
    for clip in clips:
        if clip.sha256 in first:
            pairs.append((clip, first[clip.sha256]))
        else:
            first[clip.sha256] = clip
    return pairs


def one_split_per_content(
    clips: Sequence[CheckedClip],
) -> tuple[list[CheckedClip], list[tuple[CheckedClip, CheckedClip]]]:
    """Copies of one content stay in one split: test, else validation, else train; the others are dropped.

    After de-duplication there is one clip per content and nothing is dropped; with ``--keep-duplicates``
    the split assignment may put copies apart, and a copy in train would let training hear a test clip.
    Returns the kept clips and (dropped clip, kept clip in the chosen split) pairs.
    """
    home: dict[str, CheckedClip] = {}
    for clip in clips:
        best = home.get(clip.sha256)
        if best is None or _SPLIT_PRIORITY[clip.split] < _SPLIT_PRIORITY[best.split]:
            home[clip.sha256] = clip
    kept = [clip for clip in clips if clip.split == home[clip.sha256].split]
    dropped = [(clip, home[clip.sha256]) for clip in clips if clip.split != home[clip.sha256].split]
    return kept, dropped


def _rank(seed: int, group: str) -> str:
    return hashlib.sha256(f"{seed}\0{group}".encode()).hexdigest()


def assign_splits(
    clips: Sequence[CheckedClip], *, validation_fraction: float, test_fraction: float, seed: int
) -> list[CheckedClip]:
    """Clips without a fixed split go to train, validation or test, stratified by label and grouped.

    Within a label, groups are ordered by a hash of (seed, group) and the first ones fill the test and
    validation quotas, so the assignment is the same on every run and machine, and a clip added or
    removed moves at most a few others. Groups (ESC-50: the source recording) never straddle two splits.
    """
    open_by_label: dict[str, list[CheckedClip]] = defaultdict(list)
    for clip in clips:
        if clip.candidate.split is None:
            open_by_label[clip.candidate.label].append(clip)
    chosen: dict[int, str] = {}
    for members in open_by_label.values():
        groups: dict[str, list[CheckedClip]] = defaultdict(list)
        for clip in members:
            groups[clip.candidate.group].append(clip)
        want = {
            "test": _share(len(members), test_fraction),
            "validation": _share(len(members), validation_fraction),
        }
        have = Counter[str]()
        for group in sorted(groups, key=lambda g: _rank(seed, g)):
            split = next((s for s in ("test", "validation") if have[s] < want[s]), "train")
            have[split] += len(groups[group])
            for clip in groups[group]:
                chosen[id(clip)] = split
    return [replace(clip, split=clip.candidate.split or chosen[id(clip)]) for clip in clips]


def assign_speaker_splits(
    clips: Sequence[CheckedClip], *, validation_fraction: float, test_fraction: float, seed: int
) -> tuple[list[CheckedClip], list[str]]:
    """Speech clips without a fixed split go to train, validation or test, whole groups (speakers) at a time.

    A speech source groups each speaker's clips (a clip without a speaker is a group of its own), so no
    speaker is heard in two splits: a model scored on voices it trained on looks better than it is. A
    group's clips without a split follow its clips with one (its most common fixed split), so a split
    column naming some of a speaker's clips keeps the rest with them. The other groups are ordered by a
    hash of (seed, group), as ``assign_splits`` does, and fill the validation quota, then the test quota
    (whole groups, so a split may overshoot its share by part of one group); train always keeps at least
    one group, so with one speaker everything is train and the notes say that no held-out split could be
    made. Returns the clips with their splits and notes for the summary.
    """
    fixed: dict[str, Counter[str]] = defaultdict(Counter)
    for clip in clips:
        if clip.candidate.split is not None:
            fixed[clip.candidate.group][clip.candidate.split] += 1
    open_groups: dict[str, list[CheckedClip]] = defaultdict(list)
    for clip in clips:
        if clip.candidate.split is None and clip.candidate.group not in fixed:
            open_groups[clip.candidate.group].append(clip)
    chosen = {
        group: min(splits, key=lambda s: (-splits[s], SPLITS.index(s))) for group, splits in fixed.items()
    }
    total = sum(len(members) for members in open_groups.values())
    want = {"validation": _share(total, validation_fraction), "test": _share(total, test_fraction)}
    have = Counter[str]()
    train_is_fixed = "train" in chosen.values()  # a group the split column put in train
    ranked = sorted(open_groups, key=lambda g: _rank(seed, g))
    for index, group in enumerate(ranked):
        last_for_train = index == len(ranked) - 1 and not have["train"] and not train_is_fixed
        split = next((s for s in want if have[s] < want[s]), "train") if not last_for_train else "train"
        have[split] += len(open_groups[group])
        chosen[group] = split
    assigned = [replace(clip, split=clip.candidate.split or chosen[clip.candidate.group]) for clip in clips]
    return assigned, _speaker_notes(assigned, want, have, len(ranked))


def _speaker_notes(
    clips: Sequence[CheckedClip], want: dict[str, int], have: Counter[str], open_groups: int
) -> list[str]:
    """What the summary says about the speakers: why a held-out split asked for stayed empty, how many
    speakers each split has, and whether one is in two splits."""
    notes = [
        f"no {split} split: {open_groups} speaker(s) (or clips without one) had no split, and train keeps "
        "at least one; add speakers, or a split column"
        for split in ("validation", "test")
        if want[split] and not have[split]
    ]
    by_speaker: dict[str, set[str]] = defaultdict(set)
    for clip in clips:
        if clip.candidate.speaker:
            by_speaker[clip.candidate.speaker].add(clip.split)
    if by_speaker:
        per_split = Counter(split for splits in by_speaker.values() for split in splits)
        shared = sorted(speaker for speaker, splits in by_speaker.items() if len(splits) > 1)
        notes.append(
            f"{len(by_speaker)} speaker(s): "
            + ", ".join(f"{per_split[s]} in {s}" for s in SPLITS if per_split[s])
            + (
                f"; {len(shared)} in more than one split by the source's own splits (e.g. {shared[0]})"
                if shared
                else "; no speaker is in two splits"
            )
        )
    return notes


def _share(total: int, fraction: float) -> int:
    """round(total * fraction), but at least one clip when the fraction is positive and two clips exist."""
    if fraction <= 0 or total < 2:
        return 0
    return min(total - 1, max(1, round(total * fraction)))


def _folder(clip: CheckedClip, task: str) -> str:
    """Where a clip goes: ``<split>/<label>``, or ``<split>`` for a multi-label or speech dataset."""
    return clip.split if task in LISTED_TASKS else f"{clip.split}/{clip.candidate.label}"


def place(clips: Sequence[CheckedClip], task: str = CLASSIFICATION) -> list[CheckedClip]:
    """``<split>/<label>/<name>`` (multi-label, speech: ``<split>/<name>``); names that would collide (with
    each other, or with a split's metadata file) get a short content hash."""
    paths = [f"{_folder(c, task)}/{c.candidate.name}" for c in clips]
    seen = Counter(paths)
    if task in LISTED_TASKS:
        seen.update(f"{split}/{contract.METADATA_FILE}" for split in SPLITS)
    placed = []
    for clip, path in zip(clips, paths, strict=True):
        if seen[path] > 1:
            name = PurePosixPath(clip.candidate.name)
            path = f"{_folder(clip, task)}/{name.stem}-{clip.sha256[:12]}{name.suffix}"
        placed.append(replace(clip, path=path))
    if len({c.path for c in placed}) != len(placed):
        raise StagingError("two different clips have the same name and content hash; rename one")
    return sorted(placed, key=lambda c: c.path)


def render_manifest(clips: Sequence[CheckedClip], task: str = CLASSIFICATION) -> str:
    return "".join(json.dumps(clip.manifest_entry(task)) + "\n" for clip in clips)


def render_metadata(clips: Sequence[CheckedClip], task: str) -> dict[str, str]:
    """Each split's metadata file of a multi-label or speech dataset, by path: one row per clip, sorted by
    file name (relative to the split folder), with its labels joined by the separator (none: an empty
    cell), or its transcription and, when the dataset names any speaker, its speaker (unknown: empty)."""
    if task not in LISTED_TASKS:
        return {}
    header = [contract.FILE_NAME_COLUMN, contract.LABELS_COLUMN]
    with_speaker = task == ASR and any(clip.candidate.speaker for clip in clips)
    if task == ASR:
        header = [contract.FILE_NAME_COLUMN, contract.TRANSCRIPTION_COLUMN]
        header += [contract.SPEAKER_COLUMN] if with_speaker else []
    rows: dict[str, list[list[str]]] = defaultdict(list)
    for clip in clips:
        name = clip.path.removeprefix(f"{clip.split}/")
        if task == ASR:
            row = [name, clip.candidate.transcription or ""]
            row += [clip.candidate.speaker or ""] if with_speaker else []
        else:
            row = [name, contract.LABEL_SEPARATOR.join(clip.candidate.all_labels)]
        rows[clip.split].append(row)
    tables = {}
    for split, split_rows in sorted(rows.items()):
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(sorted(split_rows))
        tables[f"{split}/{contract.METADATA_FILE}"] = out.getvalue()
    return tables


def parse_manifest(text: str | None) -> dict[str, str]:
    """path -> sha256 from an existing manifest; an unreadable one counts as none (all is rewritten)."""
    found: dict[str, str] = {}
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            found[str(entry["path"])] = str(entry["sha256"])
        except (ValueError, KeyError, TypeError):
            return {}
    return found


def _stale_tables(tables: dict[str, str], existing: dict[str, int], destination: Destination) -> list[str]:
    """The metadata files that are missing or differ (a link in their place, size -1, always differs)."""
    return [
        path
        for path, text in tables.items()
        if existing.get(path) != len(text.encode("utf-8")) or destination.read_text(path) != text
    ]


def sync(clips: Sequence[CheckedClip], destination: Destination, settings: Settings, report: Report) -> None:
    """Removes what left the split folders, writes what is new or changed, then the split folders' metadata
    files (multi-label, speech), then the manifest, last."""
    existing = destination.list()
    old_text = destination.read_text(MANIFEST)
    recorded = parse_manifest(old_text)
    todo = [c for c in clips if not (recorded.get(c.path) == c.sha256 and existing.get(c.path) == c.size)]
    report.unchanged = len(clips) - len(todo)
    tables = render_metadata(clips, settings.task)
    stale = _stale_tables(tables, existing, destination)
    wanted = {c.path for c in clips} | set(tables)
    # Everything under a split folder that the new manifest does not list goes, whoever put it there.
    report.removed = sorted(p for p in existing if p.split("/", 1)[0] in SPLITS and p not in wanted)
    new_text = render_manifest(clips, settings.task)
    report.manifest_changed = new_text != old_text
    report.dry_run = settings.dry_run
    if settings.dry_run:
        report.written = [c.path for c in todo] + stale
        return
    if report.removed:
        # Before the writes: while a run is under way a clip may be missing, but never in two splits
        # (and a file or link where a new clip's folder goes is out of the way).
        destination.delete(report.removed)
    _write_clips(todo, destination, settings, report)
    for path in stale:
        # After the clips: a metadata file never lists a clip that is not there yet.
        destination.write(path, tables[path].encode("utf-8"))
        report.written.append(path)
    if report.manifest_changed:
        # Last, after every upload and removal: a reader who sees the new manifest sees exactly its
        # files, and an interrupted run leaves the old manifest, so the next run redoes the difference.
        destination.write(MANIFEST, new_text.encode("utf-8"))


def _write_clips(
    todo: Sequence[CheckedClip], destination: Destination, settings: Settings, report: Report
) -> None:
    def write(clip: CheckedClip) -> str:
        data = clip.candidate.read()
        if hashlib.sha256(data).hexdigest() != clip.sha256:
            raise StagingError(f"{clip.candidate.origin} changed while staging; run again")
        destination.write(clip.path, data)
        return clip.path

    with (
        ThreadPoolExecutor(max_workers=settings.jobs) as pool,
        _bar(len(todo), "write", "file", settings.progress and bool(todo)) as bar,
    ):
        for path in pool.map(write, todo):
            report.written.append(path)
            bar.update(1)


def stage(
    source: SourceSet, destination: Destination, settings: Settings, log: Callable[[str], None]
) -> Report:
    """The whole flow for one source: validate, de-duplicate, split, place, sync."""
    report = Report(
        title=source.title, destination=destination.url, notes=list(source.notes), task=settings.task
    )
    report.left_out = source.left_out
    log(f"{source.title}: validating {len(source.candidates)} clips")
    clips, corrupt, seconds = validate(source.candidates, settings)
    report.corrupt = sorted(source.missing + corrupt)
    report.refused = sorted(source.refused)
    report.bad_rows = list(source.bad_rows)
    report.validated, report.validation_seconds = len(source.candidates), seconds
    pairs: list[tuple[CheckedClip, CheckedClip]] = []
    if not settings.keep_duplicates:
        clips, pairs = deduplicate(clips)
    if not clips:
        bad = f", {len(report.bad_rows)} bad row(s)" if report.bad_rows else ""
        raise StagingError(
            f"{source.title}: no usable clips ({len(report.corrupt)} corrupt or missing, "
            f"{len(report.refused)} refused{bad})"
        )
    fractions = {"validation_fraction": settings.validation_fraction, "test_fraction": settings.test_fraction}
    if settings.task == ASR:
        clips, speaker_notes = assign_speaker_splits(clips, **fractions, seed=settings.seed)
        report.notes += speaker_notes
    else:
        clips = assign_splits(clips, **fractions, seed=settings.seed)
    clips, apart = one_split_per_content(clips)
    if settings.keep_duplicates:
        pairs = duplicate_groups(clips)
    if apart:
        report.notes.append(
            f"{len(apart)} copy(ies) dropped: their split differed from that of a copy with the same content"
        )
    pairs += apart
    report.duplicates = sorted((clip.candidate.origin, kept.candidate.origin) for clip, kept in pairs)
    report.clips = place(clips, settings.task)
    if settings.task == MULTILABEL:
        report.notes.append(
            f"multi-label layout: <split>/<clip>, each split's labels in <split>/{contract.METADATA_FILE}"
        )
    if settings.task == ASR:
        hours: defaultdict[str, float] = defaultdict(float)
        for clip in report.clips:
            hours[clip.split] += clip.info.duration / 3600
        report.notes.append(
            f"speech layout: <split>/<clip>, each split's transcriptions in <split>/{contract.METADATA_FILE}; "
            + ", ".join(f"{split} {hours[split]:.2f} h" for split in SPLITS if split in hours)
        )
    log(f"{destination.url}: comparing with what is there")
    sync(report.clips, destination, settings, report)
    return report
