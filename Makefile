# The two commands a newcomer types: `make demo` and `make test`. Each installs what it needs first
# (idempotently: the install is skipped while requirements/cpu.lock and pyproject.toml are unchanged).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
CORES ?= 2
# The caller's PATH, before the project's environment goes first: `make gpu-check` must not pick the CPU venv.
CALLER_PATH := $(PATH)
# Rules run `python -m boostmdr...`: put the project's environment first on PATH for every recipe.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo report test test-fast bench gpu-check dryrun-paper lint clean

install: $(STAMP)

$(STAMP): requirements/cpu.lock requirements/constraints-cpu.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required (snakemake 9, pyserini 1.6)"'
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade "pip>=23.2"
	# torch stays at the CPU build 2.13.0: the constraint stops any package from pulling a CUDA build.
	$(VENV)/bin/pip install --quiet -r requirements/cpu.lock -c requirements/constraints-cpu.txt
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	$(VENV)/bin/python -m boostmdr.doctor
	touch $(STAMP)

demo: $(STAMP)
	snakemake --cores $(CORES) demo

# Everything the config defines, what it cost, and the HTML report of it all (results/report.html).
report: $(STAMP)
	snakemake --cores $(CORES)
	snakemake --cores $(CORES) results/tables/cost.md
	snakemake --report results/report.html all results/tables/cost.md

test: $(STAMP)
	pytest -v tests

test-fast: $(STAMP)
	pytest -q -m "not slow and not cluster" tests

bench: $(STAMP)
	python -m benchmarks

# The GPU check (README: "Before the paper's matrix"): runs from the source tree with the caller's python3 (or
# GPU_CHECK_PYTHON), which must have a CUDA build of torch and transformers; installs nothing, and never uses the
# CPU venv. Not part of `make test` (CI has no GPU).
GPU_CHECK_PYTHON ?= python3
GPU_CHECK_REPORT ?= results/gpu-check.json
gpu-check:
	env -u TOKENIZERS_PARALLELISM PATH="$(CALLER_PATH)" PYTHONPATH=src \
		$(GPU_CHECK_PYTHON) -m benchmarks.gpu --out $(GPU_CHECK_REPORT) $(GPU_CHECK_ARGS)

dryrun-paper: $(STAMP)
	pytest -q -s tests/test_workflow_dryrun.py

lint: $(STAMP)
	snakemake --lint

clean:
	rm -rf results .snakemake
