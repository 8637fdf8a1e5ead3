"""Convolutional torsos with a functional call: Nature CNN, IMPALA ResNet.

Like `mlp.MLP`, each torso is a Keras layer with two entry points sharing one
forward function, so that the engine can differentiate through inner updates:

* `torso(observation)`: the usual Keras call, on the layer's own variables;
* `torso.apply(params, observation)`: the functional call, on a list of
  tensors shaped like `torso.params`.

Input: an image batch `[..., H, W, C]` (any number of leading axes, any
numeric dtype; the caller scales it, e.g. by 1/255). Output: float
`[..., embedding_size]`, after a ReLU.

Torsos (`TORSOS`, chosen by name with `make_torso`):

* `'nature'`: Mnih et al. (2015): conv 32x8x8/4, 64x4x4/2, 64x3x3/1, then a
  512-unit dense layer. The standard Atari torso at 84x84.
* `'impala'`: Espeholt et al. (2018), the IMPALA "deep" ResNet: three
  stacks of (conv 3x3, max-pool 3x3/2, two residual blocks of two 3x3
  convs) with 16, 32 and 32 channels, then a 256-unit dense layer.
* `'minatar'`: Young & Tian (2019): one conv 16x3x3/1 and a 128-unit dense
  layer, for MinAtar's 10x10 boards.

Convolutions use 'SAME' padding except the Nature CNN's ('VALID', as in the
original). Kernels are Glorot-uniform, biases zero.
"""

import math
from typing import List, Optional, Sequence, Tuple

import gin
import tensorflow as tf

from bmg_tf.networks import mlp

__all__ = ['TORSOS', 'ConvTorso', 'NatureCNN', 'ImpalaResNet', 'MinAtarCNN',
           'make_torso']


class ConvTorso(tf.keras.layers.Layer):
  """Base class: variables declared as specs, a functional forward pass.

  Subclasses implement `_layer_specs(input_shape)` (a list of
  `(name, shape)`; a 4-D shape is a conv kernel `[h, w, in, out]`, a 2-D one a
  dense kernel, a 1-D one a bias) and `_forward(p, x)` where `p` maps the
  names to tensors and `x` is float `[N, H, W, C]`, returning
  `[N, embedding_size]`; their constructors end with `_build_for`.
  """

  def __init__(self, embedding_size: int, seed: Optional[int] = None,
               dtype=tf.float32, name: str = 'torso'):
    super().__init__(name=name, dtype=dtype)
    if int(embedding_size) <= 0:
      raise ValueError(f'embedding_size: must be positive, got '
                       f'{embedding_size}.')
    self._embedding_size = int(embedding_size)
    self._seed = seed
    self._names = []
    self._weights_list = []
    self._input_shape3 = None

  def _layer_specs(self, input_shape: Tuple[int, int, int]):
    raise NotImplementedError

  def _forward(self, p, x):
    raise NotImplementedError

  @property
  def embedding_size(self) -> int:
    return self._embedding_size

  def _build_for(self, input_shape: Optional[Sequence[int]]):
    """Builds the variables now for observations `[H, W, C]`, if given."""
    if input_shape is not None:
      self.build(tf.TensorShape([None] + list(input_shape)))

  def build(self, input_shape):
    shape = tf.TensorShape(input_shape)
    if shape.rank is None or shape.rank < 3 or not shape[-3:].is_fully_defined():
      raise ValueError(f'{self.name}: input_shape must end in a known '
                       f'[H, W, C], got {shape}.')
    self._input_shape3 = tuple(int(d) for d in shape[-3:])
    for i, (name, var_shape) in enumerate(
        self._layer_specs(self._input_shape3)):
      if len(var_shape) == 1:
        init = tf.keras.initializers.Zeros()
      else:
        receptive = math.prod(var_shape[:-2]) if len(var_shape) == 4 else 1
        fan_in = var_shape[-2] * receptive
        fan_out = var_shape[-1] * receptive
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        init = tf.keras.initializers.RandomUniform(
            -limit, limit, seed=None if self._seed is None else self._seed + i)
      self._weights_list.append(self.add_weight(
          name=name, shape=var_shape, initializer=init, dtype=self.dtype))
      self._names.append(name)
    super().build(input_shape)

  @property
  def params(self) -> List[tf.Variable]:
    """The variables, in the functional order of `apply`."""
    if not self.built:
      raise ValueError(f'{self.name}: call the torso once (or pass '
                       'input_shape) before reading its params.')
    return list(self._weights_list)

  def call(self, inputs):
    return self._run(self._weights_list, inputs)

  def apply(self, params: Sequence[tf.Tensor],
            inputs: tf.Tensor) -> tf.Tensor:
    """Runs the torso on explicit parameter tensors.

    Args:
      params: list of tensors shaped like `self.params`.
      inputs: `[..., H, W, C]` images (any numeric dtype, already scaled).

    Returns:
      float `[..., embedding_size]`, differentiable w.r.t. `params`.
    """
    if not self.built:
      self.build(tf.TensorShape(inputs.shape))
    params = mlp.check_params(params, self._weights_list)
    return self._run(params, inputs)

  def _run(self, params, inputs):
    with tf.name_scope(self.name):
      x = tf.cast(inputs, self.dtype)
      if x.shape.rank is None or x.shape.rank < 4:
        raise ValueError(f'{self.name}: inputs must be [..., H, W, C] with '
                         f'at least one batch axis, got {x.shape}.')
      if tuple(x.shape[-3:]) != self._input_shape3:
        raise ValueError(f'{self.name}: inputs must end in '
                         f'{list(self._input_shape3)}, got {x.shape}.')
      lead = tf.shape(x)[:-3]
      x = tf.reshape(x, tf.concat([[-1], tf.shape(x)[-3:]], axis=0))
      out = self._forward(dict(zip(self._names, params)), x)
      return tf.reshape(out, tf.concat([lead, [self.embedding_size]], 0))


def _conv(x, kernel, bias, stride=1, padding='SAME'):
  return tf.nn.conv2d(x, kernel, strides=stride, padding=padding) + bias


def _conv_out(size, kernel, stride, padding):
  if padding == 'SAME':
    return -(-size // stride)
  return (size - kernel) // stride + 1


@gin.configurable
class NatureCNN(ConvTorso):
  """The Nature DQN torso: 3 convs (VALID) and a dense layer."""

  CONVS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))

  def __init__(self, embedding_size: int = 512, seed: Optional[int] = None,
               input_shape: Optional[Sequence[int]] = None,
               name: str = 'nature_cnn'):
    """Creates the torso.

    Args:
      embedding_size: width of the final dense layer.
      seed: initialisation seed (variable i uses seed + i).
      input_shape: if given (`[H, W, C]`), the variables are built at once.
      name: layer name.
    """
    super().__init__(embedding_size, seed=seed, name=name)
    self._build_for(input_shape)

  def _layer_specs(self, input_shape):
    h, w, c = input_shape
    specs = []
    for i, (out, k, s) in enumerate(self.CONVS):
      specs += [(f'conv{i}_kernel', (k, k, c, out)), (f'conv{i}_bias', (out,))]
      h, w, c = _conv_out(h, k, s, 'VALID'), _conv_out(w, k, s, 'VALID'), out
      if h <= 0 or w <= 0:
        raise ValueError(f'{self.name}: input {list(input_shape)} is too '
                         'small for the Nature CNN (84x84 expected).')
    specs += [('dense_kernel', (h * w * c, self._embedding_size)),
              ('dense_bias', (self._embedding_size,))]
    return specs

  def _forward(self, p, x):
    for i, (_, _, s) in enumerate(self.CONVS):
      x = tf.nn.relu(_conv(x, p[f'conv{i}_kernel'], p[f'conv{i}_bias'], s,
                           'VALID'))
    x = tf.reshape(x, [tf.shape(x)[0], -1])
    return tf.nn.relu(tf.matmul(x, p['dense_kernel']) + p['dense_bias'])


@gin.configurable
class ImpalaResNet(ConvTorso):
  """The IMPALA deep ResNet torso."""

  def __init__(self, channels: Sequence[int] = (16, 32, 32),
               blocks_per_stack: int = 2, embedding_size: int = 256,
               seed: Optional[int] = None,
               input_shape: Optional[Sequence[int]] = None,
               name: str = 'impala_resnet'):
    """Creates the torso.

    Args:
      channels: channels of each stack.
      blocks_per_stack: residual blocks per stack.
      embedding_size: width of the final dense layer.
      seed: initialisation seed (variable i uses seed + i).
      input_shape: if given (`[H, W, C]`), the variables are built at once.
      name: layer name.

    Raises:
      ValueError: on empty or non-positive sizes.
    """
    super().__init__(embedding_size, seed=seed, name=name)
    self._channels = tuple(int(c) for c in channels)
    if not self._channels or min(self._channels) <= 0:
      raise ValueError(f'channels: must be non-empty and positive, got '
                       f'{channels}.')
    if blocks_per_stack < 0:
      raise ValueError(f'blocks_per_stack: must be >= 0, got '
                       f'{blocks_per_stack}.')
    self._blocks = int(blocks_per_stack)
    self._build_for(input_shape)

  def _layer_specs(self, input_shape):
    h, w, c = input_shape
    specs = []
    for i, out in enumerate(self._channels):
      specs += [(f's{i}_conv_kernel', (3, 3, c, out)),
                (f's{i}_conv_bias', (out,))]
      for b in range(self._blocks):
        for j in range(2):
          specs += [(f's{i}_b{b}_c{j}_kernel', (3, 3, out, out)),
                    (f's{i}_b{b}_c{j}_bias', (out,))]
      h, w, c = _conv_out(h, 3, 2, 'SAME'), _conv_out(w, 3, 2, 'SAME'), out
    specs += [('dense_kernel', (h * w * c, self._embedding_size)),
              ('dense_bias', (self._embedding_size,))]
    return specs

  def _forward(self, p, x):
    for i in range(len(self._channels)):
      x = _conv(x, p[f's{i}_conv_kernel'], p[f's{i}_conv_bias'])
      x = tf.nn.max_pool2d(x, ksize=3, strides=2, padding='SAME')
      for b in range(self._blocks):
        y = tf.nn.relu(x)
        y = _conv(y, p[f's{i}_b{b}_c0_kernel'], p[f's{i}_b{b}_c0_bias'])
        y = tf.nn.relu(y)
        y = _conv(y, p[f's{i}_b{b}_c1_kernel'], p[f's{i}_b{b}_c1_bias'])
        x = x + y
    x = tf.nn.relu(x)
    x = tf.reshape(x, [tf.shape(x)[0], -1])
    return tf.nn.relu(tf.matmul(x, p['dense_kernel']) + p['dense_bias'])


@gin.configurable
class MinAtarCNN(ConvTorso):
  """The MinAtar torso: one 3x3 conv (SAME) and a dense layer."""

  def __init__(self, filters: int = 16, embedding_size: int = 128,
               seed: Optional[int] = None,
               input_shape: Optional[Sequence[int]] = None,
               name: str = 'minatar_cnn'):
    """Creates the torso.

    Args:
      filters: channels of the conv layer.
      embedding_size: width of the dense layer.
      seed: initialisation seed (variable i uses seed + i).
      input_shape: if given (`[H, W, C]`), the variables are built at once.
      name: layer name.
    """
    super().__init__(embedding_size, seed=seed, name=name)
    self._filters = int(filters)
    self._build_for(input_shape)

  def _layer_specs(self, input_shape):
    h, w, c = input_shape
    return [('conv_kernel', (3, 3, c, self._filters)),
            ('conv_bias', (self._filters,)),
            ('dense_kernel', (h * w * self._filters, self._embedding_size)),
            ('dense_bias', (self._embedding_size,))]

  def _forward(self, p, x):
    x = tf.nn.relu(_conv(x, p['conv_kernel'], p['conv_bias']))
    x = tf.reshape(x, [tf.shape(x)[0], -1])
    return tf.nn.relu(tf.matmul(x, p['dense_kernel']) + p['dense_bias'])


TORSOS = {'nature': NatureCNN, 'impala': ImpalaResNet, 'minatar': MinAtarCNN}


def make_torso(name: str, input_shape: Sequence[int],
               seed: Optional[int] = None) -> ConvTorso:
  """Builds the torso `name` for observations `[H, W, C]`.

  Its other arguments (channels, embedding size) are bound with gin on the
  torso classes, e.g. `ImpalaResNet.channels = (16, 32, 32)`.

  Args:
    name: a key of `TORSOS`: 'nature', 'impala' or 'minatar'.
    input_shape: `[H, W, C]` of one observation.
    seed: initialisation seed.

  Returns:
    A built `ConvTorso`.

  Raises:
    ValueError: naming `name` if unknown, or on a bad input shape.
  """
  if name not in TORSOS:
    raise ValueError(f'torso: unknown torso {name!r}; valid: '
                     f'{sorted(TORSOS)}.')
  if len(input_shape) != 3:
    raise ValueError(f'input_shape: expected [H, W, C], got '
                     f'{list(input_shape)}.')
  return TORSOS[name](seed=seed, input_shape=input_shape)
