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

.PHONY: help install toolkit-venv lint format typecheck test synth pr clean snapshots demo

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install: $(VENV)/.installed node_modules/.installed $(TOOLKIT_VENV)/.installed ## Create .venv, node_modules and .venv-toolkit (idempotent)

$(VENV)/.installed: requirements.txt requirements-dev.txt ml_code/requirements.txt ml_code/requirements-staging.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $@

# The SageMaker Hugging Face inference toolkit in its own environment (it needs numpy<2 and
# transformers 4); the inference tests drive the handler through it.
toolkit-venv: $(TOOLKIT_VENV)/.installed ## Create .venv-toolkit (idempotent; part of install)

$(TOOLKIT_VENV)/.installed: tests/inference/requirements-toolkit.txt ml_code/requirements-serving.txt
	test -x $(TOOLKIT_VENV)/bin/python || python3 -m venv $(TOOLKIT_VENV)
	$(TOOLKIT_VENV)/bin/python -m pip install --disable-pip-version-check -q --upgrade pip
	$(TOOLKIT_VENV)/bin/python -m pip install --disable-pip-version-check -q -r tests/inference/requirements-toolkit.txt
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
	@$(PY) -m stacks.report cdk.out

pr: lint test synth ## Everything a change must pass

clean: ## Remove build outputs
	rm -rf cdk.out .pytest_cache .ruff_cache .mypy_cache

snapshots: install ## Refresh the reviewed template snapshots (then review the diff)
	UPDATE_SNAPSHOTS=1 $(PY) -m pytest -q tests/infra/test_compliance_and_determinism.py -k snapshot

demo: synth ## The main job: synth, then stage, train, pack, serve and query a model locally (build/demo/)
	$(PY) scripts/demo.py
