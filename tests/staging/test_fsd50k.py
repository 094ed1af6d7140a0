"""FSD50K from its Zenodo layout (split zips, ground-truth CSVs) over HTTP, into S3 and locally."""

from __future__ import annotations

import json
from collections import Counter

from staging.sources import leaf_labels, map_labels
from tests.staging.archives import fsd50k_files
from tests.staging.conftest import BUCKET, versions


def _manifest(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_fsd50k_stages_single_class_clips_into_s3_from_split_archives(http_files, run_stage, s3, tmp_path):
    # Given the record's files (split dev and eval audio, ground truth) served over HTTP
    http_files.files.update(fsd50k_files())
    dest = f"s3://{BUCKET}/datasets/fsd50k/"
    report = tmp_path / "report.json"

    # When FSD50K is staged into the bucket, then staged again
    first = run_stage("fsd50k", "--source-url", http_files.base_url, "--to", dest, "--report", str(report))
    written = versions(s3, "datasets/fsd50k/")
    again = run_stage("fsd50k", "--source-url", http_files.base_url, "--to", dest)

    # Then clips with one leaf label are staged under it, in the split the ground truth gives (Meow is
    # on exactly the Cat clips, so the two are one class, Cat)
    assert first.code == 0, first.err
    body = s3.get_object(Bucket=BUCKET, Key="datasets/fsd50k/manifest.jsonl")["Body"].read().decode()
    manifest = _manifest(body)
    counts = Counter((e["split"], e["label"]) for e in manifest)
    assert counts == {
        **{("train", label): 4 for label in ("Bark", "Cat", "Guitar")},
        ("train", "Piano"): 3,
        **{
            (split, label): 1
            for split in ("validation", "test")
            for label in ("Bark", "Cat", "Guitar", "Piano")
        },
    }
    assert {"train/Bark/100.wav", "validation/Piano/143.wav", "test/Guitar/202.wav"} <= {
        e["path"] for e in manifest
    }
    assert len(written) == len(manifest) + 1
    # and what was left out is counted per reason and split
    left_out = {(r["reason"], r["split"]): r["clips"] for r in json.loads(report.read_text())["left_out"]}
    assert left_out == {
        ("labels in several classes", "train"): 1,
        ("labels in several classes", "validation"): 1,
        ("labels in several classes", "test"): 1,
        ("no label among the classes", "train"): 1,
    }
    assert "1 clip(s) in train: no label among the classes" in first.out
    assert "Meow is on exactly the clips Cat is on; they are one class, Cat" in first.out
    # and the rerun wrote nothing
    assert again.code == 0, again.err
    assert versions(s3, "datasets/fsd50k/") == written
    assert "nothing changed" in again.out


def test_fsd50k_classes_option_maps_clips_to_chosen_labels_locally(http_files, run_stage, tmp_path):
    # Given the record's files
    http_files.files.update(fsd50k_files())
    out = tmp_path / "animals"

    # When only Dog and Cat are the classes, staged into a local directory
    result = run_stage(
        "fsd50k", "--source-url", http_files.base_url, "--to", str(out), "--classes", "Dog,Cat"
    )

    # Then every clip with exactly one of them is staged under it (Bark clips, the Dog-only clip and a
    # barking-with-guitar clip become Dog), the clip with both is left out, and so is music alone
    assert result.code == 0, result.err
    manifest = _manifest((out / "manifest.jsonl").read_text())
    assert Counter(e["label"] for e in manifest) == {"Dog": 8, "Cat": 7}
    assert "1 clip(s) in test: labels in several classes" in result.out
    assert sorted(p.name for p in out.iterdir()) == ["manifest.jsonl", "test", "train", "validation"]
    assert sorted(p.name for p in (out / "train").iterdir()) == ["Cat", "Dog"]


def test_an_unknown_class_is_a_clear_error(http_files, run_stage, tmp_path):
    # Given the record's files
    http_files.files.update(fsd50k_files())

    # When a class that is no FSD50K label is asked for
    result = run_stage(
        "fsd50k", "--source-url", http_files.base_url, "--to", str(tmp_path / "o"), "--classes", "Dgo"
    )

    # Then the error names it and shows real labels
    assert result.code == 2
    assert (
        result.err.strip()
        .splitlines()[-1]
        .startswith("error: --classes: Dgo not in FSD50K's labels (e.g. Animal")
    )


def test_leaf_labels_are_recovered_from_labels_propagated_up_the_ontology():
    # Given label sets propagated to ancestors, as FSD50K's ground truth has them, where Meow happens
    # to be on exactly the clips Cat is on
    label_sets = [
        frozenset({"Bark", "Dog", "Animal"}),
        frozenset({"Bark", "Dog", "Animal"}),
        frozenset({"Dog", "Animal"}),
        frozenset({"Meow", "Cat", "Animal"}),
        frozenset({"Meow", "Cat", "Animal"}),
    ]

    # When the leaves are derived
    leaves, merged = leaf_labels(label_sets)

    # Then only the most specific labels remain, Meow and Cat are one class, and a clip maps to one
    # class only when it has exactly one
    assert leaves == {"Bark", "Cat"}
    assert merged == {"Meow": "Cat"}
    assert map_labels(frozenset({"Bark", "Dog", "Animal"}), leaves) == ("Bark", "")
    assert map_labels(frozenset({"Meow", "Cat", "Animal"}), leaves) == ("Cat", "")
    assert map_labels(frozenset({"Bark", "Meow", "Dog", "Cat", "Animal"}), leaves) == (
        None,
        "labels in several classes",
    )
    assert map_labels(frozenset({"Dog", "Animal"}), leaves) == (None, "no label among the classes")
