"""Test helpers: train through the `pipelines.train` CLI, kill a run, and
read or compare the checkpoints a run leaves in `<root_dir>/checkpoints`.

Tests reach this module by putting `tests/tools` on `sys.path` (tests are
not a package); under Bazel they depend on `//tests/tools:pipeline_runs`.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

__all__ = ['REPO', 'ENV', 'SAVE_COUNTER', 'train_command', 'run_train',
           'checkpoint_values', 'latest_checkpoint_number',
           'kill_after_checkpoint', 'assert_same_variables']

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
# The environment of a CLI run: Keras 2 (TF-Agents needs it), quiet logs.
ENV = {**os.environ, 'TF_USE_LEGACY_KERAS': '1', 'TF_CPP_MIN_LOG_LEVEL': '2'}
# A run restarted from a checkpoint saves once more than an uninterrupted
# one; this variable alone differs between them.
SAVE_COUNTER = 'save_counter/.ATTRIBUTES/VARIABLE_VALUE'


def train_command(gin_file, root_dir, bindings):
  """The argv of `python -m pipelines.train` for one run.

  Args:
    gin_file: str, path of the experiment's gin file.
    root_dir: str or path-like, the run's directory.
    bindings: iterable of str, gin bindings, in order (later ones win).

  Returns:
    A list of str.
  """
  return [sys.executable, '-m', 'pipelines.train', f'--gin_file={gin_file}',
          f'--root_dir={root_dir}'] + [f'--gin_bindings={b}' for b in bindings]


def run_train(gin_file, root_dir, bindings, timeout=600):
  """Runs `train_command(...)` to the end from the repository root.

  Returns:
    The `subprocess.CompletedProcess` (text stdout and stderr); the test
    fails, showing the end of stderr, if the run exits non-zero.
  """
  proc = subprocess.run(train_command(gin_file, root_dir, bindings),
                        cwd=REPO, env=ENV, capture_output=True, text=True,
                        timeout=timeout)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def checkpoint_values(root_dir, skip=('_CHECKPOINTABLE',)):
  """{variable name: np.ndarray} of the newest checkpoint of a run.

  Args:
    root_dir: str or path-like, the run's directory.
    skip: names holding any of these substrings are left out (by default
      the object-graph bookkeeping, which is not a variable).
  """
  reader = tf.train.load_checkpoint(os.path.join(root_dir, 'checkpoints'))
  return {name: reader.get_tensor(name)
          for name in reader.get_variable_to_shape_map()
          if not any(s in name for s in skip)}


def latest_checkpoint_number(root_dir):
  """The number N of the newest `ckpt-N` of a run (an int), or None."""
  latest = tf.train.latest_checkpoint(os.path.join(root_dir, 'checkpoints'))
  return None if latest is None else int(latest.rsplit('-', 1)[1])


def kill_after_checkpoint(command, root_dir, at_least, timeout=300,
                          poll_seconds=0.02):
  """Starts `command` and SIGKILLs it once it has saved a checkpoint
  numbered `at_least` or more in `root_dir`.

  The test fails if the run ends on its own first or saves no such
  checkpoint within `timeout` seconds.

  Returns:
    The number (int) of the newest checkpoint left after the kill.
  """
  proc = subprocess.Popen(command, cwd=REPO, env=ENV,
                          stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + timeout
  try:
    while time.time() < deadline:
      number = latest_checkpoint_number(root_dir)
      if number is not None and number >= at_least:
        break
      if proc.poll() is not None:
        pytest.fail('the run ended before it could be killed')
      time.sleep(poll_seconds)
    else:
      pytest.fail(f'no checkpoint within {timeout} s')
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  finally:
    if proc.poll() is None:
      proc.kill()
  return latest_checkpoint_number(root_dir)


def assert_same_variables(got_root, want_root, ignore=(SAVE_COUNTER,)):
  """Asserts two runs' newest checkpoints hold the same variables, bit for
  bit, apart from the names in `ignore`.

  Returns:
    (got, want): the two runs' `checkpoint_values`, without `ignore`.
  """
  got, want = checkpoint_values(got_root), checkpoint_values(want_root)
  for name in ignore:
    del got[name], want[name]
  assert got.keys() == want.keys()
  for name in want:
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)
  return got, want
