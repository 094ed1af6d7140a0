"""The whole loop as ``make demo`` runs it (fewer epochs), each step's effect read from the emulator's state."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from common import contract
from common.contract import JOB_METRIC_NAMES
from tools.rehearse.emulator import Emulator, environment
from tools.rehearse.loop import (
    DATASET,
    EVENTS_DATASET,
    EVENTS_TASK,
    SPEECH_DATASET,
    SPEECH_MAX_WER,
    SPEECH_TASK,
    STACKS,
    rehearse,
)
from tools.rehearse.sounds import CLASSES, EVENTS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _listening(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, int(port))) == 0


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One rehearsal; the emulator's state is read just before it stops."""
    out = tmp_path_factory.mktemp("demo")
    state: dict[str, Any] = {}

    def inspect(emulator: Emulator) -> None:
        with environment(emulator.env):
            cloudformation, s3, sagemaker = (boto3.client(s) for s in ("cloudformation", "s3", "sagemaker"))
            state["stacks"] = {
                s["StackName"]: s["StackStatus"] for s in cloudformation.describe_stacks()["Stacks"]
            }
            bucket = json.loads((out / "rehearsal.json").read_text())["steps"][1]["produced"]["bucket"]
            state["objects"] = [
                o["Key"]
                for o in s3.list_objects_v2(Bucket=bucket, Prefix="", MaxKeys=1000).get("Contents", [])
            ]
            jobs = [j["TrainingJobName"] for j in sagemaker.list_training_jobs()["TrainingJobSummaries"]]
            (job,) = [name for name in jobs if EVENTS_TASK not in name and SPEECH_TASK not in name]
            (events_job,) = [name for name in jobs if EVENTS_TASK in name]
            (speech_job,) = [name for name in jobs if SPEECH_TASK in name]
            state["job"] = sagemaker.describe_training_job(TrainingJobName=job)
            state["events_job"] = sagemaker.describe_training_job(TrainingJobName=events_job)
            state["speech_job"] = sagemaker.describe_training_job(TrainingJobName=speech_job)
            groups = [
                g["ModelPackageGroupName"]
                for g in sagemaker.list_model_package_groups()["ModelPackageGroupSummaryList"]
            ]
            for key, task in (
                ("packages", None),
                ("events_packages", EVENTS_TASK),
                ("speech_packages", SPEECH_TASK),
            ):
                (group,) = [
                    g
                    for g in groups
                    if (task in g if task else EVENTS_TASK not in g and SPEECH_TASK not in g)
                ]
                state[key] = sagemaker.list_model_packages(ModelPackageGroupName=group)[
                    "ModelPackageSummaryList"
                ]
            state["endpoints"] = [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]]
            state["emulator"] = emulator.url

    report = rehearse(out, epochs=6, clips_per_class=14, inspect=inspect)
    return {"out": out, "report": report, "state": state, "steps": {s["name"]: s for s in report["steps"]}}


def test_every_step_succeeds_and_is_recorded(loop) -> None:
    # Given the rehearsal's report
    written = json.loads((loop["out"] / "rehearsal.json").read_text())
    # Then every step ran, in order, and took measurable time
    names = [s["name"] for s in written["steps"]]
    loop_steps = ["launch", "train", "promote", "serve-deploy", "serve"]
    events = [f"{EVENTS_TASK}-{name}" for name in ("deploy", "stage", *loop_steps)]
    speech = [f"{SPEECH_TASK}-{name}" for name in ("deploy", "stage", *loop_steps)]
    assert names == ["emulator", "deploy", "stage", *loop_steps, *events, *speech]
    assert all(s["status"] == "ok" for s in written["steps"]), written


def test_the_stacks_are_deployed_into_the_emulator(loop) -> None:
    # Then the real cdk deploy created the three stacks (and the bootstrap stack)
    for name in STACKS.values():
        assert loop["state"]["stacks"][name] == "CREATE_COMPLETE"
    assert loop["state"]["stacks"]["CDKToolkit"] == "CREATE_COMPLETE"


def test_the_dataset_is_staged_with_its_manifest(loop) -> None:
    # Then every class has training clips under the dataset prefix, and the manifest is there
    objects = loop["state"]["objects"]
    for label in CLASSES:
        assert any(k.startswith(f"{DATASET}train/{label}/") for k in objects), label
    assert f"{DATASET}manifest.jsonl" in objects
    assert not any("broken" in k for k in objects)  # the corrupt clip was skipped


def test_the_job_is_the_request_the_launcher_built(loop) -> None:
    # Then the job in the emulator carries the launcher's request, and the runner completed it
    job = loop["state"]["job"]
    assert job["TrainingJobStatus"] == "Completed"
    assert json.loads(job["HyperParameters"]["model_name_or_path"]) == "training/configs/tiny-wav2vec2"
    assert json.loads(job["HyperParameters"]["sagemaker_container_log_level"]) == 20
    assert {m["Name"] for m in job["AlgorithmSpecification"]["MetricDefinitions"]} == set(JOB_METRIC_NAMES)
    assert {c["ChannelName"] for c in job["InputDataConfig"]} >= {"train", "test"}
    final = {m["MetricName"] for m in job["FinalMetricDataList"]}
    assert {"test_accuracy", "test_f1", "test_clip_accuracy"} <= final


def test_the_jobs_health_is_reported_rule_by_rule(loop) -> None:
    # Then the train step records every health rule as fired, silent or not evaluated (with why), and the
    # job's scraped metrics carry a flag for each rule it evaluated
    health = loop["steps"]["train"]["produced"]["health"]
    assert set(health) == set(contract.HEALTH_RULES)
    assert {rule["status"] for rule in health.values()} <= set(contract.HEALTH_STATUSES)
    assert all(rule["reason"] for rule in health.values())
    # On this machine's CPU the GPU rules cannot run, and say so
    assert health["gpu_utilization"]["status"] == "not_evaluated"
    final = {m["MetricName"]: m["Value"] for m in loop["state"]["job"]["FinalMetricDataList"]}
    for name, rule in health.items():
        if rule["status"] != "not_evaluated":
            assert final[contract.health_metric(name)] == (1.0 if rule["status"] == "fired" else 0.0)
    # And the model it gated on learned: no blocking rule fired
    assert all(health[rule]["status"] != "fired" for rule in contract.DEFAULT_BLOCKING_HEALTH_RULES)


def test_the_job_leaves_a_model_card_curves_and_tensorboard_files(loop) -> None:
    # Then the job's model directory has its Hugging Face model card, its report the training curves
    produced = loop["steps"]["train"]["produced"]
    card = Path(produced["model_card"]).read_text()
    assert card.startswith("---\n") and "pipeline_tag: audio-classification" in card
    assert Path(produced["training_curves"]).read_bytes().startswith(b"\x89PNG")
    # And its TensorBoard event files were uploaded where SageMaker syncs them
    job = loop["state"]["job"]["TrainingJobName"]
    assert any(k.startswith(f"tensorboard/{job}/tensorboard-output/") for k in loop["state"]["objects"])
    # And the promoter attached a SageMaker model card with the gate's decision to the package
    promoted = loop["steps"]["promote"]["produced"]
    assert promoted["model_card_status"] == "Approved"
    assert "evaluation_details" in promoted["model_card_sections"]


def test_the_artifacts_are_where_sagemaker_puts_them(loop) -> None:
    # Then model.tar.gz and output.tar.gz are under models/<job>/output/, and the evaluation report too
    name = loop["state"]["job"]["TrainingJobName"]
    objects = loop["state"]["objects"]
    assert f"models/{name}/output/model.tar.gz" in objects
    assert f"models/{name}/output/output.tar.gz" in objects
    assert f"evaluation/{name}/evaluation.json" in objects
    with tarfile.open(loop["out"] / "model.tar.gz") as archive:
        assert "code/inference.py" in archive.getnames()


def test_the_model_package_is_approved_and_served(loop) -> None:
    # Then the promoter registered one Approved package, and the Serving stack made its endpoint
    (package,) = loop["state"]["packages"]
    assert package["ModelApprovalStatus"] == "Approved"
    assert loop["steps"]["promote"]["produced"]["model_package_arn"] == package["ModelPackageArn"]
    assert loop["steps"]["serve-deploy"]["produced"]["endpoint"] in loop["state"]["endpoints"]


def test_held_back_clips_get_predictions_and_a_broken_payload_a_4xx(loop) -> None:
    # Then each held-back clip got {label, confidence, probs} and most are right
    served = loop["steps"]["serve"]["produced"]
    assert served["total"] == 2 * len(CLASSES)
    for prediction in served["predictions"]:
        assert prediction["status"] == 200
        assert prediction["label"] in CLASSES
        assert set(prediction["probs"]) == set(CLASSES)
    assert served["correct"] >= served["total"] // 2
    assert 400 <= served["broken_payload_status"] < 500


# --- the multi-label loop beside it ---------------------------------------------------------------------


def test_the_multilabel_loop_runs_beside_the_classification_one(loop) -> None:
    # Then the multi-label deployment has its own Training and Serving stacks beside the classification ones
    stacks = loop["state"]["stacks"]
    assert {name for name, status in stacks.items() if status == "CREATE_COMPLETE"} >= {
        loop["steps"][f"{EVENTS_TASK}-deploy"]["produced"]["stack"],
        *STACKS.values(),
    }
    assert sum(EVENTS_TASK in name for name in stacks) == 2
    # And its dataset was staged multi-label: a metadata.csv per split, and its manifest
    objects = loop["state"]["objects"]
    assert f"{EVENTS_DATASET}train/{contract.METADATA_FILE}" in objects
    assert f"{EVENTS_DATASET}manifest.jsonl" in objects


def test_the_multilabel_job_trains_the_task_and_scrapes_its_metrics(loop) -> None:
    # Then the job ran the multi-label task, and its metric definitions read the task's lines
    job = loop["state"]["events_job"]
    assert job["TrainingJobStatus"] == "Completed"
    assert json.loads(job["HyperParameters"][contract.TASK_ARGUMENT]) == EVENTS_TASK
    definitions = {m["Name"] for m in job["AlgorithmSpecification"]["MetricDefinitions"]}
    assert {"eval_map", "test_map", "test_micro_f1", "test_lwlrap"} <= definitions
    assert "test_map" in {m["MetricName"] for m in job["FinalMetricDataList"]}


def test_the_multilabel_model_is_gated_on_map_and_answers_labels_and_event_times(loop) -> None:
    # Then its own group holds one Approved package, gated on mAP
    (package,) = loop["state"]["events_packages"]
    assert package["ModelApprovalStatus"] == "Approved"
    reasons = " ".join(loop["steps"][f"{EVENTS_TASK}-promote"]["produced"]["reasons"])
    assert "test_map" in reasons
    # And every held-back mixture was answered with labels, scores and events with times
    served = loop["steps"][f"{EVENTS_TASK}-serve"]["produced"]
    for answer in served["answers"]:
        assert answer["status"] == 200
        assert set(answer["scores"]) == set(EVENTS)
        assert all(
            {"label", "start", "end", "score"} == set(event) for event in answer[contract.SEGMENTS_KEY]
        )
    # And the report records the held-back mixtures' mAP, the job's test mAP and the answers' event-based F1
    assert 0.0 <= served["map"] <= 1.0
    assert 0.0 <= served["event_f1"] <= 1.0
    assert 0.0 <= served["job_metrics"]["test_map"] <= 1.0


# --- the speech loop beside them ---------------------------------------------------------------------------


def test_the_speech_loop_stages_transcribed_utterances_with_their_splits(loop) -> None:
    # Then the speech deployment has its own Training and Serving stacks
    stacks = loop["state"]["stacks"]
    assert sum(SPEECH_TASK in name for name in stacks) == 2
    # And its utterances were staged for speech recognition: a metadata.csv per split, and its manifest
    objects = loop["state"]["objects"]
    for split in ("train", "validation", "test"):
        assert f"{SPEECH_DATASET}{split}/{contract.METADATA_FILE}" in objects
    assert f"{SPEECH_DATASET}manifest.jsonl" in objects
    generated = loop["steps"][f"{SPEECH_TASK}-stage"]["produced"]["generated"]
    assert generated["train"]["utterances"] > generated["test"]["utterances"] > 0


def test_the_speech_job_trains_ctc_and_scrapes_wer_and_cer(loop) -> None:
    # Then the job ran the speech recognition task from the shipped tiny config, and its metric definitions
    # read the task's lines
    job = loop["state"]["speech_job"]
    assert job["TrainingJobStatus"] == "Completed"
    assert json.loads(job["HyperParameters"][contract.TASK_ARGUMENT]) == SPEECH_TASK
    definitions = {m["Name"] for m in job["AlgorithmSpecification"]["MetricDefinitions"]}
    assert {"eval_wer", "eval_cer", "test_wer", "test_cer"} <= definitions
    final = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
    assert 0.0 <= final["test_wer"] <= SPEECH_MAX_WER


def test_the_speech_model_is_gated_on_wer_and_transcribes_held_back_utterances(loop) -> None:
    # Then its own group holds one Approved package, gated on WER and CER at their documented defaults
    (package,) = loop["state"]["speech_packages"]
    assert package["ModelApprovalStatus"] == "Approved"
    reasons = " ".join(loop["steps"][f"{SPEECH_TASK}-promote"]["produced"]["reasons"])
    assert "test_wer" in reasons and "test_cer" in reasons
    # And every held-back utterance (sentences training never heard) got a transcript with timed words
    served = loop["steps"][f"{SPEECH_TASK}-serve"]["produced"]
    assert served["utterances"] == len(served["answers"]) > 0
    for answer in served["answers"]:
        assert answer["status"] == 200
        assert all({"word", "start", "end"} == set(word) for word in answer["words"])
        assert [word["word"] for word in answer["words"]] == answer["text"].split()
    # And the held-back WER is at most the gate's default (not loosened for the rehearsal), recorded beside
    # the job's own
    from infra.config import QualityGate

    assert QualityGate().max_wer == SPEECH_MAX_WER
    assert served["held_back_wer"] <= SPEECH_MAX_WER
    assert 0.0 <= served["held_back_cer"] <= 1.0
    assert "test_wer" in served["job_metrics"]
    assert 400 <= served["broken_payload_status"] < 500


def test_nothing_is_left_listening(loop) -> None:
    # Then neither the emulator nor the local server still listens
    assert not _listening(loop["state"]["emulator"])
    assert not _listening(loop["steps"]["serve"]["produced"]["server"])


def test_sigterm_stops_everything_the_rehearsal_started(tmp_path: Path) -> None:
    # Given a rehearsal that has started its emulator and is deploying
    out = tmp_path / "demo"
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.rehearse", "--out", str(out), "--epochs", "1"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    report = out / "rehearsal.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
        report.exists() and any(s["name"] == "deploy" for s in json.loads(report.read_text())["steps"])
    ):
        time.sleep(0.2)
    # When it gets SIGTERM
    process.send_signal(signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    # Then it says so, exits 143, the step is marked interrupted, and the emulator no longer listens
    assert process.returncode == 143, err
    assert "terminated" in err
    steps = json.loads(report.read_text())["steps"]
    assert steps[-1]["status"] == "interrupted"
    assert not _listening(steps[0]["produced"]["endpoint"])
