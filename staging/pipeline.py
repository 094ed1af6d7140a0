"""Validate, de-duplicate, split, and sync candidate clips to a destination with a manifest.

Idempotency comes from the manifest: a clip whose path is in the destination's manifest with the same
sha256 (and whose file is there with the same size) is not written again, so a rerun writes nothing.
The split folders always end up equal to the manifest: training reads every file in them, so a file
left from an earlier run with other splits would put one clip in two splits.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

from tqdm import tqdm

from common import audio

from . import MANIFEST, SPLITS, StagingError
from .sources import Candidate, SourceSet
from .stores import Destination

_SPLIT_PRIORITY = {"test": 0, "validation": 1, "train": 2, None: 3}


@dataclass(frozen=True)
class CheckedClip:
    """A candidate that decoded, with its content hash and what the audio really holds."""

    candidate: Candidate
    sha256: str
    size: int
    info: audio.AudioInfo
    split: str = ""
    path: str = ""

    def manifest_entry(self) -> dict[str, object]:
        return {
            "path": self.path,
            "label": self.candidate.label,
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


@dataclass
class Report:
    """Everything the summary says, for people (``render``) and for ``--report`` files and tests."""

    title: str
    destination: str
    clips: list[CheckedClip] = field(default_factory=list)
    corrupt: list[tuple[str, str]] = field(default_factory=list)  # (origin, reason)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (origin, reason): unsafe name or link
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

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed or self.manifest_changed)

    def counts(self) -> dict[str, Counter[str]]:
        """Clips per label per split."""
        per_label: dict[str, Counter[str]] = defaultdict(Counter)
        for clip in self.clips:
            per_label[clip.candidate.label][clip.split] += 1
        return dict(per_label)

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.title,
            "destination": self.destination,
            "counts": {label: dict(c) for label, c in sorted(self.counts().items())},
            "corrupt": [{"source": o, "reason": r} for o, r in self.corrupt],
            "refused": [{"source": o, "reason": r} for o, r in self.refused],
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


def _share(total: int, fraction: float) -> int:
    """round(total * fraction), but at least one clip when the fraction is positive and two clips exist."""
    if fraction <= 0 or total < 2:
        return 0
    return min(total - 1, max(1, round(total * fraction)))


def place(clips: Sequence[CheckedClip]) -> list[CheckedClip]:
    """``<split>/<label>/<name>``; names that would collide get a short content hash."""
    paths = [f"{c.split}/{c.candidate.label}/{c.candidate.name}" for c in clips]
    seen = Counter(paths)
    placed = []
    for clip, path in zip(clips, paths, strict=True):
        if seen[path] > 1:
            name = PurePosixPath(clip.candidate.name)
            path = f"{clip.split}/{clip.candidate.label}/{name.stem}-{clip.sha256[:12]}{name.suffix}"
        placed.append(replace(clip, path=path))
    if len({c.path for c in placed}) != len(placed):
        raise StagingError("two different clips have the same name and content hash; rename one")
    return sorted(placed, key=lambda c: c.path)


def render_manifest(clips: Sequence[CheckedClip]) -> str:
    return "".join(json.dumps(clip.manifest_entry()) + "\n" for clip in clips)


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


def sync(clips: Sequence[CheckedClip], destination: Destination, settings: Settings, report: Report) -> None:
    """Removes what left the split folders, writes what is new or changed, then the manifest, last."""
    existing = destination.list()
    old_text = destination.read_text(MANIFEST)
    recorded = parse_manifest(old_text)
    todo = [c for c in clips if not (recorded.get(c.path) == c.sha256 and existing.get(c.path) == c.size)]
    report.unchanged = len(clips) - len(todo)
    wanted = {c.path for c in clips}
    # Everything under a split folder that the new manifest does not list goes, whoever put it there.
    report.removed = sorted(p for p in existing if p.split("/", 1)[0] in SPLITS and p not in wanted)
    new_text = render_manifest(clips)
    report.manifest_changed = new_text != old_text
    report.dry_run = settings.dry_run
    if settings.dry_run:
        report.written = [c.path for c in todo]
        return
    if report.removed:
        # Before the writes: while a run is under way a clip may be missing, but never in two splits
        # (and a file or link where a new clip's folder goes is out of the way).
        destination.delete(report.removed)

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
    if report.manifest_changed:
        # Last, after every upload and removal: a reader who sees the new manifest sees exactly its
        # files, and an interrupted run leaves the old manifest, so the next run redoes the difference.
        destination.write(MANIFEST, new_text.encode("utf-8"))


def stage(
    source: SourceSet, destination: Destination, settings: Settings, log: Callable[[str], None]
) -> Report:
    """The whole flow for one source: validate, de-duplicate, split, place, sync."""
    report = Report(title=source.title, destination=destination.url, notes=list(source.notes))
    report.left_out = source.left_out
    log(f"{source.title}: validating {len(source.candidates)} clips")
    clips, corrupt, seconds = validate(source.candidates, settings)
    report.corrupt = sorted(source.missing + corrupt)
    report.refused = sorted(source.refused)
    report.validated, report.validation_seconds = len(source.candidates), seconds
    pairs: list[tuple[CheckedClip, CheckedClip]] = []
    if not settings.keep_duplicates:
        clips, pairs = deduplicate(clips)
    if not clips:
        raise StagingError(
            f"{source.title}: no usable clips ({len(report.corrupt)} corrupt or missing, "
            f"{len(report.refused)} refused)"
        )
    clips = assign_splits(
        clips,
        validation_fraction=settings.validation_fraction,
        test_fraction=settings.test_fraction,
        seed=settings.seed,
    )
    clips, apart = one_split_per_content(clips)
    if settings.keep_duplicates:
        pairs = duplicate_groups(clips)
    if apart:
        report.notes.append(
            f"{len(apart)} copy(ies) dropped: their split differed from that of a copy with the same content"
        )
    pairs += apart
    report.duplicates = sorted((clip.candidate.origin, kept.candidate.origin) for clip, kept in pairs)
    report.clips = place(clips)
    log(f"{destination.url}: comparing with what is there")
    sync(report.clips, destination, settings, report)
    return report
