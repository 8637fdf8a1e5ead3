"""The SavedModel contract of every pipeline, through the `bmg-export` CLI.

For one config of each pipeline (toy regression; two-colours actor-critic,
fixed and BMG; two-colours Q-learning, BMG epsilon), a tiny run trains and
exports at its end; `pipelines/export.py` then exports the same checkpoint
again. In a fresh process that imports only TensorFlow
(`tests/tools/fresh_signatures.py`) both exports must give the same outputs
for every signature, and these must match a NumPy forward pass of the
checkpoint's variables. `saved_model_cli show --all` must list the
signatures with their shapes and dtypes, and inputs of a wrong shape, rank
or dtype must be refused at the signature's entry, naming the input.
"""

import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'

import json  # pylint: disable=g-import-not-at-top
import re
import shutil
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf

from bmg_tf.core import optimizers
from pipelines import experiment
from pipelines import legacy

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
FRESH = os.path.join(REPO, 'tests', 'tools', 'fresh_signatures.py')
ENV = {**os.environ, 'TF_USE_LEGACY_KERAS': '1', 'TF_CPP_MIN_LOG_LEVEL': '2'}
LP = 'learner/learner_params/{}/.ATTRIBUTES/VARIABLE_VALUE'
CP = 'learner/meta_parameters/contextual/net/{}/.ATTRIBUTES/VARIABLE_VALUE'
AC = ['two_colors.build.num_env_steps = 200',
      'BootstrapConfig.k_steps = 2',
      'BootstrapConfig.l_steps = 2',
      'ActorCritic.hidden_sizes = (16, 16)',
      'ContextualMetaParameters.hidden_sizes = (8,)',
      'MetaOptimizer.learning_rate = 0.05',
      'MetaLearner.jit_compile = False',
      'two_colors.build.log_every = 100',
      'two_colors.build.checkpoint_every = 100']
Q = ['two_colors_q.build.num_env_steps = 200',
     'BootstrapConfig.l_steps = 3',
     'two_colors_q.build.batch_size = 4',
     'two_colors_q.build.sequence_length = 3',
     'two_colors_q.build.min_replay_size = 40',
     'two_colors_q.build.replay_capacity = 200',
     'QLearner.hidden_sizes = (16, 16)',
     'ContextualMetaParameters.hidden_sizes = (8,)',
     'MetaOptimizer.learning_rate = 0.05',
     'MetaLearner.jit_compile = False',
     'two_colors_q.build.log_every = 100',
     'two_colors_q.build.checkpoint_every = 100']
# The fixed weight has no meta-network to configure.
AC_FIXED = [b for b in AC if not b.startswith('ContextualMetaParameters')]
TOY = ['toy_regression.build.num_meta_steps = 10',
       'toy_regression.build.log_every = 5',
       'toy_regression.build.checkpoint_every = 5']
# name -> (gin file, bindings, signatures, head output, torso activation).
CASES = {
    'toy_bmg': ('toy/lr_bmg.gin', TOY,
                {'predict', 'meta_parameters', 'metadata'}, 'y', np.tanh),
    'ac_fixed': ('two_colors/ac_fixed.gin', AC_FIXED,
                 {'action', 'sample_action', 'metadata'}, 'logits', None),
    'ac_bmg': ('two_colors/ac_bmg.gin', AC,
               {'action', 'sample_action', 'meta_parameters', 'metadata'},
               'logits', None),
    'q_bmg_eps': ('two_colors/q_bmg_eps.gin', Q,
                  {'action', 'sample_action', 'meta_parameters', 'metadata'},
                  'q_values', None),
}


def _relu(x):
  return np.maximum(x, 0.0)


def _mlp(weights, x, activation):
  for i in range(0, len(weights), 2):
    x = x @ weights[i] + weights[i + 1]
    if i + 2 < len(weights):
      x = activation(x)
  return x


def _train(gin_file, bindings, root):
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings(
        [os.path.join(REPO, 'gin', gin_file)], bindings)
    experiment.run(root_dir=str(root))
  finally:
    gin.clear_config()


def _inputs(obs_dim, context_dim, rng):
  obs = np.zeros([5, obs_dim], np.float32)
  if obs_dim == 30:  # Two colours: valid one-hot cells.
    for row in obs:
      for block in range(6):
        row[5 * block + rng.randint(5)] = 1.0
  else:
    obs = rng.normal(size=[5, obs_dim]).astype(np.float32)
  return {'observation': obs, 'x': obs,
          'seed': np.array([3, 4], np.int32),
          'context': rng.uniform(-1, 1, [3, context_dim]).astype(np.float32)}


@pytest.mark.parametrize('case', sorted(CASES))
def test_cli_export_matches_training_export_in_a_fresh_process(case,
                                                              tmp_path):
  gin_file, bindings, signatures, head, activation = CASES[case]
  root = tmp_path / 'run'
  _train(gin_file, bindings, root)
  cli_dir = tmp_path / 'cli_export'
  proc = subprocess.run(
      [sys.executable, '-m', 'pipelines.export', f'--root_dir={root}',
       f'--export_dir={cli_dir}'], cwd=REPO, env=ENV, capture_output=True,
      text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (cli_dir / 'saved_model.pb').exists()

  reader = tf.train.load_checkpoint(str(root / 'checkpoints'))
  names = reader.get_variable_to_shape_map()
  params = [reader.get_tensor(LP.format(i)) for i in range(
      sum(1 for n in names if n.startswith('learner/learner_params/')))]
  obs_dim = params[0].shape[0]
  contextual = any(n.startswith('learner/meta_parameters/contextual/net/')
                   for n in names)
  meta = []
  if contextual:  # Its layers and context width, whatever the gin file says.
    layers = sum(CP.format(f'kernel_{i}') in names for i in range(10))
    meta = [reader.get_tensor(CP.format(f'{n}_{i}')) for i in range(layers)
            for n in ('kernel', 'bias')]
  rng = np.random.RandomState(0)
  inputs = _inputs(obs_dim, meta[0].shape[0] if meta else 10, rng)
  np.savez(tmp_path / 'in.npz', **inputs)
  proc = subprocess.run(
      [sys.executable, FRESH, str(tmp_path / 'in.npz'),
       str(tmp_path / 'out.npz'), str(root / 'export'), str(cli_dir)],
      env=ENV, capture_output=True, text=True, timeout=300, cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  out = dict(np.load(tmp_path / 'out.npz'))

  # Self-contained: bmg_tf was never imported.
  assert report['modules'] == []
  # The expected signatures, the same in both exports.
  trained, exported = report['signatures']
  assert set(trained) == signatures and trained == exported
  # Every output of the CLI export equals the training-time export's.
  keys = sorted(k[2:] for k in out if k.startswith('0/'))
  assert keys and sorted(k[2:] for k in out if k.startswith('1/')) == keys
  for key in keys:
    np.testing.assert_array_equal(out['1/' + key], out['0/' + key],
                                  err_msg=key)

  # ... and both match the checkpoint's variables, computed with NumPy.
  torso = params[:6] if head != 'y' else params
  want = _mlp(torso, inputs['observation'], activation or _relu)
  sig = 'predict' if head == 'y' else 'action'
  np.testing.assert_allclose(out[f'0/{sig}/{head}'], want, rtol=1e-4,
                             atol=1e-5)
  if head != 'y':
    np.testing.assert_array_equal(out['0/action/action'], want.argmax(-1))
    sampled = out['0/sample_action/action']
    assert sampled.shape == (5,) and ((0 <= sampled) & (sampled < 4)).all()
  if contextual:
    assert len(meta) >= 4
    (name,) = [k.split('/')[-1] for k in keys
               if k.startswith('meta_parameters/')]
    want_meta = 1 / (1 + np.exp(-_mlp(meta, inputs['context'], _relu)[:, 0]))
    np.testing.assert_allclose(out[f'0/meta_parameters/{name}'], want_meta,
                               rtol=1e-5)
  if case == 'toy_bmg':
    raw = reader.get_tensor(
        'learner/meta_parameters/_scalars/learning_rate/raw/.ATTRIBUTES/'
        'VARIABLE_VALUE')
    np.testing.assert_allclose(out['0/meta_parameters/learning_rate'],
                               np.exp(raw), rtol=1e-6)
  assert int(out['0/metadata/train_step']) == int(reader.get_tensor(
      'learner/train_step_counter/.ATTRIBUTES/VARIABLE_VALUE'))
  assert str(out['0/metadata/gin_config']) == (
      root / 'operative_config.gin').read_text()
  assert str(out['0/metadata/version'])

  # Bad inputs are refused at the signature's entry, naming the input.
  errors = report['errors']
  assert errors and all(e != 'accepted' for e in errors.values()), errors
  for key, message in errors.items():
    _, _, input_name, kind = key.split('/')
    if kind == 'dtype':
      assert 'InvalidArgumentError' in message and 'expected to be' in (
          message), (key, message)
    else:
      assert (f'Shape of tensor {input_name} ' in message and
              'is not compatible with expected shape' in message), (
                  key, message)

  # saved_model_cli lists each signature with its shapes and dtypes.
  proc = subprocess.run(
      [sys.executable, '-m', 'tensorflow.python.tools.saved_model_cli',
       'show', '--all', '--dir', str(cli_dir)], env=ENV,
      capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  shown = proc.stdout
  for name in signatures:
    assert f"signature_def['{name}']" in shown
  if head == 'y':
    assert "inputs['x'] tensor_info:" in shown
  else:
    assert "inputs['observation'] tensor_info:" in shown
    assert "inputs['seed'] tensor_info:" in shown
    assert 'dtype: DT_INT32\n        shape: (2)' in shown
  assert f'dtype: DT_FLOAT\n        shape: (-1, {obs_dim})' in shown
  assert 'dtype: DT_INT64' in shown and 'dtype: DT_STRING' in shown

  if case == 'ac_bmg':  # The README's serving example runs as written.
    text = open(os.path.join(REPO, 'README.md'), encoding='utf-8').read()
    section = text.split('## Serve the policy', 1)[1].split('\n## ', 1)[0]
    code = re.search(r'```python\n(.*?)```', section, re.S).group(1)
    assert '/tmp/policy' in code
    namespace = {}
    exec(compile(code.replace('/tmp/policy', str(cli_dir)), 'README.md',  # pylint: disable=exec-used
                 'exec'), namespace)
    assert namespace['greedy'].shape == (4,)
    assert namespace['logits'].shape == (4, 4)
    assert namespace['weight']['entropy_weight'].shape == (1,)
    assert int(namespace['meta']['train_step']) == int(
        out['0/metadata/train_step'])


def test_export_cli_errors_are_one_line(tmp_path):
  cases = [
      ([f'--root_dir={tmp_path / "missing"}', f'--export_dir={tmp_path}/e'],
       'no such directory'),
      ([f'--root_dir={tmp_path}', f'--export_dir={tmp_path}/e'],
       'operative_config.gin not found'),
      ([f'--root_dir={tmp_path}'], '--export_dir is required'),
  ]
  for args, expected in cases:
    proc = subprocess.run([sys.executable, '-m', 'pipelines.export', *args],
                          cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.splitlines() if 'bmg-export: error' in l]
    assert len(lines) == 1 and expected in lines[0], proc.stderr[-2000:]


def test_export_without_checkpoint_is_one_line(tmp_path):
  root = tmp_path / 'run'
  root.mkdir()
  (root / 'operative_config.gin').write_text(
      'import pipelines.experiment\nimport pipelines.toy_regression\n'
      'run.experiment = @toy_regression.build\n'
      'target/create_optimizer.learning_rate = 0.1\n')
  proc = subprocess.run(
      [sys.executable, '-m', 'pipelines.export', f'--root_dir={root}',
       f'--export_dir={tmp_path / "e"}'], cwd=REPO, env=ENV,
      capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  lines = [l for l in proc.stderr.splitlines() if 'bmg-export: error' in l]
  assert len(lines) == 1 and 'no checkpoint to export' in lines[0], (
      proc.stderr[-2000:])
  assert not (tmp_path / 'e').exists()
  assert [p.name for p in root.iterdir()] == ['operative_config.gin']


TESTDATA = os.path.join(os.path.dirname(__file__), 'testdata')


def test_export_of_a_run_made_by_the_old_flat_config_code(tmp_path):
  # testdata/old_toy_run: a toy run (10 meta-steps) made by commit 19d14ff,
  # when every setting was a parameter of `toy_regression.train_eval`
  # (`train_eval.init_learning_rate = 0.01`), with its checkpoint and the
  # outputs of the SavedModel that code exported (expected_export.json).
  # bmg-export reads the old config in the object form (pipelines/legacy.py)
  # and exports the same model.
  root = tmp_path / 'run'
  shutil.copytree(os.path.join(TESTDATA, 'old_toy_run'), root)
  old = (root / 'operative_config.gin').read_text()
  assert 'train_eval.init_learning_rate = 0.01' in old
  proc = subprocess.run(
      [sys.executable, '-m', 'pipelines.export', f'--root_dir={root}',
       f'--export_dir={tmp_path / "e"}'], cwd=REPO, env=ENV,
      capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  loaded = tf.saved_model.load(str(tmp_path / 'e'))
  assert int(loaded.signatures['metadata']()['train_step']) == 10
  with open(root / 'expected_export.json') as f:
    expected = json.load(f)
  x = np.random.RandomState(expected['x_seed']).normal(size=(4, 8)).astype(
      np.float32)
  np.testing.assert_array_equal(
      loaded.signatures['predict'](x=tf.constant(x))['y'].numpy(),
      np.array(expected['y'], np.float32))
  assert float(loaded.signatures['meta_parameters']()['learning_rate']) == (
      np.float32(expected['learning_rate']))
  assert (root / 'operative_config.gin').read_text() == old  # Untouched.


def test_old_two_colors_config_builds_the_same_objects():
  # The saved config of an MG run made before gin bound objects (every
  # parameter of `train_eval`, those MG never reads included).
  with open(os.path.join(TESTDATA,
                         'old_two_colors_mg_operative_config.gin')) as f:
    text = f.read()
  new = legacy.translate(text)
  assert 'train_eval' not in new
  assert legacy.translate(new) == new  # The new form is left alone.
  gin.parse_config(new + '\nMetaLearner.jit_compile = False\n')
  built = gin.query_parameter('run.experiment').scoped_configurable_fn()
  config = built.learner.config
  assert (config.method, config.k_steps) == ('mg', 7)
  assert built.learner.jit_compile is False
  assert built.info == {'method': 'mg', 'seed': 100}
  assert built.total_steps == 10_000_000
  inner = built.learner.inner_optimizer
  assert not isinstance(inner, optimizers.GlobalNormClipped)  # clip None.
  assert inner.default_hparams['learning_rate'] == 0.1
  assert built.learner.target_optimizer is None
  assert built.learner.meta_optimizer.optimizer.learning_rate == 1e-4
  assert built.trackables['env']._flip_period == 100_000  # pylint: disable=protected-access
