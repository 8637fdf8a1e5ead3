"""Task-batched networks against per-task references built from plain TF ops."""

import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest
import tensorflow as tf

from bmg_tf.few_shot import networks


def _task_params(net, tasks, seed=0):
  """Different weights per task: the initialisation of seed + t."""
  per_task = [net.initial_params(seed + t) for t in range(tasks)]
  rng = np.random.default_rng(seed)
  # Perturb biases, scales and offsets so that no parameter is trivial.
  return [tf.constant(np.stack([p[i] for p in per_task]) +
                      0.1 * rng.standard_normal((tasks,) + per_task[0][i].shape
                                                ).astype(np.float32))
          for i in range(len(per_task[0]))]


def _reference_conv_net(params, x, blocks, pooling):
  """One task through the conv net with tf.nn.conv2d and tf.nn.moments."""
  stride = 2 if pooling == 'stride' else 1
  for b in range(blocks):
    kernel, bias, scale, offset = params[4 * b:4 * b + 4]
    x = tf.nn.conv2d(x, kernel, stride, 'SAME') + bias
    mean, var = tf.nn.moments(x, axes=[0, 1, 2])
    x = tf.nn.batch_normalization(x, mean, var, offset, scale, 1e-5)
    x = tf.nn.relu(x)
    if pooling == 'max':
      x = tf.nn.max_pool2d(x, 2, 2, 'VALID')
  x = tf.reshape(x, [x.shape[0], -1])
  return tf.matmul(x, params[-2]) + params[-1]


@pytest.mark.parametrize('pooling, size', [('max', 21), ('stride', 9),
                                           ('stride', 8)])
@pytest.mark.parametrize('jit', [False, True])
def test_conv_net_runs_each_task_through_its_own_weights(pooling, size, jit):
  net = networks.TaskConvNet((size, size, 2), num_classes=3, filters=4,
                             blocks=2, pooling=pooling)
  tasks = 3
  params = _task_params(net, tasks)
  x = tf.random.stateless_uniform([tasks, 5, size, size, 2], [1, 2])
  apply = tf.function(net.apply, jit_compile=jit, autograph=False)
  got = apply(params, x)
  assert got.shape == (tasks, 5, 3)
  for t in range(tasks):
    want = _reference_conv_net([p[t] for p in params], x[t], 2, pooling)
    np.testing.assert_allclose(got[t], want, rtol=2e-4, atol=2e-4)


def test_conv_net_second_order_gradient_matches_the_reference():
  net = networks.TaskConvNet((6, 6, 1), num_classes=2, filters=3, blocks=1,
                             pooling='max')
  params = _task_params(net, 2)
  x = tf.random.stateless_uniform([2, 4, 6, 6, 1], [3, 4])

  def second_order(forward):
    with tf.GradientTape() as outer:
      outer.watch(params)
      with tf.GradientTape() as inner:
        inner.watch(params)
        loss = tf.reduce_sum(tf.square(forward(params)))
      grads = inner.gradient(loss, params)
      adapted = [p - 0.1 * g for p, g in zip(params, grads)]
      loss = tf.reduce_sum(tf.sin(forward(adapted)))
    return outer.gradient(loss, params)

  got = second_order(lambda p: net.apply(p, x))
  want = second_order(lambda p: tf.stack([
      _reference_conv_net([q[t] for q in p], x[t], 1, 'max')
      for t in range(2)]))
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-4)


def test_mlp_runs_each_task_through_its_own_weights():
  net = networks.TaskMLP(3, (8, 8), 2)
  params = _task_params(net, 4)
  x = tf.random.stateless_normal([4, 6, 3], [5, 6])
  got = net.apply(params, x)
  for t in range(4):
    h = x[t]
    for i in range(3):
      h = tf.matmul(h, params[2 * i][t]) + params[2 * i + 1][t]
      h = tf.nn.relu(h) if i < 2 else h
    np.testing.assert_allclose(got[t], h, rtol=1e-5, atol=1e-5)


def test_initial_params_are_seeded_and_shaped():
  net = networks.TaskConvNet((28, 28, 1), 5, filters=8, pooling='stride')
  a, b = net.initial_params(3), net.initial_params(3)
  assert [p.shape for p in a] == net.param_shapes
  assert all(np.array_equal(x, y) for x, y in zip(a, b))
  assert not np.array_equal(a[0], net.initial_params(4)[0])
  # MAML's feature sizes: 28 -> 2x2x8 with strides, 84 -> 5x5x32 pooled.
  assert net.param_shapes[-2] == (2 * 2 * 8, 5)
  mini = networks.TaskConvNet((84, 84, 3), 5, filters=32, pooling='max')
  assert mini.param_shapes[-2] == (5 * 5 * 32, 5)


def test_bad_settings_and_params_are_errors():
  with pytest.raises(ValueError, match='pooling'):
    networks.TaskConvNet((8, 8, 1), 5, pooling='avg')
  with pytest.raises(ValueError, match='too small'):
    networks.TaskConvNet((8, 8, 1), 5, blocks=4, pooling='max')
  with pytest.raises(ValueError, match='hidden_sizes'):
    networks.TaskMLP(1, (0,), 1)
  net = networks.TaskMLP(1, (4,), 1)
  params = _task_params(net, 2)
  with pytest.raises(ValueError, match=r'params\[1\]'):
    net.apply([params[0], params[1][:1]] + params[2:], tf.zeros([2, 3, 1]))
  with pytest.raises(ValueError, match='expected 4'):
    net.apply(params[:3], tf.zeros([2, 3, 1]))
