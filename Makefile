# make demo: create .venv if needed, train the quickstart model, evaluate it, write PNG grids.
# make test: create .venv if needed, run the test suite (what .ci/run runs).
PYTHON ?= python3
VENV ?= .venv
WORKDIR ?= runs/quickstart
# Offline: a folder holding the static MNIST .amat files (defaults to the shared copy if present).
MANUAL_DIR ?= $(wildcard ../shared/data/binarized_mnist)
# Extra flags for the evaluation, e.g. EVAL_FLAGS=--max_examples=1000 for a quicker estimate.
EVAL_FLAGS ?=

PY := $(VENV)/bin/python
# glibc >= 2.35: malloc asks for transparent huge pages where THP is in madvise mode; ResnetVAE steps
# ran 1.11x faster (vaeprior_jax/cpu/xla_options.py; benchmarks/LOG.md has the A/B).
# Older glibc ignores it; a GLIBC_TUNABLES of your own wins.
GLIBC_TUNABLES ?= glibc.malloc.hugetlb=1
export GLIBC_TUNABLES

.PHONY: demo test clean-demo

$(VENV)/.installed: setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(PY) -m experiments.train --config=experiments/configs/xu2019.py:quickstart \
	    --workdir=$(WORKDIR) --config.data.manual_dir=$(MANUAL_DIR)
	$(PY) -m experiments.evaluate --workdir=$(WORKDIR) --num_samples=1000 --split=test $(EVAL_FLAGS)
	@echo "Samples and reconstructions: $(WORKDIR)/samples.png $(WORKDIR)/reconstructions_test.png"

test: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 tests

clean-demo:
	rm -rf $(WORKDIR)
