# coding=utf-8
"""Tests for bmg_tf.core.optimizers."""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'

from unittest import mock  # pylint: disable=g-import-not-at-top

from absl.testing import parameterized
import numpy as np
import tensorflow as tf
import tf_keras

from bmg_tf.core import optimizers

_F32 = (tf.float32,)
_F32_F64 = (tf.float32, tf.float64)

# (name, ours, Keras class, kwargs, dtypes). Non-default settings exercise
# every hyperparameter. For float64 variables Keras rounds `learning_rate`,
# `momentum` and Adam's betas through float32 (`tf.cast` of a Python float),
# so float64 cases use values that are exact in float32.
_PARITY_CASES = (
    ('sgd', optimizers.SGD, tf_keras.optimizers.SGD,
     dict(learning_rate=0.05), _F32),
    ('momentum', optimizers.Momentum, tf_keras.optimizers.SGD,
     dict(learning_rate=0.05, momentum=0.8), _F32),
    ('momentum_nesterov', optimizers.Momentum, tf_keras.optimizers.SGD,
     dict(learning_rate=0.0625, momentum=0.75, nesterov=True), _F32_F64),
    ('rmsprop_rho_eps', optimizers.RMSProp, tf_keras.optimizers.RMSprop,
     dict(learning_rate=0.03, rho=0.7, epsilon=1e-3), _F32),
    ('rmsprop_momentum_centered', optimizers.RMSProp,
     tf_keras.optimizers.RMSprop,
     dict(learning_rate=0.03125, rho=0.8, momentum=0.5, centered=True),
     _F32_F64),
    ('adam_default', optimizers.Adam, tf_keras.optimizers.Adam,
     dict(learning_rate=0.03), _F32),
    ('adam_betas', optimizers.Adam, tf_keras.optimizers.Adam,
     dict(learning_rate=0.0625, beta_1=0.5, beta_2=0.75, epsilon=1e-4),
     _F32_F64),
)

_ALL_OPTIMIZERS = (
    ('sgd', lambda: optimizers.SGD(0.1)),
    ('momentum', lambda: optimizers.Momentum(0.1, 0.9)),
    ('nesterov', lambda: optimizers.Momentum(0.1, 0.9, nesterov=True)),
    ('rmsprop', lambda: optimizers.RMSProp(0.01)),
    ('rmsprop_full',
     lambda: optimizers.RMSProp(0.01, momentum=0.5, centered=True)),
    ('adam', lambda: optimizers.Adam(0.01)),
)


def _problem(dtype, seed=0):
  """A random least-squares problem with four parameter tensors.

  Args:
    dtype: Floating dtype of the data and parameters.
    seed: NumPy seed.

  Returns:
    `(params, loss_fn)`: `params` is a list of tensors of shapes
    `[5, 4], [4], [4, 2], [2]`; `loss_fn(params)` is a scalar.
  """
  rng = np.random.RandomState(seed)
  x = tf.constant(rng.randn(16, 5), dtype)
  y = tf.constant(rng.randn(16, 2), dtype)
  params = [
      tf.constant(0.5 * rng.randn(*shape), dtype)
      for shape in ((5, 4), (4,), (4, 2), (2,))
  ]

  def loss_fn(ps):
    w1, b1, w2, b2 = ps
    return tf.reduce_mean(tf.square(tf.matmul(tf.matmul(x, w1) + b1, w2) + b2
                                    - y))

  return params, loss_fn


def _dead_relu_problem(dtype=tf.float64):
  """A one-hidden-layer ReLU net whose hidden unit 0 is dead.

  Hidden unit 0 has bias -100, so its pre-activation is negative for every
  input and the gradients of `w1[:, 0]`, `b1[0]` and `w2[0]` are exactly 0.

  Args:
    dtype: Floating dtype.

  Returns:
    `(params, loss_fn)` with params of shapes `[3, 4], [4], [4, 1]`.
  """
  rng = np.random.RandomState(1)
  x = tf.constant(rng.uniform(-1., 1., (8, 3)), dtype)
  y = tf.constant(rng.randn(8, 1), dtype)
  b1 = rng.uniform(0.1, 0.5, (4,))
  b1[0] = -100.
  params = [
      tf.constant(0.3 * rng.randn(3, 4), dtype),
      tf.constant(b1, dtype),
      tf.constant(0.3 * rng.randn(4, 1), dtype),
  ]

  def loss_fn(ps):
    w1, b1, w2 = ps
    hidden = tf.nn.relu(tf.matmul(x, w1) + b1)
    return tf.reduce_mean(tf.square(tf.matmul(hidden, w2) - y))

  return params, loss_fn


def _unroll(opt, params, loss_fn, num_steps, hparams):
  """Runs `num_steps` differentiable updates; returns the final loss."""
  state = opt.init(params)
  for _ in range(num_steps):
    with tf.GradientTape() as tape:
      tape.watch(params)
      loss = loss_fn(params)
    grads = tape.gradient(loss, params)
    params, state = opt.update(grads, state, params, hparams=hparams)
  return loss_fn(params)


class ParityTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      (name + '_' + dtype.name, ours, keras_cls, kwargs, dtype)
      for name, ours, keras_cls, kwargs, dtypes in _PARITY_CASES
      for dtype in dtypes)
  def test_matches_tf_keras(self, ours_cls, keras_cls, kwargs, dtype):
    params, loss_fn = _problem(dtype)
    opt = ours_cls(**kwargs)
    state = opt.init(params)
    variables = [tf.Variable(p) for p in params]
    keras_opt = keras_cls(**kwargs)
    for _ in range(20):
      with tf.GradientTape() as tape:
        tape.watch(params)
        loss = loss_fn(params)
      params, state = opt.update(tape.gradient(loss, params), state, params)
      with tf.GradientTape() as tape:
        loss = loss_fn(variables)
      keras_opt.apply_gradients(
          zip(tape.gradient(loss, variables), variables))
    initial, _ = _problem(dtype)
    for p, v, p0 in zip(params, variables, initial):
      self.assertEqual(p.dtype, dtype)
      self.assertEqual(p.shape, p0.shape)
      # Guard against a vacuous comparison: parameters really moved.
      self.assertGreater(np.max(np.abs(p.numpy() - p0.numpy())), 1e-3)
      self.assertAllClose(p, v.numpy(), atol=1e-6, rtol=1e-6)

  def test_hparams_override_equals_constructor(self):
    params, loss_fn = _problem(tf.float32)
    overridden = {'learning_rate': tf.constant(0.02), 'beta_1': 0.5,
                  'beta_2': tf.constant(0.75), 'epsilon': tf.constant(1e-4)}
    got = _unroll(optimizers.Adam(0.1), params, loss_fn, 3, overridden)
    want = _unroll(optimizers.Adam(0.02, 0.5, 0.75, 1e-4), params, loss_fn, 3,
                   None)
    self.assertAllClose(got, want, atol=1e-7, rtol=1e-6)


class HyperGradientTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ('sgd_lr', optimizers.SGD(0.1), 'learning_rate', 0.1),
      ('momentum_lr', optimizers.Momentum(0.1, 0.9), 'learning_rate', 0.1),
      ('momentum_momentum', optimizers.Momentum(0.1, 0.9), 'momentum', 0.9),
      ('nesterov_lr', optimizers.Momentum(0.1, 0.9, nesterov=True),
       'learning_rate', 0.1),
      ('rmsprop_lr', optimizers.RMSProp(0.01), 'learning_rate', 0.01),
      ('rmsprop_rho', optimizers.RMSProp(0.01), 'rho', 0.9),
      ('rmsprop_full_lr', optimizers.RMSProp(0.01, momentum=0.5,
                                             centered=True),
       'learning_rate', 0.01),
      ('rmsprop_full_momentum', optimizers.RMSProp(0.01, momentum=0.5,
                                                   centered=True),
       'momentum', 0.5),
      ('adam_lr', optimizers.Adam(0.01), 'learning_rate', 0.01),
      ('adam_beta_1', optimizers.Adam(0.01), 'beta_1', 0.9),
      ('adam_beta_2', optimizers.Adam(0.01), 'beta_2', 0.999),
      ('adam_epsilon', optimizers.Adam(0.01, epsilon=0.1), 'epsilon', 0.1),
  )
  def test_matches_finite_differences(self, opt, name, value):
    params, loss_fn = _problem(tf.float64, seed=2)
    hparam = tf.constant(value, tf.float64)
    with tf.GradientTape() as meta_tape:
      meta_tape.watch(hparam)
      meta_loss = _unroll(opt, params, loss_fn, 3, {name: hparam})
    grad = meta_tape.gradient(meta_loss, hparam)
    self.assertIsNotNone(grad)

    h = 1e-6 * value
    plus = _unroll(opt, params, loss_fn, 3, {name: tf.constant(value + h,
                                                               tf.float64)})
    minus = _unroll(opt, params, loss_fn, 3, {name: tf.constant(value - h,
                                                                tf.float64)})
    fd = (plus - minus) / (2 * h)
    self.assertGreater(abs(float(fd)), 1e-8)  # Non-trivial derivative.
    self.assertAllClose(grad, fd, rtol=1e-5, atol=1e-10)

  def test_gradient_reaches_initial_params(self):
    params, loss_fn = _problem(tf.float64)
    with tf.GradientTape() as meta_tape:
      meta_tape.watch(params)
      meta_loss = _unroll(optimizers.Adam(0.01), params, loss_fn, 2, None)
    grads = meta_tape.gradient(meta_loss, params)
    for g in grads:
      self.assertIsNotNone(g)
      self.assertTrue(np.all(np.isfinite(g.numpy())))


class ZeroGradientSafetyTest(tf.test.TestCase, parameterized.TestCase):

  def _meta_grads(self, opt):
    params, loss_fn = _dead_relu_problem()
    lr = tf.constant(opt.default_hparams['learning_rate'], tf.float64)
    with tf.GradientTape() as meta_tape:
      meta_tape.watch([lr] + params)
      # The inner gradient of the dead unit is exactly zero.
      with tf.GradientTape() as tape:
        tape.watch(params)
        loss = loss_fn(params)
      self.assertAllEqual(tape.gradient(loss, params)[2][0], [0.])
      meta_loss = _unroll(opt, params, loss_fn, 3, {'learning_rate': lr})
    return meta_loss, meta_tape.gradient(meta_loss, [lr] + params)

  @parameterized.named_parameters(
      ('rmsprop', lambda: optimizers.RMSProp(0.01)),
      ('rmsprop_eps0', lambda: optimizers.RMSProp(0.01, epsilon=0.)),
      ('rmsprop_full_eps0',
       lambda: optimizers.RMSProp(0.01, epsilon=0., momentum=0.5,
                                  centered=True)),
      ('adam', lambda: optimizers.Adam(0.01)),
      ('adam_eps0', lambda: optimizers.Adam(0.01, epsilon=0.)),
  )
  def test_second_order_gradients_are_finite(self, make_opt):
    meta_loss, grads = self._meta_grads(make_opt())
    self.assertTrue(np.isfinite(meta_loss.numpy()))
    for g in grads:
      self.assertTrue(np.all(np.isfinite(g.numpy())), msg=str(g))
    self.assertNotEqual(float(grads[0]), 0.)

  @parameterized.named_parameters(
      ('rmsprop_eps0', lambda: optimizers.RMSProp(0.01, epsilon=0.),
       '_safe_rsqrt', tf.math.rsqrt),
      ('adam_eps0', lambda: optimizers.Adam(0.01, epsilon=0.),
       '_safe_div', tf.math.divide),
  )
  def test_naive_ops_would_give_nan(self, make_opt, helper, naive_op):
    # Control for the test above: with the naive op the same computation is
    # not finite, so the test can fail.
    with mock.patch.object(optimizers, helper, naive_op):
      meta_loss, grads = self._meta_grads(make_opt())
    values = [meta_loss] + grads
    self.assertFalse(all(np.all(np.isfinite(v.numpy())) for v in values))

  def _underflow_meta_grad(self):
    """Meta-gradient w.r.t. the learning rate of 3 float32 Adam steps.

    The gradient of `b` is ~1e-24, whose square underflows to exactly 0 in
    float32, so Adam's second moment of `b` is 0 while its first moment is
    not: the gradient of `sqrt(v)` at 0 then meets a non-zero upstream
    gradient (made large enough not to underflow by a small epsilon).

    Returns:
      The scalar meta-gradient.
    """
    target = tf.constant([1., -2., 3.])
    params = [tf.constant([0.5, 0.5, 0.5]), tf.constant([1., 2.])]

    def loss_fn(ps):
      a, b = ps
      return (tf.reduce_sum(tf.square(a - target)) +
              1e-24 * tf.reduce_sum(b) * tf.reduce_sum(tf.square(a)))

    lr = tf.constant(0.1)
    with tf.GradientTape() as meta_tape:
      meta_tape.watch(lr)
      meta_loss = _unroll(optimizers.Adam(0.1, epsilon=1e-10), params,
                          loss_fn, 3,
                          {'learning_rate': lr})
    return meta_tape.gradient(meta_loss, lr)

  def test_underflowing_second_moment_is_finite(self):
    self.assertTrue(np.isfinite(self._underflow_meta_grad().numpy()))
    # Control: a plain tf.sqrt gives a non-finite meta-gradient here.
    with mock.patch.object(optimizers, '_safe_sqrt', tf.sqrt):
      self.assertFalse(np.isfinite(self._underflow_meta_grad().numpy()))

  def test_safe_sqrt_value_and_gradient(self):
    x = tf.constant([0., 1e-30, 0.25, 4.], tf.float64)
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = optimizers._safe_sqrt(x)  # pylint: disable=protected-access
    self.assertAllEqual(y, tf.sqrt(x))
    grad = tape.gradient(y, x).numpy()
    self.assertEqual(grad[0], 0.)
    self.assertAllClose(grad[2:], [1., 0.25])


class BadInputTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ('negative_lr', optimizers.SGD, dict(learning_rate=-0.1),
       'learning_rate'),
      ('nan_lr', optimizers.Adam, dict(learning_rate=float('nan')),
       'learning_rate'),
      ('inf_lr', optimizers.RMSProp, dict(learning_rate=float('inf')),
       'learning_rate'),
      ('string_lr', optimizers.SGD, dict(learning_rate='0.1'),
       'learning_rate'),
      ('tensor_lr', optimizers.SGD, dict(learning_rate=tf.constant(0.1)),
       'learning_rate'),
      ('momentum_big', optimizers.Momentum,
       dict(learning_rate=0.1, momentum=1.5), 'momentum'),
      ('nesterov_type', optimizers.Momentum,
       dict(learning_rate=0.1, nesterov='yes'), 'nesterov'),
      ('rho_one', optimizers.RMSProp, dict(learning_rate=0.1, rho=1.0), 'rho'),
      ('rho_negative', optimizers.RMSProp, dict(learning_rate=0.1, rho=-0.1),
       'rho'),
      ('rms_epsilon', optimizers.RMSProp,
       dict(learning_rate=0.1, epsilon=-1e-7), 'epsilon'),
      ('centered_type', optimizers.RMSProp,
       dict(learning_rate=0.1, centered=1), 'centered'),
      ('beta_1_one', optimizers.Adam, dict(learning_rate=0.1, beta_1=1.0),
       'beta_1'),
      ('beta_2_big', optimizers.Adam, dict(learning_rate=0.1, beta_2=1.5),
       'beta_2'),
      ('beta_2_negative', optimizers.Adam,
       dict(learning_rate=0.1, beta_2=-0.5), 'beta_2'),
      ('adam_epsilon', optimizers.Adam, dict(learning_rate=0.1, epsilon=-1.),
       'epsilon'),
  )
  def test_constructor(self, cls, kwargs, arg_name):
    with self.assertRaisesRegex(ValueError, '`{}`'.format(arg_name)) as cm:
      cls(**kwargs)
    self.assertNotIn('\n', str(cm.exception))

  def test_update_length_and_shape_mismatch(self):
    params, _ = _problem(tf.float32)
    grads = [tf.ones_like(p) for p in params]
    opt = optimizers.Adam(0.1)
    state = opt.init(params)
    with self.assertRaisesRegex(ValueError, '`grads`'):
      opt.update(grads[:-1], state, params)
    with self.assertRaisesRegex(ValueError, r'`grads\[1\]`.*shape'):
      opt.update([grads[0], tf.ones([5])] + grads[2:], state, params)
    with self.assertRaisesRegex(ValueError, r'`grads\[0\]`.*dtype'):
      opt.update([tf.ones([5, 4], tf.float64)] + grads[1:], state, params)
    short_state = state._replace(mu=state.mu[:-1])
    with self.assertRaisesRegex(ValueError, '`state.mu`'):
      opt.update(grads, short_state, params)
    bad_state = state._replace(nu=(tf.zeros([4, 5]),) + state.nu[1:])
    with self.assertRaisesRegex(ValueError, r'`state.nu\[0\]`.*shape'):
      opt.update(grads, bad_state, params)
    with self.assertRaisesRegex(ValueError, '`state`'):
      opt.update(grads, optimizers.Momentum(0.1).init(params), params)
    other_params, _ = _problem(tf.float32)
    with self.assertRaisesRegex(ValueError, '`state.mu`'):
      opt.update(grads + [tf.ones([3])], state, other_params + [tf.ones([3])])

  def test_momentum_state_mismatch(self):
    params, _ = _problem(tf.float32)
    grads = [tf.ones_like(p) for p in params]
    opt = optimizers.Momentum(0.1)
    state = opt.init(params)
    with self.assertRaisesRegex(ValueError, '`state.velocity`'):
      opt.update(grads, state._replace(velocity=state.velocity[1:]), params)
    rms = optimizers.RMSProp(0.1, momentum=0.5)
    rms_state = optimizers.RMSProp(0.1).init(params)  # No momentum buffer.
    with self.assertRaisesRegex(ValueError, '`state.mom`'):
      rms.update(grads, rms_state, params)

  def test_bad_hparams(self):
    params, _ = _problem(tf.float32)
    grads = [tf.ones_like(p) for p in params]
    opt = optimizers.Adam(0.1)
    state = opt.init(params)
    with self.assertRaisesRegex(ValueError, 'learning_rte'):
      opt.update(grads, state, params, hparams={'learning_rte': 0.1})
    with self.assertRaisesRegex(ValueError, '`beta_1`'):
      opt.update(grads, state, params, hparams={'beta_1': 1.0})
    with self.assertRaisesRegex(ValueError, '`learning_rate`.*shape'):
      opt.update(grads, state, params,
                 hparams={'learning_rate': tf.ones([7])})
    rms = optimizers.RMSProp(0.1)
    with self.assertRaisesRegex(ValueError, '`momentum`'):
      rms.update(grads, rms.init(params), params, hparams={'momentum': 0.5})

  def test_params_must_be_a_list(self):
    opt = optimizers.SGD(0.1)
    with self.assertRaisesRegex(TypeError, '`params`'):
      opt.init(tf.zeros([3]))
    with self.assertRaisesRegex(ValueError, r'`params\[0\]`.*floating'):
      opt.init([tf.zeros([3], tf.int32)])


class GetTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(
      ('sgd', optimizers.SGD), ('momentum', optimizers.Momentum),
      ('rmsprop', optimizers.RMSProp), ('Adam', optimizers.Adam))
  def test_get(self, name, cls):
    opt = optimizers.get(name, learning_rate=0.5)
    self.assertIsInstance(opt, cls)
    self.assertEqual(opt.default_hparams['learning_rate'], 0.5)

  def test_get_passes_kwargs(self):
    opt = optimizers.get('momentum', learning_rate=0.1, momentum=0.5,
                         nesterov=True)
    self.assertTrue(opt.nesterov)
    self.assertEqual(opt.default_hparams, {'learning_rate': 0.1,
                                           'momentum': 0.5})

  def test_get_unknown_name(self):
    with self.assertRaisesRegex(ValueError, "'adagrad'.*'sgd'.*'adam'"):
      optimizers.get('adagrad', learning_rate=0.1)

  def test_get_unknown_kwarg(self):
    with self.assertRaisesRegex(ValueError, 'rho'):
      optimizers.get('adam', learning_rate=0.1, rho=0.9)


class DtypeAndStructureTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(*_ALL_OPTIMIZERS)
  def test_float64_preserved(self, make_opt):
    opt = make_opt()
    params, loss_fn = _problem(tf.float64)
    state = opt.init(params)
    for _ in range(2):
      with tf.GradientTape() as tape:
        tape.watch(params)
        loss = loss_fn(params)
      params, state = opt.update(
          tape.gradient(loss, params), state, params,
          hparams={'learning_rate': tf.constant(0.01, tf.float32)})
    for p in params:
      self.assertEqual(p.dtype, tf.float64)
    for leaf in tf.nest.flatten(state):
      if leaf.dtype.is_floating:
        self.assertEqual(leaf.dtype, tf.float64)
    self.assertLess(float(loss_fn(params)), float(loss_fn(_problem(
        tf.float64)[0])))

  @parameterized.named_parameters(*_ALL_OPTIMIZERS)
  def test_mixed_dtypes(self, make_opt):
    opt = make_opt()
    params = [tf.ones([2], tf.float32), tf.ones([3, 1], tf.float64)]
    grads = [tf.ones([2], tf.float32), tf.ones([3, 1], tf.float64)]
    new_params, _ = opt.update(
        grads, opt.init(params), params,
        hparams={'learning_rate': tf.constant(0.01, tf.float64)})
    self.assertEqual([p.dtype for p in new_params], [tf.float32, tf.float64])
    self.assertEqual([p.shape for p in new_params], [[2], [3, 1]])

  @parameterized.named_parameters(*_ALL_OPTIMIZERS)
  def test_none_gradient_is_zero(self, make_opt):
    opt = make_opt()
    params, _ = _problem(tf.float32)
    grads = [tf.ones_like(p) for p in params]
    state = opt.init(params)
    with_none, state_none = opt.update(grads[:2] + [None] + grads[3:], state,
                                       params)
    with_zero, state_zero = opt.update(
        grads[:2] + [tf.zeros_like(params[2])] + grads[3:], state, params)
    for a, b in zip(with_none, with_zero):
      self.assertAllEqual(a, b)
    tf.nest.map_structure(self.assertAllEqual, state_none, state_zero)

  @parameterized.named_parameters(_ALL_OPTIMIZERS[-1])
  def test_graph_mode_matches_eager(self, make_opt):
    opt = make_opt()
    params, loss_fn = _problem(tf.float32)

    def step(ps, st):
      with tf.GradientTape() as tape:
        tape.watch(ps)
        loss = loss_fn(ps)
      return opt.update(tape.gradient(loss, ps), st, ps)

    state = opt.init(params)
    eager, _ = step(params, state)
    graph, _ = tf.function(step)(params, state)
    self.assertAllClose(eager, graph, atol=1e-6, rtol=1e-6)

  def test_unknown_static_shapes(self):
    opt = optimizers.Adam(0.1)
    spec = tf.TensorSpec([None, 3], tf.float32)

    @tf.function(input_signature=[spec, spec, spec, spec])
    def step(p, g, m, v):
      state = optimizers.AdamState(count=tf.constant(0), mu=(m,), nu=(v,))
      new_params, _ = opt.update([g], state, [p],
                                 hparams={'learning_rate': tf.constant(0.5)})
      return new_params[0]

    ones = tf.ones([2, 3])
    zeros = tf.zeros([2, 3])
    # First Adam step moves each coordinate by ~lr * sign(g).
    self.assertAllClose(step(ones, ones, zeros, zeros), 0.5 * ones, atol=1e-5)

  def test_per_element_learning_rate(self):
    opt = optimizers.SGD(0.1)
    params = [tf.zeros([2, 3])]
    lr = tf.constant([1., 2., 3.])
    new_params, _ = opt.update([tf.ones([2, 3])], opt.init(params), params,
                               hparams={'learning_rate': lr})
    self.assertAllEqual(new_params[0], [[-1., -2., -3.]] * 2)



class PerSeedClippingTest(tf.test.TestCase):
  """`batch_dims=1`: each leading index is clipped by its own norm."""

  def test_each_row_is_clipped_as_if_alone(self):
    rng = np.random.default_rng(0)
    grads = [tf.constant(rng.normal(size=(3, 4, 2)) * s, tf.float32)
             for s in (1.0, 0.1)]
    grads.append(tf.constant([[0.01], [0.0], [5.0]], tf.float32))
    clipped = optimizers.clip_by_global_norm(grads, 1.5, batch_dims=1)
    for n in range(3):
      row = [g[n] for g in grads]
      want = optimizers.clip_by_global_norm(row, 1.5)
      for got, w in zip(clipped, want):
        self.assertAllClose(got[n], w, rtol=1e-6)
    # Rows 0 and 2 exceed the norm and are scaled; the global norm of all
    # rows would have scaled row 1 too.
    norms = [np.sqrt(sum(np.sum(np.square(g.numpy()[n])) for g in grads))
             for n in range(3)]
    self.assertGreater(max(norms), 1.5)
    opt = optimizers.GlobalNormClipped(optimizers.SGD(learning_rate=1.0),
                                       1.5, batch_dims=1)
    params = [tf.zeros_like(g) for g in grads]
    new, _ = opt.update(grads, opt.init(params), params)
    for got, want in zip(new, clipped):
      self.assertAllClose(got, -want)
    self.assertIn('batch_dims=1', repr(opt))

  def test_bad_batch_dims(self):
    with self.assertRaisesRegex(ValueError, 'batch_dims'):
      optimizers.clip_by_global_norm([tf.ones([2])], 1.0, batch_dims=2)
    with self.assertRaisesRegex(ValueError, 'batch_dims'):
      optimizers.GlobalNormClipped(optimizers.SGD(learning_rate=0.1), 1.0,
                                   batch_dims=-1)
    with self.assertRaisesRegex(ValueError, 'leading dimension'):
      optimizers.clip_by_global_norm([tf.ones([2, 3]), tf.ones([3])], 1.0,
                                     batch_dims=1)


if __name__ == '__main__':
  tf.test.main()


class GlobalNormClippedTest(tf.test.TestCase):

  def test_clips_to_the_norm_then_updates(self):
    params = [tf.constant([1.0, 2.0]), tf.constant([[0.5]])]
    grads = [tf.constant([3.0, 0.0]), tf.constant([[4.0]])]  # Norm 5.
    opt = optimizers.GlobalNormClipped(
        optimizers.SGD(learning_rate=0.1), clip_norm=1.0)
    new, _ = opt.update(grads, opt.init(params), params)
    self.assertAllClose(new[0], [1.0 - 0.1 * 0.6, 2.0])
    self.assertAllClose(new[1], [[0.5 - 0.1 * 0.8]])
    # Below the norm: unchanged gradients.
    loose = optimizers.GlobalNormClipped(
        optimizers.SGD(learning_rate=0.1), clip_norm=10.0)
    new, _ = loose.update(grads, loose.init(params), params)
    self.assertAllClose(new[0], [1.0 - 0.3, 2.0])
    self.assertEqual(loose.hparam_names, ('learning_rate',))

  def test_second_order_finite_at_zero_gradient(self):
    lr = tf.constant(0.1)
    x = tf.constant([0.0, 0.0])
    opt = optimizers.GlobalNormClipped(optimizers.SGD(learning_rate=0.1),
                                       clip_norm=1.0)
    with tf.GradientTape() as outer:
      outer.watch([lr, x])
      with tf.GradientTape() as inner:
        inner.watch(x)
        loss = tf.reduce_sum(tf.square(x))  # Gradient exactly zero at x=0.
      g = inner.gradient(loss, x)
      new, _ = opt.update([g], opt.init([x]), [x], {'learning_rate': lr})
      out = tf.reduce_sum(new[0])
    grads = outer.gradient(out, [lr, x])
    for v in grads:
      self.assertTrue(np.all(np.isfinite(v.numpy())))

  def test_bad_clip_norm(self):
    with self.assertRaisesRegex(ValueError, 'clip_norm'):
      optimizers.GlobalNormClipped(optimizers.SGD(learning_rate=0.1), 0.0)
    with self.assertRaisesRegex(ValueError, 'optimizer'):
      optimizers.GlobalNormClipped('sgd', 1.0)
