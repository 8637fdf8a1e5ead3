"""Tests for the convolutional torsos' functional call (networks.torsos)."""

import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'

from absl.testing import parameterized  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

from bmg_tf.networks import torsos


class TorsosTest(parameterized.TestCase, tf.test.TestCase):

  @parameterized.parameters(('nature', (84, 84, 4), 512, 8),
                            ('impala', (84, 84, 4), 256, 32),
                            ('impala', (10, 10, 4), 256, 32),
                            ('minatar', (10, 10, 6), 128, 4))
  def test_shapes_and_call_equals_apply(self, name, shape, emb, n_params):
    net = torsos.make_torso(name, shape, seed=1)
    self.assertLen(net.params, n_params)
    self.assertEqual(net.embedding_size, emb)
    x = tf.random.uniform([2, 3] + list(shape), seed=2)
    out = net(x)
    self.assertEqual(out.shape, (2, 3, emb))
    self.assertAllClose(out, net.apply(net.params, x), rtol=0, atol=0)
    # Leading axes are flattened and restored: [2, 3] == two [3] batches.
    self.assertAllClose(out[1], net(x[1]), rtol=1e-5, atol=1e-6)
    self.assertTrue(np.all(out.numpy() >= 0.0))  # A final ReLU.

  def test_minatar_matches_numpy_forward(self):
    net = torsos.MinAtarCNN(filters=3, embedding_size=5, seed=0,
                            input_shape=(4, 5, 2))
    rng = np.random.RandomState(0)
    params = [rng.normal(size=p.shape).astype(np.float32)
              for p in net.params]
    x = rng.uniform(size=(2, 4, 5, 2)).astype(np.float32)
    k, b, w, c = params
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    conv = np.zeros((2, 4, 5, 3), np.float32)
    for i in range(4):
      for j in range(5):
        patch = padded[:, i:i + 3, j:j + 3, :]  # [N, 3, 3, C]
        conv[:, i, j, :] = np.einsum('nhwc,hwco->no', patch, k) + b
    h = np.maximum(conv, 0).reshape(2, -1)
    want = np.maximum(h @ w + c, 0)
    got = net.apply([tf.constant(p) for p in params], x)
    self.assertAllClose(got, want, rtol=1e-4, atol=1e-5)

  @parameterized.parameters('impala', 'nature')
  def test_second_order_gradient_matches_finite_differences(self, name):
    # d/d lr of L(x0 - lr * dL/dx(x0)): a gradient through a gradient,
    # through convolutions, max-pooling and residual connections.
    shape = (84, 84, 1) if name == 'nature' else (12, 12, 2)
    net = torsos.TORSOS[name](embedding_size=4, seed=3, input_shape=shape)
    x = tf.random.uniform([3] + list(shape), seed=4)
    params0 = [tf.cast(p, tf.float64) for p in net.params]

    def loss(params):
      out = net.apply([tf.cast(p, tf.float32) for p in params], x)
      return tf.reduce_mean(tf.square(tf.cast(out, tf.float64) - 0.5))

    def after_step(lr):
      with tf.GradientTape() as tape:
        tape.watch(params0)
        l0 = loss(params0)
      grads = tape.gradient(l0, params0)
      return loss([p - lr * g for p, g in zip(params0, grads)])

    lr = tf.constant(0.05, tf.float64)
    with tf.GradientTape() as tape:
      tape.watch(lr)
      value = after_step(lr)
    analytic = float(tape.gradient(value, lr))
    eps = 1e-2
    numeric = float((after_step(lr + eps) - after_step(lr - eps)) / (2 * eps))
    self.assertNotEqual(analytic, 0.0)
    self.assertAllClose(analytic, numeric, rtol=5e-2, atol=1e-6)

  def test_errors(self):
    with self.assertRaisesRegex(ValueError, 'torso: unknown'):
      torsos.make_torso('resnet50', (84, 84, 4))
    with self.assertRaisesRegex(ValueError, 'input_shape'):
      torsos.make_torso('nature', (84, 84))
    with self.assertRaisesRegex(ValueError, 'too small'):
      torsos.make_torso('nature', (10, 10, 4))
    net = torsos.make_torso('minatar', (10, 10, 4))
    with self.assertRaisesRegex(ValueError, 'must end in'):
      net(tf.zeros([2, 10, 10, 3]))
    with self.assertRaisesRegex(ValueError, 'params'):
      net.apply(net.params[:-1], tf.zeros([2, 10, 10, 4]))
    with self.assertRaisesRegex(ValueError, 'channels'):
      torsos.ImpalaResNet(channels=())


if __name__ == '__main__':
  tf.test.main()
