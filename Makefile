# The README's two commands: `make run` and `make test`. Everything else is a helper.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export KEDRO_DISABLE_TELEMETRY := 1
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1

.PHONY: run test install data viz viz-build bench-preprocess clean-data

# A lone `make run` has the machine to itself: OpenMP threads may spin while they wait (about 1.5x faster on 2
# cores than the passive default, which is for shared machines; results do not depend on it). Set
# OMP_WAIT_POLICY=PASSIVE when other jobs share the cores.
run: export OMP_WAIT_POLICY ?= ACTIVE
run: install data          ## set up, then train and evaluate the default chain through DVC
	dvc repro

test: install              ## the test suite, on every core, one test at a time per worker; prints the 10 slowest
	$(PY) -m pytest -n auto --maxschedchunk 1 --durations=10

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

data: install              ## make sure the configured source data is present
	$(PY) scripts/ensure_data.py

viz: install               ## Kedro-Viz on http://127.0.0.1:4141
	kedro viz run --host 127.0.0.1 --port 4141

viz-build: install         ## static Kedro-Viz site in build/
	kedro viz build

bench-preprocess: install  ## images/s for the CIFAR-10 archive
	$(PY) benchmarks/preprocess_speed.py

clean-data:                ## delete generated data (keeps the folder layout)
	find data -type f ! -name .gitkeep -delete
