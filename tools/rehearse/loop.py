"""The whole retraining loop on this machine, against a local AWS emulator: ``make demo``.

deploy (the real CDK CLI) → stage a dataset (the staging tool) → the schedule's event reaches the deployed
launcher handler → the training job runs in the real training toolkit (``tools.local_job``) → the deployed
promoter handler gates it into a model package → ``cdk deploy`` of the Serving stack with that package → the
packed model answers held-back clips on the SageMaker container contract. Then the same for multi-label
event detection, beside it on the same emulator and Data stack: generated vehicle-event mixtures staged from a
metadata.csv folder, its own Training stack, job, gate (mAP) and Serving stack, and held-back mixtures
answered with their labels and event times (event-based F1 in the report).

Real: the CDK CLI and the synthesized templates, both Lambda handlers (loaded from the code the emulator
holds for the deployed functions, with their deployed environments), the staging tool, the SageMaker training
toolkit with the training image's libraries, ``train.py``, the inference handler. Emulated: the AWS APIs
(moto). Everything lands in ``build/demo/``; ``rehearsal.json`` there records each step.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import dataclasses
import importlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from common import contract
from common.cli import Parser
from tasks import asr, classification, multilabel

from .emulator import ACCOUNT, REGION, Emulator, environment, free_port
from .sounds import generate, generate_mixtures
from .speech import write_speech_dataset

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "build" / "demo"
DATASET = f"{contract.DATASETS_PREFIX}vehicle-events/"
ENV_NAME = "dev"
LIFECYCLES = ("Data", "Training", "Serving")
STACKS = {name: contract.stack_name(ENV_NAME, name) for name in LIFECYCLES}
# The multi-label loop: its own Training and Serving stacks (the Data stack is shared), dataset and task.
EVENTS_TASK = "multilabel"
EVENTS_DATASET = f"{contract.DATASETS_PREFIX}vehicle-mixtures/"
# The speech loop: generated spoken digit strings and commands, a tiny CTC model trained from random weights.
SPEECH_TASK = "asr"
SPEECH_DATASET = f"{contract.DATASETS_PREFIX}spoken-commands/"
# Its own epochs (--epochs sets the other loops'): a CTC model from random weights first learns to emit only
# blanks, then characters; 12 epochs of batches of 4 take it well below the gate's WER on 2 CPU cores.
SPEECH_CONTEXT = {
    "model_name_or_path": "training/configs/tiny-wav2vec2-ctc",
    "max_length_seconds": "20",
    "num_train_epochs": "12",
    "learning_rate": "0.0015",
    "per_device_train_batch_size": "4",
}
SPEECH_UTTERANCES = 400  # spoken training sentences; validation and test get an eighth each
SPEECH_MAX_WER = 0.3  # the held-back utterances' WER the rehearsal requires (the gate's default max_wer)
OTHER_TASKS = (
    EVENTS_TASK,
    SPEECH_TASK,
)  # the loops after the classification loop, which deploys the Data stack
CDK = ["npx", "--no-install", "cdk", "--no-notices", "--no-version-reporting"]
# Direct deployments: moto's change sets register no stack outputs or exports, so Fn::ImportValue fails.
DEPLOY = [*CDK, "deploy", "--method=direct", "--require-approval", "never"]
# The offline model: the tiny config shipped in the source dir, trained from random weights (so its
# feature encoder learns too, at a learning rate far above what fine-tuning a checkpoint wants).
CONTEXT = {
    "env": ENV_NAME,
    "dataset_prefix": DATASET,
    "model_name_or_path": "training/configs/tiny-wav2vec2",
    "max_length_seconds": "1",
    "learning_rate": "0.003",
}
WAV = contract.SUFFIX_CONTENT_TYPES[".wav"]


class StepFailed(RuntimeError):
    """A step of the rehearsal failed; the message names it and the reason."""


@dataclass
class Report:
    """``rehearsal.json``: each step's name, status, seconds and what it produced."""

    path: Path
    steps: list[dict[str, Any]] = field(default_factory=list)

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"steps": self.steps}, indent=2, default=str) + "\n")

    @contextmanager
    def step(self, name: str, title: str) -> Iterator[dict[str, Any]]:
        number = len(self.steps) + 1
        print(f"\n=== [{number}] {title}", flush=True)
        record: dict[str, Any] = {"name": name, "status": "running", "seconds": 0.0, "produced": {}}
        self.steps.append(record)
        started = time.monotonic()
        try:
            yield record["produced"]
        except BaseException as err:
            record["status"] = "interrupted" if isinstance(err, KeyboardInterrupt | SystemExit) else "failed"
            record["reason"] = f"{type(err).__name__}: {err}"
            raise
        finally:
            record["seconds"] = round(time.monotonic() - started, 1)
            if record["status"] == "running":
                record["status"] = "ok"
                print(f"--- {name}: ok in {record['seconds']:.1f} s", flush=True)
            self.write()


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C: every `finally` below stops what it started


STAGE = [sys.executable, "-m", "staging", "folder", "--test-fraction", "0.2", "--no-progress"]


def run(command: Sequence[str], env: dict[str, str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Runs a command, echoing it; on failure raises with the tail of its output."""
    print("$ " + " ".join(command), flush=True)
    # Its own process group, so that an interruption stops the command's children too (npx → node).
    process = subprocess.Popen(
        list(command),
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        **kwargs,
    )
    try:
        stdout, stderr = process.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait()
        raise
    result = subprocess.CompletedProcess(list(command), process.returncode, stdout, stderr)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-25:]
        raise StepFailed(f"`{' '.join(command[:4])} ...` exited {result.returncode}:\n" + "\n".join(tail))
    return result


def stack_outputs(cloudformation: Any, stack: str) -> dict[str, str]:
    (described,) = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


# The repository's own packages that a Lambda bundle carries.
FIRST_PARTY = ("common", "lambdas")


def deployed_handler(emulator: Emulator, function_name: str, work: Path) -> tuple[ModuleType, dict[str, str]]:
    """The deployed function's handler module (from the code the emulator holds) and its environment."""
    from moto.awslambda.models import lambda_backends

    function = lambda_backends[ACCOUNT][REGION].get_function(function_name)
    package = work / function_name
    with zipfile.ZipFile(io.BytesIO(function.code_bytes)) as bundle:
        bundle.extractall(package)
    module_name, _, attribute = str(function.handler).rpartition(".")
    # The repository's copies of the packages the bundle carries (and a previous rehearsal's) step aside, so
    # that the handler and every first-party module it imports come from the deployed code.
    tops = {path.name for path in package.iterdir() if path.is_dir() and path.name in FIRST_PARTY}
    for name in [m for m in sys.modules if m.split(".")[0] in tops]:
        del sys.modules[name]
    sys.path.insert(0, str(package))
    try:
        module = importlib.import_module(module_name)
    finally:
        sys.path.remove(str(package))
    strays = [
        name
        for name, loaded in sys.modules.items()
        if name.split(".")[0] in tops
        and not str(getattr(loaded, "__file__", "") or package).startswith(str(package))
    ]
    if strays or not str(getattr(module, "__file__", "")).startswith(str(package)):
        raise StepFailed(f"{module_name} was not loaded from the deployed code of {function_name}: {strays}")
    if not callable(getattr(module, attribute, None)):
        raise StepFailed(f"{function.handler} is not a function in the deployed code of {function_name}")
    return module, dict(function.environment_vars)


@dataclass
class FakeContext:
    """The Lambda context attributes the handlers read."""

    aws_request_id: str
    function_name: str = "rehearsal"
    # Read by Powertools' Logger (inject_lambda_context) into every log line.
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:rehearsal"


def invoke(emulator: Emulator, function_name: str, event: dict[str, Any], work: Path) -> Any:
    """Runs a deployed function's handler in this process, as Lambda would: its environment, a context."""
    module, variables = deployed_handler(emulator, function_name, work)
    handler: Callable[[dict[str, Any], Any], Any] = module.handler
    with environment({**variables, **emulator.env, "AWS_LAMBDA_FUNCTION_NAME": function_name}):
        return handler(event, FakeContext(aws_request_id=f"rehearsal-{int(time.time())}"))


def post(url: str, body: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@contextmanager
def local_server(model_archive: Path, env: dict[str, str]) -> Iterator[str]:
    """``python -m tools.serve`` on a free port; stopped (and its temporary folders removed) on exit."""
    port = free_port()
    command = [sys.executable, "-m", "tools.serve", "--model-dir", str(model_archive), "--port", str(port)]
    command += ["--host", "127.0.0.1"]
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise StepFailed("the local server did not come up; its log is above")
            time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def rehearse(
    out: Path = OUT,
    *,
    epochs: int = 15,
    clips_per_class: int = 30,
    inspect: Callable[[Emulator], None] | None = None,
    events: bool = True,
    mixtures: int = 60,
    speech: bool = True,
    utterances: int = SPEECH_UTTERANCES,
) -> dict[str, Any]:
    """Runs the loop; returns the report. Raises StepFailed (with the step's name) when a step fails.

    With ``events`` the multi-label loop follows on the same emulator and Data stack: ``mixtures`` generated
    vehicle-event mixtures, trained, gated on mAP, deployed, and held-back mixtures answered with their
    labels and event times. With ``speech`` the speech loop follows: ``utterances`` spoken sentences, a tiny
    CTC model trained, gated on WER, deployed, and held-back utterances transcribed. ``inspect`` is called with the emulator after the last step, before it stops
    (tests read its state).
    """
    _start_afresh(out)
    report = Report(out / "rehearsal.json")
    emulator = Emulator()
    try:
        with report.step("emulator", "start the local AWS emulator") as produced:
            emulator.start()
            produced.update(endpoint=emulator.url, account=ACCOUNT, region=REGION)
            print(f"moto on {emulator.url}: account {ACCOUNT}, region {REGION}")
        with environment(emulator.env):
            loop = _Loop.create(out, report, emulator, epochs=epochs)
            data, training = loop.deploy()
            held_back = loop.stage(data, clips_per_class=clips_per_class)
            job_name = loop.launch(training)
            described, status = loop.train(job_name)
            package_arn, package = loop.promote(job_name, described, status)
            loop.deploy_serving(package_arn)
            loop.serve(package, held_back)
            if events:
                events_loop = loop.for_task(EVENTS_TASK, EVENTS_DATASET)
                events_training = events_loop.deploy_training()
                events_held_back = events_loop.stage_mixtures(data, clips=mixtures)
                events_job = events_loop.launch(events_training)
                events_described, events_status = events_loop.train(events_job)
                events_arn, events_package = events_loop.promote(events_job, events_described, events_status)
                events_loop.deploy_serving(events_arn)
                events_loop.serve_events(events_package, events_held_back)
            if speech:
                speech_loop = loop.for_task(SPEECH_TASK, SPEECH_DATASET, SPEECH_CONTEXT)
                speech_training = speech_loop.deploy_training()
                speech_held_back = speech_loop.stage_speech(data, utterances=utterances)
                speech_job = speech_loop.launch(speech_training)
                speech_described, speech_status = speech_loop.train(speech_job)
                speech_arn, speech_package = speech_loop.promote(speech_job, speech_described, speech_status)
                speech_loop.deploy_serving(speech_arn)
                speech_loop.serve_speech(speech_package, speech_held_back)
            if inspect is not None:
                inspect(emulator)
    finally:
        emulator.stop()
        report.write()
    return {"steps": report.steps}


def _start_afresh(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    previous_runs = ("raw", "held-back", "mixtures", "held-back-mixtures", "speech", "speech-raw", "work")
    archives = [f"{task}-{contract.MODEL_ARCHIVE}" for task in (EVENTS_TASK, SPEECH_TASK)]
    for previous in (*previous_runs, "rehearsal.json", contract.MODEL_ARCHIVE, *archives):
        path = out / previous
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


@dataclass
class _Loop:
    """What the steps share: where things land, the emulator, the CLI's environment and arguments, clients."""

    out: Path
    report: Report
    emulator: Emulator
    env: dict[str, str]
    context: dict[str, str]  # the app's context (-c), for every cdk command
    cloudformation: Any
    s3: Any
    sagemaker: Any
    stacks: dict[str, str] = field(default_factory=lambda: dict(STACKS))
    dataset: str = DATASET
    step_prefix: str = ""  # before each step's name in the report ("events-" for the multi-label loop)

    def for_task(self, task: str, dataset: str, context: dict[str, str] | None = None) -> _Loop:
        """The same emulator, clients and CLI for a deployment of ``task`` reading ``dataset`` (with
        ``context`` over the shared one): its own Training and Serving stacks (named as the app names them),
        the shared Data stack."""
        from infra.config import load_config, stack_name

        config = load_config({"env": ENV_NAME, "task": task}.get)  # with the task's own defaults
        return dataclasses.replace(
            self,
            context={**self.context, **(context or {}), "task": task, "dataset_prefix": dataset},
            stacks={name: stack_name(config, name) for name in LIFECYCLES},
            dataset=dataset,
            step_prefix=f"{task}-",
        )

    @classmethod
    def create(cls, out: Path, report: Report, emulator: Emulator, *, epochs: int) -> _Loop:
        """The loop's state; call within the emulator's environment (the clients read it)."""
        import boto3

        env = {**os.environ, **emulator.env, "CDK_DISABLE_CLI_TELEMETRY": "true"}
        env["PATH"] = os.pathsep.join(
            [str(Path(sys.executable).parent), str(ROOT / "node_modules" / ".bin"), env["PATH"]]
        )
        return cls(
            out=out,
            report=report,
            emulator=emulator,
            env=env,
            context={**CONTEXT, "num_train_epochs": str(epochs)},
            cloudformation=boto3.client("cloudformation"),
            s3=boto3.client("s3"),
            sagemaker=boto3.client("sagemaker"),
        )

    @property
    def cdk_args(self) -> list[str]:
        """The output folder and the context, for every cdk command."""
        pairs = [arg for key, value in self.context.items() for arg in ("-c", f"{key}={value}")]
        return ["--output", str(self.out / "cdk.out"), *pairs]

    @property
    def work(self) -> Path:
        return self.out / "work"

    def deploy(self) -> tuple[dict[str, str], dict[str, str]]:
        """cdk bootstrap and deploy of the Data and Training stacks; returns their outputs."""
        title = "cdk bootstrap, then cdk deploy of the Data and Training stacks"
        with self.report.step("deploy", title) as produced:
            run([*CDK, "bootstrap", f"aws://{ACCOUNT}/{REGION}", *self.cdk_args], self.env, cwd=ROOT)
            run([*DEPLOY, STACKS["Data"], STACKS["Training"], *self.cdk_args], self.env, cwd=ROOT)
            data, training = (stack_outputs(self.cloudformation, STACKS[n]) for n in ("Data", "Training"))
            statuses = {
                s["StackName"]: s["StackStatus"] for s in self.cloudformation.describe_stacks()["Stacks"]
            }
            produced.update(stacks=statuses, bucket=data["DataBucketName"], outputs=training)
            print(json.dumps(statuses))
        return data, training

    def deploy_training(self) -> dict[str, str]:
        """cdk deploy of this task's Training stack beside the others (the Data stack is deployed); returns
        its outputs."""
        title = f"cdk deploy of {self.stacks['Training']} beside the other task's"
        with self.report.step(f"{self.step_prefix}deploy", title) as produced:
            run([*DEPLOY, self.stacks["Training"], "--exclusively", *self.cdk_args], self.env, cwd=ROOT)
            training = stack_outputs(self.cloudformation, self.stacks["Training"])
            produced.update(stack=self.stacks["Training"], outputs=training)
        return training

    def stage_mixtures(self, data: dict[str, str], *, clips: int) -> Path:
        """Generates the vehicle-event mixtures (metadata.csv) and stages them multi-label into the data
        bucket; returns the held-back mixtures' folder (with events.json, their events' times)."""
        bucket, key_arn = data["DataBucketName"], data["KeyArn"]
        destination = f"s3://{bucket}/{self.dataset}"
        title = f"generate vehicle-event mixtures and stage them (multi-label) into {destination}"
        with self.report.step(f"{self.step_prefix}stage", title) as produced:
            raw, held_back = self.out / "mixtures", self.out / "held-back-mixtures"
            counts = generate_mixtures(raw, held_back, clips=clips)
            command = [*STAGE, "--task", EVENTS_TASK, "--source-url", str(raw), "--to", destination]
            run([*command, "--kms-key-id", key_arn], self.env, cwd=ROOT)
            listed = self.s3.list_objects_v2(Bucket=bucket, Prefix=self.dataset).get("Contents", [])
            produced.update(destination=destination, objects=len(listed), clips_per_event=counts)
        return held_back

    def stage_speech(self, data: dict[str, str], *, utterances: int) -> Path:
        """Speaks generated sentences (espeak-ng) and stages them for speech recognition into the data bucket,
        their splits kept; returns the held-back utterances' folder (metadata.csv with their transcriptions),
        sentences the training split never holds."""
        bucket, key_arn = data["DataBucketName"], data["KeyArn"]
        destination = f"s3://{bucket}/{self.dataset}"
        title = f"speak generated sentences (espeak-ng) and stage them (speech) into {destination}"
        with self.report.step(f"{self.step_prefix}stage", title) as produced:
            spoken, raw = self.out / "speech", self.out / "speech-raw"
            summary = write_speech_dataset(
                spoken, train=utterances, validation=max(8, utterances // 8), test=max(8, utterances // 8)
            )
            listing = [
                [contract.FILE_NAME_COLUMN, contract.TRANSCRIPTION_COLUMN, contract.SPEAKER_COLUMN, "split"]
            ]
            for split in ("train", "validation", "test"):
                with (spoken / split / contract.METADATA_FILE).open(newline="") as handle:
                    for row in csv.DictReader(handle):
                        name = f"{split}/{row[contract.FILE_NAME_COLUMN]}"
                        (raw / split).mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(spoken / name, raw / name)
                        listing.append(
                            [name, row[contract.TRANSCRIPTION_COLUMN], row[contract.SPEAKER_COLUMN], split]
                        )
            with (raw / contract.METADATA_FILE).open("w", newline="") as handle:
                csv.writer(handle).writerows(listing)
            command = [*STAGE, "--task", SPEECH_TASK, "--source-url", str(raw), "--to", destination]
            run([*command, "--kms-key-id", key_arn], self.env, cwd=ROOT)
            listed = self.s3.list_objects_v2(Bucket=bucket, Prefix=self.dataset).get("Contents", [])
            produced.update(destination=destination, objects=len(listed), generated=summary["splits"])
        return spoken / "test"

    def stage(self, data: dict[str, str], *, clips_per_class: int) -> Path:
        """Generates the clips and stages them into the data bucket; returns the held-back clips' folder."""
        bucket, key_arn = data["DataBucketName"], data["KeyArn"]
        title = f"generate the vehicle-event clips and stage them into s3://{bucket}/{DATASET}"
        with self.report.step("stage", title) as produced:
            raw, held_back = self.out / "raw", self.out / "held-back"
            counts = generate(raw, held_back, clips_per_class=clips_per_class)
            destination = f"s3://{bucket}/{DATASET}"
            run(
                [*STAGE, "--source-url", str(raw), "--to", destination, "--kms-key-id", key_arn],
                self.env,
                cwd=ROOT,
            )
            listed = self.s3.list_objects_v2(Bucket=bucket, Prefix=DATASET).get("Contents", [])
            keys = [o["Key"] for o in listed]
            produced.update(destination=destination, objects=len(keys), generated=counts)
            print(f"{len(keys)} objects under {destination}")
        return held_back

    def launch(self, training: dict[str, str]) -> str:
        """The schedule's event through the deployed launcher handler; returns the started job's name."""
        with self.report.step(
            f"{self.step_prefix}launch", "the schedule's event reaches the deployed launcher handler"
        ) as produced:
            event = {
                "version": "0",
                "id": f"rehearsal-{int(time.time())}",
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": ACCOUNT,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "region": REGION,
                "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/rehearsal-schedule"],
                "detail": {},
            }
            started = invoke(self.emulator, training["LauncherFunctionName"], event, self.work / "lambda")
            print(json.dumps(started))
            if started.get("status") != "started":
                raise StepFailed(f"the launcher started no job: {started}")
            job_name: str = started["job"]
            produced.update(job=job_name, launcher=started)
        return job_name

    def train(self, job_name: str) -> tuple[dict[str, Any], str]:
        """Runs the job in the training toolkit; returns its description and final status."""
        with self.report.step(
            f"{self.step_prefix}train", f"run {job_name} with the training toolkit (tools.local_job)"
        ) as produced:
            from tools import local_job

            described = self.sagemaker.describe_training_job(TrainingJobName=job_name)
            definition = local_job.JobDefinition.from_api(described)
            result = local_job.run_job(
                definition,
                work_dir=self.work / "jobs",
                s3=self.s3,
                extra_env={**self.emulator.env, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
            )
            self.emulator.complete_training_job(job_name, metrics=result.metrics)
            status = self.sagemaker.describe_training_job(TrainingJobName=job_name)["TrainingJobStatus"]
            health = job_health(self.s3, result.output_archive)
            for line in health_lines(health):
                print(line)
            outputs = job_outputs(result)
            for name, where in outputs.items():
                print(f"{name:20s} {where}")
            produced.update(
                status=status, model=result.model_archive, metrics=result.metrics, health=health, **outputs
            )
        return described, status

    def promote(self, job_name: str, described: dict[str, Any], status: str) -> tuple[str, dict[str, Any]]:
        """The job's state change through the deployed promoter handler; returns the approved package."""
        with self.report.step(
            f"{self.step_prefix}promote", "the job's state change reaches the deployed promoter handler"
        ) as produced:
            promoter_name = _promoter_function(self.cloudformation, self.stacks["Training"])
            change = {
                "version": "0",
                "id": f"rehearsal-change-{job_name}",
                "detail-type": "SageMaker Training Job State Change",
                "source": "aws.sagemaker",
                "account": ACCOUNT,
                "region": REGION,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "resources": [described["TrainingJobArn"]],
                "detail": {"TrainingJobName": job_name, "TrainingJobStatus": status},
            }
            decision = invoke(self.emulator, promoter_name, change, self.work / "lambda")
            print(json.dumps(decision))
            package_arn = decision.get("model_package_arn")
            if decision.get("decision") != "Approved" or not package_arn:
                raise StepFailed(f"the model was not approved: {decision}")
            package = self.sagemaker.describe_model_package(ModelPackageName=package_arn)
            card = package.get("ModelCard") or {}
            content = json.loads(card.get("ModelCardContent") or "{}")
            print(
                f"SageMaker model card ({card.get('ModelCardStatus')}): sections {', '.join(sorted(content))}; "
                f"gate: {json.dumps(content.get('evaluation_details', [{}])[0].get('evaluation_observation'))}"
            )
            produced.update(
                model_package_arn=package_arn,
                status=package["ModelApprovalStatus"],
                reasons=decision.get("reasons"),
                model_card_status=card.get("ModelCardStatus"),
                model_card_sections=sorted(content),
            )
        return package_arn, package

    def deploy_serving(self, package_arn: str) -> None:
        """cdk deploy of the Serving stack with the approved package."""
        with self.report.step(
            f"{self.step_prefix}serve-deploy",
            f"cdk deploy of {self.stacks['Serving']} with the approved package",
        ) as produced:
            run(
                [
                    *DEPLOY,
                    self.stacks["Serving"],
                    "--exclusively",
                    *self.cdk_args,
                    "-c",
                    f"model_package_arn={package_arn}",
                ],
                self.env,
                cwd=ROOT,
            )
            serving = stack_outputs(self.cloudformation, self.stacks["Serving"])
            endpoint = self.sagemaker.describe_endpoint(EndpointName=serving["EndpointName"])
            stack = self.cloudformation.describe_stacks(StackName=self.stacks["Serving"])["Stacks"][0]
            produced.update(
                stack=stack["StackStatus"],
                endpoint=serving["EndpointName"],
                endpoint_status=endpoint["EndpointStatus"],
            )

    def _model_archive(self, package: dict[str, Any]) -> tuple[str, Path]:
        """The approved package's model archive, downloaded from the emulated S3 into the output folder: its
        URL and where it now lies."""
        model_url = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
        archive = self.out / f"{self.step_prefix}{contract.MODEL_ARCHIVE}"
        model_bucket, _, model_key = model_url.removeprefix("s3://").partition("/")
        self.s3.download_file(model_bucket, model_key, str(archive))
        return model_url, archive

    def _server_env(self) -> dict[str, str]:
        """The local server's environment: the rehearsal's, without the emulator's AWS settings."""
        return {k: v for k, v in self.env.items() if not k.startswith("AWS_")}

    def serve_events(self, package: dict[str, Any], held_back: Path) -> None:
        """Serves the packed multi-label model and answers the held-back mixtures with labels and event
        times; records the job's test mAP and the answers' event-based F1."""
        with self.report.step(
            f"{self.step_prefix}serve",
            "serve the multi-label model, answer held-back mixtures with event times",
        ) as produced:
            model_url, archive = self._model_archive(package)
            with local_server(archive, self._server_env()) as base:
                answers = _detect(base, held_back)
            scores = detection_scores(answers)
            metrics = {k: v for k, v in _package_metrics(package).items() if k.endswith("_map")}
            print(f"held-back mixtures: {json.dumps(scores)}; the job's {json.dumps(metrics)}")
            produced.update(model=model_url, **scores, job_metrics=metrics, answers=answers, server=base)

    def serve_speech(self, package: dict[str, Any], held_back: Path) -> None:
        """Serves the packed speech model and transcribes the held-back utterances (as WAV, and as JSON with
        base64 audio); records their WER and CER beside the job's, and requires WER <= SPEECH_MAX_WER."""
        with self.report.step(
            f"{self.step_prefix}serve", "serve the speech model, transcribe held-back utterances"
        ) as produced:
            model_url, archive = self._model_archive(package)
            with local_server(archive, self._server_env()) as base:
                answers = _transcribe(base, held_back)
                broken_status = _broken_payload(base)
            rates = asr.error_rates(
                [a["expected"] for a in answers], [a.get(asr.TEXT_KEY, "") for a in answers]
            )
            rates = {name: round(value, 4) for name, value in rates.items()}
            metrics = {k: v for k, v in _package_metrics(package).items() if k.endswith(("_wer", "_cer"))}
            print(
                f"held-back utterances: WER {rates['wer']:.3f}, CER {rates['cer']:.3f}; the job's {json.dumps(metrics)}"
            )
            produced.update(
                model=model_url,
                held_back_wer=rates["wer"],
                held_back_cer=rates["cer"],
                utterances=len(answers),
                job_metrics=metrics,
                broken_payload_status=broken_status,
                answers=answers,
                server=base,
            )
            if rates["wer"] > SPEECH_MAX_WER:
                raise StepFailed(f"held-back WER {rates['wer']:.3f} is above {SPEECH_MAX_WER}")

    def serve(self, package: dict[str, Any], held_back: Path) -> None:
        """Serves the packed model on the container contract and classifies the held-back clips."""
        with self.report.step(
            "serve", "serve the packed model on the container contract, classify held-back clips"
        ) as produced:
            model_url, archive = self._model_archive(package)
            with local_server(archive, self._server_env()) as base:
                predictions = _classify(base, held_back)
                broken_status = _broken_payload(base)
            correct = sum(p.get(classification.LABEL_KEY) == p["expected"] for p in predictions)
            print(f"{correct}/{len(predictions)} held-back clips classified correctly")
            produced.update(
                model=model_url,
                correct=correct,
                total=len(predictions),
                broken_payload_status=broken_status,
                predictions=predictions,
                server=base,
            )


def _detect(base: str, held_back: Path) -> list[dict[str, Any]]:
    """Each held-back mixture's answer (labels, scores, events with times) beside its true events."""
    truth = json.loads((held_back / "events.json").read_text())
    answers = []
    for name, events in sorted(truth.items()):
        body = {
            "base64": base64.b64encode((held_back / name).read_bytes()).decode(),
            contract.SEGMENTS_KEY: True,
        }
        status_code, answer = post(
            f"{base}/invocations", json.dumps(body).encode(), contract.JSON_CONTENT_TYPE
        )
        found = [(e["label"], e["start"], e["end"]) for e in answer.get(contract.SEGMENTS_KEY, [])]
        print(
            f"{name:16s} -> {status_code} labels {[e['label'] for e in answer.get('labels', [])]} events {found}"
        )
        answers.append({"clip": name, "expected": events, "status": status_code, **answer})
    return answers


def detection_scores(answers: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The held-back mixtures' clip-level exact matches and event-based F1 (200 ms onset collar)."""
    reference = [(name, e["label"], e["start"]) for name, a in enumerate(answers) for e in a["expected"]]
    estimated = [
        (name, e["label"], e["start"])
        for name, a in enumerate(answers)
        for e in a.get(contract.SEGMENTS_KEY, [])
    ]
    # Events of different clips never match: the clip's index is part of the label.
    f1 = multilabel.event_f1(
        [(f"{clip}:{label}", start, start) for clip, label, start in reference],
        [(f"{clip}:{label}", start, start) for clip, label, start in estimated],
    )
    exact = sum(
        {e["label"] for e in a.get("labels", [])} == {e["label"] for e in a["expected"]} for a in answers
    )
    return {
        "map": held_back_map(answers),
        "event_f1": round(f1, 4),
        "exact_label_sets": exact,
        "clips": len(answers),
    }


def held_back_map(answers: Sequence[dict[str, Any]]) -> float:
    """The held-back mixtures' macro mAP: each label's average precision over the answers' scores, over the
    labels some mixture holds."""
    import numpy as np

    labels = sorted(answers[0]["scores"]) if answers else []
    targets = np.array(
        [[any(e["label"] == label for e in a["expected"]) for label in labels] for a in answers]
    )
    scores = np.array([[a["scores"][label] for label in labels] for a in answers])
    aps = [ap for ap in multilabel.average_precisions(targets, scores) if ap is not None] if answers else []
    return round(sum(aps) / len(aps), 4) if aps else 0.0


def _broken_payload(base: str) -> int:
    """Sends bytes that are no audio; returns the status, which must be a 4xx (StepFailed otherwise)."""
    status, answer = post(f"{base}/invocations", b"not audio at all", WAV)
    print(f"{'broken payload':40s} -> {status} {json.dumps(answer)}")
    if not 400 <= status < 500:
        raise StepFailed(f"a broken payload must get a 4xx answer, got {status}")
    return status


def _transcribe(base: str, held_back: Path) -> list[dict[str, Any]]:
    """Each held-back utterance's transcript from the server, beside what was said: every other one sent as
    JSON with base64 audio and its sample rate, the rest as WAV."""
    answers = []
    with (held_back / contract.METADATA_FILE).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for i, row in enumerate(rows):
        audio_bytes = (held_back / row[contract.FILE_NAME_COLUMN]).read_bytes()
        if i % 2:
            body = json.dumps({"base64": base64.b64encode(audio_bytes).decode()}).encode()
            status_code, answer = post(f"{base}/invocations", body, contract.JSON_CONTENT_TYPE)
        else:
            status_code, answer = post(f"{base}/invocations", audio_bytes, WAV)
        expected = row[contract.TRANSCRIPTION_COLUMN]
        timed = " ".join(
            f"{w['word']}[{w['start']:.2f}-{w['end']:.2f}]" for w in answer.get(asr.WORDS_KEY, [])
        )
        print(f"{row[contract.FILE_NAME_COLUMN]:16s} -> {status_code} {expected!r:32s} heard {timed}")
        answers.append(
            {"clip": row[contract.FILE_NAME_COLUMN], "expected": expected, "status": status_code, **answer}
        )
    return answers


def _classify(base: str, held_back: Path) -> list[dict[str, Any]]:
    """Each held-back clip's answer from the server, beside the label it should get."""
    predictions = []
    for clip in sorted(held_back.rglob("*.wav")):
        status_code, answer = post(f"{base}/invocations", clip.read_bytes(), WAV)
        predictions.append({"clip": clip.name, "expected": clip.parent.name, "status": status_code, **answer})
        print(f"{clip.parent.name}/{clip.name:28s} -> {status_code} {json.dumps(answer)}")
    return predictions


def job_outputs(result: Any) -> dict[str, str]:
    """Where the job (a ``local_job.JobResult``) left its model card, its training curves and its TensorBoard
    event files (locally, and where SageMaker uploads them)."""
    job_root = Path(result.base_dir)  # the job's /opt/ml
    found = {
        "model_card": job_root / "model" / "README.md",
        "training_curves": job_root / "output" / "data" / "training_curves.png",
    }
    outputs = {name: str(path) for name, path in found.items() if path.is_file()}
    if result.tensorboard_dir is not None and any(Path(result.tensorboard_dir).rglob("events.out.tfevents*")):
        outputs["tensorboard"] = f"tensorboard --logdir {result.tensorboard_dir}"
    if result.tensorboard_uri:
        outputs["tensorboard_uri"] = str(result.tensorboard_uri)
    return outputs


def job_health(s3: Any, output_archive: str) -> dict[str, Any]:
    """The job's health report (evaluation.json's health section, from its output.tar.gz): each rule's
    status, value, threshold, step, reason and advice."""
    from lambdas.promoter.aws import read_output_archive
    from lambdas.promoter.logic import evaluation_health

    return dict(evaluation_health(read_output_archive(s3, output_archive).evaluation))


def health_lines(rules: dict[str, Any]) -> list[str]:
    """One line per health rule: fired (at which step, what to do), silent, or not evaluated and why."""
    if not rules:
        return ["training health: the job wrote no health report"]
    lines = ["training health:"]
    for rule in contract.HEALTH_RULES:
        outcome = rules.get(rule) or {"status": "not_evaluated", "reason": "not in the report"}
        status = outcome.get("status")
        if status == "fired":
            detail = f"fired at step {outcome.get('step')}: {outcome.get('reason')}; {outcome.get('advice')}"
        elif status == "silent":
            detail = f"silent: {outcome.get('reason')}"
        else:
            detail = f"not evaluated: {outcome.get('reason')}"
        lines.append(f"  {rule:20s} {detail}")
    return lines


def _package_metrics(package: dict[str, Any]) -> dict[str, float]:
    """The metrics a model package was registered with (its customer metadata), as numbers."""
    found = {}
    for key, value in (package.get("CustomerMetadataProperties") or {}).items():
        with contextlib.suppress(ValueError):
            found[key] = float(value)
    return found


def _promoter_function(cloudformation: Any, stack: str) -> str:
    resources = cloudformation.list_stack_resources(StackName=stack)["StackResourceSummaries"]
    names = [
        r["PhysicalResourceId"]
        for r in resources
        if r["ResourceType"] == "AWS::Lambda::Function"
        and r["LogicalResourceId"].startswith("PromoterHandler")
    ]
    if len(names) != 1:
        raise StepFailed(f"expected one promoter function in {stack}, found {names}")
    return names[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(
        prog="python -m tools.rehearse",
        description=__doc__.split("\n")[0],
        allow_abbrev=False,  # a shortened flag never starts a run that wipes the output folder
    )
    parser.add_argument("--out", type=Path, default=OUT, help="where everything lands (default build/demo)")
    parser.add_argument("--epochs", type=int, default=15, help="training epochs (default 15)")
    parser.add_argument(
        "--clips-per-class", type=int, default=30, help="generated clips per class (default 30)"
    )
    parser.add_argument(
        "--tasks",
        default=os.environ.get("DEMO_TASKS", ",".join(OTHER_TASKS)),
        help="the loops that follow the classification loop, comma-separated: "
        f"{', '.join(OTHER_TASKS)} or none (default: all; or $DEMO_TASKS)",
    )
    args = parser.parse_args(argv)
    chosen = {name.strip() for name in args.tasks.split(",") if name.strip() and name.strip() != "none"}
    if chosen - set(OTHER_TASKS):
        parser.error(
            f"--tasks: unknown loop(s) {', '.join(sorted(chosen - set(OTHER_TASKS)))}; the loops are "
            f"{', '.join(OTHER_TASKS)}"
        )
    signal.signal(signal.SIGTERM, _sigterm)
    started = time.monotonic()
    try:
        report = rehearse(
            args.out,
            epochs=args.epochs,
            clips_per_class=args.clips_per_class,
            events=EVENTS_TASK in chosen,
            speech=SPEECH_TASK in chosen,
        )
    except KeyboardInterrupt:
        print("\ninterrupted: everything the rehearsal started is stopped", file=sys.stderr)
        return 130
    except SystemExit as stop:
        print("\nterminated: everything the rehearsal started is stopped", file=sys.stderr)
        return int(stop.code or 143)
    except StepFailed as err:
        print(f"\nthe rehearsal failed: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # a step's own error: name the step from the report
        print(f"\nthe rehearsal failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(
        f"\nDone in {time.monotonic() - started:.0f} s: "
        + ", ".join(f"{s['name']} {s['seconds']:.0f} s" for s in report["steps"])
    )
    print(f"Report: {args.out / 'rehearsal.json'}")
    return 0
