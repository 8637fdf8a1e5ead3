"""The Python rules of bmg_tf's BUILD files: the one file a monorepo edits.

Every BUILD file loads `bmg_py_library`, `bmg_py_binary` and `bmg_py_test`
from here and nothing else, and names its third-party imports by PyPI name
in `pip_deps` (the first-party edges are plain `deps`).

This repository (offline, Debian's Bazel 4.2.3): the native `py_*` rules;
the interpreter is the project's venv (//bazel:venv_py_toolchain), which
provides the third-party packages, so `PIP_REPO` is None and `pip_deps`
adds no labels.

A monorepo on Bazel 7+ with rules_python changes only this file:
  1. load the rules:
       load("@rules_python//python:defs.bzl", "py_binary", "py_library",
            "py_test")
     and call them where this file calls `native.py_*`;
  2. set `PIP_REPO = "@pypi"` (the hub name of its `pip.parse`), so that
     `pip_deps = ["tensorflow"]` becomes `@pypi//tensorflow`;
  3. drop WORKSPACE, .bazelrc and bazel/ (toolchain and offline stubs);
     keep bazel/pytest_main.py, the test runner.
"""

# Hub repository of third-party packages; None: the interpreter has them.
PIP_REPO = None

def _pip(names):
    """Labels of third-party packages, by PyPI name."""
    if PIP_REPO == None:
        return []
    return ["%s//%s" % (PIP_REPO, n.lower().replace("-", "_")) for n in names]

def bmg_py_library(name, deps = [], pip_deps = [], **kwargs):
    """A py_library; `pip_deps` are PyPI names."""

    # buildifier: disable=native-py
    native.py_library(
        name = name,
        deps = deps + _pip(pip_deps),
        srcs_version = "PY3",
        **kwargs
    )

def bmg_py_binary(name, deps = [], pip_deps = [], **kwargs):
    """A py_binary; `pip_deps` are PyPI names."""

    # buildifier: disable=native-py
    native.py_binary(
        name = name,
        deps = deps + _pip(pip_deps),
        python_version = "PY3",
        srcs_version = "PY3",
        **kwargs
    )

def bmg_py_test(
        name,
        src,
        deps = [],
        pip_deps = [],
        data = [],
        env = {},
        size = "medium",
        **kwargs):
    """One pytest file as a py_test, run by //bazel:pytest_main.py.

    Args:
      name: target name.
      src: the test file, e.g. "bootstrap_test.py".
      deps: first-party libraries it imports.
      pip_deps: third-party packages it imports (PyPI names); pytest is
        always added.
      data: files it reads or runs (gin files, scripts).
      env: extra environment; TF_USE_LEGACY_KERAS=1 is always set.
      size: Bazel test size.
      **kwargs: other py_test attributes (tags, timeout, ...).
    """
    test_env = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    test_env.update(env)

    # buildifier: disable=native-py
    native.py_test(
        name = name,
        srcs = [src, "//bazel:pytest_main.py"],
        main = "//bazel:pytest_main.py",
        args = ["$(rootpath %s)" % src],
        deps = deps + _pip(["pytest"] + pip_deps),
        data = data + ["//tests:conftest.py"],
        env = test_env,
        size = size,
        python_version = "PY3",
        srcs_version = "PY3",
        **kwargs
    )
