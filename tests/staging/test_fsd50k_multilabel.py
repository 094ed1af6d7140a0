"""FSD50K whole (--task multilabel): every clip with every label, in the ground truth's splits."""

from __future__ import annotations

import json
from typing import Any

from common import contract
from staging.sources import label_ancestry, most_specific
from tests.staging.archives import FSD50K_DEV, FSD50K_EVAL, fsd50k_files
from tests.staging.conftest import BUCKET, files_under, versions
from tests.staging.multilabel import assert_multilabel_layout, manifest

SPLIT_OF = {"train": "train", "val": "validation"}


def _s3_files(client: Any, prefix: str) -> dict[str, bytes]:
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"][len(prefix) :]] = client.get_object(Bucket=BUCKET, Key=item["Key"])[
                "Body"
            ].read()
    return found


def test_fsd50k_whole_stages_every_label_of_every_clip_in_the_ground_truth_splits(
    http_files, run_stage, tmp_path
):
    # Given the record's files, with multi-label clips (barking over music, a cat over a piano)
    http_files.files.update(fsd50k_files())
    out = tmp_path / "fsd50k"

    # When FSD50K is staged whole
    result = run_stage(
        "fsd50k", "--task", "multilabel", "--source-url", http_files.base_url, "--to", str(out)
    )

    # Then every clip is staged, none left out, each under <split>/<fname>.wav, with all its labels as
    # given: dev's split column decides train or validation, and eval is test
    assert result.code == 0, result.err
    tables = assert_multilabel_layout(files_under(out))
    expected = {SPLIT_OF[split]: {} for _, _, split in FSD50K_DEV} | {"test": {}}
    for fname, labels, split in FSD50K_DEV:
        expected[SPLIT_OF[split]][f"{fname}.wav"] = labels.split(",")
    for fname, labels in FSD50K_EVAL:
        expected["test"][f"{fname}.wav"] = labels.split(",")
    assert tables == expected
    assert tables["train"]["150.wav"] == ["Bark", "Dog", "Animal", "Guitar", "Music"]
    assert tables["validation"]["152.wav"] == ["Meow", "Cat", "Animal", "Piano", "Music"]
    # and the metadata file is the contract's CSV, row for row
    train_csv = (out / "train" / contract.METADATA_FILE).read_text()
    assert "\n150.wav,Bark;Dog;Animal;Guitar;Music\n" in train_csv
    assert "left out by the label mapping" not in result.out
    assert "every label of each clip kept (--labels all)" in result.out
    assert "validated 27 clips" in result.out and "27 staged" in result.out


def test_fsd50k_leaf_keeps_only_the_most_specific_labels_of_each_clip(http_files, run_stage, tmp_path):
    # Given the record's files, whose labels are propagated up the ontology
    http_files.files.update(fsd50k_files())
    out = tmp_path / "fsd50k"

    # When FSD50K is staged whole with --labels leaf
    result = run_stage(
        "fsd50k",
        "--task",
        "multilabel",
        "--labels",
        "leaf",
        "--source-url",
        http_files.base_url,
        "--to",
        str(out),
    )

    # Then ancestors are dropped from each clip (Dog and Animal from a barking clip, Music from a guitar
    # clip), a clip annotated only up to Dog keeps Dog, and Meow and Cat, on exactly the same clips,
    # cannot be ordered, so both stay
    assert result.code == 0, result.err
    tables = assert_multilabel_layout(files_under(out))
    assert tables["train"]["100.wav"] == ["Bark"]
    assert tables["train"]["120.wav"] == ["Guitar"]
    assert tables["train"]["150.wav"] == ["Bark", "Guitar"]
    assert tables["train"]["151.wav"] == ["Dog"]
    assert tables["train"]["110.wav"] == ["Meow", "Cat"]
    assert tables["validation"]["152.wav"] == ["Meow", "Cat", "Piano"]
    assert tables["test"]["204.wav"] == ["Bark", "Meow", "Cat"]
    assert not any("Animal" in labels or "Music" in labels for t in tables.values() for labels in t.values())
    assert "only the most specific labels of each clip kept (--labels leaf)" in result.out
    assert "Meow and Cat are on exactly the same clips" in result.out


def test_fsd50k_whole_into_s3_then_rerunning_writes_nothing(http_files, run_stage, s3):
    # Given FSD50K staged whole into the bucket
    http_files.files.update(fsd50k_files())
    dest = f"s3://{BUCKET}/datasets/fsd50k-whole/"
    first = run_stage("fsd50k", "--task", "multilabel", "--source-url", http_files.base_url, "--to", dest)
    written = versions(s3, "datasets/fsd50k-whole/")

    # When it is staged again
    again = run_stage("fsd50k", "--task", "multilabel", "--source-url", http_files.base_url, "--to", dest)

    # Then the first run wrote each clip, three metadata files and the manifest once, as CSV, and the
    # rerun wrote nothing and says so
    assert first.code == 0 and again.code == 0, again.err
    files = _s3_files(s3, "datasets/fsd50k-whole/")
    assert_multilabel_layout(files)
    assert len(written) == len(manifest(files)) + 3 + 1 and set(written.values()) == {1}
    head = s3.head_object(Bucket=BUCKET, Key=f"datasets/fsd50k-whole/train/{contract.METADATA_FILE}")
    assert head["ContentType"] == "text/csv"
    assert versions(s3, "datasets/fsd50k-whole/") == written
    assert "nothing changed: 27 clips already staged" in again.out


def test_fsd50k_rows_with_a_hostile_name_or_an_unknown_label_are_skipped_and_named(
    http_files, run_stage, tmp_path
):
    # Given a ground truth with a row whose fname climbs out, and one with a label not in the vocabulary
    dev = [*FSD50K_DEV, ("../../../evil", "Bark,Dog,Animal", "train"), ("160", "Bark,Dgo", "train")]
    http_files.files.update(fsd50k_files(dev=dev))
    out = tmp_path / "a" / "out"
    report = tmp_path / "report.json"

    # When FSD50K is staged whole
    result = run_stage(
        "fsd50k",
        "--task",
        "multilabel",
        "--source-url",
        http_files.base_url,
        "--to",
        str(out),
        "--report",
        str(report),
    )

    # Then nothing lands outside the target, the good clips are staged, and both rows are named
    assert result.code == 0, result.err
    assert [p for p in tmp_path.rglob("*") if "evil" in p.name] == []
    assert len(manifest(files_under(out))) == 27
    assert_multilabel_layout(files_under(out))
    assert "refused (unsafe name or link): 1" in result.out
    assert "FSD50K.dev_audio.zip:../../../evil.wav: file name '../../../evil.wav'" in result.out
    assert "bad rows (skipped): 1" in result.out
    assert "dev.csv line 25: 160: label(s) Dgo not in vocabulary.csv" in result.out
    assert json.loads(report.read_text())["bad_rows"] == [
        {"row": "dev.csv line 25", "reason": "160: label(s) Dgo not in vocabulary.csv"}
    ]


def test_fsd50k_whole_refuses_the_single_label_options(http_files, run_stage, tmp_path):
    # Given the record's files
    http_files.files.update(fsd50k_files())
    base = ("fsd50k", "--source-url", http_files.base_url, "--to", str(tmp_path / "o"))

    # When --classes is combined with --task multilabel, or --labels is given without it
    classes = run_stage(*base, "--task", "multilabel", "--classes", "Dog")
    labels = run_stage(*base, "--labels", "leaf")

    # Then each is a one-line error saying what applies
    assert classes.code == 2 and labels.code == 2
    assert classes.err.strip().splitlines()[-1].startswith("error: --classes picks one class per clip")
    assert labels.err.strip().splitlines()[-1] == (
        "error: --labels applies to the fsd50k source with --task multilabel only"
    )


def test_the_most_specific_labels_follow_the_clips_own_co_occurrence():
    # Given label sets propagated to ancestors, where Meow is on exactly the clips Cat is on
    label_sets = [
        frozenset({"Bark", "Dog", "Animal"}),
        frozenset({"Bark", "Dog", "Animal"}),
        frozenset({"Dog", "Animal"}),
        frozenset({"Meow", "Cat", "Animal"}),
    ]

    # When the ancestry is derived
    ancestors, merged = label_ancestry(label_sets)

    # Then a clip keeps the labels no other of its labels descends from, in their order
    assert ancestors["Bark"] == {"Dog", "Animal"} and ancestors["Animal"] == set()
    assert merged == {"Meow": "Cat"}
    assert most_specific(("Bark", "Dog", "Animal"), ancestors) == ("Bark",)
    assert most_specific(("Dog", "Animal"), ancestors) == ("Dog",)
    assert most_specific(("Meow", "Cat", "Animal"), ancestors) == ("Meow", "Cat")
    assert most_specific((), ancestors) == ()
