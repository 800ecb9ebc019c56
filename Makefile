# segments: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
# Lambda runs python3.12 (template.yaml); develop and test on the same version when the machine has it.
PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12.*/bin/python3.12) $(shell command -v python3.12 2>/dev/null) python3)
VENV := .venv
SAM_VENV := .venv-sam
MINISTACK_VENV := .venv-ministack
PY := $(VENV)/bin/python
PIP_QUIET := --quiet --disable-pip-version-check

# soak: the stateful model checked for at least SOAK_STEPS steps; prints its seed and divergences (must be 0).
.PHONY: soak import-check help venv sam-venv ministack-venv lint typecheck unit test run sam-validate sam-build bench clean

help:
	@echo "make run    deploy the stack into a local AWS emulator (MiniStack) and serve it until Ctrl-C"
	@echo "make test   lint, type-check and run every test, the deployed tier included"

$(VENV)/.installed: requirements-dev.txt functions/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_QUIET) -r requirements-dev.txt 2>&1 | grep -v '^WARNING: Location' || true
	$(PY) -c "import moto, pynamodb, aws_lambda_powertools, pytest"
	touch $@

# aws-sam-cli pins its own boto3 and pydantic, so it lives in a venv of its own.
$(SAM_VENV)/.installed: requirements-sam.txt
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install $(PIP_QUIET) -r requirements-sam.txt 2>&1 | grep -v '^WARNING: Location' || true
	$(SAM_VENV)/bin/sam --version
	touch $@

# MiniStack, the AWS emulator of `make run` and the deployed tests, pins its own botocore: its own venv too.
$(MINISTACK_VENV)/.installed: requirements-ministack.txt
	test -x $(MINISTACK_VENV)/bin/python || $(PYTHON) -m venv $(MINISTACK_VENV)
	$(MINISTACK_VENV)/bin/python -m pip install $(PIP_QUIET) -r requirements-ministack.txt 2>&1 | grep -v '^WARNING: Location' || true
	$(MINISTACK_VENV)/bin/python -c "import ministack, samtranslator"
	touch $@

venv: $(VENV)/.installed
sam-venv: $(SAM_VENV)/.installed
ministack-venv: $(MINISTACK_VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy functions local tests benchmarks

# tests/e2e deploy the working tree into MiniStack (ports 4566 and 443 must be free) and stop it at the end.
# Three workers on two cores: the deployed tier's worker mostly waits on the emulator, and the other two
# keep both cores busy with the in-process tests meanwhile.
test: venv sam-venv ministack-venv lint typecheck
	PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" $(VENV)/bin/pytest -n 3 --dist loadgroup --durations=25

# Figures of docs/performance.md, measured on this machine (about 13 minutes here); writes benchmarks/results.json.
bench: venv
	$(PY) -m benchmarks.run

# The stack as deployed, on this machine: MiniStack, sam build, sam deploy; Ctrl-C stops it all.
run: venv sam-venv ministack-venv
	$(PY) -m local.run

sam-validate: sam-venv
	$(SAM_VENV)/bin/sam validate --lint

sam-build: sam-venv
	$(SAM_VENV)/bin/sam build

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache .local-emulator

# A fresh seed each run (printed); `make soak SOAK_SEED=N SOAK_STEPS=M` replays one. The month index
# has 8 shards here (128 deployed, and in make test): every report still merges several, and a sweep
# or report reads 8 Queries, not 128, so the soak takes ~16 minutes, not ~27.
SOAK_STEPS ?= 10000
SOAK_SEED ?=
soak: venv
	HISTORY_SHARDS=8 POWERTOOLS_LOG_LEVEL=WARNING SEGMENTS_SOAK_STEPS=$(SOAK_STEPS) SEGMENTS_SOAK_SEED=$(SOAK_SEED) \
	  $(VENV)/bin/pytest tests/integration/test_stateful_model.py -p no:randomly -p no:cacheprovider -s -q

# The deployed tier's import test at full size: a 100,000-line file (1% bad lines, 1% duplicates)
# uploaded to the stack deployed into MiniStack, done with exact counts, errors and history.
IMPORT_LINES ?= 100000
import-check: venv sam-venv ministack-venv
	SEGMENTS_E2E_IMPORT_LINES=$(IMPORT_LINES) PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" \
	  $(VENV)/bin/pytest tests/e2e/test_imports.py -k uploaded -p no:randomly -p no:cacheprovider -s -q
