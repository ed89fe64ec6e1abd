# btxcode: one command per task. Quick start on a fresh machine: `make run`, then `make test`.
# Needs GNU make and Python >= 3.11 (choose it with PY=python3.12 etc.); everything else goes in .venv.

PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON := $(BIN)/python
PIP_FLAGS ?= --quiet --disable-pip-version-check
# extras installed into .venv, e.g. EXTRAS=dev,spark (.ci/run adds spark when java is there); one stamp per set
EXTRAS ?= dev
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),+,$(EXTRAS))
PYTEST_ARGS ?=
# the real-world notes live next to the repository (override with MTSAMPLES=... or BTXCODE_SHARED=...)
MTSAMPLES ?= $(firstword $(wildcard $(BTXCODE_SHARED)/realworld/mtsamples ../shared/realworld/mtsamples \
                                    shared/realworld/mtsamples))

.DEFAULT_GOAL := help
.PHONY: help .venv venv run test lint gold eval bench train clean bench-all

help: ## list the targets
	@awk -F':.*## ' '/^[a-z. -]+:.*## /{printf "  make %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.venv venv: $(STAMP) ## create .venv and install btxcode with its dev tools (once; again when pyproject.toml changes)

$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || \
	  { echo "btxcode needs Python >= 3.11: run make with PY=python3.11 (or newer)" >&2; exit 1; }
	@test -x $(PYTHON) || $(PY) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "'$(PY) -m venv' failed; on Debian/Ubuntu install python3-venv (apt-get install python3-venv)" >&2; exit 1; }
	$(PYTHON) -m pip install $(PIP_FLAGS) -e '.[$(EXTRAS)]'
	@touch $@

run: $(STAMP) ## set up, then serve the coder page + APIs on http://127.0.0.1:8000 (state in BTXCODE_HOME, default ./var)
	$(BIN)/btxcode serve --host 127.0.0.1 --port 8000

test: $(STAMP) ## set up, then lint (ruff) and run the test suite (pytest)
	$(BIN)/ruff check .
	$(PYTHON) -m pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff check
	$(BIN)/ruff check .

gold: $(STAMP) ## merge training_data/gold_parts into training_data/gold.json (fixed split)
	$(PYTHON) -m nlp.training.gold

eval: $(STAMP) ## score the MTSamples reference (codes stripped, DOS from reference.json) and the dev split
	@if [ -n "$(MTSAMPLES)" ] && [ -f "$(MTSAMPLES)/reference.json" ]; then \
	  echo "== MTSamples ($(MTSAMPLES)), PROCEDURE CODES lines removed"; \
	  $(BIN)/btxcode eval $(MTSAMPLES)/reference.json $(MTSAMPLES) --strip-codes; \
	else echo "== MTSamples not found (set MTSAMPLES=path/to/mtsamples); skipped"; fi
	@echo "== training_data dev split"
	$(BIN)/btxcode eval training_data/gold.json training_data/notes --split dev

bench: $(STAMP) ## throughput benchmark vs bare spaCy and default medspaCy (bench/run.py; installs the bench extra)
	$(PYTHON) -m pip install $(PIP_FLAGS) -e '.[dev,bench]'
	$(PYTHON) -m bench.run

bench-all: $(STAMP) ## every issue-5 figure in one run: engine ratio, batch 1 vs 2 workers, memory 10k/100k, service load + 10-min soak (~20 min)
	$(PYTHON) -m pip install $(PIP_FLAGS) -e '.[dev,bench]'
	$(PYTHON) -m bench.run --all

train: $(STAMP) ## regenerate training_data/generated and retrain models/confidence (writes the routing threshold)
	$(PYTHON) -m nlp.training.generate
	$(PYTHON) -m nlp.training.train_confidence train

clean: ## remove .venv and build/test caches
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
