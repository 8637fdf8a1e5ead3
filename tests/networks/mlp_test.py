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


if __name__ == '__main__':
  tf.test.main()
