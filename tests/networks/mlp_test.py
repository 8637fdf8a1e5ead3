"""Tests for the MLP's functional call (bmg_tf.networks.mlp)."""

import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'

from absl.testing import parameterized  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

from bmg_tf.networks import mlp


class MLPTest(parameterized.TestCase, tf.test.TestCase):

  def test_call_equals_apply_on_own_variables(self):
    net = mlp.MLP((16, 8), output_size=4, input_dim=5)
    x = tf.random.normal([7, 5], seed=1)
    self.assertAllClose(net(x), net.apply(net.params, x), rtol=0, atol=0)
    self.assertEqual(net(x).shape, (7, 4))
    self.assertLen(net.params, 6)

  def test_apply_matches_numpy_forward(self):
    net = mlp.MLP((6,), output_size=2, activation='relu', input_dim=3)
    params = [tf.random.normal(p.shape, seed=i)
              for i, p in enumerate(net.params)]
    x = np.random.RandomState(0).randn(4, 3).astype(np.float32)
    w0, b0, w1, b1 = [p.numpy() for p in params]
    want = np.maximum(x @ w0 + b0, 0) @ w1 + b1
    self.assertAllClose(net.apply(params, x), want, rtol=1e-5, atol=1e-6)

  def test_rank3_inputs(self):
    net = mlp.MLP((6,), output_size=2, input_dim=3)
    x = tf.random.normal([2, 4, 3])
    self.assertAllClose(net(x)[1], net(x[1]), rtol=1e-6)

  @parameterized.parameters('tanh', 'relu')
  def test_second_order_gradient_matches_finite_differences(self, act):
    # d/d lr of L(x_0 - lr * dL/dx (x_0)): needs the gradient of a gradient
    # through the functional call.
    net = mlp.MLP((8,), output_size=1, activation=act, input_dim=3,
                  dtype=tf.float64)
    rng = np.random.RandomState(0)
    x = tf.constant(rng.randn(10, 3))
    y = tf.constant(rng.randn(10, 1))
    params0 = [tf.constant(p.numpy()) for p in net.params]

    def loss(params):
      return tf.reduce_mean(tf.square(net.apply(params, x) - y))

    def after_step(lr):
      with tf.GradientTape() as tape:
        tape.watch(params0)
        l0 = loss(params0)
      grads = tape.gradient(l0, params0)
      return loss([p - lr * g for p, g in zip(params0, grads)])

    lr = tf.constant(0.3, tf.float64)
    with tf.GradientTape() as outer:
      outer.watch(lr)
      l1 = after_step(lr)
    got = outer.gradient(l1, lr)
    eps = 1e-6
    want = (after_step(lr + eps) - after_step(lr - eps)) / (2 * eps)
    self.assertAllClose(got, want, rtol=1e-6)
    self.assertGreater(abs(float(want)), 1e-4)

  def test_bad_params(self):
    net = mlp.MLP((4,), output_size=2, input_dim=3)
    x = tf.zeros([1, 3])
    with self.assertRaisesRegex(ValueError, 'params: expected 4 tensors'):
      net.apply(net.params[:2], x)
    bad = list(net.params)
    bad[0] = tf.zeros([5, 4])
    with self.assertRaisesRegex(ValueError, r'params\[0\]: expected shape'):
      net.apply(bad, x)
    bad[0] = tf.zeros([3, 4], tf.float64)
    with self.assertRaisesRegex(ValueError, r'params\[0\]: expected dtype'):
      net.apply(bad, x)

  def test_bad_sizes(self):
    with self.assertRaisesRegex(ValueError, 'hidden_sizes'):
      mlp.MLP((4, 0))
    with self.assertRaisesRegex(ValueError, 'output_size'):
      mlp.MLP((4,), output_size=-1)



class SeededMLPTest(parameterized.TestCase, tf.test.TestCase):
  """`num_seeds=N`: N independent networks along a seed axis."""

  def _nets(self, num_seeds=3, seed=4):
    batched = mlp.MLP((6, 5), output_size=2, input_dim=3, seed=seed,
                      num_seeds=num_seeds)
    singles = [mlp.MLP((6, 5), output_size=2, input_dim=3, seed=seed + n)
               for n in range(num_seeds)]
    return batched, singles

  def test_network_n_is_initialised_as_the_single_net_with_seed_plus_n(self):
    batched, singles = self._nets()
    for n, single in enumerate(singles):
      for got, want in zip(batched.params, single.params):
        self.assertEqual(got.shape, [3] + want.shape.as_list())
        self.assertAllEqual(got.numpy()[n], want.numpy())
    # The seeds differ, so the stacked kernels are not copies.
    self.assertNotAllClose(batched.params[0][0], batched.params[0][1])

  @parameterized.parameters(False, True)
  def test_rows_go_through_their_own_network(self, jit_compile):
    batched, _ = self._nets()
    params = [tf.random.normal(p.shape, seed=i)
              for i, p in enumerate(batched.params)]
    x = np.random.RandomState(0).randn(4, 2, 3, 3).astype(np.float32)
    got = tf.function(batched.apply, jit_compile=jit_compile)(params, x)
    self.assertEqual(got.shape, (4, 2, 3, 2))
    p = [v.numpy() for v in params]
    for n in range(3):
      h = np.maximum(x[:, :, n] @ p[0][n] + p[1][n], 0)
      h = np.maximum(h @ p[2][n] + p[3][n], 0)
      want = h @ p[4][n] + p[5][n]
      self.assertAllClose(got[:, :, n], want, rtol=1e-5, atol=1e-5)

  def test_gradients_are_per_network(self):
    batched, singles = self._nets(num_seeds=2)
    x = tf.random.normal([7, 2, 3], seed=3)
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(tf.square(batched(x)))
    grads = tape.gradient(loss, batched.params)
    for n, single in enumerate(singles):
      with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(single(x[:, n])))
      for got, want in zip(grads, tape.gradient(loss, single.params)):
        self.assertAllClose(got[n], want, rtol=1e-5, atol=1e-6)

  def test_bad_seed_axis_and_num_seeds(self):
    batched, _ = self._nets()
    with self.assertRaisesRegex(ValueError, 'num_seeds=3'):
      batched(tf.zeros([4, 2, 3]))
    with self.assertRaisesRegex(ValueError, 'num_seeds=3'):
      batched(tf.zeros([3]))
    for bad in (0, -2, 1.5, True):
      with self.assertRaisesRegex(ValueError, 'num_seeds'):
        mlp.MLP((4,), output_size=1, num_seeds=bad)


if __name__ == '__main__':
  tf.test.main()
