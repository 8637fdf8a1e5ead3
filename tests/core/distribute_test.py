"""Tests of bmg_tf.core.distribute and of the meta-learner under a strategy.

The MirroredStrategy checks need the CPU split into 2 logical devices, which
TensorFlow only allows before it initialises its devices; a pytest worker
has done that long ago. So `distribute_check.py` runs them in a fresh
process and saves every variable and metric, while this process runs the
same steps under the default strategy (the one-device reference, with the
same script's code) and compares. The rest runs in-process.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys

os.environ['TF_USE_LEGACY_KERAS'] = '1'

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest
import tensorflow as tf

from bmg_tf.core import bootstrap
from bmg_tf.core import distribute
from bmg_tf.core import meta_learner as meta_learner_lib
from bmg_tf.core import meta_params
from bmg_tf.core import optimizers

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CHECK = os.path.join(HERE, 'distribute_check.py')
CASES = ('fixed', 'mg', 'bmg', 'bmg_3_steps', 'batch_fn')
F64 = tf.float64


# In-process: make_strategy.


def test_make_strategy_default_is_the_default_strategy():
  for strategy in (distribute.make_strategy(),
                   distribute.make_strategy('default')):
    assert strategy is tf.distribute.get_strategy()
    assert distribute.is_default_strategy(strategy)
    assert strategy.num_replicas_in_sync == 1


def test_make_strategy_bad_arguments():
  with pytest.raises(ValueError, match=r"name: unknown strategy 'gpu'.*"
                     r"'default', 'mirrored', 'multi_worker_mirrored', "
                     r"'tpu'"):
    distribute.make_strategy('gpu')
  for bad in (0, True, 2.0, '2'):
    with pytest.raises(ValueError, match='num_cpu_replicas'):
      distribute.make_strategy('mirrored', num_cpu_replicas=bad)
  with pytest.raises(ValueError, match="num_cpu_replicas: only for name="):
    distribute.make_strategy('default', num_cpu_replicas=2)
  with pytest.raises(ValueError, match="tpu: only for name='tpu'"):
    distribute.make_strategy('mirrored', tpu='my-tpu')


def test_splitting_the_cpu_after_initialisation_is_a_clear_error():
  have = len(tf.config.list_logical_devices('CPU'))  # Initialises TF.
  with pytest.raises(RuntimeError,
                     match='num_cpu_replicas: cannot split.*already '
                     'initialised'):
    distribute.make_strategy('mirrored', num_cpu_replicas=have + 1)


def test_no_tpu_is_a_clear_error():
  if tf.config.list_logical_devices('TPU'):
    pytest.skip('a TPU is attached')
  with pytest.raises(RuntimeError, match='tpu: no TPU reachable'):
    distribute.make_strategy('tpu')


# In-process: the engine's grad_reducer and the default strategy.


def _regression(seed=0, n=8, steps=8):
  rng = np.random.RandomState(seed)
  xs = rng.randn(steps, n, 3)
  ys = xs @ rng.randn(3, 1) + 0.1 * rng.randn(steps, n, 1)
  params = [rng.randn(3, 1), rng.randn(1)]
  return params, {'x': tf.constant(xs, F64), 'y': tf.constant(ys, F64)}


def _mse(params, batch):
  pred = tf.matmul(batch['x'], params[0]) + params[1]
  return tf.reduce_mean(tf.square(pred - batch['y']))


def _objectives():
  """MSE plus a meta-learned weight decay (no meta-learned step size)."""
  def inner_loss(params, batch, meta):
    return _mse(params, batch) + 0.5 * meta['weight_decay'] * (
        tf.reduce_sum(tf.square(params[0])))
  return bootstrap.Objectives(inner_loss=inner_loss, outer_loss=_mse)


def _meta():
  return meta_params.MetaParameters({
      'weight_decay': meta_params.MetaParameter(0.2, 'sigmoid', dtype=F64,
                                                name='wd')})


@pytest.mark.parametrize('method', ['fixed', 'mg', 'bmg'])
def test_grad_reducer_reaches_every_inner_and_target_gradient(method):
  # Doubling every gradient is plain SGD with twice the learning rate, for
  # the K differentiated steps, the L-1 bootstrap steps and the target step.
  params, batches = _regression()
  params = [tf.constant(p) for p in params]
  meta = _meta()
  config = bootstrap.BootstrapConfig(method=method, k_steps=2,
                                     **({'l_steps': 3} if method == 'bmg'
                                        else {}))
  calls = []

  def double(grads):
    calls.append(len(grads))
    return [2.0 * g for g in grads]

  def run(lr, reducer):
    inner = optimizers.SGD(learning_rate=lr)
    return bootstrap.meta_step(
        params, inner.init(params), meta.trainable_variables, meta,
        _objectives(), config, inner, batches,
        target_optimizer=optimizers.SGD(learning_rate=lr),
        grad_reducer=reducer)

  got, want = run(0.05, double), run(0.1, None)
  assert calls == [2] * {'fixed': 2, 'mg': 2, 'bmg': 2 + 2 + 1}[method]
  for a, b in zip(got.params + got.meta_grads, want.params + want.meta_grads):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
  if method == 'bmg':
    for a, b in zip(got.target, want.target):
      np.testing.assert_allclose(a, b, rtol=1e-12)


def test_grad_reducer_must_be_callable():
  params, batches = _regression()
  meta = _meta()
  with pytest.raises(ValueError, match='grad_reducer: must be callable'):
    bootstrap.meta_step(
        [tf.constant(p) for p in params], optimizers.SGDState(),
        meta.trainable_variables, meta,
        _objectives(), bootstrap.BootstrapConfig(method='mg'),
        optimizers.SGD(learning_rate=0.1), batches, grad_reducer=2.0)


def _learner(strategy, **kwargs):
  params, _ = _regression()
  return meta_learner_lib.MetaLearner(
      [tf.Variable(p) for p in params], _meta(), _objectives(),
      bootstrap.BootstrapConfig(method='bmg', k_steps=1, l_steps=2),
      optimizers.SGD(learning_rate=0.1),
      meta_optimizer=meta_params.MetaOptimizer(learning_rate=0.01),
      strategy=strategy, **kwargs)


def test_default_strategy_is_the_same_graph_and_result_as_none():
  _, batches = _regression()
  plain = _learner(None)
  default = _learner(distribute.make_strategy('default'))
  assert default.strategy is None
  # pylint: disable=protected-access
  graphs = [learner._compiled_step.get_concrete_function(batches, None).graph
            for learner in (plain, default)]
  # pylint: enable=protected-access
  assert ([op.type for op in graphs[0].get_operations()] ==
          [op.type for op in graphs[1].get_operations()])
  for _ in range(2):
    metrics = [plain.step(batches), default.step(batches)]
  assert metrics[0].keys() == metrics[1].keys()
  for key in metrics[0]:
    np.testing.assert_array_equal(metrics[0][key], metrics[1][key])
  for a, b in zip(plain.variables, default.variables):
    np.testing.assert_array_equal(a, b)


def test_meta_learner_bad_strategy_arguments():
  with pytest.raises(ValueError, match='strategy: expected a tf.distribute'):
    _learner('mirrored')
  for bad in (0, -1, 1.0, True):
    with pytest.raises(ValueError, match='batch_axis: must be an int >= 1'):
      _learner(None, batch_axis=bad)


# In fresh processes: MirroredStrategy on 2 logical CPUs vs. one device.


def _run_checks(tmp_path):
  """(reports, arrays) of both strategies, as `distribute_check` makes them.

  MirroredStrategy in a fresh process; meanwhile the default strategy here.
  """
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='2',
             PYTHONPATH=os.pathsep.join(
                 [REPO] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
  out_path = tmp_path / 'mirrored.npz'
  with subprocess.Popen([sys.executable, CHECK, 'mirrored', str(out_path)],
                        env=env, cwd=REPO, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True) as proc:
    spec = importlib.util.spec_from_file_location('distribute_check', CHECK)
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    arrays, reports = {'default': {}}, {'default': check.new_report(1)}
    check.run_steps(tf.distribute.get_strategy(), arrays['default'],
                    reports['default'])
    stdout, stderr = proc.communicate(timeout=600)
  assert proc.returncode == 0, stderr[-5000:]
  reports['mirrored'] = json.loads(stdout.strip().splitlines()[-1])
  arrays['mirrored'] = dict(np.load(out_path))
  return reports, arrays


def _compare(reports, arrays):
  """Lists every difference between the two processes' results."""
  problems = []
  one, two = arrays['default'], arrays['mirrored']
  for case in CASES:
    names = reports['default']['names'][case]
    if names != reports['mirrored']['names'][case]:
      problems.append(f'{case}: different variables')
      continue
    for i, name in enumerate(names):
      want = one[f'{case}/var{i}/r0']
      local = [two[f'{case}/var{i}/r{j}'] for j in range(2)]
      # Every replica holds the same value...
      if not np.array_equal(local[0], local[1]):
        problems.append(f'{case}: {name} differs between the replicas: '
                        f'max |diff| {np.max(np.abs(local[0] - local[1]))}')
      # ... the one-device value.
      if not np.allclose(local[0], want, rtol=1e-5, atol=1e-6):
        problems.append(f'{case}: {name} differs from one device: max '
                        f'|diff| {np.max(np.abs(local[0] - want))}')
    metrics = sorted(k for k in one if k.startswith(f'{case}/metric/'))
    if metrics != sorted(k for k in two if k.startswith(f'{case}/metric/')):
      problems.append(f'{case}: different metrics')
      continue
    for key in metrics:
      if not np.allclose(two[key], one[key], rtol=1e-5, atol=1e-6):
        problems.append(f'{key}: {two[key]} vs one device {one[key]}')
  return problems


def test_mirrored_strategy_matches_one_device(tmp_path):
  reports, arrays = _run_checks(tmp_path)
  assert reports['default']['replicas'] == 1
  assert reports['mirrored']['replicas'] == 2
  # The cases test something: clipping is active, the learner and the
  # meta-parameters move ('fixed' has no meta-update).
  assert all(reports['default']['clip_active'].values())
  for case in CASES:
    moved = reports['mirrored']['moved'][case]
    assert moved == {'params': True, 'meta': case != 'fixed'}, (case, moved)
  problems = _compare(reports, arrays)
  assert not problems, '\n'.join(problems)

  # The meta-tape differentiates through the all-reduce: TensorFlow's own
  # gradient of ReplicaContext.all_reduce is right at first and second order.
  for order in ('g', 'gg'):
    got = arrays['mirrored'][f'second_order/mirrored/{order}']
    want = arrays['mirrored'][f'second_order/reference/{order}']
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.all(np.abs(want) > 1e-3), want

  errors = reports['mirrored']['errors']
  expected = {
      'indivisible': r"ValueError: batches: leaf batches\['actions'\] has "
                     r'batch size 7 \(axis 2 .*not divisible by the 2 '
                     r'replicas',
      'no_batch_axis': r"ValueError: batches: leaf batches\['returns'\] has "
                       r'shape \(6,\), without the batch axis 2',
      'sum': r"ValueError: config: BMG with reduction='sum' under 2 replicas",
      'jit': r'ValueError: jit_compile: not supported under '
             r'MirroredStrategy',
      'outside_scope': r'ValueError: learner_params\[0\]: .* was not created '
                       r'in strategy.scope\(\)',
      'too_late': r'RuntimeError: num_cpu_replicas: cannot split',
  }
  for case, pattern in expected.items():
    assert errors[case] is not None, case
    assert re.search(pattern, errors[case]), (case, errors[case])
  # One device accepts a sum over states.
  assert errors['sum_default'] is None
