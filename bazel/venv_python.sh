#!/bin/sh
# The interpreter of Bazel's py_* targets: the project's venv
# (<repo>/.venv/bin/python, made by `make install`), found from this
# script's real location, so the checkout may live anywhere.
here="$(dirname "$(readlink -f "$0")")"
python="$here/../.venv/bin/python"
if [ ! -x "$python" ]; then
  echo "bazel/venv_python.sh: $python not found; run 'make install' first." >&2
  exit 1
fi
exec "$python" "$@"
