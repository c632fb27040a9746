# Everything runs from a project-local virtualenv that these targets create on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench classify-report clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: serve on 127.0.0.1:8000 (PIXEL_HOST/PIXEL_PORT) with SQLite at ./pixel.db
run: $(STAMP)
	$(BIN)/pixel-server serve

## test: the whole suite, real server processes included
test: $(STAMP)
	$(BIN)/python -m pytest

## lint: ruff and mypy --strict
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## bench: pixel_server vs nginx, a naive app and raw ASGI anchors, same run, loopback (BENCH_ARGS="--only pixel --duration 5")
bench: $(STAMP)
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

## classify-report: precision and recall of the traffic classes on tests/data/traffic_corpus.json
classify-report: $(STAMP)
	$(BIN)/python bench/classify_report.py

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
