# One-command set-up, run and test. Idempotent: the venv is (re)installed only
# when requirements/lock.txt or setup.py change.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements/lock.txt setup.py | sha1sum | cut -c1-12)
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: install run test bench bazel-test buildifier clean

install: $(STAMP)

$(STAMP): requirements/lock.txt setup.py
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/lock.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

# The default pipeline: two-colours actor-critic, entropy weight learned by
# BMG, for a budget of a few minutes on 2 cores. Re-running resumes (and, once
# the budget is reached, only re-exports).
RUN_STEPS ?= 600000
run: install
	$(BIN)/bmg-train --gin_file=gin/two_colors/ac_bmg.gin --root_dir=runs/two_colors_ac_bmg \
	  --gin_bindings='two_colors.build.num_env_steps=$(RUN_STEPS)' \
	  --gin_bindings='two_colors.build.log_every=100000'

test: install
	$(BIN)/python -m pytest -n auto

bench: install
	$(BIN)/python benchmarks/engine.py

# Bazel (offline): Debian's bazel-bootstrap 4.2.3 with native py_* rules and
# the venv as the Python toolchain; buildifier from npm. CI runs the subset
# below; `bazel test //...` runs every test file.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BUILDIFIER := .tools/node_modules/.bin/buildifier
BAZEL_CI_TARGETS := //tests:build_test //tests:readme_test //tests/core/... \
  //tests/networks/... //tests/pipelines:export_test

$(BUILDIFIER):
	npm install --prefix .tools --no-audit --no-fund --silent @bazel/buildifier@8.2.1

buildifier: $(BUILDIFIER)
	$(BUILDIFIER) -mode=check -lint=warn -r BUILD WORKSPACE build_defs.bzl bazel \
	  bmg_tf pipelines benchmarks gin tests

bazel-test: install buildifier
	@if ! command -v bazel >/dev/null || [ ! -d /usr/share/bazel/rules/java ]; then \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get \
	    install -y -qq --no-install-recommends bazel-bootstrap bazel-rules-java; fi
	bazel build //...
	bazel test $(BAZEL_CI_TARGETS)
	bazel shutdown

clean:
	rm -rf $(VENV) runs results .tools
	-bazel clean --expunge
