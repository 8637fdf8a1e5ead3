"""Proof tests for the BMG/MG engine (bmg_tf.core.bootstrap).

Every test compares against an independent reference: central finite
differences of a loss recomputed from scratch, a closed-form identity, or an
exact zero that any leak would break.
"""

import os
import tempfile

os.environ['TF_USE_LEGACY_KERAS'] = '1'

from absl.testing import parameterized  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

from bmg_tf.core import bootstrap
from bmg_tf.core import meta_learner as meta_learner_lib
from bmg_tf.core import meta_params
from bmg_tf.core import optimizers

F64 = tf.float64
N_BATCHES = 12  # >= K + L + 1 for every configuration below.


def _regression_problem(seed=0, dim=3, n=8):
  """A tiny float64 linear regression with per-step batches.

  Returns (x0 params, batches nest with leading step axis).
  """
  rng = np.random.RandomState(seed)
  w_true = rng.randn(dim, 1)
  xs = rng.randn(N_BATCHES, n, dim)
  ys = xs @ w_true + 0.1 * rng.randn(N_BATCHES, n, 1)
  params = [tf.constant(rng.randn(dim, 1), F64),
            tf.constant(rng.randn(1), F64)]
  return params, {'x': tf.constant(xs, F64), 'y': tf.constant(ys, F64)}


def _mse(params, batch):
  w, b = params
  pred = tf.matmul(batch['x'], w) + b
  return tf.reduce_mean(tf.square(pred - batch['y']))


def _regression_objectives():
  """Meta-learned learning rate (exp) and weight decay (sigmoid)."""
  def inner_loss(params, batch, meta):
    wd = tf.cast(meta['weight_decay'], F64)
    return _mse(params, batch) + 0.5 * wd * tf.reduce_sum(
        tf.square(params[0]))
  return bootstrap.Objectives(
      inner_loss=inner_loss,
      outer_loss=_mse,
      optimizer_hparams=lambda meta: {'learning_rate': meta['learning_rate']})


def _regression_meta(lr=0.05, wd=0.2):
  return meta_params.MetaParameters({
      'learning_rate': meta_params.MetaParameter(lr, 'exp', dtype=F64,
                                                 name='lr'),
      'weight_decay': meta_params.MetaParameter(wd, 'sigmoid', dtype=F64,
                                                name='wd'),
  })


def _run(config, params, batches, meta, objectives, inner_opt=None,
         target_opt=None):
  inner_opt = inner_opt or optimizers.SGD(learning_rate=0.1)
  if config.method == 'bmg' and target_opt is None:
    target_opt = optimizers.SGD(learning_rate=0.1)
  return bootstrap.meta_step(
      params=params,
      opt_state=inner_opt.init(params),
      meta_variables=meta.trainable_variables,
      meta_values_fn=meta,
      objectives=objectives,
      config=config,
      inner_optimizer=inner_opt,
      batches=batches,
      target_optimizer=target_opt)


def _central_differences(fn, variables, eps=1e-6):
  """d fn / d variables by central differences; fn() -> float."""
  grads = []
  for v in variables:
    base = np.array(v.numpy(), copy=True)
    g = np.zeros_like(base)
    for idx in np.ndindex(base.shape):
      for sign in (1, -1):
        pert = base.copy()
        pert[idx] += sign * eps
        v.assign(pert)
        g[idx] += sign * fn()
      g[idx] /= 2 * eps
    v.assign(base)
    grads.append(g)
  return grads


def _x_k(params, batches, meta, objectives, k, inner_opt=None):
  """x_K at the current meta-values, via the 'fixed' path (no meta-tape)."""
  config = bootstrap.BootstrapConfig(method='fixed', k_steps=k)
  return _run(config, params, batches, meta, objectives, inner_opt).params


def _param_l2_meta_grads_by_fd(result, params, batches, meta, objectives,
                                k):
  """Central differences of 0.5 ||x~ - x_K(w)||^2 w.r.t. the meta-variables.

  The target x~ is `result.target`, a constant computed once at the
  unperturbed w.
  """
  target = [t.numpy() for t in result.target]

  def bmg_loss():
    x_k = _x_k(params, batches, meta, objectives, k)
    return sum(0.5 * np.sum((t - x.numpy())**2) for t, x in zip(target, x_k))

  return _central_differences(bmg_loss, meta.trainable_variables)


class EngineFiniteDifferenceTest(parameterized.TestCase, tf.test.TestCase):

  @parameterized.parameters(1, 3)
  def test_mg_matches_finite_differences(self, k):
    params, batches = _regression_problem()
    meta, objectives = _regression_meta(), _regression_objectives()
    config = bootstrap.BootstrapConfig(method='mg', k_steps=k)
    result = _run(config, params, batches, meta, objectives)

    def mg_loss():
      x_k = _x_k(params, batches, meta, objectives, k)
      batch_k = tf.nest.map_structure(lambda t: t[k], batches)
      return float(_mse(x_k, batch_k))

    expected = _central_differences(mg_loss, meta.trainable_variables)
    self.assertLen(result.meta_grads, 2)
    for got, want in zip(result.meta_grads, expected):
      self.assertAllClose(got, want, rtol=1e-4, atol=1e-9)
      self.assertGreater(np.abs(want).max(), 1e-6)  # Non-trivial.

  @parameterized.product(k=(1, 3), l=(1, 4))
  def test_bmg_matches_finite_differences(self, k, l):
    params, batches = _regression_problem(seed=1)
    meta, objectives = _regression_meta(), _regression_objectives()
    config = bootstrap.BootstrapConfig(method='bmg', k_steps=k, l_steps=l,
                                       matching={'param_l2': 1.0})
    result = _run(config, params, batches, meta, objectives)
    expected = _param_l2_meta_grads_by_fd(result, params, batches, meta,
                                          objectives, k)
    for got, want in zip(result.meta_grads, expected):
      self.assertAllClose(got, want, rtol=1e-4, atol=1e-9)
      self.assertGreater(np.abs(want).max(), 1e-6)

  @parameterized.parameters(1, 4)
  def test_bmg_target_is_l_minus_1_inner_steps_then_outer_step(self, l):
    k = 2
    params, batches = _regression_problem(seed=2)
    meta, objectives = _regression_meta(), _regression_objectives()
    alpha = 0.3
    config = bootstrap.BootstrapConfig(method='bmg', k_steps=k, l_steps=l)
    result = _run(config, params, batches, meta, objectives,
                  target_opt=optimizers.SGD(learning_rate=alpha))
    # Reference: K+L-1 plain inner steps, then one SGD step on the outer
    # objective, by hand.
    x = _x_k(params, batches, meta, objectives, k + l - 1)
    batch = tf.nest.map_structure(lambda t: t[k + l - 1], batches)
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = _mse(x, batch)
    grads = tape.gradient(loss, x)
    want = [xi - alpha * gi for xi, gi in zip(x, grads)]
    for got, w in zip(result.target, want):
      self.assertAllClose(got, w, rtol=1e-10, atol=1e-12)

  @parameterized.parameters(1, 4)
  def test_bootstrap_loss_replaces_the_inner_loss_in_the_bootstrap(self, l):
    k, alpha = 2, 0.3
    params, batches = _regression_problem(seed=5)
    meta, objectives = _regression_meta(), _regression_objectives()
    fixed_rule = objectives._replace(bootstrap_loss=_mse)
    config = bootstrap.BootstrapConfig(method='bmg', k_steps=k, l_steps=l,
                                       matching={'param_l2': 1.0},
                                       continue_from='K+L-1')
    result = _run(config, params, batches, meta, fixed_rule,
                  target_opt=optimizers.SGD(learning_rate=alpha))
    # Reference by hand: K meta-learned inner steps; L-1 SGD steps on the
    # plain MSE at the meta-learned learning rate (no weight decay); one SGD
    # step on the outer objective.
    lr = float(meta()['learning_rate'])
    x = _x_k(params, batches, meta, objectives, k)

    def sgd(x, i, step):
      batch = tf.nest.map_structure(lambda t: t[i], batches)
      with tf.GradientTape() as tape:
        tape.watch(x)
        loss = _mse(x, batch)
      return [xi - step * gi for xi, gi in zip(x, tape.gradient(loss, x))]

    for i in range(k, k + l - 1):
      x = sgd(x, i, lr)
    for got, want in zip(result.params, x):  # Continues from x_{K+L-1}.
      self.assertAllClose(got, want, rtol=1e-10, atol=1e-12)
    want_target = sgd(x, k + l - 1, alpha)
    for got, want in zip(result.target, want_target):
      self.assertAllClose(got, want, rtol=1e-10, atol=1e-12)
    # The meta-gradient is still d mu(target, x_K(w)) / dw with that target.
    expected = _param_l2_meta_grads_by_fd(result, params, batches, meta,
                                          objectives, k)
    for got, want in zip(result.meta_grads, expected):
      self.assertAllClose(got, want, rtol=1e-4, atol=1e-9)
    # With L > 1 it is a different target from the paper's default.
    default = _run(config, params, batches, meta, objectives,
                   target_opt=optimizers.SGD(learning_rate=alpha))
    differs = any(not np.allclose(a, b) for a, b in zip(default.target,
                                                        result.target))
    self.assertEqual(differs, l > 1)

  @parameterized.parameters(1, 3)
  def test_bmg_policy_kl_matches_finite_differences(self, k):
    rng = np.random.RandomState(3)
    n_feat, n_act = 4, 3
    params = [tf.constant(rng.randn(n_feat, n_act), F64)]
    batches = {'s': tf.constant(rng.randn(N_BATCHES, 6, n_feat), F64),
               'a': tf.constant(rng.randint(n_act, size=(N_BATCHES, 6)))}

    def logits(p, batch, meta=None):
      del meta
      return tf.matmul(batch['s'], p[0])

    def nll(p, batch):
      return tf.reduce_mean(
          tf.nn.sparse_softmax_cross_entropy_with_logits(
              batch['a'], logits(p, batch)))

    def inner_loss(p, batch, meta):
      ent = -tf.reduce_sum(tf.nn.softmax(logits(p, batch)) *
                           tf.nn.log_softmax(logits(p, batch)), -1)
      return nll(p, batch) - tf.cast(meta['entropy'], F64) * tf.reduce_mean(
          ent)

    objectives = bootstrap.Objectives(inner_loss=inner_loss, outer_loss=nll,
                                      policy=logits)
    meta = meta_params.MetaParameters({'entropy': meta_params.MetaParameter(
        0.3, 'sigmoid', dtype=F64)})
    config = bootstrap.BootstrapConfig(method='bmg', k_steps=k, l_steps=3,
                                       matching={'policy_kl': 1.0})
    inner_opt = optimizers.SGD(learning_rate=0.5)
    result = _run(config, params, batches, meta, objectives, inner_opt)
    target = result.target
    match_batch = tf.nest.map_structure(lambda t: t[k + 2], batches)

    def kl_loss():
      x_k = _x_k(params, batches, meta, objectives, k, inner_opt)
      p_t = tf.nn.softmax(logits(target, match_batch)).numpy()
      log_q = tf.nn.log_softmax(logits(x_k, match_batch)).numpy()
      return float(np.mean(np.sum(p_t * (np.log(p_t) - log_q), -1)))

    expected = _central_differences(kl_loss, meta.trainable_variables)
    self.assertAllClose(result.meta_grads[0], expected[0], rtol=1e-4,
                        atol=1e-10)
    self.assertGreater(abs(float(expected[0])), 1e-6)


class EngineIdentityTest(parameterized.TestCase, tf.test.TestCase):

  @parameterized.parameters(1, 2, 3)
  def test_bmg_l1_param_matching_is_alpha_times_mg(self, k):
    params, batches = _regression_problem(seed=4)
    meta, objectives = _regression_meta(), _regression_objectives()
    alpha = 0.37
    mg = _run(bootstrap.BootstrapConfig(method='mg', k_steps=k), params,
              batches, meta, objectives)
    bmg = _run(
        bootstrap.BootstrapConfig(method='bmg', k_steps=k, l_steps=1,
                                  matching={'param_l2': 1.0}),
        params, batches, meta, objectives,
        target_opt=optimizers.SGD(learning_rate=alpha))
    for g_bmg, g_mg in zip(bmg.meta_grads, mg.meta_grads):
      self.assertAllClose(g_bmg, alpha * g_mg, rtol=1e-5, atol=0)

  def test_identity_fails_for_l_greater_than_1(self):
    # The identity is specific to L=1: with L=4 BMG and MG differ, so the
    # identity test above can tell the two apart.
    params, batches = _regression_problem(seed=4)
    meta, objectives = _regression_meta(), _regression_objectives()
    alpha = 0.37
    mg = _run(bootstrap.BootstrapConfig(method='mg', k_steps=1), params,
              batches, meta, objectives)
    bmg = _run(
        bootstrap.BootstrapConfig(method='bmg', k_steps=1, l_steps=4),
        params, batches, meta, objectives,
        target_opt=optimizers.SGD(learning_rate=alpha))
    ratio = bmg.meta_grads[0] / (alpha * mg.meta_grads[0])
    self.assertGreater(abs(float(ratio) - 1.0), 1e-3)


class StopGradientTest(tf.test.TestCase):

  def test_no_gradient_reaches_the_target(self):
    # K=0: x_K = x_0 is a constant, and the meta-values (learning rate and
    # weight decay) enter only the L-1 bootstrap steps that build the target.
    # Any gradient through the target would make the meta-gradient non-zero.
    params, batches = _regression_problem(seed=5)
    meta, objectives = _regression_meta(), _regression_objectives()
    config = bootstrap.BootstrapConfig(method='bmg', k_steps=0, l_steps=4,
                                       continue_from='K+L-1')
    result = _run(config, params, batches, meta, objectives)
    for g in result.meta_grads:
      self.assertAllEqual(g, tf.zeros_like(g))
    # ...while the target does depend on the meta-values, and the learner
    # moved: the zero above is the stop-gradient, not a dead problem.
    for t, p in zip(result.target, params):
      self.assertGreater(float(tf.reduce_max(tf.abs(t - p))), 1e-3)

  def test_k0_meta_values_in_matching_only(self):
    # The epsilon-greedy case: K=0, the meta-parameter enters only the
    # current policy in the matching loss. Gradient by hand:
    # d/d eps [-log pi_eps(a*)] with pi_eps(a*) = 1 - eps + eps/A.
    q = tf.constant([[1.0, 2.0, 0.5], [0.2, 0.1, 0.3]], F64)
    params = [tf.Variable(q)]
    n_act = 3

    def eps_greedy(p, batch, meta):
      del batch
      eps = tf.cast(meta['epsilon'], F64)
      greedy = tf.one_hot(tf.argmax(p[0], -1), n_act, dtype=F64)
      return tf.math.log(greedy * (1 - eps) + eps / n_act)

    def greedy_target(p, batch):
      del batch
      return tf.math.log(
          tf.one_hot(tf.argmax(p[0], -1), n_act, dtype=F64) + 1e-30)

    objectives = bootstrap.Objectives(
        inner_loss=lambda p, b, m: tf.reduce_sum(p[0] * b),
        outer_loss=lambda p, b: tf.reduce_sum(p[0] * b),
        policy=eps_greedy, target_policy=greedy_target)
    eps0 = 0.2
    meta = meta_params.MetaParameters({'epsilon': meta_params.MetaParameter(
        eps0, 'identity', dtype=F64)})
    config = bootstrap.BootstrapConfig(method='bmg', k_steps=0, l_steps=2,
                                       matching={'policy_kl': 1.0},
                                       continue_from='K+L-1')
    # A batch that keeps the greedy actions where they are.
    batches = tf.zeros([3, 2, 3], F64)
    result = _run(config, [params[0].read_value()], batches, meta,
                  objectives)
    p_star = 1 - eps0 + eps0 / n_act
    want = -(-1 + 1 / n_act) / p_star  # d/d eps of -log p_star, mean.
    self.assertAllClose(result.meta_grads[0], want, rtol=1e-6)

  def test_mg_has_no_gradient_for_a_matching_only_meta_parameter(self):
    params, batches = _regression_problem(seed=6)
    objectives = _regression_objectives()
    objectives = objectives._replace(
        inner_loss=lambda p, b, m: _mse(p, b),
        optimizer_hparams=None)
    meta = _regression_meta()
    result = _run(bootstrap.BootstrapConfig(method='mg', k_steps=2), params,
                  batches, meta, objectives)
    for g in result.meta_grads:
      self.assertAllEqual(g, tf.zeros_like(g))


class ContinuationTest(tf.test.TestCase):

  def test_continue_from_k_and_k_plus_l_minus_1(self):
    params, batches = _regression_problem(seed=7)
    meta, objectives = _regression_meta(), _regression_objectives()
    k, l = 2, 4
    for cont, steps in (('K', k), ('K+L-1', k + l - 1)):
      config = bootstrap.BootstrapConfig(method='bmg', k_steps=k, l_steps=l,
                                         continue_from=cont)
      result = _run(config, params, batches, meta, objectives)
      want = _x_k(params, batches, meta, objectives, steps)
      for got, w in zip(result.params, want):
        self.assertAllClose(got, w, rtol=1e-12)
      self.assertEqual(config.learner_steps, steps)

  def test_batch_fn_sees_current_params(self):
    params, batches = _regression_problem(seed=8)
    meta, objectives = _regression_meta(), _regression_objectives()
    seen = []

    def batch_fn(i, p):
      seen.append((i, [t.numpy() for t in p]))
      return tf.nest.map_structure(lambda t: t[i], batches)

    config = bootstrap.BootstrapConfig(method='bmg', k_steps=2, l_steps=3,
                                       match_batch='fresh')
    _run(config, params, batch_fn, meta, objectives)
    self.assertEqual([i for i, _ in seen], [0, 1, 2, 3, 4, 5])
    self.assertEqual(config.batches_per_step, 6)
    self.assertAllClose(seen[0][1], [p.numpy() for p in params])
    self.assertNotAllClose(seen[1][1][0], params[0])


class BadInputTest(parameterized.TestCase, tf.test.TestCase):

  @parameterized.named_parameters(
      ('negative_k', dict(k_steps=-1), 'k_steps'),
      ('l_zero_bmg', dict(method='bmg', l_steps=0), 'l_steps'),
      ('unknown_matching', dict(matching={'param_kl': 1.0}), 'param_kl'),
      ('unknown_method', dict(method='maml'), 'method'),
      ('bad_continuation', dict(continue_from='L'), 'continue_from'),
      ('mg_continuation', dict(method='mg', continue_from='K+L-1'),
       'continue_from'),
      ('k0_no_progress', dict(method='bmg', k_steps=0), 'continue_from'),
      ('float_k', dict(k_steps=1.5), 'k_steps'),
      ('bad_reduction', dict(reduction='max'), 'reduction'),
  )
  def test_config_errors(self, kwargs, pattern):
    with self.assertRaisesRegex(ValueError, pattern):
      bootstrap.BootstrapConfig(**kwargs)

  def test_non_finite_hyperparameters(self):
    with self.assertRaisesRegex(ValueError, 'lr'):
      meta_params.MetaParameter(float('nan'), 'exp', name='lr')
    with self.assertRaisesRegex(ValueError, 'eps'):
      meta_params.MetaParameter(1.5, 'sigmoid', name='eps')
    with self.assertRaisesRegex(ValueError, 'learning_rate'):
      optimizers.SGD(learning_rate=float('inf'))
    with self.assertRaisesRegex(ValueError, r'parameters\[gamma\]'):
      meta_params.MetaParameters({'gamma': float('nan')})

  def test_mismatched_parameter_structures(self):
    params, batches = _regression_problem()
    meta, objectives = _regression_meta(), _regression_objectives()
    opt = optimizers.Momentum(learning_rate=0.1)
    wrong_state = opt.init(params[:1])
    with self.assertRaisesRegex(ValueError, 'state|params'):
      bootstrap.meta_step(params, wrong_state, meta.trainable_variables,
                          meta, objectives,
                          bootstrap.BootstrapConfig(method='mg'), opt,
                          batches)

  def test_missing_heads(self):
    params, batches = _regression_problem()
    meta, objectives = _regression_meta(), _regression_objectives()
    config = bootstrap.BootstrapConfig(method='bmg',
                                       matching={'policy_kl': 1.0})
    with self.assertRaisesRegex(ValueError, 'objectives.policy'):
      _run(config, params, batches, meta, objectives)

  def test_meta_learner_rejects_non_variables(self):
    meta, objectives = _regression_meta(), _regression_objectives()
    with self.assertRaisesRegex(ValueError, 'learner_params'):
      meta_learner_lib.MetaLearner(
          [tf.constant(1.0)], meta, objectives,
          bootstrap.BootstrapConfig(method='mg'),
          optimizers.SGD(learning_rate=0.1))


def _contextual_meta():
  """A learned weight decay and a contextual learning rate (context [2])."""
  return meta_params.MetaParameters(
      {'weight_decay': meta_params.MetaParameter(0.2, 'sigmoid', dtype=F64,
                                                 name='wd')},
      contextual=meta_params.ContextualMetaParameters(
          2, {'learning_rate': 0.05}, hidden_sizes=(4,), seed=1,
          dtype=F64, transforms={'learning_rate': 'exp'}))


class MetaLearnerTest(parameterized.TestCase, tf.test.TestCase):

  def _learner(self, jit_compile, method='bmg', seed=9):
    params, batches = _regression_problem(seed=seed)
    variables = [tf.Variable(p) for p in params]
    config = bootstrap.BootstrapConfig(method=method, k_steps=2, l_steps=3)
    learner = meta_learner_lib.MetaLearner(
        variables, _regression_meta(), _regression_objectives(), config,
        optimizers.SGD(learning_rate=0.1),
        meta_optimizer=meta_params.MetaOptimizer(learning_rate=0.01),
        jit_compile=jit_compile)
    return learner, batches

  @parameterized.parameters('mg', 'bmg')
  def test_xla_gives_the_same_meta_gradient(self, method):
    eager, batches = self._learner(False, method)
    xla, _ = self._learner(True, method)
    want = eager.compute(batches)
    compiled = tf.function(xla.compute, jit_compile=True)
    got = compiled(batches)
    for g, w in zip(got.meta_grads, want.meta_grads):
      self.assertAllClose(g, w, rtol=1e-5, atol=1e-12)
    # And the full compiled step writes the same variables.
    eager.step(batches)
    xla.step(batches)
    for a, b in zip(eager.variables, xla.variables):
      self.assertAllClose(a, b, rtol=1e-5, atol=1e-12)

  def test_step_updates_learner_and_meta_and_counter(self):
    learner, batches = self._learner(False)
    before = [v.numpy().copy() for v in learner.meta_variables]
    params_before = [v.numpy().copy() for v in learner.learner_params]
    expected = learner.compute(batches)
    metrics = learner.step(batches)
    self.assertEqual(int(learner.train_step_counter), 1)
    for v, p in zip(learner.learner_params, expected.params):
      self.assertAllClose(v, p)
    for v, b in zip(learner.learner_params, params_before):
      self.assertNotAllClose(v, b)
    for v, b in zip(learner.meta_variables, before):
      self.assertNotAllClose(v, b)
    self.assertAllClose(metrics['meta_loss'], expected.meta_loss)
    self.assertIn('meta_grad_norm', metrics)

  def test_checkpoint_round_trip(self):
    learner, batches = self._learner(False)
    learner.step(batches)
    ckpt_dir = tempfile.mkdtemp()
    path = tf.train.Checkpoint(learner=learner).save(
        os.path.join(ckpt_dir, 'ckpt'))
    saved = [v.numpy().copy() for v in learner.variables]
    second = learner.step(batches)
    fresh, _ = self._learner(False, seed=10)
    tf.train.Checkpoint(learner=fresh).restore(path).assert_consumed()
    for a, b in zip(fresh.variables, saved):
      self.assertAllClose(a, b)
    # The restored learner continues exactly like the original did.
    again = fresh.step(batches)
    self.assertAllClose(again['meta_loss'], second['meta_loss'], rtol=1e-12)
    for a, b in zip(fresh.variables, learner.variables):
      self.assertAllClose(a, b, rtol=1e-12)

  def _stream_learner(self, steps_per_call, jit_compile=False):
    """BMG on an in-graph data stream, with a context read from a variable
    that the stream also updates (as the pipelines' reward context is)."""
    params, _ = _regression_problem(seed=3)
    variables = [tf.Variable(p) for p in params]
    gen = tf.random.Generator.from_seed(5)
    w_true = tf.constant(np.random.RandomState(6).normal(size=[3, 1]), F64)
    context = tf.Variable(tf.zeros([2], F64))

    def batch_fn(i, params):
      del i, params
      x = gen.normal([8, 3], dtype=F64)
      context.assign(tf.stack([tf.reduce_mean(x), context[0]]))
      return {'x': x, 'y': tf.matmul(x, w_true)}

    learner = meta_learner_lib.MetaLearner(
        variables, _contextual_meta(), _regression_objectives(),
        bootstrap.BootstrapConfig(method='bmg', k_steps=2, l_steps=3),
        optimizers.SGD(learning_rate=0.1),
        meta_optimizer=meta_params.MetaOptimizer(learning_rate=0.01),
        batch_fn=batch_fn, jit_compile=jit_compile,
        steps_per_call=steps_per_call, context_fn=context.read_value)
    return learner, context

  @parameterized.parameters(False, True)
  def test_steps_per_call_equals_separate_calls(self, jit_compile):
    one, ctx_one = self._stream_learner(1, jit_compile)
    three, ctx_three = self._stream_learner(3, jit_compile)
    for _ in range(6):
      last_one = one.step()
    for _ in range(2):
      last_three = three.step()
    self.assertEqual(int(one.train_step_counter), 6)
    self.assertEqual(int(three.train_step_counter), 6)
    self.assertAllClose(ctx_one, ctx_three, rtol=1e-12)
    for a, b in zip(one.variables, three.variables):
      self.assertAllClose(a, b, rtol=1e-6, atol=1e-12)
    # The metrics returned are those of the last meta-step.
    self.assertAllClose(last_one['meta_loss'], last_three['meta_loss'],
                        rtol=1e-6)
    # And the meta-parameters moved: the loop is not a no-op.
    fresh, _ = self._stream_learner(1, jit_compile)
    self.assertNotAllClose(fresh.meta_variables[0], three.meta_variables[0])

  def _data_fn_learner(self, steps_per_call, jit_compile=False,
                       use_data_fn=True):
    """BMG fed by a `data_fn`: each meta-step draws its stacked batches and
    updates the context from them, in-graph (as the Q pipeline's collect,
    replay add and sample do). Without `use_data_fn`, the same learner
    taking the batches and the context as `step` arguments, plus the
    function that makes them."""
    params, _ = _regression_problem(seed=3)
    variables = [tf.Variable(p) for p in params]
    gen = tf.random.Generator.from_seed(5)
    w_true = tf.constant(np.random.RandomState(6).normal(size=[3, 1]), F64)
    context = tf.Variable(tf.zeros([2], F64))
    config = bootstrap.BootstrapConfig(method='bmg', k_steps=2, l_steps=3)
    n = config.batches_per_step

    def data_fn():
      x = gen.normal([n, 8, 3], dtype=F64)
      context.assign(tf.stack([tf.reduce_mean(x), context[0]]))
      return {'x': x, 'y': tf.einsum('nbi,io->nbo', x, w_true)}, (
          context.read_value())

    learner = meta_learner_lib.MetaLearner(
        variables, _contextual_meta(), _regression_objectives(), config,
        optimizers.SGD(learning_rate=0.1),
        meta_optimizer=meta_params.MetaOptimizer(learning_rate=0.01),
        jit_compile=jit_compile, steps_per_call=steps_per_call,
        data_fn=data_fn if use_data_fn else None)
    return learner, context, data_fn

  @parameterized.parameters(False, True)
  def test_data_fn_equals_passing_its_batches(self, jit_compile):
    fed, ctx_fed, _ = self._data_fn_learner(1, jit_compile)
    looped, ctx_looped, _ = self._data_fn_learner(3, jit_compile)
    given, ctx_given, make = self._data_fn_learner(
        1, jit_compile, use_data_fn=False)
    # Made in a function compiled as the step is (XLA draws its own normals).
    make = tf.function(make, autograph=False, jit_compile=jit_compile)
    for _ in range(6):
      last_fed = fed.step()
      batches, context = make()
      last_given = given.step(batches, context)
    for _ in range(2):
      last_looped = looped.step()
    for learner in (fed, looped, given):
      self.assertEqual(int(learner.train_step_counter), 6)
    self.assertAllClose(ctx_fed, ctx_given, rtol=1e-12)
    self.assertAllClose(ctx_fed, ctx_looped, rtol=1e-12)
    for a, b, c in zip(fed.variables, looped.variables, given.variables):
      self.assertAllClose(a, b, rtol=1e-6, atol=1e-12)
      self.assertAllClose(a, c, rtol=1e-6, atol=1e-12)
    self.assertAllClose(last_fed['meta_loss'], last_looped['meta_loss'],
                        rtol=1e-6)
    self.assertAllClose(last_fed['meta_loss'], last_given['meta_loss'],
                        rtol=1e-6)
    fresh, _, _ = self._data_fn_learner(1, jit_compile)
    self.assertNotAllClose(fresh.meta_variables[0], looped.meta_variables[0])

  def test_data_fn_bad_input(self):
    learner, _, data_fn = self._data_fn_learner(1)
    batches, context = data_fn()
    with self.assertRaisesRegex(ValueError, 'batches: must be None'):
      learner.step(batches)
    with self.assertRaisesRegex(ValueError, 'context: must be None'):
      learner.step(context=context)
    params, _ = _regression_problem(seed=3)
    args = ([tf.Variable(p) for p in params], _regression_meta(),
            _regression_objectives(), bootstrap.BootstrapConfig(method='mg'),
            optimizers.SGD(learning_rate=0.1))
    for name, kwargs in (('batch_fn', dict(batch_fn=lambda i, p: None)),
                         ('context_fn', dict(context_fn=lambda: None)),
                         ('carry_spec', dict(carry_spec=tf.TensorSpec([1])))):
      with self.assertRaisesRegex(ValueError, f'{name}: not with a data_fn'):
        meta_learner_lib.MetaLearner(*args, data_fn=data_fn, **kwargs)

  def test_steps_per_call_bad_input(self):
    params, _ = _regression_problem(seed=3)
    variables = [tf.Variable(p) for p in params]
    args = (variables, _regression_meta(), _regression_objectives(),
            bootstrap.BootstrapConfig(method='mg'),
            optimizers.SGD(learning_rate=0.1))
    for bad in (0, 2.0, True):
      with self.assertRaisesRegex(ValueError, 'steps_per_call'):
        meta_learner_lib.MetaLearner(*args, steps_per_call=bad,
                                     batch_fn=lambda i, p: None)
    with self.assertRaisesRegex(ValueError, 'steps_per_call.*data_fn'):
      meta_learner_lib.MetaLearner(*args, steps_per_call=2)


class InitialParamsTest(tf.test.TestCase):
  """`Objectives.initial_params`: a meta-learned starting point (MAML)."""

  def _setup(self):
    params, batches = _regression_problem(seed=3)
    meta = meta_params.MetaParameters({
        f'init_{i}': meta_params.MetaParameter(
            np.random.RandomState(i).randn(*p.shape), 'identity', dtype=F64,
            name=f'init_{i}') for i, p in enumerate(params)})
    objectives = bootstrap.Objectives(
        inner_loss=lambda p, batch, m: _mse(p, batch), outer_loss=_mse,
        initial_params=lambda p, m: [m['init_0'], m['init_1']])
    return params, batches, meta, objectives

  def test_mg_meta_gradient_reaches_the_initialisation(self):
    params, batches, meta, objectives = self._setup()
    config = bootstrap.BootstrapConfig(method='mg', k_steps=2)
    adam = optimizers.Adam(learning_rate=0.05)
    result = _run(config, params, batches, meta, objectives, inner_opt=adam)

    def mg_loss():
      return float(_run(config, params, batches, meta, objectives,
                        inner_opt=adam).meta_loss)

    want = _central_differences(mg_loss, meta.trainable_variables)
    for got, w in zip(result.meta_grads, want):
      self.assertAllClose(got, w, rtol=1e-6, atol=1e-9)

  def test_start_and_optimizer_state_ignore_the_learner_state(self):
    params, batches, meta, objectives = self._setup()
    config = bootstrap.BootstrapConfig(method='mg', k_steps=2)
    adam = optimizers.Adam(learning_rate=0.05)
    fresh = _run(config, params, batches, meta, objectives, inner_opt=adam)
    # Other learner parameters and a used Adam state change nothing.
    other = [p + 1.0 for p in params]
    stale = adam.update([tf.ones_like(p) for p in other], adam.init(other),
                        other)[1]
    again = bootstrap.meta_step(
        params=other, opt_state=stale,
        meta_variables=meta.trainable_variables, meta_values_fn=meta,
        objectives=objectives, config=config, inner_optimizer=adam,
        batches=batches)
    self.assertAllEqual(fresh.meta_loss, again.meta_loss)
    for a, b in zip(fresh.params + fresh.meta_grads,
                    again.params + again.meta_grads):
      self.assertAllEqual(a, b)

  def test_a_mismatched_start_is_an_error(self):
    params, batches, meta, objectives = self._setup()
    objectives = objectives._replace(
        initial_params=lambda p, m: [m['init_0'][:2], m['init_1']])
    config = bootstrap.BootstrapConfig(method='mg', k_steps=1)
    with self.assertRaisesRegex(ValueError, 'initial_params: tensor 0'):
      _run(config, params, batches, meta, objectives)


if __name__ == '__main__':
  tf.test.main()
