# coding=utf-8
"""Tests for bmg_tf.core.matching against NumPy closed forms."""

import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'

from absl.testing import parameterized  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from bmg_tf.core import matching

tfd = tfp.distributions


def _np_softmax(x):
  z = x - np.max(x, axis=-1, keepdims=True)
  e = np.exp(z)
  return e / np.sum(e, axis=-1, keepdims=True)


def _np_log_softmax(x):
  z = x - np.max(x, axis=-1, keepdims=True)
  return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


def _np_kl(t_logits, c_logits):
  """Per-state KL(softmax(t) || softmax(c)), shape t_logits.shape[:-1]."""
  p = _np_softmax(t_logits)
  return np.sum(p * (_np_log_softmax(t_logits) - _np_log_softmax(c_logits)),
                axis=-1)


class ParamL2Test(tf.test.TestCase, parameterized.TestCase):

  def _nests(self, dtype):
    rng = np.random.RandomState(0)
    target = {'w': rng.randn(3, 4).astype(dtype),
              'b': [rng.randn(4).astype(dtype), np.asarray(rng.randn(), dtype)]}
    current = {'w': rng.randn(3, 4).astype(dtype),
               'b': [rng.randn(4).astype(dtype), np.asarray(rng.randn(), dtype)]}
    return target, current

  @parameterized.parameters(np.float32, np.float64)
  def test_value_and_gradients(self, dtype):
    target_np, current_np = self._nests(dtype)
    expected = 0.5 * sum(
        np.sum((t - c)**2) for t, c in zip(tf.nest.flatten(target_np),
                                           tf.nest.flatten(current_np)))
    target = tf.nest.map_structure(tf.constant, target_np)
    current = tf.nest.map_structure(tf.Variable, current_np)
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(tf.nest.flatten(target))
      loss = matching.param_l2(target, current)
    self.assertEqual(loss.dtype, tf.as_dtype(dtype))
    self.assertEqual(loss.shape, ())
    self.assertAllClose(loss, expected, rtol=1e-6)
    grads_c = tape.gradient(loss, current)
    for g, t, c in zip(tf.nest.flatten(grads_c), tf.nest.flatten(target_np),
                       tf.nest.flatten(current_np)):
      self.assertAllClose(g, c - t, rtol=1e-6)
    grads_t = tape.gradient(loss, target)
    for g in tf.nest.flatten(grads_t):
      self.assertIsNone(g)

  def test_equal_params_zero(self):
    x = [tf.ones([2, 2]), tf.zeros([3])]
    self.assertAllClose(matching.param_l2(x, x), 0.0)

  def test_mismatched_structure_raises(self):
    with self.assertRaisesRegex(ValueError, 'target_params.*current_params'):
      matching.param_l2([tf.ones([2])], [tf.ones([2]), tf.ones([2])])
    with self.assertRaisesRegex(ValueError, 'target_params.*current_params'):
      matching.param_l2({'a': tf.ones([2])}, {'b': tf.ones([2])})

  def test_mismatched_shape_raises(self):
    with self.assertRaisesRegex(ValueError, 'target_params.*current_params'):
      matching.param_l2([tf.ones([2, 3])], [tf.ones([3, 2])])

  def test_empty_raises(self):
    with self.assertRaisesRegex(ValueError, 'at least one'):
      matching.param_l2([], [])

  def test_dtype_mismatch_raises(self):
    with self.assertRaises(TypeError):
      matching.param_l2([tf.ones([2], tf.float32)], [tf.ones([2], tf.float64)])


class PolicyKlTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.product(
      shape=[(5, 3), (4, 5, 3)],
      reduction=['mean', 'sum'],
      dtype=[np.float32, np.float64])
  def test_logits_closed_form(self, shape, reduction, dtype):
    rng = np.random.RandomState(1)
    t = (2.0 * rng.randn(*shape)).astype(dtype)
    c = (2.0 * rng.randn(*shape)).astype(dtype)
    per_state = _np_kl(t.astype(np.float64), c.astype(np.float64))
    expected = per_state.mean() if reduction == 'mean' else per_state.sum()
    got = matching.policy_kl(tf.constant(t), tf.constant(c), reduction)
    self.assertEqual(got.dtype, tf.as_dtype(dtype))
    self.assertEqual(got.shape, ())
    self.assertAllClose(got, expected, rtol=1e-5)
    # Same value from TFP Categorical objects (logits- and probs-built).
    got_dist = matching.policy_kl(
        tfd.Categorical(logits=tf.constant(t)),
        tfd.Categorical(logits=tf.constant(c)), reduction)
    self.assertAllClose(got_dist, expected, rtol=1e-5)
    got_probs = matching.policy_kl(
        tfd.Categorical(probs=tf.constant(_np_softmax(t))),
        tfd.Categorical(logits=tf.constant(c)), reduction)
    self.assertAllClose(got_probs, expected, rtol=1e-4)

  def test_argument_order(self):
    t = np.array([[3.0, 0.0, -2.0], [0.5, 2.0, -1.0]], np.float64)
    c = np.array([[0.0, 0.0, 0.0], [-2.0, 0.1, 1.5]], np.float64)
    forward = _np_kl(t, c).mean()
    backward = _np_kl(c, t).mean()
    self.assertGreater(abs(forward - backward), 0.1)  # Truly asymmetric.
    got = matching.policy_kl(tf.constant(t), tf.constant(c))
    self.assertAllClose(got, forward, rtol=1e-10)
    self.assertNotAllClose(got, backward)

  @parameterized.product(
      shape=[(6, 4), (2, 3, 4)], dtype=[np.float32, np.float64])
  def test_gradient_closed_form(self, shape, dtype):
    rng = np.random.RandomState(2)
    t_np = rng.randn(*shape).astype(dtype)
    c_np = rng.randn(*shape).astype(dtype)
    num_states = int(np.prod(shape[:-1]))
    t = tf.constant(t_np)
    c = tf.constant(c_np)
    with tf.GradientTape(persistent=True) as tape:
      tape.watch([t, c])
      loss = matching.policy_kl(t, c, 'mean')
    expected = (_np_softmax(c_np) - _np_softmax(t_np)) / num_states
    self.assertAllClose(tape.gradient(loss, c), expected, rtol=1e-5, atol=1e-7)
    self.assertIsNone(tape.gradient(loss, t))

    with tf.GradientTape() as tape:
      tape.watch([t, c])
      loss_sum = matching.policy_kl(t, c, 'sum')
    self.assertAllClose(tape.gradient(loss_sum, c),
                        expected * num_states, rtol=1e-5, atol=1e-6)

  def test_no_gradient_to_target_distribution(self):
    t_logits = tf.Variable([[1.0, 2.0, 0.5]])
    t_probs = tf.Variable([[0.2, 0.3, 0.5]])
    c_logits = tf.Variable([[0.0, 1.0, -1.0]])
    with tf.GradientTape(persistent=True) as tape:
      l1 = matching.policy_kl(tfd.Categorical(logits=t_logits),
                              tfd.Categorical(logits=c_logits))
      l2 = matching.policy_kl(tfd.Categorical(probs=t_probs), c_logits)
    self.assertIsNone(tape.gradient(l1, t_logits))
    self.assertIsNone(tape.gradient(l2, t_probs))
    self.assertIsNotNone(tape.gradient(l1, c_logits))
    self.assertIsNotNone(tape.gradient(l2, c_logits))

  @parameterized.parameters(np.float32, np.float64)
  def test_one_hot_target(self, dtype):
    actions = np.array([0, 2, 1, 2])
    one_hot = np.eye(3, dtype=dtype)[actions]
    c_np = np.array([[1.0, 0.0, -1.0], [0.3, 0.2, 0.1], [2.0, -1.0, 0.0],
                     [0.0, 0.0, 0.0]], dtype)
    log_q = _np_log_softmax(c_np.astype(np.float64))
    expected = -np.mean(log_q[np.arange(4), actions])
    expected_grad = (_np_softmax(c_np.astype(np.float64)) - one_hot) / 4.0
    c = tf.Variable(c_np)
    target_probs = tf.constant(one_hot)
    for target in (tfd.Categorical(probs=target_probs),
                   tf.math.log(target_probs)):  # Logits with -inf entries.
      with tf.GradientTape() as tape:
        tape.watch(target_probs)
        loss = matching.policy_kl(target, c)
      self.assertTrue(np.isfinite(loss.numpy()))
      self.assertAllClose(loss, expected, rtol=1e-5)
      grad = tape.gradient(loss, c)
      self.assertTrue(np.all(np.isfinite(grad.numpy())))
      self.assertAllClose(grad, expected_grad, rtol=1e-5, atol=1e-7)

  def test_bad_reduction_raises(self):
    with self.assertRaisesRegex(ValueError, 'reduction'):
      matching.policy_kl(tf.zeros([2, 3]), tf.zeros([2, 3]), reduction='max')

  def test_shape_mismatch_raises(self):
    with self.assertRaisesRegex(ValueError, 'batch shape'):
      matching.policy_kl(tf.zeros([2, 3]), tf.zeros([4, 2, 3]))
    with self.assertRaisesRegex(ValueError, 'batch shape'):
      matching.policy_kl(tf.zeros([2, 3]), tf.zeros([2, 4]))

  def test_as_categorical(self):
    logits = tf.constant([[1.0, 2.0, 3.0]])
    cat = matching.as_categorical(logits)
    self.assertIsInstance(cat, tfd.Categorical)
    self.assertAllClose(cat.probs_parameter(), _np_softmax(logits.numpy()))
    self.assertIs(matching.as_categorical(cat), cat)
    one_hot_cat = matching.as_categorical(tfd.OneHotCategorical(logits=logits))
    self.assertIsInstance(one_hot_cat, tfd.Categorical)
    self.assertAllClose(one_hot_cat.probs_parameter(),
                        _np_softmax(logits.numpy()))
    with self.assertRaises(TypeError):
      matching.as_categorical(tfd.Normal(0.0, 1.0))
    with self.assertRaises(TypeError):
      matching.as_categorical(tf.constant([[1, 2]]))


class ValueL2Test(tf.test.TestCase, parameterized.TestCase):

  @parameterized.product(
      reduction=['mean', 'sum'], dtype=[np.float32, np.float64])
  def test_closed_form_and_gradient(self, reduction, dtype):
    rng = np.random.RandomState(3)
    t_np = rng.randn(4, 5).astype(dtype)
    c_np = rng.randn(4, 5).astype(dtype)
    sq = 0.5 * (t_np.astype(np.float64) - c_np)**2
    expected = sq.mean() if reduction == 'mean' else sq.sum()
    scale = 1.0 / t_np.size if reduction == 'mean' else 1.0
    t = tf.constant(t_np)
    c = tf.constant(c_np)
    with tf.GradientTape(persistent=True) as tape:
      tape.watch([t, c])
      loss = matching.value_l2(t, c, reduction)
    self.assertEqual(loss.dtype, tf.as_dtype(dtype))
    self.assertAllClose(loss, expected, rtol=1e-6)
    self.assertAllClose(tape.gradient(loss, c), (c_np - t_np) * scale,
                        rtol=1e-6)
    self.assertIsNone(tape.gradient(loss, t))

  def test_errors(self):
    with self.assertRaisesRegex(ValueError, 'reduction'):
      matching.value_l2(tf.zeros([3]), tf.zeros([3]), reduction='avg')
    with self.assertRaisesRegex(ValueError, 'same shape'):
      matching.value_l2(tf.zeros([3]), tf.zeros([3, 1]))


class MatchingSpecTest(tf.test.TestCase, parameterized.TestCase):

  def test_names_and_immutability(self):
    spec = matching.MatchingSpec({'value_l2': 0.5, 'policy_kl': 1.0,
                                  'param_l2': 0.0})
    self.assertEqual(spec.names, ('policy_kl', 'value_l2'))
    self.assertEqual(spec.reduction, 'mean')
    self.assertEqual(spec.weights['param_l2'], 0.0)
    with self.assertRaises(AttributeError):
      spec.reduction = 'sum'  # pytype: disable=not-writable
    with self.assertRaises(TypeError):
      spec.weights['value_l2'] = 3.0  # pytype: disable=unsupported-operands
    self.assertEqual(spec, matching.MatchingSpec(
        {'policy_kl': 1.0, 'value_l2': 0.5, 'param_l2': 0.0}))

  def test_bad_name_raises(self):
    with self.assertRaisesRegex(ValueError, 'policy_KL') as cm:
      matching.MatchingSpec({'policy_KL': 1.0})
    for name in matching.MATCHING_NAMES:
      self.assertIn(name, str(cm.exception))

  @parameterized.parameters(-1.0, float('nan'), float('inf'))
  def test_bad_weight_raises(self, weight):
    with self.assertRaisesRegex(ValueError, 'value_l2'):
      matching.MatchingSpec({'value_l2': weight})

  def test_empty_and_all_zero_raise(self):
    with self.assertRaises(ValueError):
      matching.MatchingSpec({})
    with self.assertRaises(ValueError):
      matching.MatchingSpec({'param_l2': 0.0})

  def test_bad_reduction_raises(self):
    with self.assertRaisesRegex(ValueError, 'reduction'):
      matching.MatchingSpec({'param_l2': 1.0}, reduction='none')

  @parameterized.parameters(np.float32, np.float64)
  def test_combine_closed_form(self, dtype):
    spec = matching.MatchingSpec({'policy_kl': 1.5, 'value_l2': 0.25,
                                  'param_l2': 0.0})
    terms = {'policy_kl': tf.constant(2.0, dtype),
             'value_l2': tf.constant(3.0, dtype),
             'param_l2': tf.constant(100.0, dtype)}
    total, used = matching.combine(spec, terms)
    self.assertEqual(total.dtype, tf.as_dtype(dtype))
    self.assertAllClose(total, 1.5 * 2.0 + 0.25 * 3.0)
    self.assertEqual(sorted(used), ['policy_kl', 'value_l2'])
    self.assertAllClose(used['policy_kl'], 2.0)  # Unweighted.
    self.assertAllClose(used['value_l2'], 3.0)

  def test_combine_end_to_end_gradient(self):
    spec = matching.MatchingSpec({'policy_kl': 2.0, 'value_l2': 0.5})
    t_logits = np.array([[1.0, 0.0], [0.0, 2.0]])
    c_logits = tf.Variable([[0.0, 0.5], [1.0, -1.0]], dtype=tf.float64)
    t_v = np.array([1.0, -1.0])
    c_v = tf.Variable([0.0, 0.5], dtype=tf.float64)
    with tf.GradientTape() as tape:
      terms = {
          'policy_kl': matching.policy_kl(t_logits, c_logits, spec.reduction),
          'value_l2': matching.value_l2(t_v, c_v, spec.reduction)}
      total, _ = matching.combine(spec, terms)
    expected = (2.0 * _np_kl(t_logits, c_logits.numpy()).mean() +
                0.5 * np.mean(0.5 * (t_v - c_v.numpy())**2))
    self.assertAllClose(total, expected)
    g_logits, g_v = tape.gradient(total, [c_logits, c_v])
    self.assertAllClose(
        g_logits, 2.0 * (_np_softmax(c_logits.numpy()) - _np_softmax(t_logits))
        / 2.0)
    self.assertAllClose(g_v, 0.5 * (c_v.numpy() - t_v) / 2.0)

  def test_combine_errors(self):
    spec = matching.MatchingSpec({'policy_kl': 1.0, 'value_l2': 0.5})
    with self.assertRaisesRegex(ValueError, 'value_l2'):
      matching.combine(spec, {'policy_kl': tf.constant(1.0)})
    with self.assertRaisesRegex(ValueError, 'valu_l2'):
      matching.combine(spec, {'policy_kl': tf.constant(1.0),
                              'value_l2': tf.constant(1.0),
                              'valu_l2': tf.constant(1.0)})
    with self.assertRaisesRegex(ValueError, 'scalar'):
      matching.combine(spec, {'policy_kl': tf.ones([2]),
                              'value_l2': tf.constant(1.0)})


if __name__ == '__main__':
  tf.test.main()
