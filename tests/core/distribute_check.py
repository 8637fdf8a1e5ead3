r"""MetaLearner under MirroredStrategy on 2 logical CPUs vs. the default one.

    python tests/core/distribute_check.py STRATEGY OUT.npz

STRATEGY is 'mirrored' (a MirroredStrategy over 2 logical CPUs: the CPU
must be split before TensorFlow initialises, so `distribute_test.py` runs
this in a fresh process) or 'default' (the one-device reference, which
`distribute_test.py` runs in its own process with `run_steps`). Both run,
on the same global batches (B=8):

* 'fixed', 'mg', 'bmg': one `MetaLearner.step` of 'fixed' (K=2), MG (K=2)
  and BMG (K=2, L=3, policy_kl + param_l2 matching, reduction 'mean');
  'bmg_3_steps': two more BMG steps on other batches;
* 'batch_fn': MG (K=1) with a per-replica `batch_fn` (each replica slices
  its shard of the global batch) and `steps_per_call=2`, called twice;
* 'mirrored' only: the errors of a multi-replica strategy (report
  'errors'), and 'second_order': first and second derivatives through
  `ReplicaContext.all_reduce` against a single-device reference.

The problem: an actor-critic on random data, a 2-layer MLP (ReLU) torso
with softmax policy (3 actions) and value heads, inner optimizer Momentum
with global-norm clipping (active: report 'clip_active') and a meta-learned
learning rate, a contextual meta-learned entropy weight (an MLP of a
3-vector context), RMSProp target step, Adam meta-optimizer with clipping.
The CLI turns Grappler off (it costs more than these tiny steps).

OUT.npz gets, per case, every variable of the meta-learner and its
meta-optimizer, per replica ('CASE/var{i}/r{j}', j = 0 only for
'default'), and every metric ('CASE/metric/NAME'). The last stdout line is
JSON: {'replicas': 1 or 2, 'names': {CASE: [variable names]}, 'errors':
{case: 'Type: message' or None}, 'clip_active': {method: bool}, 'moved':
{CASE: {'params': bool, 'meta': bool}} (changed by the steps), 'seconds':
{case: wall time}}.
"""

import json
import os
import sys
import time

os.environ['TF_USE_LEGACY_KERAS'] = '1'
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf

from bmg_tf.core import bootstrap
from bmg_tf.core import distribute
from bmg_tf.core import meta_learner as meta_learner_lib
from bmg_tf.core import meta_params
from bmg_tf.core import optimizers

OBS, ACTIONS, HIDDEN, T, B, CONTEXT = 6, 3, 16, 4, 8, 3
N_STEPS = 6  # Batches per meta-step: >= K + L = 5.
CLIP = 0.2  # The inner optimizer's global-norm clipping.
CONFIGS = {
    'fixed': dict(method='fixed', k_steps=2),
    'mg': dict(method='mg', k_steps=2),
    'bmg': dict(method='bmg', k_steps=2, l_steps=3,
                matching={'policy_kl': 1.0, 'param_l2': 0.1},
                reduction='mean'),
}


def _heads(params, batch):
  """A 2-layer MLP (ReLU) with policy logits [T, B, A] and value [T, B]."""
  w1, b1, w2, b2, w3, b3 = params
  hidden = tf.nn.relu(tf.matmul(batch['obs'], w1) + b1)
  hidden = tf.nn.relu(tf.matmul(hidden, w2) + b2)
  out = tf.matmul(hidden, w3) + b3
  return out[..., :ACTIONS], out[..., ACTIONS]


def _ac_loss(params, batch, entropy_weight):
  """Policy gradient + value loss - entropy bonus: means over [T, B]."""
  logits, value = _heads(params, batch)
  log_pi = tf.nn.log_softmax(logits)
  log_pi_a = tf.gather(log_pi, batch['actions'], batch_dims=2)
  advantage = tf.stop_gradient(batch['returns'] - value)
  pg = -tf.reduce_mean(log_pi_a * advantage)
  value_loss = 0.5 * tf.reduce_mean(tf.square(batch['returns'] - value))
  entropy = -tf.reduce_mean(tf.reduce_sum(tf.exp(log_pi) * log_pi, -1))
  return pg + 0.5 * value_loss - entropy_weight * entropy


def _objectives():
  return bootstrap.Objectives(
      inner_loss=lambda p, b, m: _ac_loss(p, b, m['entropy']),
      outer_loss=lambda p, b: _ac_loss(p, b, 0.01),
      policy=lambda p, b, m: _heads(p, b)[0],
      optimizer_hparams=lambda m: {'learning_rate': m['learning_rate']})


def _initial_params(seed=0):
  rng = np.random.RandomState(seed)
  shapes = [(OBS, HIDDEN), (HIDDEN,), (HIDDEN, HIDDEN), (HIDDEN,),
            (HIDDEN, ACTIONS + 1), (ACTIONS + 1,)]
  return [(rng.normal(size=s) / np.sqrt(s[0] if len(s) == 2 else 4)).astype(
      np.float32) for s in shapes]


def _data(seed, steps=N_STEPS, batch=B):
  """A nest with leaves [steps, T, batch, ...]."""
  rng = np.random.RandomState(seed)
  return {
      'obs': rng.normal(size=[steps, T, batch, OBS]).astype(np.float32),
      'actions': rng.randint(ACTIONS, size=[steps, T, batch]).astype(
          np.int32),
      'returns': rng.normal(size=[steps, T, batch]).astype(np.float32),
  }


def _learner(strategy, method, batch_fn=None, steps_per_call=1, **kwargs):
  """A MetaLearner whose variables are created under `strategy`."""
  config = bootstrap.BootstrapConfig(**{**CONFIGS[method], **kwargs})
  with strategy.scope():
    params = [tf.Variable(p, name=f'param_{i}')
              for i, p in enumerate(_initial_params())]
    meta = meta_params.MetaParameters(
        {'learning_rate': meta_params.MetaParameter(0.3, 'exp', name='lr')},
        contextual=meta_params.ContextualMetaParameters(
            CONTEXT, {'entropy': 0.05}, hidden_sizes=(8,), seed=1))
    meta_optimizer = meta_params.MetaOptimizer(learning_rate=0.01,
                                               clip_global_norm=1.0)
  return meta_learner_lib.MetaLearner(
      params, meta, _objectives(), config,
      optimizers.GlobalNormClipped(
          optimizers.Momentum(learning_rate=0.3, momentum=0.9),
          clip_norm=CLIP),
      target_optimizer=optimizers.RMSProp(learning_rate=0.05),
      meta_optimizer=meta_optimizer, batch_fn=batch_fn,
      steps_per_call=steps_per_call, strategy=strategy, batch_axis=2)


def _context(seed):
  return tf.constant(np.random.RandomState(seed).uniform(-1, 1, [CONTEXT]),
                     tf.float32)


def _variables(learner):
  """Every variable of the meta-learner, with the meta-optimizer's."""
  extra = learner.meta_optimizer.optimizer.variables
  return list(learner.variables) + list(extra() if callable(extra) else extra)


def _snapshot(learner):
  return ([p.numpy() for p in learner.learner_params],
          [v.numpy() for v in learner.meta_variables])


def _save(out, report, case, learner, metrics, strategy, before):
  """Saves every variable (per replica) and metric; records what moved."""
  params, meta = _snapshot(learner)
  report['moved'][case] = {
      'params': not all(np.array_equal(a, b)
                        for a, b in zip(params, before[0])),
      'meta': not all(np.array_equal(a, b) for a, b in zip(meta, before[1]))}
  variables = _variables(learner)
  for i, v in enumerate(variables):
    for j, local in enumerate(strategy.experimental_local_results(v)):
      out[f'{case}/var{i}/r{j}'] = local.numpy()
  for key, value in metrics.items():
    out[f'{case}/metric/{key}'] = np.asarray(value)
  report['names'][case] = [v.name for v in variables]


def _sharded_batch_fn(data, counter):
  """A per-replica batch_fn: its shard of data[5 * (step % 2) + i].

  `counter` is a list that will hold the learner's step counter (the
  learner is built with the batch_fn, before its counter exists).
  """
  def batch_fn(i, params):
    del params
    ctx = tf.distribute.get_replica_context()
    n, r = ctx.num_replicas_in_sync, ctx.replica_id_in_sync_group
    index = i + 5 * tf.cast(counter[0].read_value() % 2, tf.int32)
    size = B // n
    return {k: tf.gather(v, index)[:, r * size:(r + 1) * size]
            for k, v in data.items()}
  return batch_fn


def _inner_grad_norm(learner, batches):
  """The global norm of the first inner gradient (before clipping)."""
  params = [p.read_value() for p in learner.learner_params]
  batch = tf.nest.map_structure(lambda t: t[0], batches)
  with tf.GradientTape() as tape:
    tape.watch(params)
    loss = _ac_loss(params, batch, 0.05)
  return float(tf.linalg.global_norm(tape.gradient(loss, params)))


def run_steps(strategy, out, report):
  """One step of each method (three for BMG); a batch_fn, steps_per_call."""
  for method in CONFIGS:
    start = time.time()
    learner = _learner(strategy, method)
    # The clipping of the inner updates must be active to be tested.
    report['clip_active'][method] = (
        _inner_grad_norm(learner, _data(10)) > CLIP)
    before = _snapshot(learner)
    metrics = learner.step(_data(10), _context(20))
    _save(out, report, method, learner, metrics, strategy, before)
    if method == 'bmg':
      for step in (1, 2):
        metrics = learner.step(_data(10 + step), _context(20 + step))
      _save(out, report, 'bmg_3_steps', learner, metrics, strategy, before)
    report['seconds'][method] = time.time() - start

  start = time.time()
  data = {k: tf.constant(v) for k, v in _data(30, steps=10).items()}
  counter = []
  learner = _learner(strategy, 'mg', k_steps=1,
                     batch_fn=_sharded_batch_fn(data, counter),
                     steps_per_call=2)
  counter.append(learner.train_step_counter)
  before = _snapshot(learner)
  for _ in range(2):
    metrics = learner.step(None, _context(40))
  _save(out, report, 'batch_fn', learner, metrics, strategy, before)
  report['seconds']['batch_fn'] = time.time() - start


def _error(fn):
  try:
    fn()
  except Exception as e:  # pylint: disable=broad-except
    return f'{type(e).__name__}: {e}'
  return None


def run_errors(mirrored, out, report):
  """The errors of a multi-replica strategy; derivatives through all_reduce."""
  errors = report['errors']
  learner = _learner(mirrored, 'mg')  # Never traced: the errors come first.
  odd = _data(3, batch=7)
  errors['indivisible'] = _error(lambda: learner.step(odd, _context(2)))
  no_batch_axis = dict(_data(3))
  no_batch_axis['returns'] = no_batch_axis['returns'][:, 0, 0]
  errors['no_batch_axis'] = _error(
      lambda: learner.step(no_batch_axis, _context(2)))
  errors['sum'] = _error(lambda: _learner(mirrored, 'bmg', reduction='sum'))
  errors['sum_default'] = _error(lambda: _learner(
      distribute.make_strategy('default'), 'bmg', reduction='sum'))
  errors['jit'] = _error(lambda: meta_learner_lib.MetaLearner(
      learner.learner_params, learner.meta_parameters, _objectives(),
      learner.config, optimizers.SGD(learning_rate=0.1), jit_compile=True,
      strategy=mirrored))
  outside = [tf.Variable(p) for p in _initial_params()]
  errors['outside_scope'] = _error(lambda: meta_learner_lib.MetaLearner(
      outside, learner.meta_parameters, _objectives(), learner.config,
      optimizers.SGD(learning_rate=0.1), strategy=mirrored))
  errors['too_late'] = _error(
      lambda: distribute.make_strategy('mirrored', num_cpu_replicas=3))

  # f(x) on replica r: a_r z^2 + sin(x_r) z, z = mean_r(c_r x_r^3); then
  # g_r = d(sum_r f_r)/dx_r and d(sum_r c_r g_r^2)/dx_r, through the
  # all-reduce at first and second order.
  a, c, x0 = [1.5, -0.7], [0.3, 2.0], [0.8, 0.5]

  def replica_fn():
    ctx = tf.distribute.get_replica_context()
    r = ctx.replica_id_in_sync_group
    x = tf.gather(tf.constant(x0, tf.float64), r)
    with tf.GradientTape() as outer:
      outer.watch(x)
      with tf.GradientTape() as inner:
        inner.watch(x)
        z = ctx.all_reduce(tf.distribute.ReduceOp.MEAN,
                           tf.gather(tf.constant(c, tf.float64), r) * x**3)
        f = tf.gather(tf.constant(a, tf.float64), r) * z**2 + tf.sin(x) * z
      g = inner.gradient(f, x)
      h = tf.gather(tf.constant(c, tf.float64), r) * g**2
    return g, outer.gradient(h, x)

  g, gg = tf.function(lambda: mirrored.run(replica_fn))()
  out['second_order/mirrored/g'] = np.stack(
      [t.numpy() for t in mirrored.experimental_local_results(g)])
  out['second_order/mirrored/gg'] = np.stack(
      [t.numpy() for t in mirrored.experimental_local_results(gg)])
  x = [tf.constant(v, tf.float64) for v in x0]
  with tf.GradientTape() as outer:
    outer.watch(x)
    with tf.GradientTape() as inner:
      inner.watch(x)
      z = (c[0] * x[0]**3 + c[1] * x[1]**3) / 2
      total = sum(a[r] * z**2 + tf.sin(x[r]) * z for r in range(2))
    g = inner.gradient(total, x)
    total_h = sum(c[r] * g[r]**2 for r in range(2))
  out['second_order/reference/g'] = np.stack([t.numpy() for t in g])
  out['second_order/reference/gg'] = np.stack(
      [t.numpy() for t in outer.gradient(total_h, x)])


def new_report(replicas):
  return {'replicas': replicas, 'names': {}, 'errors': {}, 'seconds': {},
          'clip_active': {}, 'moved': {}}


def main(strategy_name, out_path):
  if strategy_name not in ('default', 'mirrored'):
    raise ValueError(f"strategy: 'default' or 'mirrored', got "
                     f'{strategy_name!r}.')
  # First: before anything initialises TensorFlow's devices.
  strategy = distribute.make_strategy(
      strategy_name, **({'num_cpu_replicas': 2}
                        if strategy_name == 'mirrored' else {}))
  # Grappler's graph rewrites cost more than these tiny steps take (the
  # comparison is of the algorithm, not of graph rewrites).
  tf.config.optimizer.set_experimental_options(
      {'disable_meta_optimizer': True})
  out, report = {}, new_report(strategy.num_replicas_in_sync)
  start = time.time()
  run_steps(strategy, out, report)
  if strategy_name == 'mirrored':
    run_errors(strategy, out, report)
  report['seconds']['total'] = time.time() - start
  np.savez(out_path, **out)
  print(json.dumps(report))


if __name__ == '__main__':
  main(*sys.argv[1:])
