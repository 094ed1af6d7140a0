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

# Every environment installs from lock files (*.lock.txt): exact versions with their hashes, which `make lock`
# resolves from the requirements files (the ranges and pins people edit), for CPython 3.11 on Linux x86_64 and
# aarch64. torch is in none of them: an environment that has torch installs its CPU build first, alone
# (scripts/torch_cpu.py), and its lock brings torch's dependencies. A parity environment installs two locks,
# as its image is built: the image's libraries, then what the job or the endpoint installs on top (resolved
# with the image's versions as constraints).
DEV_LOCK := requirements-dev.lock.txt
TOOLKIT_LOCK := tests/inference/requirements-toolkit.lock.txt
SERVING_LOCK := tests/inference/requirements-serving.lock.txt
TRAIN_IMAGE_LOCK := tests/training/requirements-train-image.lock.txt
TRAINING_LOCK := tests/training/requirements-training.lock.txt
SDK_LOCK := tests/sdk/requirements-sdk.lock.txt
PIP_INSTALL := -m pip install --disable-pip-version-check -q
# $(call torch_cpu,PYTHON): torch's CPU build alone, before the lock.
torch_cpu = $(1) $(PIP_INSTALL) --no-deps $$($(1) scripts/torch_cpu.py pip-args) "$$($(1) scripts/torch_cpu.py pin)"
# $(call locked,PYTHON,LOCK): every package of the lock, each checked against the lock's hashes. A requirement
# the lock lacks fails the install (it has no hash), torch included: the CPU build installed before satisfies
# it, so no CUDA build can come in this way.
locked = $(1) $(PIP_INSTALL) --require-hashes -r $(2)

.PHONY: help install lock toolkit-venv train-venv sdk-venv lint format typecheck test synth pr clean snapshots demo

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install: $(VENV)/.installed node_modules/.installed $(TOOLKIT_VENV)/.installed $(TRAIN_VENV)/.installed $(SDK_VENV)/.installed | espeak ## Create .venv, node_modules, .venv-toolkit, .venv-train and .venv-sdk (idempotent), and install espeak-ng

$(VENV)/.installed: $(DEV_LOCK) pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) $(PIP_INSTALL) --upgrade pip
	$(call torch_cpu,$(PY))
	$(call locked,$(PY),$(DEV_LOCK))
	# The project itself, editable: the acoustic-shield command from any directory (its libraries are above).
	$(PY) $(PIP_INSTALL) --no-deps -e .
	$(PY) -m pip check
	$(PY) scripts/torch_cpu.py check
	touch $@

# The inference image's library versions with the real SageMaker Hugging Face inference toolkit and
# model server, in their own environment; the inference tests drive the handler through it. Rebuilt from
# scratch when a lock changes, so that nothing the image lacks lingers: the image first, then the serving
# requirements on top, as the toolkit installs them at start-up. The model server is Java: a
# headless JRE comes from Debian when `java` is missing.
.PHONY: jre
SUDO = $(if $(filter 0,$(shell id -u)),,sudo)
toolkit-venv: $(TOOLKIT_VENV)/.installed ## Create .venv-toolkit (idempotent; part of install)

$(TOOLKIT_VENV)/.installed: $(TOOLKIT_LOCK) $(SERVING_LOCK) | jre
	rm -rf $(TOOLKIT_VENV) && python3 -m venv $(TOOLKIT_VENV)
	$(TOOLKIT_VENV)/bin/python $(PIP_INSTALL) --upgrade pip
	$(call torch_cpu,$(TOOLKIT_VENV)/bin/python)
	$(call locked,$(TOOLKIT_VENV)/bin/python,$(TOOLKIT_LOCK))
	$(call locked,$(TOOLKIT_VENV)/bin/python,$(SERVING_LOCK))
	$(TOOLKIT_VENV)/bin/python -m pip check
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
# the job there. Rebuilt from scratch when a lock changes; the image first, then the job's
# requirements on top, as the toolkit installs them when a job starts.
train-venv: $(TRAIN_VENV)/.installed ## Create .venv-train (idempotent; part of install)

$(TRAIN_VENV)/.installed: $(TRAIN_IMAGE_LOCK) $(TRAINING_LOCK)
	rm -rf $(TRAIN_VENV) && python3 -m venv $(TRAIN_VENV)
	$(TRAIN_VENV)/bin/python $(PIP_INSTALL) --upgrade pip
	$(call torch_cpu,$(TRAIN_VENV)/bin/python)
	$(call locked,$(TRAIN_VENV)/bin/python,$(TRAIN_IMAGE_LOCK))
	$(call locked,$(TRAIN_VENV)/bin/python,$(TRAINING_LOCK))
	$(TRAIN_VENV)/bin/python -m pip check
	$(TRAIN_VENV)/bin/python scripts/torch_cpu.py check
	touch $@

# The SageMaker Python SDK v2, the reference producer of the launcher's requests, in its own environment (it
# pins packaging, attrs, protobuf and sagemaker-core below .venv's): tests/sdk/ builds the same jobs with it
# and compares them with ours. Rebuilt from scratch when its lock changes. No torch: the SDK does not
# need it, and the build fails if something pulls it.
sdk-venv: $(SDK_VENV)/.installed ## Create .venv-sdk (idempotent; part of install)

$(SDK_VENV)/.installed: $(SDK_LOCK)
	rm -rf $(SDK_VENV) && python3 -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/python $(PIP_INSTALL) --upgrade pip
	$(call locked,$(SDK_VENV)/bin/python,$(SDK_LOCK))
	$(SDK_VENV)/bin/python -m pip check
	$(SDK_VENV)/bin/python -c "import importlib.util as u, sys; sys.exit('torch was installed into $(SDK_VENV); nothing there may pull it' if u.find_spec('torch') else 0)"
	touch $@

# The CDK CLI, exactly as package-lock.json has it (npm ci checks each package's integrity hash).
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The lock files, resolved again from the requirements files with uv (.venv's; UV=<path> for another one), for
# CPython 3.11 on Linux x86_64, then on aarch64, which must resolve to the same lock: one lock serves both. A
# version already locked stays while its range allows it; LOCK_ARGS='--upgrade-package NAME' moves NAME to its
# newest allowed release, LOCK_ARGS=--upgrade every package. A lock is rewritten only when it changes (so that
# no environment is rebuilt for nothing). Review the diff, then commit the requirements and locks together.
UV ?= $(VENV)/bin/uv
LOCK_ARGS ?=
LOCK_FLAGS = --quiet --python-version 3.11 --generate-hashes --no-emit-package torch \
  --excludes requirements-lock-excludes.txt --custom-compile-command "make lock" $(LOCK_ARGS)
# $(call lock,LOCK,INPUTS): the inputs are uv pip compile's (requirements files, -c constraints).
define lock
	if [ -f $(1) ]; then cp $(1) build/lock/x86_64.txt; else rm -f build/lock/x86_64.txt; fi
	$(UV) pip compile $(LOCK_FLAGS) --python-platform x86_64-manylinux_2_28 $(2) -o build/lock/x86_64.txt
	cp build/lock/x86_64.txt build/lock/aarch64.txt
	$(UV) pip compile $(LOCK_FLAGS) --python-platform aarch64-manylinux_2_28 $(2) -o build/lock/aarch64.txt
	@diff -u build/lock/x86_64.txt build/lock/aarch64.txt || { echo "$(1): aarch64 resolves otherwise" >&2; exit 1; }
	@cmp -s build/lock/x86_64.txt $(1) && echo "$(1): unchanged" || { cp build/lock/x86_64.txt $(1) && echo "$(1): written"; }

endef

lock: ## Resolve the requirements files again into the lock files (then review the diff)
	@command -v $(UV) >/dev/null || { echo "$(UV) is missing: run make install first, or give UV=<path to uv>" >&2; exit 1; }
	mkdir -p build/lock
	$(call lock,$(DEV_LOCK),requirements-dev.txt)
	$(call lock,$(TOOLKIT_LOCK),tests/inference/requirements-toolkit.txt)
	$(call lock,$(SERVING_LOCK),serving/requirements.txt -c $(TOOLKIT_LOCK))
	$(call lock,$(TRAIN_IMAGE_LOCK),tests/training/requirements-train-image.txt)
	$(call lock,$(TRAINING_LOCK),training/requirements.txt -c $(TRAIN_IMAGE_LOCK))
	$(call lock,$(SDK_LOCK),tests/sdk/requirements-sdk.txt)
	rm -rf build/lock

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
