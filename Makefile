# One entry point for people and CI. Everything runs from the repository's own .venv and node_modules.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)
# Synthesis needs no AWS account: no credentials lookups, no telemetry, no notices.
export CDK_DISABLE_CLI_TELEMETRY := true
export AWS_EC2_METADATA_DISABLED := true
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 18,20
CDK := npx --no-install cdk --no-notices --no-version-reporting
TOOLKIT_VENV ?= .venv-toolkit
TRAIN_VENV ?= .venv-train
SDK_VENV ?= .venv-sdk

.PHONY: help install toolkit-venv train-venv sdk-venv lint format typecheck test synth pr clean snapshots demo

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install: $(VENV)/.installed node_modules/.installed $(TOOLKIT_VENV)/.installed $(TRAIN_VENV)/.installed $(SDK_VENV)/.installed | espeak ## Create .venv, node_modules, .venv-toolkit, .venv-train and .venv-sdk (idempotent), and install espeak-ng

$(VENV)/.installed: requirements.txt requirements-dev.txt training/requirements.txt staging/requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip
	$(PY) -m pip install --disable-pip-version-check -q $$($(PY) scripts/torch_cpu.py pip-args) -r requirements-dev.txt
	# The project itself, editable: the acoustic-shield command from any directory (its libraries are above).
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
	$(PY) scripts/torch_cpu.py check
	touch $@

# The inference image's library versions with the real SageMaker Hugging Face inference toolkit and
# model server, in their own environment; the inference tests drive the handler through it. Rebuilt from
# scratch when a requirement changes, so that nothing the image lacks lingers: the image first, then the
# serving requirements on top, as the toolkit installs them at start-up. The model server is Java: a
# headless JRE comes from Debian when `java` is missing.
.PHONY: jre
SUDO = $(if $(filter 0,$(shell id -u)),,sudo)
toolkit-venv: $(TOOLKIT_VENV)/.installed ## Create .venv-toolkit (idempotent; part of install)

$(TOOLKIT_VENV)/.installed: tests/inference/requirements-toolkit.txt serving/requirements.txt | jre
	rm -rf $(TOOLKIT_VENV) && python3 -m venv $(TOOLKIT_VENV)
	$(TOOLKIT_VENV)/bin/python -m pip install --disable-pip-version-check -q --upgrade pip
	$(TOOLKIT_VENV)/bin/python -m pip install --disable-pip-version-check -q $$($(TOOLKIT_VENV)/bin/python scripts/torch_cpu.py pip-args) -r tests/inference/requirements-toolkit.txt
	$(TOOLKIT_VENV)/bin/python -m pip install --disable-pip-version-check -q -r serving/requirements.txt
	$(TOOLKIT_VENV)/bin/python scripts/torch_cpu.py check
	touch $@

# The speech loop's sample utterances are spoken by espeak-ng (a formant synthesizer), from Debian when missing.
.PHONY: espeak
espeak:
	@command -v espeak-ng >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends espeak-ng; }

jre:
	@command -v java >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless; }

# The Hugging Face training image's libraries and the real SageMaker training toolkit, in their own
# environment (numpy 1, transformers 4): the training-job tests and `python -m tools.local_job` run
# the job there. Rebuilt from scratch when a requirement changes; the image first, then the job's
# requirements on top, as the toolkit installs them when a job starts.
train-venv: $(TRAIN_VENV)/.installed ## Create .venv-train (idempotent; part of install)

$(TRAIN_VENV)/.installed: tests/training/requirements-train-image.txt training/requirements.txt
	rm -rf $(TRAIN_VENV) && python3 -m venv $(TRAIN_VENV)
	$(TRAIN_VENV)/bin/python -m pip install --disable-pip-version-check -q --upgrade pip
	$(TRAIN_VENV)/bin/python -m pip install --disable-pip-version-check -q $$($(TRAIN_VENV)/bin/python scripts/torch_cpu.py pip-args) -r tests/training/requirements-train-image.txt
	$(TRAIN_VENV)/bin/python -m pip install --disable-pip-version-check -q -r training/requirements.txt
	$(TRAIN_VENV)/bin/python scripts/torch_cpu.py check
	touch $@

# The SageMaker Python SDK v2, the reference producer of the launcher's requests, in its own environment (it
# pins packaging, attrs, protobuf and sagemaker-core below .venv's): tests/sdk/ builds the same jobs with it
# and compares them with ours. Rebuilt from scratch when its requirements change. No torch: the SDK does not
# need it, and the build fails if something pulls it.
sdk-venv: $(SDK_VENV)/.installed ## Create .venv-sdk (idempotent; part of install)

$(SDK_VENV)/.installed: tests/sdk/requirements-sdk.txt
	rm -rf $(SDK_VENV) && python3 -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/python -m pip install --disable-pip-version-check -q --upgrade pip
	$(SDK_VENV)/bin/python -m pip install --disable-pip-version-check -q -r tests/sdk/requirements-sdk.txt
	$(SDK_VENV)/bin/python -c "import importlib.util as u, sys; sys.exit('torch was installed into $(SDK_VENV); nothing there may pull it' if u.find_spec('torch') else 0)"
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

lint: install ## ruff (lint + format check) and mypy
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: install ## Apply ruff's formatting and safe fixes
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

test: install ## The whole test suite
	$(PY) -m pytest

synth: install ## cdk synth into cdk.out (no AWS credentials, no network), then cfn-lint
	rm -rf cdk.out
	$(CDK) synth --quiet $(CDK_ARGS)
	$(VENV)/bin/cfn-lint --non-zero-exit-code error -- 'cdk.out/*.template.json'
	@$(PY) -m infra.report cdk.out

pr: lint test synth ## Everything a change must pass

clean: ## Remove build outputs
	rm -rf cdk.out .pytest_cache .ruff_cache .mypy_cache

snapshots: install ## Refresh the reviewed template snapshots (then review the diff)
	UPDATE_SNAPSHOTS=1 $(PY) -m pytest -q tests/infra/test_compliance_and_determinism.py -k snapshot

demo: install ## The main job: the whole retraining loop against a local AWS emulator (build/demo/)
	$(PY) -m tools.rehearse
