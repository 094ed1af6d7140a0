"""Tasks side by side: a deployment of another task than the default one names its stacks and runtime names
after its task, and trains, scrapes, tunes and gates that task's metrics; the default task's stay as they
were."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
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
# A deployment of each task other than the default one, with an endpoint and tuning on: every name and
# variable the task changes.
DEPLOYMENTS = {
    task: {"task": task, "model_data_url": MODEL_A, "tuning_enabled": "true"}
    for task in ("multilabel", "asr")
}
MULTILABEL = DEPLOYMENTS["multilabel"]


@dataclass(frozen=True)
class Expected:
    """What a task's deployment scrapes, tunes and gates at the defaults, written out (not read from the
    task) so that a change to a task's facts shows here."""

    metric_lines: tuple[str, ...]
    objective: tuple[str, str]
    rules: tuple[GateRule, ...]


EXPECTED = {
    "multilabel": Expected(
        metric_lines=("loss", "map", "micro_f1", "macro_f1", "lwlrap"),
        objective=("eval_map", "Maximize"),
        rules=(GateRule("map", True, 0.3), GateRule("micro_f1", True, 0.3)),
    ),
    # Error rates: lower is better, and a number >= 0 that insertions can take above 1 (fraction False).
    "asr": Expected(
        metric_lines=("loss", "wer", "cer"),
        objective=("eval_wer", "Minimize"),
        rules=(GateRule("wer", False, 0.3, fraction=False), GateRule("cer", False, 0.15, fraction=False)),
    ),
}
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


@pytest.fixture(scope="module", params=sorted(DEPLOYMENTS))
def deployment(
    request: pytest.FixtureRequest, synth_app: Callable[..., AcousticShieldApp]
) -> AcousticShieldApp:
    """The app synthesized for each task other than the default one (its ``config.task``)."""
    return synth_app(**DEPLOYMENTS[request.param])


def variables(app: AcousticShieldApp, handler: str) -> dict[str, str]:
    return environment(Template.from_stack(app.training), handler)


def test_a_tasks_deployment_names_its_stacks_and_runtime_names_after_its_task(
    deployment: AcousticShieldApp,
) -> None:
    # Given the app synthesized with -c task=<task> (and a model, so that it has an endpoint)
    task = deployment.config.task
    serving = deployment.serving
    assert serving is not None
    # Then the Data stack is the environment's shared one, and the Training and Serving stacks are the task's
    assert deployment.data.stack_name == "AcousticShield-dev-Data"
    assert deployment.training.stack_name == f"AcousticShield-dev-Training-{task}"
    assert serving.stack_name == f"AcousticShield-dev-Serving-{task}"
    # And every runtime name carries the task: jobs, tuning jobs, model package group, endpoint, lease
    launcher, promoter = variables(deployment, LAUNCHER), variables(deployment, PROMOTER)
    assert launcher["JOB_NAME_PREFIX"] == promoter["JOB_NAME_PREFIX"] == f"acoustic-shield-dev-{task}-train-"
    assert launcher["TUNING_JOB_PREFIX"] == promoter["TUNING_JOB_PREFIX"]
    assert launcher["TUNING_JOB_PREFIX"].endswith("-hpo-") and len(launcher["TUNING_JOB_PREFIX"]) <= 24
    assert launcher["LAUNCH_LOCK_KEY"] == f"locks/launcher-{task}.json"
    assert promoter["MODEL_PACKAGE_GROUP"] == f"acoustic-shield-dev-{task}"
    training = Template.from_stack(deployment.training)
    training.has_resource_properties(
        "AWS::SageMaker::ModelPackageGroup", {"ModelPackageGroupName": f"acoustic-shield-dev-{task}"}
    )
    Template.from_stack(serving).has_resource_properties(
        "AWS::SageMaker::Endpoint", {"EndpointName": f"acoustic-shield-dev-{task}-m5-xlarge"}
    )
    # And the launcher may start only the task's jobs
    policies = json.dumps(training.find_resources("AWS::IAM::Policy"))
    assert f":training-job/acoustic-shield-dev-{task}-train-*" in policies
    assert ":training-job/acoustic-shield-dev-train-*" not in policies
    assert f"/locks/launcher-{task}.json" in policies


def test_the_task_s_deploy_project_deploys_the_task_s_serving_stack(deployment: AcousticShieldApp) -> None:
    # Given the task's deployment's deploy project
    task = deployment.config.task
    (project,) = [
        p
        for key, p in Template.from_stack(deployment.training)
        .find_resources("AWS::CodeBuild::Project")
        .items()
        if key.startswith("Deployer")
    ]
    spec = json.loads(project["Properties"]["Source"]["BuildSpec"])
    # Then it deploys the task's Serving stack, synthesized for the task, and reports that stack's status
    deploy = spec["phases"]["build"]["commands"][1]
    assert deploy.startswith(
        f"npx cdk deploy AcousticShield-dev-Serving-{task} --exclusively -c env=dev -c task={task} "
    )
    assert f"AcousticShield-dev-Serving-{task} " in spec["phases"]["post_build"]["commands"][0]
    # And the default task's build spec says no task: it is what it always was
    assert (
        " -c task="
        not in build_spec(env_name="dev", stack_name="S", verify=True)["phases"]["build"]["commands"][1]
    )


def test_the_task_s_staging_build_stages_in_the_task_s_layout(deployment: AcousticShieldApp) -> None:
    # Given the task's deployment's staging build
    task = deployment.config.task
    (project,) = [
        p
        for key, p in Template.from_stack(deployment.training)
        .find_resources("AWS::CodeBuild::Project")
        .items()
        if key.startswith("DatasetStager")
    ]
    (command,) = json.loads(project["Properties"]["Source"]["BuildSpec"])["phases"]["build"]["commands"]
    # Then it stages in the task's layout (metadata.csv splits), and the staging tool takes that option
    assert f" --task {task} " in command
    from staging import cli

    assert cli.parse_args(["folder", "--task", task, "--to", "out"]).task == task
    # And the default task's command says no task: it is what it always was
    (default,) = stager_build_spec()["phases"]["build"]["commands"]
    assert "--task" not in default


def test_a_tasks_launcher_is_told_its_task_metric_lines_and_tuning_objective(
    deployment: AcousticShieldApp,
) -> None:
    # Given the task's launcher's environment
    task = deployment.config.task
    launcher = variables(deployment, LAUNCHER)
    # Then its jobs train the task, scrape the task's metric lines and tune its objective in its direction
    # (multilabel: mAP upwards; asr: WER downwards)
    assert json.loads(launcher["HYPERPARAMETERS"])[contract.TASK_ARGUMENT] == task
    assert tuple(json.loads(launcher["METRIC_NAMES"])) == EXPECTED[task].metric_lines
    tuning = json.loads(launcher["TUNING"])
    assert (tuning["objective"], tuning["objective_type"]) == EXPECTED[task].objective


def test_a_multilabel_promoter_gates_map_and_micro_f1() -> None:
    # Given a multilabel deployment with its own minimums
    config = load_config(cdk_context(task="multilabel", min_map="0.45", min_micro_f1="0.4").get)
    # When the gate's rules are made for the task
    rules = gate_rules(config.quality, tasks.load(config.task))
    # Then they gate mAP and micro-F1, higher is better, at the configured minimums
    assert rules == (GateRule("map", True, 0.45), GateRule("micro_f1", True, 0.4))


def test_an_asr_promoter_gates_wer_and_cer_at_maximums_that_may_exceed_one() -> None:
    # Given an asr deployment whose maximum WER is above 1 (insertions can take WER there)
    config = load_config(cdk_context(task="asr", max_wer="1.2", max_cer="0.5").get)
    # When the gate's rules are made for the task
    rules = gate_rules(config.quality, tasks.load(config.task))
    # Then they gate WER and CER, lower is better, at the configured maximums, as error rates (>= 0, unbounded)
    assert rules == (GateRule("wer", False, 1.2, fraction=False), GateRule("cer", False, 0.5, fraction=False))
    # And the defaults are 0.3 and 0.15
    assert (QualityGate().max_wer, QualityGate().max_cer) == (0.3, 0.15)


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("max_wer", "-0.1", "a finite number >= 0"),
        ("max_wer", "inf", "a finite number >= 0"),
        ("max_cer", "nan", "a finite number >= 0"),
        ("max_wer", "much", "a number"),
        # A fraction's threshold stays within 0..1
        ("min_map", "1.5", "a number between 0 and 1"),
    ],
)
def test_an_error_rate_maximum_is_any_finite_number_from_zero(key: str, value: str, allowed: str) -> None:
    # Given a gate threshold that its metric cannot reach (negative, infinite, not a number; a fraction above 1)
    context = cdk_context(task="asr", **{key: value})
    # When the configuration is loaded / Then synthesis stops, naming the key, the value and what is allowed
    with pytest.raises(
        ConfigError, match=re.escape(f"config key '{key}' = {value!r} is invalid: expected {allowed}")
    ):
        load_config(context.get)


def test_an_asr_deployment_trains_from_the_tasks_checkpoint_and_window_unless_configured() -> None:
    # Given the asr task's own train.py defaults (its CTC checkpoint, its endpoint window)
    own = tasks.load("asr").argument_defaults()
    # When an asr deployment's configuration is loaded, and one that sets them
    default = load_config(cdk_context(task="asr").get).training.hyperparameters
    chosen = load_config(
        cdk_context(task="asr", model_name_or_path="my/ctc-model", max_length_seconds="12").get
    ).training.hyperparameters
    # Then its jobs are sent the task's checkpoint and window (every job is sent every Hyperparameters value,
    # so the config's classification defaults would otherwise replace them), and -c still wins
    assert (default.model_name_or_path, default.max_length_seconds) == (
        own["model_name_or_path"],
        own["max_length_seconds"],
    )
    assert (chosen.model_name_or_path, chosen.max_length_seconds) == ("my/ctc-model", 12.0)
    # And the other tasks keep the configuration's defaults
    for task in ("classification", "multilabel"):
        hyperparameters = load_config(cdk_context(task=task).get).training.hyperparameters
        assert (hyperparameters.model_name_or_path, hyperparameters.max_length_seconds) == (
            "facebook/wav2vec2-base",
            5.0,
        )


def test_the_promoter_reading_the_tasks_environment_gates_the_tasks_metrics(
    deployment: AcousticShieldApp,
) -> None:
    # Given the task's promoter's environment as synthesized
    task = deployment.config.task
    promoter = variables(deployment, PROMOTER)
    # When the promoter's settings read it at cold start
    settings = Settings.from_environment(promoter)
    # Then its gate checks the task's metrics at the defaults, in their direction and over their values
    # (multilabel: mAP and micro-F1, minimums, fractions; asr: WER and CER, maximums, error rates >= 0)
    assert settings.thresholds.gate_rules == EXPECTED[task].rules
    assert settings.model_package_group == f"acoustic-shield-dev-{task}"
    # And GATE_RULES is written as before "fraction" existed: each metric's values are its direction's
    assert all(lambda_contract.GATE_RULE_FRACTION not in rule for rule in json.loads(promoter["GATE_RULES"]))


def test_the_launcher_reading_the_tasks_environment_scrapes_and_tunes_the_tasks_metrics(
    deployment: AcousticShieldApp,
) -> None:
    """SageMaker's rules for what the requests carry (Amazon SageMaker API Reference): CreateTrainingJob,
    AlgorithmSpecification.MetricDefinitions: "Maximum number of 40 items"; MetricDefinition: Name "Length
    Constraints: Minimum length of 1. Maximum length of 255", Regex "Minimum length of 1. Maximum length of
    500", each "A regular expression that searches the output of a training job and gets the value of the
    metric"; HyperParameterTuningJobObjective: Type "Valid Values: Maximize | Minimize", MetricName one of
    the training job definition's metric definitions. botocore's request model carries the lengths, the
    enum and the patterns, which ``request_violations`` checks."""
    # Given the task's launcher's settings, read from its synthesized environment
    # (the role as IAM names it: the synthesized stand-in is not a role ARN)
    task = deployment.config.task
    role = {"EXECUTION_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/acoustic-shield-training"}
    settings = LaunchSettings.from_environment({**variables(deployment, LAUNCHER), **role})
    request = logic.parse_event(SCHEDULED, "r-1")
    # When it builds a training job and a tuning job for a scheduled event
    single = logic.build_training_job_request(
        settings, logic.job_name(settings.job_name_prefix, request), request, ["train", "validation"]
    )
    assert settings.tuning is not None
    tuning = logic.build_tuning_job_request(
        settings, logic.tuning_job_name(settings.tuning.job_name_prefix, request), request, ["train"]
    )
    # Then both scrape the task's lines (eval_<objective> with its regex), the training loss and the health
    # metrics, and none of the default task's
    expected = contract.metric_definitions(metric_line_names(tasks.load(task)))
    definitions = single["AlgorithmSpecification"]["MetricDefinitions"]
    assert (
        definitions
        == expected
        == tuning["TrainingJobDefinition"]["AlgorithmSpecification"]["MetricDefinitions"]
    )
    objective_name, direction = EXPECTED[task].objective
    assert {"Name": objective_name, "Regex": contract.metric_regex(objective_name)} in definitions
    assert not {d["Name"] for d in definitions} & {"eval_accuracy", "test_f1"}
    assert len(definitions) <= contract.MAX_METRIC_DEFINITIONS == 40
    # And the trials train the task, towards the best validation value in the metric's direction
    assert json.loads(single["HyperParameters"]["task"]) == task
    assert json.loads(tuning["TrainingJobDefinition"]["StaticHyperParameters"]["task"]) == task
    objective = tuning["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]
    assert objective == {"Type": direction, "MetricName": objective_name}
    assert objective["Type"] in ("Maximize", "Minimize")
    # And every line the job prints (common/contract.metric_line, an error rate above 1 included) is read by
    # its own definition's regex, and by no other
    for name in contract.job_metric_names(EXPECTED[task].metric_lines):
        line = contract.metric_line(name, 1.25)
        readers = [d["Name"] for d in definitions if re.search(d["Regex"], line)]
        assert readers == [name], line
        (match,) = [re.search(d["Regex"], line) for d in definitions if d["Name"] == name]
        assert match is not None and float(match.group(1)) == 1.25
    # And the trials search the shared default ranges: a log-scale learning rate and a few batch sizes
    assert tuning["HyperParameterTuningJobConfig"]["ParameterRanges"] == {
        "ContinuousParameterRanges": [
            {"Name": "learning_rate", "MinValue": "1e-5", "MaxValue": "1e-3", "ScalingType": "Logarithmic"}
        ],
        "CategoricalParameterRanges": [{"Name": "per_device_train_batch_size", "Values": ["4", "8", "16"]}],
    }
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
        ("asr", "", ("eval_wer", "Minimize")),
        ("asr", "eval_cer", ("eval_cer", "Minimize")),
        ("asr", "eval_loss", ("eval_loss", "Minimize")),
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
        ("asr", "eval_accuracy", "'eval_loss', 'eval_wer', 'eval_cer'"),
        ("asr", "test_wer", "'eval_loss', 'eval_wer', 'eval_cer'"),
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


def test_a_tasks_deployment_is_nag_clean_and_its_stacks_cfn_lint_clean(deployment: AcousticShieldApp) -> None:
    # Given the task's app, synthesized with the cdk-nag gate
    serving = deployment.serving
    assert serving is not None
    outdir = Path(deployment.training.node.root.outdir)  # type: ignore[attr-defined]
    # Then cdk-nag reports nothing unacknowledged, and cfn-lint finds no error in the task's stacks
    assert json.loads((outdir / "validation-report.json").read_text())["pluginReports"] == []
    for stack in (deployment.training, serving):
        matches = cfnlint.api.lint_file(outdir / stack.template_file)
        assert [str(m) for m in matches if m.rule.id.startswith("E")] == [], stack.stack_name


def test_the_promoter_names_the_default_task_as_tasks_does() -> None:
    # Given the default task's name the promoter records on packages of jobs that name no task (it carries no
    # task modules) / Then it is tasks'
    assert lambda_contract.DEFAULT_TASK == tasks.DEFAULT_TASK


@pytest.mark.parametrize(
    ("task", "source"), [("classification", "esc50"), ("multilabel", "fsd50k"), ("asr", "librispeech")]
)
def test_each_task_stages_from_a_source_of_its_own_by_default_and_refuses_one_that_cannot(task, source):
    # Given a deployment of each task that names no staging source
    config = load_config(cdk_context(task=task).get)
    # Then its staging build stages the task's first source (ESC-50 holds one label per clip and no speech)
    assert config.staging.source == source
    # And a source that cannot stage the task's datasets stops synthesis, naming the ones that can
    wrong = "librispeech" if task != "asr" else "esc50"
    with pytest.raises(
        ConfigError, match=f"'staging_source' = '{wrong}' cannot stage datasets for the {task}"
    ):
        load_config(cdk_context(task=task, staging_source=wrong).get)
