# Two commands: `make demo` and `make test`. Both set up .venv from the lock files
# on first use (and again only when a lock or pyproject changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
CORES ?= all

.PHONY: demo test lint check bench bench-gpu clean-demo

# What running needs (requirements.lock); the tests' own dependencies (requirements-test.lock) only for
# `make test` and `make bench`.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.lock
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP) requirements-test.lock
	$(BIN)/python -m pip install --disable-pip-version-check -q -c requirements.lock \
		-r requirements-test.lock
# panoptica (the tests' cross-check of the lesion-wise metrics) pins numpy<2.3, the lock has numpy 2.3.5
# (antspyx needs <2.4): installed without its pins; the runtime dependencies it needs are in the locks.
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps panoptica==2.1.7
	touch $(TEST_STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --report results/report.html
	@echo "Report: results/report.html (open it in a browser); per-subject results under results/demo/"

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/snakemake --lint

bench: $(TEST_STAMP)
	$(BIN)/python bench/preprocessing.py
	$(BIN)/python bench/inference.py
	$(BIN)/python bench/training.py
	$(BIN)/python bench/crf.py

# The CUDA paths checked and timed (a few minutes on one GPU); says so and exits 0 without CUDA.
bench-gpu: $(STAMP)
	$(BIN)/python bench/gpu.py

check: $(STAMP)
	$(BIN)/lesionseg check --configfile config/config.yaml

clean-demo:
	rm -rf results logs benchmarks .snakemake
