"""Stage a dataset into the ``audiofolder`` layout the training job reads, idempotently.

    python -m staging esc50 --to s3://BUCKET/datasets/esc50/
    python -m staging fsd50k --to ./data/fsd50k
    python -m staging folder --source-url ./my-clips --to ./data/mine
    python -m staging fsd50k --task multilabel --labels leaf --to ./data/fsd50k-whole
    python -m staging librispeech --to ./data/librispeech          # speech: --task asr is implied
    python -m staging commonvoice --source-url ./cv-corpus-17.0-2024-03-15-en.tar.gz --to ./data/cv-en
    python -m staging folder --task asr --source-url ./recordings --to ./data/speech

Writes ``<split>/<label>/<clip>`` (``--task multilabel``: ``<split>/<clip>`` with the split's labels in
``<split>/metadata.csv``; ``--task asr``: ``<split>/<clip>`` with each clip's transcription and speaker
there) for the splits train, validation and test, and ``manifest.jsonl`` at the top, last; only new or
changed clips are written, so a rerun is a no-op that says so, and files under the split folders that
left the dataset are removed. See docs/datasets.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

if not __package__:
    sys.exit("run the staging tool as a module from the repository root: python -m staging --help")

from common import contract
from common.cli import Parser, report

from . import ASR, CLASSIFICATION, MULTILABEL, TASKS, StagingError
from .pipeline import Settings, stage
from .sources import LABEL_LEVELS, LIBRISPEECH_SUBSETS, SOURCES, SPEECH_SOURCES, SourceOptions
from .stores import Destination, LocalDestination, S3Destination, is_s3, s3_client
from .summary import render

DEFAULT_VALIDATION_FRACTION = 0.1


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "acoustic-shield"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(
        prog="python -m staging",
        description="Stage ESC-50, FSD50K or your own folder into train/validation/test label folders, "
        "or speech (--task asr: LibriSpeech, Common Voice or your folder) into split folders with "
        f"transcriptions in {contract.METADATA_FILE}, with a manifest, locally or in S3. Reruns write only "
        "what changed.",
    )
    parser.add_argument(
        "source",
        choices=sorted(SOURCES),
        help="which dataset to stage: esc50, fsd50k (--task classification or multilabel), folder (any "
        "--task, asr included), commonvoice, librispeech (speech: --task asr, the default for them)",
    )
    parser.add_argument(
        "--task",
        choices=TASKS,
        help="classification: one label per clip, <split>/<label>/<clip> (the default of esc50, fsd50k "
        "and folder); multilabel: any number of labels per clip, <split>/<clip> listed in "
        f"<split>/{contract.METADATA_FILE} (fsd50k: every clip; folder: a directory with "
        f"{contract.METADATA_FILE}; esc50: its one label per clip); asr: speech recognition, <split>/<clip> "
        f"listed with its {contract.TRANSCRIPTION_COLUMN} (and {contract.SPEAKER_COLUMN}) in "
        f"<split>/{contract.METADATA_FILE} (the only task of commonvoice and librispeech; folder: a "
        f"directory with {contract.METADATA_FILE})",
    )
    parser.add_argument(
        "--labels",
        choices=LABEL_LEVELS,
        help="fsd50k --task multilabel: every label of a clip, ancestors in the ontology included (all, "
        "the default), or only its most specific ones (leaf)",
    )
    parser.add_argument(
        "--to", required=True, metavar="DEST", help="s3://BUCKET/datasets/NAME/ or a local directory"
    )
    parser.add_argument(
        "--source-url",
        metavar="URL",
        help="where the source comes from instead of the official location: esc50: the zip (http(s)://, "
        "s3:// or a path); fsd50k: the folder holding its archives (URL base, s3:// prefix or a path); "
        "folder (required): a directory, s3://bucket/prefix/, or a CSV of path,label[,split]; with --task "
        f"multilabel, a directory or s3://bucket/prefix/ holding {contract.METADATA_FILE} "
        f"({contract.FILE_NAME_COLUMN},{contract.LABELS_COLUMN}[,split]), with --task asr the same with "
        f"{contract.FILE_NAME_COLUMN},{contract.TRANSCRIPTION_COLUMN}[,{contract.SPEAKER_COLUMN}][,split]; "
        "commonvoice (required): a release's folder (clips/, train.tsv, dev.tsv, test.tsv) or its .tar.gz "
        "(http(s)://, s3:// or a path); librispeech: a folder holding LibriSpeech/<subset>/, one "
        "<subset>.tar.gz, or the folder (URL base, s3:// prefix or path) holding the <subset>.tar.gz "
        "archives (default: openslr.org)",
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=default_cache_dir(), help="download cache (default: %(default)s)"
    )
    parser.add_argument(
        "--sha256",
        action="append",
        default=[],
        metavar="[FILE=]HEX",
        help="expected sha256 of a downloaded archive; FILE= names one of several (repeatable)",
    )
    parser.add_argument("--fold", type=int, help="esc50: the fold used as the test split (default 5)")
    parser.add_argument("--esc10", action="store_true", help="esc50: only the 10-class ESC-10 subset")
    parser.add_argument(
        "--classes",
        help="fsd50k: comma-separated labels to classify; a clip is kept when exactly one of its labels "
        "is among them (default: every leaf label)",
    )
    parser.add_argument(
        "--subsets",
        help="librispeech: comma-separated subsets to stage, of "
        f"{', '.join(LIBRISPEECH_SUBSETS)} (train-* -> train, dev-* -> validation, test-* -> test; default: "
        "train-clean-100,dev-clean,test-clean when downloading, every train-* subset, dev-clean and "
        "test-clean that a folder or archive holds; dev-other and test-other only when named here)",
    )
    parser.add_argument(
        "--validation-fraction",
        type=float,
        help=f"esc50, folder: share of each class without a fixed split that goes to validation "
        f"(default {DEFAULT_VALIDATION_FRACTION}); folder --task asr: of the clips without one, in whole "
        "speakers",
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        help="folder: share of each class without a fixed split for test (default 0); with --task asr, of "
        "the clips without one, in whole speakers",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the validation/test assignment (default 0)"
    )
    parser.add_argument(
        "--max-duration",
        type=float,
        metavar="SECONDS",
        help="treat longer clips as unusable (default: 600; the decoded-size cap follows it: that many seconds of 48 kHz stereo, at most 16 channels)",
    )
    parser.add_argument(
        "--keep-duplicates",
        action="store_true",
        help="stage every copy of identical clips that lands in the same split (default: one copy)",
    )
    # Removal is no longer optional (a kept file can put a clip in two splits); the flag stays accepted
    # so that existing scripts keep working.
    parser.add_argument("--delete", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--kms-key-id", help="S3: encrypt with this KMS key (default: the bucket's default encryption)"
    )
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 2, help="parallel reads/writes (default: %(default)s)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="validate and show what would change; write nothing"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--report", type=Path, metavar="FILE", help="also write the summary as JSON to FILE")
    return parser.parse_args(argv)


def _resolve_task(args: argparse.Namespace) -> None:
    """``--task`` given, or the source's own: asr for the speech datasets, classification otherwise."""
    if args.task is None:
        args.task = ASR if args.source in SPEECH_SOURCES else CLASSIFICATION


def _check_task(args: argparse.Namespace) -> None:
    _resolve_task(args)
    if args.source in SPEECH_SOURCES and args.task != ASR:
        raise StagingError(
            f"{args.source} is a speech dataset: it stages for --task asr only (transcriptions, no labels)"
        )
    if args.task == ASR and args.source not in (*SPEECH_SOURCES, "folder"):
        raise StagingError(
            f"--task asr applies to the folder, {' and '.join(sorted(SPEECH_SOURCES))} sources: "
            f"{args.source} has labels, not transcriptions"
        )
    if args.labels is not None and (args.source != "fsd50k" or args.task != MULTILABEL):
        raise StagingError("--labels applies to the fsd50k source with --task multilabel only")
    if args.classes and args.task == MULTILABEL:
        raise StagingError(
            "--classes picks one class per clip; with --task multilabel every label is kept "
            "(--labels leaf keeps the most specific ones)"
        )


def _check(args: argparse.Namespace) -> None:
    _check_task(args)
    only = {
        "fold": "esc50",
        "esc10": "esc50",
        "classes": "fsd50k",
        "test_fraction": "folder",
        "subsets": "librispeech",
    }
    for option, source in only.items():
        if getattr(args, option) not in (None, False) and args.source != source:
            raise StagingError(f"--{option.replace('_', '-')} applies to the {source} source only")
    if args.sha256 and args.source == "folder":
        raise StagingError("--sha256 pins downloaded archives: it applies to esc50 and fsd50k")
    if args.source == "fsd50k" and args.validation_fraction is not None:
        raise StagingError(
            "--validation-fraction does not apply to fsd50k: its ground truth fixes the splits"
        )
    if args.source in SPEECH_SOURCES and args.validation_fraction is not None:
        raise StagingError(
            f"--validation-fraction does not apply to {args.source}: its release fixes the splits "
            "(speaker-disjoint)"
        )
    for name in ("validation_fraction", "test_fraction"):
        value = getattr(args, name)
        if value is not None and not 0 <= value < 1:
            raise StagingError(f"--{name.replace('_', '-')} must be at least 0 and below 1, not {value}")
    if (args.validation_fraction or 0) + (args.test_fraction or 0) >= 1:
        raise StagingError("--validation-fraction plus --test-fraction must leave something for train")
    if args.jobs < 1:
        raise StagingError("--jobs must be at least 1")


def parse_pins(values: list[str]) -> dict[str, str]:
    pins = {}
    for value in values:
        name, _, digest = value.rpartition("=")
        if not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
            raise StagingError(f"--sha256 {value!r}: expected 64 hex digits, optionally after FILE=")
        pins[name] = digest.lower()
    return pins


def destination_for(url: str, *, kms_key_id: str | None, jobs: int) -> Destination:
    if is_s3(url):
        return S3Destination(s3_client(max_connections=jobs), url, kms_key_id=kms_key_id)
    if kms_key_id:
        raise StagingError("--kms-key-id applies to S3 destinations only")
    return LocalDestination(Path(url).expanduser())


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    _check(args)
    progress = not args.no_progress
    destination = destination_for(args.to, kms_key_id=args.kms_key_id, jobs=args.jobs)
    options = SourceOptions(
        source_url=args.source_url,
        cache_dir=args.cache_dir,
        sha256=parse_pins(args.sha256),
        progress=progress,
        log=log,
        fold=args.fold if args.fold is not None else 5,
        esc10=args.esc10,
        classes=tuple(c.strip() for c in args.classes.split(",") if c.strip()) if args.classes else None,
        task=args.task,
        label_level=args.labels or LABEL_LEVELS[0],
        subsets=tuple(s.strip() for s in args.subsets.split(",") if s.strip()) if args.subsets else None,
    )
    settings = Settings(
        validation_fraction=(
            0.0
            if args.source == "fsd50k" or args.source in SPEECH_SOURCES
            else (
                args.validation_fraction
                if args.validation_fraction is not None
                else DEFAULT_VALIDATION_FRACTION
            )
        ),
        test_fraction=args.test_fraction or 0.0,
        seed=args.seed,
        jobs=args.jobs,
        max_duration=args.max_duration,
        keep_duplicates=args.keep_duplicates,
        dry_run=args.dry_run,
        progress=progress,
        task=args.task,
    )
    report = stage(SOURCES[args.source](options), destination, settings, log)
    print(render(report), flush=True)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Runs the command; user errors become one line on stderr and exit code 2 (with ACOUSTIC_TRACEBACK set,
    their traceback)."""
    args = parse_args(argv)
    import botocore.exceptions

    try:
        return run(args)
    except StagingError as err:
        report(err)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as err:
        report(err, f"S3: {err}")
    except KeyboardInterrupt:
        print("interrupted; run again to resume", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
