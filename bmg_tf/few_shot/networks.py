"""Task-batched networks: one set of weights per task, one graph for all.

MAML-style learning adapts a copy of the initial weights to every task of a
meta-batch. These networks take parameters with a leading task axis `[T, ...]`
and inputs `[T, M, ...]` (M examples per task) and run task `t`'s examples
through task `t`'s weights only, in a few batched ops:

* `TaskMLP`: batched matmuls `[T, M, in] x [T, in, out]`;
* `TaskConvNet`: the four-block convolutional network of MAML's image
  experiments (Finn et al., 2017; Vinyals et al., 2016): 3x3 convolutions,
  batch normalisation on the batch's statistics with a learned scale and
  offset, ReLU, and 2x2 max-pooling (or stride-2 convolutions without
  pooling, as MAML's Omniglot model), then a linear layer. The T tasks'
  convolutions are one batched matmul over image patches.

Each network's `initial_params(seed)` gives one (shared, task-free) set of
initial weights, a list of float32 numpy arrays `[w_0, b_0, ...]` in the
order `apply` reads them; `apply(params, inputs)` is differentiable to any
order with respect to `params`.
"""

import math
from typing import List, Sequence, Tuple

import numpy as np
import tensorflow as tf

__all__ = ['TaskMLP', 'TaskConvNet']


def _glorot(rng, fan_in, fan_out, shape):
  limit = math.sqrt(6.0 / (fan_in + fan_out))
  return rng.uniform(-limit, limit, size=shape).astype(np.float32)


def _check_task_params(name, params, shapes):
  params = [tf.convert_to_tensor(p) for p in params]
  if len(params) != len(shapes):
    raise ValueError(f'{name}: expected {len(shapes)} parameter tensors, got '
                     f'{len(params)}.')
  tasks = params[0].shape[0] if params[0].shape.rank else None
  for i, (p, shape) in enumerate(zip(params, shapes)):
    if p.shape.rank != len(shape) + 1 or not p.shape[1:].is_compatible_with(
        shape) or p.shape[0] != tasks:
      dims = ', '.join(map(str, shape))
      raise ValueError(f'{name}: params[{i}] must be [T, {dims}] with the '
                       f'same T for all, got {p.shape}.')
  return params


class TaskMLP:
  """A fully-connected network with per-task weights.

  Input `[T, M, input_dim]`, output `[T, M, output_size]`; the activation
  follows every hidden layer.
  """

  def __init__(self, input_dim: int, hidden_sizes: Sequence[int],
               output_size: int, activation: str = 'relu',
               name: str = 'task_mlp'):
    """Creates the network (no variables: the caller holds the weights).

    Args:
      input_dim: size of an input.
      hidden_sizes: widths of the hidden layers, e.g. `(40, 40)`.
      output_size: width of the linear output layer.
      activation: Keras activation name of the hidden layers.
      name: name scope.

    Raises:
      ValueError: on a non-positive size.
    """
    sizes = [int(input_dim)] + [int(h) for h in hidden_sizes] + [
        int(output_size)]
    if any(s <= 0 for s in sizes):
      raise ValueError(f'input_dim/hidden_sizes/output_size: must be '
                       f'positive, got {sizes}.')
    self._sizes = sizes
    self._activation = tf.keras.activations.get(activation)
    self.name = name

  @property
  def param_shapes(self) -> List[Tuple[int, ...]]:
    """The shapes of one task's parameters, in `apply`'s order."""
    shapes = []
    for fan_in, fan_out in zip(self._sizes[:-1], self._sizes[1:]):
      shapes += [(fan_in, fan_out), (fan_out,)]
    return shapes

  def initial_params(self, seed: int) -> List[np.ndarray]:
    """Glorot-uniform kernels and zero biases (float32 numpy arrays)."""
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(self._sizes[:-1], self._sizes[1:]):
      params.append(_glorot(rng, fan_in, fan_out, (fan_in, fan_out)))
      params.append(np.zeros([fan_out], np.float32))
    return params

  def apply(self, params: Sequence[tf.Tensor],
            inputs: tf.Tensor) -> tf.Tensor:
    """Runs every task's examples through its weights.

    Args:
      params: tensors `[T, *shape]` for the shapes of `param_shapes`.
      inputs: float `[T, M, input_dim]` (cast to the params' dtype).

    Returns:
      `[T, M, output_size]`, of the params' dtype (float32 in training).
    """
    params = _check_task_params(self.name, params, self.param_shapes)
    with tf.name_scope(self.name):
      h = tf.cast(inputs, params[0].dtype)
      layers = len(self._sizes) - 1
      for i in range(layers):
        h = tf.matmul(h, params[2 * i]) + params[2 * i + 1][:, None, :]
        if i < layers - 1:
          h = self._activation(h)
      return h


class TaskConvNet:
  """MAML's four-block convolutional classifier with per-task weights.

  Input `[T, M, H, W, C]`, output logits `[T, M, num_classes]`. Batch
  normalisation always uses the statistics of the examples it is given, per
  task (as MAML does, there are no running averages).
  """

  def __init__(self, input_shape: Sequence[int], num_classes: int,
               filters: int = 64, blocks: int = 4, pooling: str = 'max',
               name: str = 'task_conv_net'):
    """Creates the network (no variables: the caller holds the weights).

    Args:
      input_shape: `(H, W, C)` of an image.
      num_classes: N of N-way classification.
      filters: channels of every convolution (64 for Omniglot, 32 for
        MiniImagenet in MAML).
      blocks: number of conv blocks.
      pooling: 'max' (3x3 convolution, 2x2 max-pooling) or 'stride'
        (3x3 convolution with stride 2, no pooling).
      name: name scope.

    Raises:
      ValueError: on bad sizes or an unknown pooling.
    """
    h, w, c = (int(s) for s in input_shape)
    if min(h, w, c, num_classes, filters, blocks) <= 0:
      raise ValueError(f'input_shape/num_classes/filters/blocks: must be '
                       f'positive, got {input_shape}, {num_classes}, '
                       f'{filters}, {blocks}.')
    if pooling not in ('max', 'stride'):
      raise ValueError(f"pooling: must be 'max' or 'stride', got "
                       f'{pooling!r}.')
    self._in = (h, w, c)
    self._classes = int(num_classes)
    self._filters = int(filters)
    self._blocks = int(blocks)
    self._pooling = pooling
    for _ in range(blocks):
      if pooling == 'max':  # 2x2 VALID max-pooling: 84 -> 42 -> 21 -> 10 -> 5.
        h, w = h // 2, w // 2
      else:  # Stride-2 SAME convolutions: 28 -> 14 -> 7 -> 4 -> 2.
        h, w = -(-h // 2), -(-w // 2)
    if h < 1 or w < 1:
      raise ValueError(f'input_shape/blocks/pooling: {tuple(input_shape)} '
                       f'is too small for {blocks} blocks with {pooling!r} '
                       f'pooling.')
    self._features = h * w * self._filters
    self.name = name

  @property
  def param_shapes(self) -> List[Tuple[int, ...]]:
    """One task's parameter shapes: per block a kernel, bias, BN scale and
    BN offset, then the output kernel and bias."""
    shapes = []
    channels = self._in[2]
    for _ in range(self._blocks):
      shapes += [(3, 3, channels, self._filters), (self._filters,),
                 (self._filters,), (self._filters,)]
      channels = self._filters
    return shapes + [(self._features, self._classes), (self._classes,)]

  def initial_params(self, seed: int) -> List[np.ndarray]:
    """Glorot-uniform kernels, zero biases and offsets, unit BN scales."""
    rng = np.random.default_rng(seed)
    params = []
    channels = self._in[2]
    for _ in range(self._blocks):
      params += [
          _glorot(rng, 9 * channels, 9 * self._filters,
                  (3, 3, channels, self._filters)),
          np.zeros([self._filters], np.float32),
          np.ones([self._filters], np.float32),
          np.zeros([self._filters], np.float32)]
      channels = self._filters
    params += [_glorot(rng, self._features, self._classes,
                       (self._features, self._classes)),
               np.zeros([self._classes], np.float32)]
    return params

  def apply(self, params: Sequence[tf.Tensor],
            inputs: tf.Tensor) -> tf.Tensor:
    """Classifies every task's images with its weights.

    Args:
      params: tensors `[T, *shape]` for the shapes of `param_shapes`.
      inputs: float `[T, M, H, W, C]` (cast to the params' dtype).

    Returns:
      logits `[T, M, num_classes]`, of the params' dtype.
    """
    params = _check_task_params(self.name, params, self.param_shapes)
    with tf.name_scope(self.name):
      x = tf.cast(inputs, params[0].dtype)
      stride = 2 if self._pooling == 'stride' else 1
      for b in range(self._blocks):
        kernel, bias, scale, offset = params[4 * b:4 * b + 4]
        x = _task_conv3x3(x, kernel, stride) + bias[:, None, None, None, :]
        # Batch normalisation on each task's own statistics.
        mean, var = tf.nn.moments(x, axes=[1, 2, 3], keepdims=True)
        x = ((x - mean) * tf.math.rsqrt(var + 1e-5) *
             scale[:, None, None, None, :] + offset[:, None, None, None, :])
        x = tf.nn.relu(x)
        if self._pooling == 'max':
          shape = tf.shape(x)
          pooled = tf.nn.max_pool2d(
              tf.reshape(x, tf.concat([[-1], shape[2:]], 0)), 2, 2, 'VALID')
          x = tf.reshape(pooled, tf.concat([shape[:2], tf.shape(pooled)[1:]],
                                           0))
      shape = tf.shape(x)
      x = tf.reshape(x, [shape[0], shape[1], self._features])
      return tf.matmul(x, params[-2]) + params[-1][:, None, :]


def _task_conv3x3(x, kernel, stride):
  """Task t's images through task t's 3x3 kernel, SAME padding.

  As a batched matmul over the nine shifted views of the image (im2col):
  slices, a concatenation and a `BatchMatMul`, which XLA compiles well on
  CPU and which differentiate to any order. (A grouped convolution, the
  tasks stacked along the channels, is as fast without XLA, but XLA's CPU
  backend runs it about 18x slower.) Equal to `tf.nn.conv2d` per task.

  Args:
    x: float32 `[T, M, H, W, C]`.
    kernel: float32 `[T, 3, 3, C, O]`.
    stride: 1 or 2.

  Returns:
    float32 `[T, M, ceil(H / stride), ceil(W / stride), O]`.
  """
  h, w = x.shape[2], x.shape[3]
  out_h, out_w = -(-h // stride), -(-w // stride)
  pad_h = max((out_h - 1) * stride + 3 - h, 0)
  pad_w = max((out_w - 1) * stride + 3 - w, 0)
  x = tf.pad(x, [[0, 0], [0, 0], [pad_h // 2, pad_h - pad_h // 2],
                 [pad_w // 2, pad_w - pad_w // 2], [0, 0]])
  views = [x[:, :, i:i + (out_h - 1) * stride + 1:stride,
             j:j + (out_w - 1) * stride + 1:stride, :]
           for i in range(3) for j in range(3)]
  patches = tf.concat(views, axis=-1)  # [T, M, h, w, 9C], (i, j, c) order.
  t, c, o = kernel.shape[0], kernel.shape[3], kernel.shape[4]
  shape = tf.shape(patches)
  flat = tf.reshape(patches, [t, -1, 9 * c])
  y = tf.matmul(flat, tf.reshape(kernel, [t, 9 * c, o]))
  return tf.reshape(y, tf.concat([shape[:4], [o]], 0))
