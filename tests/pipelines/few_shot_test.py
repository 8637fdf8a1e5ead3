"""The few-shot pipeline: learning, resume, export in a fresh process, errors.

The export is loaded in a process that imports only TensorFlow
(`tests/tools/fresh_signatures.py`); its `adapt_and_predict` must equal an
adaptation written out here with plain TF ops from the checkpoint's initial
weights, and refuse inputs of a wrong shape, rank or dtype.
"""

import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'

import json  # pylint: disable=g-import-not-at-top
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf

from pipelines import few_shot

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tools'))
import pipeline_runs  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
FRESH = os.path.join(REPO, 'tests', 'tools', 'fresh_signatures.py')
GIN = os.path.join(REPO, 'gin', 'few_shot')
SMALL = ['few_shot.build.meta_batch_size = 5',
         'few_shot.build.eval_tasks = 100',
         'few_shot.build.eval_batch_size = 50',
         'few_shot.build.log_every = 10',
         'few_shot.build.checkpoint_every = 10',
         'few_shot.build.eval_every = 1000']
INIT = ('learner/meta_parameters/_scalars/init_{}/raw/'
        '.ATTRIBUTES/VARIABLE_VALUE')


def _train(root_dir, steps, config='maml_sinusoid.gin', extra=(),
           export=False):
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings(
        [os.path.join(GIN, config)],
        SMALL + list(extra) + [f'few_shot.build.export = {export}'])
    return few_shot.train_eval(root_dir=str(root_dir),
                               num_meta_steps=steps)
  finally:
    gin.clear_config()


@pytest.mark.parametrize('config, ratio', [('maml_sinusoid.gin', 0.6),
                                           ('bmg_sinusoid.gin', 0.9)])
def test_meta_learning_improves_held_out_tasks(config, ratio, tmp_path):
  """MAML and BMG both lower the held-out MSE of one-step adaptation.

  Measured (100 held-out tasks, 5 tasks per meta-step): from 3.53 after
  one meta-step to 1.63 (MAML) and 2.86 (BMG, L=5) after 1,000.
  """
  first = _train(tmp_path, 1, config)['eval']
  last = _train(tmp_path, 1000, config)['eval']
  assert first['tasks'] == last['tasks'] == 100
  assert last['mean'] < ratio * first['mean'], (first, last)


def test_resume_continues_exactly(tmp_path):
  # XLA off: the uncompiled and compiled steps round differently, and
  # both runs must take the same path.
  extra = ['MetaLearner.jit_compile = False']
  _train(tmp_path / 'split', 10, 'bmg_sinusoid.gin', extra)
  split = _train(tmp_path / 'split', 20, 'bmg_sinusoid.gin', extra)
  whole = _train(tmp_path / 'whole', 20, 'bmg_sinusoid.gin', extra)
  a, b = (pipeline_runs.checkpoint_values(tmp_path / run)
          for run in ('split', 'whole'))
  assert a.keys() == b.keys() and any('sampler' in k for k in a)
  for k in a:
    if k.startswith('train_seconds'):  # Wall-clock time.
      continue
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  assert split['eval'] == whole['eval']


def _adapt_by_hand(weights, support_x, support_y, query_x, lr, steps):
  """A 40-40 ReLU MLP adapted by SGD on the support MSE: plain TF ops."""
  params = [tf.constant(w) for w in weights]

  def forward(p, x):
    h = x
    for i in range(0, len(p), 2):
      h = tf.matmul(h, p[i]) + p[i + 1]
      h = tf.nn.relu(h) if i < len(p) - 2 else h
    return h

  for _ in range(steps):
    with tf.GradientTape() as tape:
      tape.watch(params)
      loss = tf.reduce_mean(tf.square(forward(params, support_x) -
                                      support_y))
    params = [p - lr * g for p, g in zip(params, tape.gradient(loss, params))]
  return forward(params, query_x).numpy()


def test_export_adapts_and_predicts_in_a_fresh_process(tmp_path):
  run = tmp_path / 'run'
  _train(run, 20, extra=['few_shot.build.eval_adapt_steps = 3'],
         export=True)
  rng = np.random.default_rng(0)
  inputs = {'support_x': rng.uniform(-5, 5, (10, 1)).astype(np.float32),
            'query_x': rng.uniform(-5, 5, (7, 1)).astype(np.float32)}
  inputs['support_y'] = np.sin(inputs['support_x']).astype(np.float32)
  np.savez(tmp_path / 'in.npz', **inputs)
  out = subprocess.run(
      [sys.executable, FRESH, str(tmp_path / 'in.npz'),
       str(tmp_path / 'out.npz'), str(run / 'export')],
      capture_output=True, text=True, timeout=300,
      env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
  assert out.returncode == 0, out.stderr[-2000:]
  report = json.loads(out.stdout.strip().splitlines()[-1])
  assert report['modules'] == []
  signature = report['signatures'][0]['adapt_and_predict']
  assert signature['outputs'] == {'predictions': [[7, 1], 'float32']}
  for name in inputs:
    for kind in ('shape', 'rank', 'dtype'):
      assert not report['errors'][f'0/adapt_and_predict/{name}/'
                                  f'{kind}'].startswith('accepted')
  got = np.load(tmp_path / 'out.npz')['0/adapt_and_predict/predictions']
  ckpt = pipeline_runs.checkpoint_values(run)
  weights = [ckpt[INIT.format(i)] for i in range(6)]
  want = _adapt_by_hand(weights, inputs['support_x'], inputs['support_y'],
                        inputs['query_x'], lr=0.01, steps=3)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  # The adaptation matters: the initialisation alone predicts otherwise.
  unadapted = _adapt_by_hand(weights, inputs['support_x'],
                             inputs['support_y'], inputs['query_x'], 0.01, 0)
  assert np.abs(got - unadapted).max() > 1e-3


@pytest.mark.parametrize('binding, match', [
    ("BootstrapConfig.method = 'fixed'", 'method'),
    ('few_shot.build.eval_tasks = 120', 'eval_tasks'),
    ("few_shot.build.dataset = 'cifar'", 'dataset'),
    ("few_shot.build.dataset = 'omniglot'", 'data_dir'),
    ("few_shot.build.data_dir = '/data'", 'reads no directory'),
    ("BootstrapConfig.continue_from = 'K+L-1'", 'continue_from'),
])
def test_bad_settings_are_one_clear_error(binding, match, tmp_path):
  with pytest.raises(ValueError, match=match):
    _train(tmp_path, 2, 'bmg_sinusoid.gin', [binding])
  assert not os.path.exists(tmp_path / 'checkpoints')


def test_a_missing_data_directory_is_one_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='nowhere'):
    _train(tmp_path, 2, 'maml_omniglot.gin',
           [f"few_shot.build.data_dir = '{tmp_path / 'nowhere'}'"])
  assert not os.path.exists(tmp_path / 'checkpoints')
