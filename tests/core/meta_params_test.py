"""Tests for bmg_tf.core.meta_params."""

import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'

import math  # pylint: disable=g-import-not-at-top

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from bmg_tf.core import meta_params


class MetaParameterTest(parameterized.TestCase, tf.test.TestCase):

  @parameterized.parameters(('sigmoid', 0.3), ('exp', 0.05),
                            ('identity', -2.5))
  def test_initial_value_and_gradient(self, transform, value):
    p = meta_params.MetaParameter(value, transform)
    with tf.GradientTape() as tape:
      v = p()
    self.assertAllClose(v, value, rtol=1e-6)
    g = tape.gradient(v, p.raw)
    want = {'sigmoid': value * (1 - value), 'exp': value,
            'identity': 1.0}[transform]
    self.assertAllClose(g, want, rtol=1e-5)

  @parameterized.parameters((0.0, 'sigmoid'), (1.0, 'sigmoid'),
                            (-1.0, 'exp'), (float('nan'), 'identity'),
                            (float('inf'), 'exp'), ('abc', 'sigmoid'))
  def test_bad_initial_values(self, value, transform):
    with self.assertRaisesRegex(ValueError, 'entropy'):
      meta_params.MetaParameter(value, transform, name='entropy')

  @parameterized.parameters('identity', 'exp', 'sigmoid')
  def test_array_initial_values(self, transform):
    value = np.array([[0.2, 0.7], [0.4, 0.9]])
    p = meta_params.MetaParameter(value, transform, num_seeds=3)
    self.assertEqual(p.raw.shape, (3, 2, 2))
    self.assertAllClose(p(), np.broadcast_to(value, (3, 2, 2)), rtol=1e-6)

  def test_bad_array_initial_values(self):
    with self.assertRaisesRegex(ValueError, 'init_0.*finite'):
      meta_params.MetaParameter([1.0, np.nan], 'identity', name='init_0')
    with self.assertRaisesRegex(ValueError, r'init_0.*\(0, inf\)'):
      meta_params.MetaParameter([1.0, -1.0], 'exp', name='init_0')

  def test_unknown_transform(self):
    with self.assertRaisesRegex(ValueError, 'softmax'):
      meta_params.MetaParameter(0.5, 'softmax')


class ContextualTest(tf.test.TestCase):

  def test_starts_at_init_values_for_any_context(self):
    ctx = meta_params.ContextualMetaParameters(
        context_dim=10, init_values={'entropy': 0.01, 'lr': 0.1},
        transforms={'lr': 'exp'})
    for context in (tf.zeros([10]), tf.random.normal([10], seed=3)):
      out = ctx(context)
      self.assertAllClose(out['entropy'], 0.01, rtol=1e-5)
      self.assertAllClose(out['lr'], 0.1, rtol=1e-5)
    batched = ctx(tf.random.normal([4, 10]))
    self.assertEqual(batched['entropy'].shape, (4,))

  def test_context_carries_no_gradient(self):
    ctx = meta_params.ContextualMetaParameters(
        context_dim=3, init_values={'entropy': 0.2})
    # Move the output layer off zero so the output depends on the context.
    ctx.net.params[-2].assign(tf.ones_like(ctx.net.params[-2]))
    context = tf.constant([1.0, -2.0, 0.5])
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(context)
      out = ctx(context)['entropy']
    self.assertIsNone(tape.gradient(out, context))
    grads = tape.gradient(out, ctx.net.params)
    self.assertTrue(all(g is not None for g in grads))
    self.assertGreater(float(tf.linalg.global_norm(grads)), 0.0)

  def test_wrong_context_size(self):
    ctx = meta_params.ContextualMetaParameters(
        context_dim=3, init_values={'entropy': 0.2})
    with self.assertRaisesRegex(ValueError, 'context'):
      ctx(tf.zeros([4]))

  def test_random_output_layer(self):
    zero = meta_params.ContextualMetaParameters(
        context_dim=4, init_values={'entropy': 0.5}, seed=1)
    rand = meta_params.ContextualMetaParameters(
        context_dim=4, init_values={'entropy': 0.5}, seed=1,
        output_kernel_scale=1.0)
    self.assertAllEqual(zero.net.params[-2], tf.zeros([32, 1]))
    self.assertGreater(float(tf.reduce_max(tf.abs(rand.net.params[-2]))), 0)
    # Both start at the initial value at a zero context; only the random
    # one depends on the context, and its hidden layer gets a meta-gradient
    # from the first step.
    self.assertAllClose(rand(tf.zeros([4]))['entropy'], 0.5, rtol=1e-6)
    contexts = tf.random.normal([16, 4], seed=2)
    self.assertAllClose(zero(contexts)['entropy'], tf.fill([16], 0.5))
    self.assertGreater(float(tf.math.reduce_std(rand(contexts)['entropy'])),
                       1e-3)
    with tf.GradientTape() as tape:
      out = tf.reduce_sum(rand(contexts)['entropy'])
    hidden_kernel_grad = tape.gradient(out, rand.net.params[0])
    self.assertGreater(float(tf.norm(hidden_kernel_grad)), 0.0)
    with tf.GradientTape() as tape:
      out = tf.reduce_sum(zero(contexts)['entropy'])
    self.assertAllEqual(tape.gradient(out, zero.net.params[0]),
                        tf.zeros([4, 32]))
    for bad in (-1.0, float('nan'), 'big'):
      with self.assertRaisesRegex(ValueError, 'output_kernel_scale'):
        meta_params.ContextualMetaParameters(
            context_dim=4, init_values={'entropy': 0.5},
            output_kernel_scale=bad)


class MetaParametersTest(tf.test.TestCase):

  def test_learn_mask(self):
    meta = meta_params.MetaParameters(
        {'gamma': meta_params.MetaParameter(0.99, name='gamma'),
         'lam': meta_params.MetaParameter(0.9, name='lam'),
         'fixed': 0.5},
        learn=['gamma'])
    self.assertEqual(meta.learned_names, ('gamma',))
    self.assertLen(meta.trainable_variables, 1)
    with tf.GradientTape(persistent=True) as tape:
      values = meta()
      total = values['gamma'] + values['lam'] + values['fixed']
    self.assertAllClose(values['fixed'], 0.5)
    grads = tape.gradient(total, [meta.scalars['gamma'].raw,
                                  meta.scalars['lam'].raw])
    self.assertGreater(abs(float(grads[0])), 0)
    self.assertIsNone(grads[1])  # Masked: stop-gradient.

  def test_bad_learn_names(self):
    with self.assertRaisesRegex(ValueError, 'learn'):
      meta_params.MetaParameters({'fixed': 0.5}, learn=['fixed'])
    with self.assertRaisesRegex(ValueError, 'learn'):
      meta_params.MetaParameters({}, learn=['nope'])

  def test_contextual_in_collection(self):
    ctx = meta_params.ContextualMetaParameters(
        context_dim=2, init_values={'entropy': 0.3})
    meta = meta_params.MetaParameters({'gamma': 0.99}, contextual=ctx)
    self.assertTrue(meta.needs_context)
    self.assertAllClose(meta(tf.zeros([2]))['entropy'], 0.3, rtol=1e-5)
    self.assertLen(meta.trainable_variables, len(ctx.net.params))


class MetaOptimizerTest(tf.test.TestCase):

  def test_clipping_bounds_the_update(self):
    v = tf.Variable([0.0, 0.0])
    sgd = tf.keras.optimizers.SGD(learning_rate=1.0)
    opt = meta_params.MetaOptimizer(clip_global_norm=1.0, optimizer=sgd)
    norm = opt.apply([tf.constant([3.0, 4.0])], [v])
    self.assertAllClose(norm, 5.0)
    self.assertAllClose(v, [-0.6, -0.8], rtol=1e-6)

  def test_default_is_adam_with_paper_epsilon(self):
    opt = meta_params.MetaOptimizer(learning_rate=0.01)
    self.assertIsInstance(opt.optimizer, tf.keras.optimizers.Adam)
    self.assertAllClose(opt.optimizer.epsilon, 1e-4)
    v = tf.Variable(1.0)
    opt.apply([tf.constant(2.0)], [v])
    # Keras Adam's first step: lr * sqrt(1-b2)/(1-b1) * m / (sqrt(v) + eps)
    # with m = (1-b1) g and v = (1-b2) g^2; eps = 1e-4 shows in the 4th digit.
    m, vv = 0.1 * 2.0, 0.001 * 4.0
    want = 0.01 * math.sqrt(0.001) / 0.1 * m / (math.sqrt(vv) + 1e-4)
    self.assertAllClose(1.0 - float(v), want, rtol=1e-5)

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, 'learning_rate'):
      meta_params.MetaOptimizer(learning_rate=math.nan)
    with self.assertRaisesRegex(ValueError, 'clip_global_norm'):
      meta_params.MetaOptimizer(clip_global_norm=-1.0)



class SeededMetaParametersTest(tf.test.TestCase):
  """`num_seeds=N`: one independent meta-parameter per seed."""

  def test_scalar_meta_parameter_per_seed(self):
    p = meta_params.MetaParameter(0.2, 'sigmoid', num_seeds=3)
    self.assertEqual(p.raw.shape, (3,))
    self.assertAllClose(p(), [0.2] * 3, rtol=1e-6)
    with self.assertRaisesRegex(ValueError, 'num_seeds'):
      meta_params.MetaParameter(0.2, num_seeds=0)

  def test_contextual_network_n_equals_single_network_with_seed_plus_n(self):
    batched = meta_params.ContextualMetaParameters(
        4, {'a': 0.3, 'b': 2.0}, transforms={'b': 'exp'}, hidden_sizes=(5,),
        seed=7, num_seeds=2)
    singles = [meta_params.ContextualMetaParameters(
        4, {'a': 0.3, 'b': 2.0}, transforms={'b': 'exp'}, hidden_sizes=(5,),
        seed=7 + n) for n in range(2)]
    # Move the output layers off zero, so the context matters.
    rng = np.random.default_rng(1)
    for v in batched.net.params:
      v.assign(v + rng.normal(size=v.shape).astype(np.float32) * 0.1)
    for n, single in enumerate(singles):
      for sv, bv in zip(single.net.params, batched.net.params):
        sv.assign(bv[n])
    ctx = rng.normal(size=(6, 2, 4)).astype(np.float32)
    got = batched(ctx)
    self.assertEqual(got['a'].shape, (6, 2))
    for n, single in enumerate(singles):
      want = single(ctx[:, n])
      for k in ('a', 'b'):
        self.assertAllClose(got[k][:, n], want[k], rtol=1e-5)
    with self.assertRaisesRegex(ValueError, 'one per seed'):
      batched(ctx[0, 0])

  def test_meta_optimizer_clips_each_seed_alone(self):
    variables = [tf.Variable(tf.zeros([2, 3])), tf.Variable(tf.zeros([2]))]
    grads = [tf.constant([[3.0, 0.0, 0.0], [0.1, 0.0, 0.0]]),
             tf.constant([4.0, 0.0])]  # Seed norms 5 and 0.1.
    opt = meta_params.MetaOptimizer(
        optimizer=tf.keras.optimizers.SGD(learning_rate=1.0),
        clip_global_norm=1.0, clip_batch_dims=1)
    opt.apply(grads, variables)
    self.assertAllClose(variables[0], [[-0.6, 0, 0], [-0.1, 0, 0]])
    self.assertAllClose(variables[1], [-0.8, 0.0])
    with self.assertRaisesRegex(ValueError, 'clip_batch_dims'):
      meta_params.MetaOptimizer(clip_batch_dims=2)


if __name__ == '__main__':
  np.random.seed(0)
  tf.test.main()
