"""End-to-end tests of the STACX pipeline (Atari through ALE, and MinAtar).

Tiny runs: Pong through the real ALE pipeline (gymnasium ALE/Pong-v5, the
standard preprocessing, the Nature CNN) with MG and BMG for a few hundred
env steps; MinAtar runs for resume and export without training; bad
settings. (The CLI export path is common to every pipeline and covered by
export_test.py.)
"""

import json
import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'

import subprocess  # pylint: disable=g-import-not-at-top
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf

from bmg_tf import experiment as experiment_lib
from pipelines import experiment
from pipelines import stacx

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tools'))
import pipeline_runs  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
MINATAR_GIN = os.path.join(REPO, 'gin', 'minatar', 'stacx_bmg.gin')
MINATAR_MG_GIN = os.path.join(REPO, 'gin', 'minatar', 'stacx_mg.gin')


@pytest.mark.parametrize('method', ['mg', 'bmg'])
def test_pong_through_the_real_ale_pipeline(method, tmp_path):
  # 2 actors x unrolls of 6 env steps, 4 frames each: 480 frames is 60 env
  # steps per actor (the Nature CNN on 84x84x4 stacks, sticky actions).
  gin.parse_config_files_and_bindings(
      [os.path.join(REPO, 'gin', 'atari', f'stacx_{method}.gin')],
      ['ImpalaAgent.num_aux_heads = 1', 'MetaLearner.jit_compile = False'] +
      (['BootstrapConfig.l_steps = 2'] if method == 'bmg' else []))
  result = stacx.train_eval(
      str(tmp_path), suite='atari', game='Pong', num_frames=480, num_envs=2,
      asynchronous=False, unroll_length=6, torso='nature', log_every=160,
      checkpoint_every=240, export=True)
  assert result['frames'] >= 480
  history = result['history']
  assert [row['frames'] for row in history][-1] == result['frames']
  for name in ('discount', 'lambda', 'policy_coef', 'value_coef',
               'entropy_coef'):
    assert 0.0 < history[-1][name] <= 2.0
  loaded = tf.saved_model.load(str(tmp_path / 'export'))
  obs = np.random.RandomState(0).randint(0, 255, (3, 84, 84, 4)).astype(
      np.uint8)
  out = loaded.signatures['action'](observation=tf.constant(obs))
  assert out['logits'].shape == (3, 6)
  assert out['action'].dtype == tf.int64
  meta = loaded.signatures['meta_parameters']()
  assert set(meta) >= {'discount', 'aux1/entropy_coef'}
  # The values the losses use: the logged ones (not the (0, 1) raw values).
  for name in ('discount', 'policy_coef', 'value_coef', 'entropy_coef'):
    assert float(meta[name]) == pytest.approx(history[-1][name], rel=1e-6)
  with pytest.raises(Exception, match='uint8'):
    loaded.signatures['action'](observation=tf.constant(obs, tf.float32))
  assert os.path.exists(tmp_path / 'operative_config.gin')
  assert os.listdir(tmp_path / 'summaries')


MINATAR_SMALL = dict(suite='minatar', game='Breakout', num_envs=2,
                     unroll_length=5, log_every=40, checkpoint_every=40)


def test_minatar_resume_and_export_without_training(tmp_path, monkeypatch):
  gin.parse_config_files_and_bindings([MINATAR_GIN], [
      'BootstrapConfig.l_steps = 2', 'ImpalaAgent.num_aux_heads = 1'])
  root = str(tmp_path / 'run')
  first = stacx.train_eval(root, num_frames=80, **MINATAR_SMALL)
  assert first['frames'] >= 80
  key = 'learner/train_step_counter/.ATTRIBUTES/VARIABLE_VALUE'
  step_before = int(pipeline_runs.checkpoint_values(root)[key])
  second = stacx.train_eval(root, num_frames=200, **MINATAR_SMALL)
  # The frame counter and the learner continued from the checkpoint:
  # this process logged only the frames after the first run's.
  assert second['frames'] >= 200
  assert min(row['frames'] for row in second['history']) > first['frames']
  with open(os.path.join(root, 'result.json')) as f:
    frames = [row['frames'] for row in json.load(f)['history']]
  assert frames == sorted(frames) and frames[0] <= first['frames']
  step = int(pipeline_runs.checkpoint_values(root)[key])
  # 10 frames per unroll; BMG with K=1, L=2 reads 3 unrolls per meta-step,
  # re-uses the previous step's last one, so collects 2 (20 frames).
  assert step - step_before >= (200 - first['frames']) // 20 - 1
  export_dir = str(tmp_path / 'exported')

  def no_env(*args, **kwargs):
    raise AssertionError('export created an environment')

  for factory in ('make_batched_env', 'make_atari', 'make_minatar'):
    monkeypatch.setattr(stacx.atari, factory, no_env)
  monkeypatch.setattr(stacx.atari.gymnasium, 'make', no_env)
  out = experiment_lib.export_experiment(
      stacx.build(num_frames=200, **MINATAR_SMALL), root, export_dir)
  assert out['train_step'] == step
  loaded = tf.saved_model.load(export_dir)
  assert int(loaded.signatures['metadata']()['train_step']) == step
  obs = np.random.RandomState(1).randint(0, 2, (3, 10, 10, 4)).astype(
      np.uint8)
  both = [tf.saved_model.load(d).signatures['action'](
      observation=tf.constant(obs))['logits'].numpy()
          for d in (export_dir, os.path.join(root, 'export'))]
  np.testing.assert_array_equal(both[0], both[1])


def test_minatar_bmg_under_mirrored_strategy_through_the_cli(tmp_path):
  # A fresh process: the CPU is split into 2 logical devices before TF
  # initialises them. The update's equivalence with one device is tested in
  # tests/core/distribute_test.py; here, the pipeline runs, checkpoints and
  # exports with mirrored variables.
  root = tmp_path / 'run'
  bindings = ["make_strategy.name = 'mirrored'",
              'make_strategy.num_cpu_replicas = 2',
              'stacx.build.num_frames = 100',
              'stacx.build.num_envs = 4',
              'stacx.build.unroll_length = 5',
              'BootstrapConfig.l_steps = 2',
              'stacx.build.log_every = 50']
  proc = subprocess.run(
      [sys.executable, '-m', 'pipelines.train', f'--gin_file={MINATAR_GIN}',
       f'--root_dir={root}'] + [f'--gin_bindings={b}' for b in bindings],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env={**os.environ, 'TF_USE_LEGACY_KERAS': '1',
           'TF_CPP_MIN_LOG_LEVEL': '2'})
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(root / 'result.json') as f:
    result = json.load(f)
  assert result['frames'] >= 100
  loaded = tf.saved_model.load(str(root / 'export'))
  logits = loaded.signatures['action'](
      observation=tf.zeros([2, 10, 10, 4], tf.uint8))['logits']
  assert np.all(np.isfinite(logits.numpy()))
  assert "make_strategy.name = 'mirrored'" in (
      root / 'operative_config.gin').read_text()


@pytest.mark.parametrize('kwargs, bindings, message', [
    ({'suite': 'nes'}, [], 'suite: must be one of'),
    ({}, ["BootstrapConfig.method = 'maml'"], 'method: unknown method'),
    ({'num_envs': 0}, [], 'num_envs: must be a positive int'),
    ({'game': 'Tetris'}, [], 'game'),
    ({'torso': 'vgg'}, [], 'torso: unknown'),
    ({}, ["make_meta_parameters.learn = ('gamma',)"], 'learn: unknown'),
])
def test_bad_settings_raise_naming_the_argument(kwargs, bindings, message,
                                                tmp_path):
  gin.parse_config_files_and_bindings([MINATAR_MG_GIN], bindings)
  settings = dict(suite='minatar', game='Breakout', num_frames=40,
                  num_envs=2, unroll_length=5)
  settings.update(kwargs)
  with pytest.raises(ValueError, match=message):
    stacx.train_eval(str(tmp_path), **settings)


def test_cli_error_is_one_line(tmp_path):
  with pytest.raises(SystemExit) as exit_info:
    experiment.cli_run('bmg-train', [MINATAR_GIN],
                       ["stacx.build.game = 'Tetris'"],
                       str(tmp_path / 'run'))
  message = str(exit_info.value.code)
  assert message.startswith('bmg-train: error:') and 'Tetris' in message
  assert '\n' not in message
  gin.clear_config()
