# Two commands do all set-up on a fresh machine (Python 3.10+ with venv):
#   make train   - create/reuse .venv, install, train HalfCheetah-v5 with its preset, evaluate
#   make test    - create/reuse .venv, install, run ruff, mypy and the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STEPS  ?= 300000
SEED   ?= 1

.PHONY: train test lint bench-sps bench-returns gpu-check clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the requirements change. torch goes first and alone, pinned, so that pip
# takes the CPU wheel instead of resolving a multi-GB CUDA build for the range in setup.cfg.
$(VENV)/.installed: setup.cfg constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "torch==$$(sed -n 's/^torch==//p' constraints.txt)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[all]"
	touch $@

train: $(VENV)/.installed
	$(BIN)/rlctl train --env HalfCheetah-v5 --steps $(STEPS) --seed $(SEED)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

bench-sps: $(VENV)/.installed
	$(BIN)/rlctl bench sps --env HalfCheetah-v5 --preset sb3-default --steps 102400 --repeats 3 --out results

bench-returns: $(VENV)/.installed
	$(BIN)/rlctl bench returns --envs HalfCheetah-v5,Hopper-v5 --preset default --seeds 3 --steps 1000000 --jobs 2 --out results

# On a machine with a GPU and a CUDA build of torch: the CUDA tests, then GPU vs CPU learner timings and GPU
# training runs, into results/gpu.md (about 8 minutes; exits 2 without a CUDA device).
gpu-check: $(VENV)/.installed
	$(BIN)/rlctl bench gpu --out results

clean-venv:
	rm -rf $(VENV)
