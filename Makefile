# One-command set-up, run and test. Idempotent: the venv is (re)installed only
# when requirements/lock.txt or setup.py change.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements/lock.txt setup.py | sha1sum | cut -c1-12)
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: install run test bench clean

install: $(STAMP)

$(STAMP): requirements/lock.txt setup.py
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/lock.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

# The default pipeline: BMG on the toy regression demo.
run: install
	$(BIN)/bmg-train --gin_file=gin/toy/lr_bmg.gin --root_dir=runs/toy_lr_bmg

test: install
	$(BIN)/python -m pytest -n auto

bench: install
	$(BIN)/python benchmarks/engine.py

clean:
	rm -rf $(VENV) runs results
