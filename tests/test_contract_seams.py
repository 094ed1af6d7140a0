"""The seams between training, the handler, the Lambdas and the stacks: one contract, no copies.

Each test puts what one side produces into the code of the side that consumes it. The last one reads
the source: every fact of the contract is spelled in ``common/contract.py`` and nowhere else.
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tasks
from common import contract, lambda_contract
from infra.config import (
    QualityGate,
    ServingConfig,
    TuningConfig,
    gate_rules,
    metric_line_names,
    tuning_objective,
)
from infra.serving.model import container_environment
from lambdas.launcher.settings import LaunchSettings
from lambdas.promoter import logic as promoter
from lambdas.promoter.settings import Settings, Thresholds
from serving import inference
from tests.inference import payloads
from tools import invoke
from training import train

ROOT = Path(__file__).resolve().parents[1]
# Every folder whose code ships or runs something; tests may spell facts out to check them.
SOURCES = (
    "app.py",
    "common",
    "training",
    "serving",
    "staging",
    "lambdas",
    "infra",
    "tools",
    "benchmarks",
    "standins",
)


def _registered_container_and_spec() -> tuple[dict[str, Any], dict[str, Any]]:
    """The container and inference specification of the model package the promoter registers."""
    settings = Settings(
        model_package_group="acoustic-shield-dev",
        job_name_prefix="acoustic-shield-dev-train-",
        thresholds=Thresholds(gate_rules=(lambda_contract.GateRule("f1", True, 0.5),), max_regression=0.05),
        manual_approval=False,
        topic_arn="arn:aws:sns:eu-west-1:123456789012:notices",
        inference_image="763104351884.dkr.ecr.eu-west-1.amazonaws.com/huggingface-pytorch-inference:x",
        serving_instance_type="ml.m5.xlarge",
        data_bucket="acoustic-data",
        evaluation_prefix="evaluation/",
    )
    request = promoter.model_package_request(
        settings=settings,
        job_name="acoustic-shield-dev-train-1",
        model_data_url="s3://acoustic-data/models/acoustic-shield-dev-train-1/output/model.tar.gz",
        evaluation_uri="s3://acoustic-data/evaluation/acoustic-shield-dev-train-1/evaluation.json",
        decision=promoter.Decision(status=promoter.APPROVED, reasons=("ok",)),
        metrics={},
    )
    spec = request["InferenceSpecification"]
    (container,) = spec["Containers"]
    return container, spec


# A type no model package advertises: the handler must refuse it.
UNADVERTISED = ("text/plain", "audio/aiff", "image/png")


def _payload(content_type: str) -> bytes:
    """A one-second clip as a client sends it with ``content_type`` (FLAC for FLAC types, else WAV)."""
    samples = payloads.tone(16_000, 1, seconds=1.0)
    fmt = "FLAC" if "flac" in content_type else "WAV"
    audio = payloads.encode(samples, 16_000, fmt)
    if content_type == contract.JSON_CONTENT_TYPE:
        return json.dumps({"base64": base64.b64encode(audio).decode()}).encode()
    return audio


def test_a_model_package_advertises_exactly_what_the_handler_accepts() -> None:
    # Given the model package the promoter registers for a finished job
    _, spec = _registered_container_and_spec()
    # When the handler's own input_fn is given a clip under each type the package advertises
    for content_type in spec["SupportedContentTypes"]:
        request = inference.input_fn(_payload(content_type), content_type)
        # Then it decodes it (the endpoint created from the package serves what it says)
        assert request.samples.size > 0, content_type
    # And a type the package does not advertise is refused with a client error
    for content_type in UNADVERTISED:
        with pytest.raises(inference.BadRequest) as refused:
            inference.input_fn(_payload("audio/wav"), content_type)
        assert 400 <= refused.value.status_code < 500, content_type
    assert "audio/wave" in spec["SupportedContentTypes"] and "audio/x-flac" in spec["SupportedContentTypes"]
    # And it answers what the handler's output_fn answers
    (response_type,) = spec["SupportedResponseMIMETypes"]
    with pytest.raises(inference.BadRequest):
        inference.output_fn(None, "text/csv")  # type: ignore[arg-type]
    assert response_type == contract.JSON_CONTENT_TYPE


def test_every_content_type_the_client_sends_is_one_the_handler_accepts() -> None:
    # Given a file of each suffix the invoke client knows, and one it does not
    for suffix, content_type in contract.SUFFIX_CONTENT_TYPES.items():
        # When the client picks its content type / Then the handler accepts that type
        assert invoke.content_type_for(Path(f"clip{suffix}")) == content_type
        _assert_the_handler_accepts(content_type)
    _assert_the_handler_accepts(invoke.content_type_for(Path("clip.aiff")))


def _assert_the_handler_accepts(content_type: str) -> None:
    """The handler gets past the content type: an empty body is then the only thing it refuses."""
    with pytest.raises(inference.BadRequest, match="empty request body"):
        inference.parse_request(b"", content_type, inference.Settings())


@pytest.mark.parametrize("serving", [ServingConfig(), ServingConfig(fast_path="onnx", threads=3, workers=4)])
def test_the_serving_stacks_container_environment_is_what_the_handler_reads(serving: ServingConfig) -> None:
    # Given the environment the Serving stack sets on the model's container
    environment = container_environment(serving)
    # When the handler reads its settings from it
    settings = inference.Settings.from_env(environment)
    # Then it gets the configured values, and the toolkit finds the handler where train.py put it
    assert settings.fast_path == serving.fast_path
    assert settings.max_audio_seconds == serving.max_audio_seconds
    assert settings.threads == (serving.threads or max(1, inference._cpu_count() // serving.workers))
    assert environment[contract.ENV_WORKERS] == str(serving.workers)
    assert contract.HANDLER_ENVIRONMENT.items() <= environment.items()
    # And a package the promoter registers points the toolkit at the same handler
    container, _ = _registered_container_and_spec()
    assert container["Environment"].items() <= environment.items()
    assert contract.HANDLER_ENVIRONMENT["SAGEMAKER_SUBMIT_DIRECTORY"].endswith(f"/{contract.CODE_DIR}")


def test_tuning_objectives_are_validation_metrics_the_job_reports() -> None:
    # Given the objectives a tuning job may optimize without naming their direction (the default task's)
    # Then each is a metric train.py prints after every evaluation of the validation split
    assert set(lambda_contract.TUNING_OBJECTIVES) <= {
        name for name in contract.METRIC_NAMES if name.startswith("eval_")
    }
    assert set(lambda_contract.TUNING_OBJECTIVES.values()) <= set(lambda_contract.TUNING_OBJECTIVE_TYPES)
    # And the config's default objective is the default task's, in the direction the table gives it
    (objective,) = (f for f in dataclasses.fields(TuningConfig) if f.name == "objective")
    default, direction = tuning_objective(TuningConfig(), tasks.load(None))
    assert objective.default == "" and default == contract.DEFAULT_TUNING_OBJECTIVE
    assert lambda_contract.TUNING_OBJECTIVES[default] == direction


@pytest.mark.parametrize("name", tasks.known())
def test_every_tasks_tuning_objective_is_a_validation_metric_its_jobs_print_and_scrape(name: str) -> None:
    # Given a task, the metric lines train.py prints for it and the objectives the config allows for it
    task = tasks.load(name)
    printed = train.metric_line_names(task)
    allowed = lambda_contract.tuning_objectives(metric_line_names(task))
    # Then the stack's lines are train.py's, the loss first, and the launcher's check accepts them
    assert metric_line_names(task) == printed and printed[0] == contract.LOSS_LINE
    assert lambda_contract.check_metric_names(list(printed)) == printed
    # And the default objective is the task's own on the validation split, in its direction, and the job's
    # metric definitions scrape it
    objective, direction = tuning_objective(TuningConfig(), task)
    assert objective == f"{contract.METRIC_SPLITS[0]}_{task.objective}" and objective in allowed
    assert direction == task.metric(task.objective).direction
    assert objective in {d["Name"] for d in contract.metric_definitions(printed)}
    # And the launcher reads the direction the stack writes
    assert lambda_contract.tuning_objective_type(objective, direction, printed) == direction


def test_a_task_other_than_the_default_reaches_train_py_as_the_argument_it_takes() -> None:
    # Given the static hyperparameter a deployment of another task sets (as the toolkit passes it)
    argv = [f"--{contract.TASK_ARGUMENT}", "multilabel"]
    # When train.py parses it / Then the job trains that task, with that task's best-model metric
    model, _, training, _ = train.parse_arguments(argv)
    assert model.task == "multilabel"
    assert training.metric_for_best_model == tasks.load("multilabel").objective


@pytest.mark.parametrize("name", tasks.known())
def test_every_tasks_gated_metrics_reach_the_gate_from_the_jobs_report(name: str) -> None:
    # Given a task's gate rules as the stack writes them, and a report with each split's gated metrics
    task = tasks.load(name)
    rules = gate_rules(QualityGate(), task)
    report = {split: {rule.metric: 0.75 for rule in rules} for split in contract.GATE_SPLITS}
    # When the promoter reads the report with its rules
    metrics = promoter.metrics_from_report(report, [rule.metric for rule in rules])
    # Then each split's value of each gated metric is there, in the task's direction
    assert [(r.metric, r.higher_is_better) for r in rules] == [
        (metric, task.metric(metric).higher_is_better) for metric in task.gated
    ]
    assert {f"{split}_{rule.metric}" for split in contract.GATE_SPLITS for rule in rules} <= metrics.keys()
    # And the job's metric definitions scrape each of them too
    scraped = {d["Name"] for d in contract.metric_definitions(metric_line_names(task))}
    assert {f"{split}_{rule.metric}" for split in contract.GATE_SPLITS for rule in rules} <= scraped


def test_every_gated_metric_is_a_reported_metric_on_every_split_the_gate_reads() -> None:
    # Given the default task's gated metrics (the rules the stack writes) and the splits the gate decides on
    rules = gate_rules(QualityGate())
    # Then the job reports each of them on each of those splits, in the task's direction
    task = tasks.load(None)
    assert [(r.metric, r.higher_is_better) for r in rules] == [
        (name, task.metric(name).higher_is_better) for name in task.gated
    ]
    for split in contract.GATE_SPLITS:
        for rule in rules:
            assert f"{split}_{rule.metric}" in contract.METRIC_NAMES


def test_the_job_scrapes_every_metric_line_the_default_task_prints() -> None:
    # Given what train.py prints after each evaluation for the default task
    printed = train.metric_line_names(tasks.load(None))
    # Then the training job's metric definitions read each of them, and nothing it never prints
    assert printed == contract.METRIC_LINE_NAMES


def test_each_metric_regex_reads_back_exactly_the_line_train_py_prints() -> None:
    # Given every metric's line, printed among the others as train.py does: plain decimals, scientific
    # notation for the tiny and huge values health rules measure, negatives and whole numbers
    samples = (0.9312, 3.2e-09, 1.5e12, -0.25, 1.0, 0.0)
    values = {name: samples[i % len(samples)] + i for i, name in enumerate(contract.JOB_METRIC_NAMES)}
    values |= {contract.health_value_metric("vanishing_gradient"): 3.2e-09}
    log = "\n".join(contract.metric_line(name, value) for name, value in values.items())

    # When each of the job's metric definitions is applied to the log
    for definition in contract.metric_definitions():
        found = re.findall(definition["Regex"], log)
        # Then it matches its own line only, and reads back the printed value (six significant digits)
        assert len(found) == 1, definition
        assert float(found[0]) == pytest.approx(values[definition["Name"]], rel=1e-5), definition


def test_nan_and_infinity_are_printed_but_never_scraped() -> None:
    """CloudWatch PutMetricData (API reference): values must be finite; NaN and infinity are rejected. A
    scraped "nan" would be no number at all, and a regex that read the "1" of "1e-07" a wrong one."""
    # Given a loss that became NaN and a gradient norm that became infinite
    log = "\n".join(
        [contract.metric_line("train_loss", float("nan")), contract.metric_line("eval_loss", float("inf"))]
    )
    # When the job's regexes read the log / Then neither value is scraped, though both lines say what happened
    assert log == "train_loss=nan\neval_loss=inf"
    assert not [d for d in contract.metric_definitions() if re.search(d["Regex"], log)]
    assert re.search(contract.metric_regex("x"), "x=1e-07").group(1) == "1e-07"


def test_every_job_metric_fits_sagemakers_limit_of_metric_definitions() -> None:
    """CreateTrainingJob (Amazon SageMaker API Reference), AlgorithmSpecification.MetricDefinitions: "Array
    Members: Minimum number of 0 items. Maximum number of 40 items"; a regex is at most 500 characters."""
    # Given the job's metric definitions: quality metrics and every health rule's flag and value
    definitions = contract.metric_definitions()
    # Then they fit SageMaker's limits, and each health rule has its flag and its value
    assert len(definitions) <= contract.MAX_METRIC_DEFINITIONS == 40
    assert all(len(d["Regex"]) <= 500 and len(d["Name"]) <= 255 for d in definitions)
    names = [d["Name"] for d in definitions]
    assert len(set(names)) == len(names)
    for rule in contract.HEALTH_RULES:
        assert {contract.health_metric(rule), contract.health_value_metric(rule)} <= set(names)
    assert set(contract.DEFAULT_BLOCKING_HEALTH_RULES) <= set(contract.HEALTH_RULES)


def test_the_window_hop_rule_overlaps_windows_by_half() -> None:
    # Given windows of the lengths training uses (and degenerate ones)
    # Then consecutive windows overlap by half, and the hop is never zero
    assert [contract.window_hop(n) for n in (1, 2, 16_000, 80_001)] == [1, 1, 8_000, 40_000]


def test_each_lambdas_typed_environment_is_read_back_by_its_own_settings() -> None:
    # Given each function's environment as its typed record writes it, every optional feature on
    launcher = lambda_contract.LauncherEnvironment(
        job_name_prefix="acoustic-shield-dev-train-",
        execution_role_arn="arn:aws:iam::123456789012:role/training",
        training_image="763104351884.dkr.ecr.eu-west-1.amazonaws.com/huggingface-pytorch-training:x",
        source_dir="s3://assets/sourcedir.tar.gz",
        data_bucket="acoustic-data",
        dataset_prefix=f"{contract.DATASETS_PREFIX}esc50/",
        models_prefix=contract.MODELS_PREFIX,
        checkpoints_prefix=contract.CHECKPOINTS_PREFIX,
        launch_lock_key=f"{contract.LOCKS_PREFIX}launcher.json",
        kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        instance_type="ml.g5.xlarge",
        instance_count=1,
        volume_size_gb=50,
        use_spot=True,
        max_runtime_seconds=3600,
        max_wait_seconds=7200,
        hyperparameters={"num_train_epochs": "3"},
        tags={"project": "acoustic-shield"},
        retrain_debounce_minutes=30,
        tuning_job_prefix="acoustic-shield-dev-hpo-",
        tuning={
            "enabled": True,
            "strategy": "Bayesian",
            "objective": "eval_map",
            "objective_type": "Maximize",
            "ranges": lambda_contract.DEFAULT_TUNING_RANGES,
            "max_jobs": 4,
            "max_parallel_jobs": 2,
            "early_stopping": "Auto",
        },
        profiler_enabled=True,
        debugger_rules=("Overfit",),
        debug_prefix=contract.DEBUG_PREFIX,
        profiler_rules=("CPUBottleneck",),
        profiling_interval_ms=500,
        profiler_prefix=contract.PROFILER_PREFIX,
        rule_evaluator_image="929884845733.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-debugger-rules:latest",
        metric_names=metric_line_names(tasks.load("multilabel")),
    )
    promoter = lambda_contract.PromoterEnvironment(
        model_package_group="acoustic-shield-dev",
        job_name_prefix="acoustic-shield-dev-train-",
        tuning_job_prefix="acoustic-shield-dev-hpo-",
        gate_rules=(lambda_contract.GateRule("f1", True, 0.25), lambda_contract.GateRule("wer", False, 0.3)),
        max_regression=0.05,
        manual_approval=True,
        health_blocking_rules=("overfit",),
        topic_arn="arn:aws:sns:eu-west-1:123456789012:notices",
        inference_image="763104351884.dkr.ecr.eu-west-1.amazonaws.com/huggingface-pytorch-inference:x",
        serving_instance_type="ml.m5.xlarge",
        data_bucket="acoustic-data",
        evaluation_prefix=contract.EVALUATION_PREFIX,
    )
    # When each function's settings read it at cold start
    launch = LaunchSettings.from_environment({"AWS_REGION": "eu-west-1", **launcher.variables()})
    settings = Settings.from_environment(promoter.variables())
    # Then they get back what the record held, and the record names every variable
    assert set(launcher.variables()) == set(lambda_contract.LauncherEnvironment.names())
    assert (launch.use_spot, launch.instance_count, launch.debounce_minutes) == (True, 1, 30)
    assert (launch.hyperparameters, launch.tags) == (launcher.hyperparameters, launcher.tags)
    assert launch.tuning is not None and launch.tuning.max_parallel_jobs == 2 and launch.tuning.enabled
    assert (launch.tuning.objective, launch.tuning.objective_type) == ("eval_map", "Maximize")
    assert launch.metric_names == launcher.metric_names
    assert launch.rules.debugger_rules == ("Overfit",) and launch.rules.profiling_interval_ms == 500
    assert launch.checkpoints_prefix == contract.CHECKPOINTS_PREFIX
    assert settings.thresholds == Thresholds(gate_rules=promoter.gate_rules, max_regression=0.05)
    assert (settings.manual_approval, settings.health_blocking_rules) == (True, ("overfit",))
    assert settings.evaluation_prefix == contract.EVALUATION_PREFIX
    # And a feature left off (None) sets no variable: the reader takes its default
    quiet = dataclasses.replace(
        launcher,
        debugger_rules=None,
        debug_prefix=None,
        profiler_enabled=False,
        profiler_rules=None,
        profiling_interval_ms=None,
        profiler_prefix=None,
        rule_evaluator_image=None,
    )
    assert lambda_contract.ENV_DEBUGGER_RULES not in quiet.variables()
    assert quiet.variables()[lambda_contract.ENV_PROFILER_ENABLED] == "false"
    assert (
        LaunchSettings.from_environment({"AWS_REGION": "eu-west-1", **quiet.variables()}).rules.debugger_rules
        == ()
    )


# --- one place for each fact ------------------------------------------------------------------------


# Where each contract is written: the one file that may spell its facts.
CONTRACT_FILES = {"contract": "common/contract.py", "lambda_contract": "common/lambda_contract.py"}


def _facts() -> dict[str, str]:
    """Each literal the contracts own, with its qualified name there (``contract.X``)."""
    # Channel names ("train", "validation", "test", "noise") are left out: as words they name splits,
    # labels and log fields too. Everything else is scanned: the data bucket's prefixes (with their "/"),
    # the stack name prefix, archives, files, headers, content types and every environment variable name.
    suffixes = ("_FILE", "_HEADER", "_ATTRIBUTE", "_CONTENT_TYPE", "_PREFIX", "_ARCHIVE")
    facts = {
        f"contract.{name}": value
        for name, value in vars(contract).items()
        if isinstance(value, str) and (name.endswith(suffixes) or name.startswith("ENV_"))
    }
    # The columns' words are too common to scan ("labels" is also a batch's key); file_name is not.
    names = ("ENTRY_POINT", "CHECKPOINT_DIR", "FILE_NAME_COLUMN", "TASK_SETTINGS_KEY", "SERVING_ENTRY")
    facts |= {f"contract.{name}": getattr(contract, name) for name in names}
    facts |= {f"contract.REQUEST_CONTENT_TYPES[{v}]": v for v in contract.REQUEST_CONTENT_TYPES}
    facts |= {f"contract.METRIC_NAMES[{v}]": v for v in contract.METRIC_NAMES}
    facts |= {f"contract.HANDLER_ENVIRONMENT[{k}]": v for k, v in contract.HANDLER_ENVIRONMENT.items()}
    facts |= {f"contract.HANDLER_ENVIRONMENT key {k}": k for k in contract.HANDLER_ENVIRONMENT}
    # Each Lambda's environment: the names its typed record writes and its settings read.
    facts |= {
        f"lambda_contract.{name}": value
        for name, value in vars(lambda_contract).items()
        if isinstance(value, str) and name.startswith("ENV_")
    }
    return facts


# (file, literal): the same characters meaning something else.
NOT_THE_CONTRACT = {
    ("staging/stores.py", "application/octet-stream"): "the S3 object type of a staged file",
    ("infra/training/stager.py", "DATA_BUCKET"): "the staging CodeBuild project's variable, read by its "
    "own build commands",
    ("infra/training/stager.py", "DATASET_PREFIX"): "the staging CodeBuild project's variable, read by its "
    "own build commands",
}


def _string_literals(path: Path) -> Iterator[tuple[int, str]]:
    """Every string constant of a module that is not a docstring."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value
        elif isinstance(node, ast.BinOp | ast.JoinedStr):
            built = _built(node)
            if built is not None:
                yield node.lineno, built


def _built(node: ast.AST) -> str | None:
    """A name built from literal pieces (``"metrics" + ".json"``, ``f"{'test'}_f1"``), or None when a piece
    is not a literal."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _built(node.left), _built(node.right)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.JoinedStr):
        parts = [_built(v.value if isinstance(v, ast.FormattedValue) else v) for v in node.values]
        return None if any(p is None for p in parts) else "".join(p for p in parts if p is not None)
    return None


def test_the_scan_reads_names_built_from_literal_pieces(tmp_path: Path) -> None:
    # Given a module that builds contract names from pieces, and one that builds from a variable
    (tmp_path / "pieces.py").write_text(
        "A = 'metrics' + '.json'\nB = f\"{'test'}_f1\"\nC = 'x' + 'y' + '.tar.gz'\nD = f'{split}_f1'\n"
    )
    # When its string literals are read / Then the built names are among them, the variable one is not
    found = [text for _, text in _string_literals(tmp_path / "pieces.py")]
    assert {"metrics.json", "test_f1", "xy.tar.gz"} <= set(found)
    assert {text for text in found if text.endswith("_f1")} == {"test_f1", "_f1"}  # "_f1": D's literal piece


def test_each_contract_fact_is_spelled_only_in_the_contract() -> None:
    # Given the literals the contracts own (the data bucket's prefixes, the entry point, checkpoint path
    # and archives, file names, headers, content types, environment variable names of the handler and of
    # each Lambda, metric names, the handler's location)
    facts = {value: name for name, value in _facts().items()}
    some = {
        "metrics.json",
        "X-Amzn-SageMaker-Custom-Attributes",
        "audio/wave",
        "SAGEMAKER_PROGRAM",
        "test_f1",
        "datasets/",
        "batch-input/",
        "AcousticShield-",
        "train.py",
        "/opt/ml/checkpoints",
        "model.tar.gz",
        "output.tar.gz",
        "USE_SPOT",
        "EVALUATION_PREFIX",
    }
    assert some <= facts.keys()  # the selection above finds each kind
    # When every source file outside tests and the contract is read
    copies = []
    for source in SOURCES:
        base = ROOT / source
        for path in sorted([base] if base.is_file() else base.rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            for line, text in _string_literals(path):
                if text not in facts or (relative, text) in NOT_THE_CONTRACT:
                    continue
                owner = facts[text].partition(".")[0]
                if relative != CONTRACT_FILES[owner]:
                    copies.append(f"{relative}:{line}: {text!r} is {facts[text]}")
    # Then none spells one out: each uses the contract's name for it
    assert not copies, "\n".join(copies)
