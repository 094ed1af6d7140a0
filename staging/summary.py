"""The end-of-run summary: clips per class per split, what was skipped and why, what changed."""

from __future__ import annotations

from collections import Counter

from . import SPLITS
from .pipeline import Report

_LISTED = 20  # longer lists are cut, with a count of the rest (``--report`` has them all)


def render(report: Report) -> str:
    counts = report.counts()
    width = max([len("label"), len("total"), *(len(label) for label in counts)])
    header = f"{'label':<{width}}  " + "  ".join(f"{s:>10}" for s in (*SPLITS, "total"))
    lines = [f"{report.title} -> {report.destination}", header, "-" * len(header)]
    for label in sorted(counts):
        row = counts[label]
        cells = [row.get(s, 0) for s in SPLITS]
        lines.append(f"{label:<{width}}  " + "  ".join(f"{n:>10}" for n in (*cells, sum(cells))))
    lines.append("-" * len(header))
    # Clips, not label rows: a multi-label clip is in the row of each of its labels.
    totals = report.split_totals()
    cells = [totals.get(s, 0) for s in SPLITS]
    lines.append(f"{'total':<{width}}  " + "  ".join(f"{n:>10}" for n in (*cells, sum(cells))))
    lines.append("")
    lines += [f"note: {note}" for note in report.notes]
    rate = report.validated / report.validation_seconds if report.validation_seconds else 0.0
    lines.append(
        f"validated {report.validated} clips in {report.validation_seconds:.1f} s ({rate:.0f} clips/s): "
        f"{len(report.clips)} staged, {len(report.corrupt)} corrupt or missing, "
        f"{len(report.refused)} refused, {len(report.duplicates)} duplicate(s) by content"
        + (f", {len(report.bad_rows)} bad row(s)" if report.bad_rows else "")
    )
    lines += _audio_stats(report)
    lines += _listing("corrupt or missing (skipped)", [f"{o}: {r}" for o, r in report.corrupt])
    lines += _listing("refused (unsafe name or link)", [f"{o}: {r}" for o, r in report.refused])
    lines += _listing("bad rows (skipped)", [f"{w}: {r}" for w, r in report.bad_rows])
    lines += _listing("duplicates by content", [f"{o} = {k}" for o, k in report.duplicates])
    lines += _listing(
        "left out by the label mapping",
        [f"{n} clip(s) in {s}: {r}" for (r, s), n in sorted(report.left_out.items())],
    )
    lines.append("")
    lines.append(_outcome(report))
    return "\n".join(lines)


def _audio_stats(report: Report) -> list[str]:
    if not report.clips:
        return []
    rates = Counter(c.info.sample_rate for c in report.clips)
    channels = Counter(c.info.channels for c in report.clips)
    durations = [c.info.duration for c in report.clips]
    return [
        "sample rates: "
        + ", ".join(f"{r} Hz x{n}" for r, n in sorted(rates.items()))
        + "; channels: "
        + ", ".join(f"{c} x{n}" for c, n in sorted(channels.items()))
        + f"; duration {min(durations):.2f}-{max(durations):.2f} s"
        + f" (mean {sum(durations) / len(durations):.2f})"
    ]


def _listing(title: str, items: list[str]) -> list[str]:
    if not items:
        return []
    shown = [f"  {item}" for item in items[:_LISTED]]
    if len(items) > _LISTED:
        shown.append(f"  ... and {len(items) - _LISTED} more")
    return [f"{title}: {len(items)}", *shown]


def _outcome(report: Report) -> str:
    if report.dry_run:
        return (
            f"dry run: would write {len(report.written)} file(s)"
            + (" and the manifest" if report.manifest_changed else "")
            + f" and remove {len(report.removed)} (no longer in the dataset); {report.unchanged} unchanged"
        )
    if not report.changed:
        return f"nothing changed: {report.unchanged} clips already staged at {report.destination}"
    return (
        f"wrote {len(report.written)} file(s)"
        + (" and the manifest" if report.manifest_changed else "")
        + f", {report.unchanged} unchanged, {len(report.removed)} removed (no longer in the dataset)"
    )
