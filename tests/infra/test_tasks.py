"""Tasks side by side: a deployment of another task than the default one names its stacks and runtime names
after its task, and trains, scrapes, tunes and gates that task's metrics; the default task's stay as they
were."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import botocore.session
import cfnlint.api
import pytest
from aws_cdk.assertions import Template
from botocore.validate import ParamValidator

import tasks
from common import contract, lambda_contract
from common.lambda_contract import GateRule
from infra.app_builder import AcousticShieldApp
from infra.config import (
    ConfigError,
    QualityGate,
    gate_rules,
    load_config,
    metric_line_names,
    runtime_name,
    tuning_objective,
)
from infra.serving.placement import endpoint_name
from infra.training.deployer import build_spec
from infra.training.stager import build_spec as stager_build_spec
from infra.training_stack import job_name_prefix, tuning_job_prefix
from lambdas.launcher import logic
from lambdas.launcher.settings import LaunchSettings
from lambdas.promoter.settings import Settings
from tests.lambdas.conftest import request_violations

from .conftest import MODEL_A, cdk_context
from .test_lambda_environments import ACCOUNT, environment

LAUNCHER, PROMOTER = "lambdas.launcher.handler.handler", "lambdas.promoter.handler.handler"
# A multilabel deployment with an endpoint and tuning on: every name and variable the task changes.
MULTILABEL = {"task": "multilabel", "model_data_url": MODEL_A, "tuning_enabled": "true"}
SCHEDULED = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "time": "2026-11-22T03:00:00Z",
    "detail": {},
}
# SageMaker's names: model package groups (CreateModelPackageGroup), endpoints (CreateEndpoint), training
# jobs (CreateTrainingJob) and tuning jobs (CreateHyperParameterTuningJob).
GROUP_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
ENDPOINT_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
TUNING_JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}")


@pytest.fixture(scope="module")
def multilabel(synth_app: Callable[..., AcousticShieldApp]) -> AcousticShieldApp:
    return synth_app(**MULTILABEL)


def variables(app: AcousticShieldApp, handler: str) -> dict[str, str]:
    return environment(Template.from_stack(app.training), handler)


def test_a_multilabel_deployment_names_its_stacks_and_runtime_names_after_its_task(
    multilabel: AcousticShieldApp,
) -> None:
    # Given the app synthesized with -c task=multilabel (and a model, so that it has an endpoint)
    serving = multilabel.serving
    assert serving is not None
    # Then the Data stack is the environment's shared one, and the Training and Serving stacks are the task's
    assert multilabel.data.stack_name == "AcousticShield-dev-Data"
    assert multilabel.training.stack_name == "AcousticShield-dev-Training-multilabel"
    assert serving.stack_name == "AcousticShield-dev-Serving-multilabel"
    # And every runtime name carries the task: jobs, tuning jobs, model package group, endpoint, lease
    launcher, promoter = variables(multilabel, LAUNCHER), variables(multilabel, PROMOTER)
    assert (
        launcher["JOB_NAME_PREFIX"] == promoter["JOB_NAME_PREFIX"] == "acoustic-shield-dev-multilabel-train-"
    )
    assert launcher["TUNING_JOB_PREFIX"] == promoter["TUNING_JOB_PREFIX"]
    assert launcher["TUNING_JOB_PREFIX"].endswith("-hpo-") and len(launcher["TUNING_JOB_PREFIX"]) <= 24
    assert launcher["LAUNCH_LOCK_KEY"] == "locks/launcher-multilabel.json"
    assert promoter["MODEL_PACKAGE_GROUP"] == "acoustic-shield-dev-multilabel"
    training = Template.from_stack(multilabel.training)
    training.has_resource_properties(
        "AWS::SageMaker::ModelPackageGroup", {"ModelPackageGroupName": "acoustic-shield-dev-multilabel"}
    )
    Template.from_stack(serving).has_resource_properties(
        "AWS::SageMaker::Endpoint", {"EndpointName": "acoustic-shield-dev-multilabel-m5-xlarge"}
    )
    # And the launcher may start only the task's jobs
    policies = json.dumps(training.find_resources("AWS::IAM::Policy"))
    assert ":training-job/acoustic-shield-dev-multilabel-train-*" in policies
    assert ":training-job/acoustic-shield-dev-train-*" not in policies
    assert "/locks/launcher-multilabel.json" in policies


def test_the_task_s_deploy_project_deploys_the_task_s_serving_stack(multilabel: AcousticShieldApp) -> None:
    # Given the multilabel deployment's deploy project
    (project,) = [
        p
        for key, p in Template.from_stack(multilabel.training)
        .find_resources("AWS::CodeBuild::Project")
        .items()
        if key.startswith("Deployer")
    ]
    spec = json.loads(project["Properties"]["Source"]["BuildSpec"])
    # Then it deploys the task's Serving stack, synthesized for the task, and reports that stack's status
    deploy = spec["phases"]["build"]["commands"][1]
    assert deploy.startswith(
        "npx cdk deploy AcousticShield-dev-Serving-multilabel --exclusively -c env=dev -c task=multilabel "
    )
    assert "AcousticShield-dev-Serving-multilabel " in spec["phases"]["post_build"]["commands"][0]
    # And the default task's build spec says no task: it is what it always was
    assert (
        " -c task="
        not in build_spec(env_name="dev", stack_name="S", verify=True)["phases"]["build"]["commands"][1]
    )


def test_the_task_s_staging_build_stages_in_the_task_s_layout(multilabel: AcousticShieldApp) -> None:
    # Given the multilabel deployment's staging build
    (project,) = [
        p
        for key, p in Template.from_stack(multilabel.training)
        .find_resources("AWS::CodeBuild::Project")
        .items()
        if key.startswith("DatasetStager")
    ]
    (command,) = json.loads(project["Properties"]["Source"]["BuildSpec"])["phases"]["build"]["commands"]
    # Then it stages multi-label (metadata.csv splits), and the staging tool takes that option
    assert " --task multilabel " in command
    from staging import cli

    assert cli.parse_args(["folder", "--task", "multilabel", "--to", "out"]).task == "multilabel"
    # And the default task's command says no task: it is what it always was
    (default,) = stager_build_spec()["phases"]["build"]["commands"]
    assert "--task" not in default


def test_a_multilabel_launcher_is_told_its_task_metric_lines_and_tuning_objective(
    multilabel: AcousticShieldApp,
) -> None:
    # Given the multilabel launcher's environment
    launcher = variables(multilabel, LAUNCHER)
    # Then its jobs train the task, scrape the task's metric lines and tune mAP upwards
    assert json.loads(launcher["HYPERPARAMETERS"])[contract.TASK_ARGUMENT] == "multilabel"
    assert json.loads(launcher["METRIC_NAMES"]) == ["loss", "map", "micro_f1", "macro_f1", "lwlrap"]
    tuning = json.loads(launcher["TUNING"])
    assert (tuning["objective"], tuning["objective_type"]) == ("eval_map", "Maximize")


def test_a_multilabel_promoter_gates_map_and_micro_f1() -> None:
    # Given a multilabel deployment with its own minimums
    config = load_config(cdk_context(task="multilabel", min_map="0.45", min_micro_f1="0.4").get)
    # When the gate's rules are made for the task
    rules = gate_rules(config.quality, tasks.load(config.task))
    # Then they gate mAP and micro-F1, higher is better, at the configured minimums
    assert rules == (GateRule("map", True, 0.45), GateRule("micro_f1", True, 0.4))


def test_the_promoter_reading_the_multilabel_environment_gates_map_and_micro_f1(
    multilabel: AcousticShieldApp,
) -> None:
    # Given the multilabel promoter's environment as synthesized
    # When the promoter's settings read it at cold start
    settings = Settings.from_environment(variables(multilabel, PROMOTER))
    # Then its gate checks mAP and micro-F1 at the defaults, higher is better
    assert settings.thresholds.gate_rules == (GateRule("map", True, 0.3), GateRule("micro_f1", True, 0.3))
    assert settings.model_package_group == "acoustic-shield-dev-multilabel"


def test_the_launcher_reading_the_multilabel_environment_scrapes_and_tunes_the_tasks_metrics(
    multilabel: AcousticShieldApp,
) -> None:
    # Given the multilabel launcher's settings, read from its synthesized environment
    # (the role as IAM names it: the synthesized stand-in is not a role ARN)
    role = {"EXECUTION_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/acoustic-shield-training"}
    settings = LaunchSettings.from_environment({**variables(multilabel, LAUNCHER), **role})
    request = logic.parse_event(SCHEDULED, "r-1")
    # When it builds a training job and a tuning job for a scheduled event
    single = logic.build_training_job_request(
        settings, logic.job_name(settings.job_name_prefix, request), request, ["train", "validation"]
    )
    assert settings.tuning is not None
    tuning = logic.build_tuning_job_request(
        settings, logic.tuning_job_name(settings.tuning.job_name_prefix, request), request, ["train"]
    )
    # Then both scrape the task's lines (eval_map with its regex), the training loss and the health metrics
    expected = contract.metric_definitions(metric_line_names(tasks.load("multilabel")))
    definitions = single["AlgorithmSpecification"]["MetricDefinitions"]
    assert (
        definitions
        == expected
        == tuning["TrainingJobDefinition"]["AlgorithmSpecification"]["MetricDefinitions"]
    )
    assert {"Name": "eval_map", "Regex": contract.metric_regex("eval_map")} in definitions
    assert not {d["Name"] for d in definitions} & {"eval_accuracy", "test_f1"}
    # And the trials train the task, towards the highest validation mAP
    assert json.loads(single["HyperParameters"]["task"]) == "multilabel"
    assert json.loads(tuning["TrainingJobDefinition"]["StaticHyperParameters"]["task"]) == "multilabel"
    objective = tuning["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]
    assert objective == {"Type": "Maximize", "MetricName": "eval_map"}
    # And SageMaker's request models accept both
    for operation, built in (("CreateTrainingJob", single), ("CreateHyperParameterTuningJob", tuning)):
        shape = (
            botocore.session.get_session()
            .get_service_model("sagemaker")
            .operation_model(operation)
            .input_shape
        )
        report = ParamValidator().validate(built, shape)
        assert not report.has_errors(), report.generate_report()
        assert request_violations(built, shape) == []


def test_the_default_tasks_environment_is_what_it_always_was(dev_app: AcousticShieldApp) -> None:
    # Given the default (classification) deployment's launcher and promoter environments
    launcher, promoter = variables(dev_app, LAUNCHER), variables(dev_app, PROMOTER)
    # Then no task is named anywhere: the names, the metric lines and the tuning object predate tasks
    assert dev_app.training.stack_name == "AcousticShield-dev-Training"
    assert lambda_contract.ENV_METRIC_NAMES not in launcher
    assert contract.TASK_ARGUMENT not in json.loads(launcher["HYPERPARAMETERS"])
    assert json.loads(launcher["TUNING"])["objective"] == "eval_f1"
    assert lambda_contract.TUNING_OBJECTIVE_TYPE not in json.loads(launcher["TUNING"])
    assert launcher["LAUNCH_LOCK_KEY"] == "locks/launcher.json"
    assert launcher["JOB_NAME_PREFIX"] == "acoustic-shield-dev-train-"
    assert promoter["MODEL_PACKAGE_GROUP"] == "acoustic-shield-dev"
    # And its launcher scrapes what it always did
    settings = LaunchSettings.from_environment(launcher)
    assert settings.metric_names == contract.METRIC_LINE_NAMES
    assert contract.metric_definitions(settings.metric_names) == contract.metric_definitions()
    assert settings.tuning is not None and settings.tuning.objective_type == "Maximize"


@pytest.mark.parametrize("task", ["", "Multilabel", "tasks.multilabel", "regression"])
def test_a_task_that_is_not_one_of_tasks_is_a_config_error_naming_the_choices(task: str) -> None:
    # Given -c task=<not a task of tasks/>
    context = cdk_context(task=task)
    # When the configuration is loaded / Then synthesis stops, naming the key, the value and the tasks
    with pytest.raises(ConfigError) as refused:
        load_config(context.get)
    message = str(refused.value)
    assert f"config key 'task' = {task!r} is invalid: expected one of " in message
    assert all(repr(name) in message for name in tasks.known())


@pytest.mark.parametrize(
    ("task", "objective", "expected"),
    [
        ("multilabel", "", ("eval_map", "Maximize")),
        ("multilabel", "eval_micro_f1", ("eval_micro_f1", "Maximize")),
        ("multilabel", "eval_lwlrap", ("eval_lwlrap", "Maximize")),
        ("multilabel", "eval_loss", ("eval_loss", "Minimize")),
        ("classification", "", ("eval_f1", "Maximize")),
        ("classification", "eval_loss", ("eval_loss", "Minimize")),
        ("classification", "eval_clip_f1", ("eval_clip_f1", "Maximize")),
    ],
)
def test_the_tuning_objective_is_one_of_the_tasks_validation_metrics_in_its_direction(
    task: str, objective: str, expected: tuple[str, str]
) -> None:
    # Given a deployment of the task with tuning_objective set (or left empty: the task's objective)
    config = load_config(cdk_context(task=task, tuning_objective=objective).get)
    # When its objective is resolved / Then it is the metric, in the direction of the task's metric (Minimize
    # for the loss)
    assert tuning_objective(config.training.tuning, tasks.load(task)) == expected


@pytest.mark.parametrize(
    ("task", "objective", "expected"),
    [
        # Another task's TUNING always names the direction, even where the default task's table has it
        ("multilabel", "eval_loss", ("eval_loss", "Minimize")),
        # The default task's names it for an objective its table (which predates the field) lacks
        ("classification", "eval_clip_f1", ("eval_clip_f1", "Maximize")),
    ],
)
def test_tuning_names_the_objectives_direction_unless_the_default_tasks_table_gives_it(
    task: str, objective: str, expected: tuple[str, str], synth_app: Callable[..., AcousticShieldApp]
) -> None:
    # Given a deployment of the task with that tuning objective
    app = synth_app(task=task, tuning_objective=objective)
    # When the launcher's TUNING is synthesized and read at cold start
    launcher = variables(app, LAUNCHER)
    tuning = json.loads(launcher["TUNING"])
    settings = LaunchSettings.from_environment(launcher).tuning
    # Then TUNING names the objective with its direction, and the launcher tunes in that direction
    assert (tuning["objective"], tuning[lambda_contract.TUNING_OBJECTIVE_TYPE]) == expected
    assert settings is not None and (settings.objective, settings.objective_type) == expected


@pytest.mark.parametrize(
    ("task", "objective", "allowed"),
    [
        ("multilabel", "eval_f1", "'eval_loss', 'eval_map', 'eval_micro_f1', 'eval_macro_f1', 'eval_lwlrap'"),
        ("multilabel", "test_map", "'eval_loss', 'eval_map'"),
        ("classification", "eval_map", "'eval_loss', 'eval_accuracy', 'eval_f1'"),
    ],
)
def test_a_tuning_objective_the_task_does_not_report_is_a_config_error(
    task: str, objective: str, allowed: str
) -> None:
    # Given a tuning objective that is not a validation metric of the deployment's task
    context = cdk_context(task=task, tuning_objective=objective)
    # When the configuration is loaded / Then synthesis stops, naming the task's validation metrics
    with pytest.raises(
        ConfigError, match=re.escape(f"'tuning_objective' = {objective!r} is invalid")
    ) as refused:
        load_config(context.get)
    assert allowed in str(refused.value) and f"the {task} task's validation metrics" in str(refused.value)


def test_a_task_gating_a_metric_without_a_threshold_key_is_a_config_error() -> None:
    # Given a task that gates a lower-is-better metric the quality gate has no max_<metric> key for
    presence = tasks.load("tests.tasks.presence")
    assert [presence.metric(name).higher_is_better for name in presence.gated] == [False]
    # When its gate rules are made / Then the message names the task, the metric and the missing key
    with pytest.raises(
        ConfigError,
        match="task 'presence' gates error_rate, but the quality gate has no key 'max_error_rate'",
    ):
        gate_rules(QualityGate(), presence)


@pytest.mark.parametrize("mode", ["realtime", "async", "serverless"])
def test_the_longest_name_prefix_with_a_tasks_suffix_fits_sagemakers_names(mode: str) -> None:
    # Given the longest name prefix (28 characters) for the multilabel task and for the default one
    prefix = "acoustic-shield-environmentz"
    multilabel = load_config(cdk_context(name_prefix=prefix, task="multilabel", serving_mode=mode).get)
    default = load_config(cdk_context(name_prefix=prefix, serving_mode=mode).get)
    request = logic.parse_event(SCHEDULED, "r-1")
    # When every runtime name is made: jobs (with the launcher's timestamp and digest), tuning jobs and their
    # trials, the model package group and the endpoint (on the longest instance type names)
    job = logic.job_name(job_name_prefix(multilabel), request)
    tuning = logic.tuning_job_name(tuning_job_prefix(multilabel), request)
    group = runtime_name(multilabel)
    longest = "ml.trn1n.32xlarge"
    serving = load_config(
        cdk_context(
            name_prefix=prefix, task="multilabel", serving_mode=mode, serving_instance_type=longest
        ).get
    ).serving
    endpoint = endpoint_name(runtime_name(multilabel), serving)
    # Then each is within SageMaker's limits and patterns (the launcher adds what the stack leaves room for)
    assert len(logic.job_name("", request)) == lambda_contract.JOB_SUFFIX_LENGTH
    assert JOB_NAME.fullmatch(job) and len(job) <= 63
    assert TUNING_JOB_NAME.fullmatch(tuning) and JOB_NAME.fullmatch(f"{tuning}-001-1a2b3c4d")
    assert GROUP_NAME.fullmatch(group) and group == f"{prefix}-multilabel"
    assert ENDPOINT_NAME.fullmatch(endpoint) and endpoint.startswith(f"{prefix}-multilabel-")
    # And neither task's prefixes cover the other's names: each launcher and promoter sees its own jobs only
    for ours, theirs in (
        (job_name_prefix(multilabel), job_name_prefix(default)),
        (
            tuning_job_prefix(multilabel),
            tuning_job_prefix(default),
        ),
    ):
        assert not ours.startswith(theirs) and not theirs.startswith(ours)
    assert runtime_name(default) == prefix and job_name_prefix(default) == f"{prefix}-train-"


def test_a_task_name_sagemaker_cannot_take_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a task whose module name has a character SageMaker names refuse
    import infra.config as config_module

    monkeypatch.setattr(config_module.tasks, "runtime_suffix", lambda name: "-sound_events")
    # When the configuration is loaded / Then synthesis stops, saying what a runtime name may hold
    with pytest.raises(ConfigError, match="makes the runtime name 'acoustic-shield-dev-sound_events'"):
        load_config(cdk_context(task="multilabel").get)


def test_every_tasks_job_metric_definitions_fit_sagemakers_limit() -> None:
    """CreateTrainingJob (Amazon SageMaker API Reference), AlgorithmSpecification.MetricDefinitions: "Array
    Members: Minimum number of 0 items. Maximum number of 40 items"."""
    # Given every task of tasks/ and the metric lines its jobs print
    for name in tasks.known():
        lines = metric_line_names(tasks.load(name))
        # When the launcher's metric definitions are made for them
        definitions = contract.metric_definitions(lines)
        # Then they fit SageMaker's limit, and the launcher's check (the same at synthesis) accepts them
        assert len(definitions) <= contract.MAX_METRIC_DEFINITIONS == 40, name
        assert lambda_contract.check_metric_names(list(lines)) == lines


def test_a_multilabel_deployment_is_nag_clean_and_its_stacks_cfn_lint_clean(
    multilabel: AcousticShieldApp,
) -> None:
    # Given the multilabel app, synthesized with the cdk-nag gate
    serving = multilabel.serving
    assert serving is not None
    outdir = Path(multilabel.training.node.root.outdir)  # type: ignore[attr-defined]
    # Then cdk-nag reports nothing unacknowledged, and cfn-lint finds no error in the task's stacks
    assert json.loads((outdir / "validation-report.json").read_text())["pluginReports"] == []
    for stack in (multilabel.training, serving):
        matches = cfnlint.api.lint_file(outdir / stack.template_file)
        assert [str(m) for m in matches if m.rule.id.startswith("E")] == [], stack.stack_name
