"""Tests of the toy pipeline and of the entry point's error handling."""

import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'

import subprocess  # pylint: disable=g-import-not-at-top
import sys

import gin
import numpy as np

from pipelines import toy_regression

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tools'))
import pipeline_runs  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
TOY_GIN = os.path.join(REPO, 'gin', 'toy', 'lr_bmg.gin')


def _train(root_dir, steps, method='bmg'):
  gin.clear_config()
  gin.parse_config_file(os.path.join(REPO, 'gin', 'toy', f'lr_{method}.gin'))
  return toy_regression.train_eval(
      root_dir=str(root_dir), num_meta_steps=steps, log_every=10,
      checkpoint_every=10, task_period=15)


def _variables(root_dir):
  """A run's newest checkpoint without optimizer slots, by variable name."""
  return pipeline_runs.checkpoint_values(
      root_dir, skip=('_CHECKPOINTABLE', 'OPTIMIZER_SLOT'))


def test_meta_learning_raises_a_too_small_learning_rate(tmp_path):
  # The demo's claim, checked: from lr=0.01 both MG and BMG raise it.
  for method in ('mg', 'bmg'):
    out = _train(tmp_path / method, 150, method=method)
    assert out['final_learning_rate'] > 2 * out['initial_learning_rate'], out


def test_resume_continues_exactly(tmp_path):
  # 20 + 20 steps in two runs equals 40 steps in one run.
  _train(tmp_path / 'split', 20)
  _train(tmp_path / 'split', 40)
  _train(tmp_path / 'whole', 40)
  split, whole = _variables(tmp_path / 'split'), _variables(tmp_path /
                                                            'whole')
  assert split.keys() == whole.keys()
  assert any('train_step' in k for k in split)
  for k in split:
    np.testing.assert_allclose(split[k], whole[k], rtol=1e-5, atol=1e-7,
                               err_msg=k)


def _cli(*args):
  return subprocess.run(
      [sys.executable, '-m', 'pipelines.train', *args], cwd=REPO,
      capture_output=True, text=True, timeout=300,
      env={**os.environ, 'TF_USE_LEGACY_KERAS': '1'})


def _error_line(proc):
  lines = [l for l in proc.stderr.splitlines() if 'bmg-train: error' in l]
  assert proc.returncode != 0, proc.stderr[-2000:]
  assert len(lines) == 1, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr, proc.stderr[-2000:]
  return lines[0]


def test_cli_bad_binding_is_one_line(tmp_path):
  proc = _cli(f'--gin_file={TOY_GIN}', f'--root_dir={tmp_path}',
              '--gin_bindings=toy_regression.build.no_such_arg=1')
  assert 'no_such_arg' in _error_line(proc)


def test_cli_bad_value_is_one_line(tmp_path):
  proc = _cli(f'--gin_file={TOY_GIN}', f'--root_dir={tmp_path}',
              '--gin_bindings=BootstrapConfig.k_steps=-1')
  assert 'k_steps' in _error_line(proc)


def test_cli_missing_gin_file(tmp_path):
  proc = _cli('--gin_file=gin/nope.gin', f'--root_dir={tmp_path}')
  assert 'gin/nope.gin' in _error_line(proc)


def test_cli_unwritable_root_dir(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('x')
  proc = _cli(f'--gin_file={TOY_GIN}', f'--root_dir={blocker}/run')
  assert 'root_dir' in _error_line(proc)
