"""A multi-layer perceptron that runs on its variables or on explicit tensors.

To differentiate through K inner updates, the learner's forward pass must take
its parameters as tensors: ``Variable.assign`` cuts the gradient. ``MLP``
therefore has two entry points that share one forward function:

* ``mlp(inputs)``: the usual Keras call, on the layer's own variables;
* ``mlp.apply(params, inputs)``: the functional call, on a list of tensors
  with the same structure as ``mlp.params`` (``[w_0, b_0, w_1, b_1, ...]``).

With ``num_seeds=N`` the layer holds N independent networks stacked along a
leading seed axis (kernels ``[N, in, out]``, biases ``[N, out]``), for running
N seeds of an experiment as one batched graph. Network ``n`` is initialised
exactly as the single network built with ``seed + n``. Inputs then carry the
seed axis second to last, ``[..., N, in]``, and row ``[..., n, :]`` goes
through network ``n`` only.
"""

import math
import numbers
from typing import Callable, List, Optional, Sequence, Union

import tensorflow as tf

__all__ = ['MLP', 'check_num_seeds', 'check_params']

Activation = Union[str, Callable[[tf.Tensor], tf.Tensor], None]


def check_num_seeds(num_seeds) -> Optional[int]:
  """Validates the number of seeds batched in one graph.

  Args:
    num_seeds: None (no seed axis) or a positive int.

  Returns:
    `num_seeds` as an int, or None.

  Raises:
    ValueError: naming `num_seeds`, for anything else.
  """
  if num_seeds is None:
    return None
  if (isinstance(num_seeds, bool) or
      not isinstance(num_seeds, numbers.Integral) or num_seeds < 1):
    raise ValueError(f'num_seeds: must be a positive int, got '
                     f'{num_seeds!r}.')
  return int(num_seeds)


def check_params(params: Sequence[tf.Tensor],
                 reference: Sequence[tf.Tensor],
                 name: str = 'params') -> List[tf.Tensor]:
  """Checks that `params` matches `reference` in length, shape and dtype.

  Args:
    params: a list of tensors.
    reference: the list of variables or tensors `params` must match.
    name: the argument name to put in error messages.

  Returns:
    `params` as a list.

  Raises:
    ValueError: naming `name`, if the structures differ.
  """
  params = list(params)
  if len(params) != len(reference):
    raise ValueError(f'{name}: expected {len(reference)} tensors, '
                     f'got {len(params)}.')
  for i, (p, r) in enumerate(zip(params, reference)):
    p_shape = tf.TensorShape(getattr(p, 'shape', None))
    if not p_shape.is_compatible_with(r.shape):
      raise ValueError(f'{name}[{i}]: expected shape {r.shape}, '
                       f'got {p_shape}.')
    p_dtype = getattr(p, 'dtype', None)
    if p_dtype is not None and tf.as_dtype(p_dtype) != r.dtype:
      raise ValueError(f'{name}[{i}]: expected dtype {r.dtype.name}, '
                       f'got {tf.as_dtype(p_dtype).name}.')
  return params


def _seeded_matmul(x: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
  """`[..., N, i] x [N, i, o] -> [..., N, o]`: row `[..., n, :]` times `w[n]`.

  A `BatchMatMul` over the seed axis. (`tf.einsum('...ni,nio->...no')` is
  equivalent, but its gradient with respect to `w` builds the outer products
  `[..., N, i, o]` before reducing them: several times slower here.)
  """
  lead = tf.shape(x)[:-2]
  n, i = x.shape[-2], x.shape[-1]
  rows = tf.transpose(tf.reshape(x, [-1, n, i]), [1, 0, 2])  # [N, M, i]
  y = tf.transpose(tf.matmul(rows, w), [1, 0, 2])  # [M, N, o]
  return tf.reshape(y, tf.concat([lead, tf.shape(y)[1:]], axis=0))


class MLP(tf.keras.layers.Layer):
  """Fully-connected network with a functional call.

  Input: float tensor `[..., input_dim]`. Output: `[..., output_size]` (or
  `[..., hidden_sizes[-1]]` when `output_size` is None). The activation is
  applied after every hidden layer, never after the output layer. With
  `num_seeds=N`: input `[..., N, input_dim]`, output `[..., N, out]`.
  """

  def __init__(self,
               hidden_sizes: Sequence[int],
               output_size: Optional[int] = None,
               activation: Activation = 'relu',
               output_kernel_scale: float = 1.0,
               input_dim: Optional[int] = None,
               seed: Optional[int] = None,
               dtype=tf.float32,
               num_seeds: Optional[int] = None,
               name: str = 'mlp'):
    """Creates the MLP.

    Args:
      hidden_sizes: widths of the hidden layers, e.g. `(256, 256)`.
      output_size: width of the linear output layer, or None for none.
      activation: Keras activation name or callable for the hidden layers.
      output_kernel_scale: multiplies the Glorot-uniform initial output
        kernel; 0 gives an output that starts at the bias.
      input_dim: if given, the variables are built at once.
      seed: initialisation seed (layer i uses seed + i); None for TF's
        global seeding.
      dtype: float dtype of the variables.
      num_seeds: if set, N independent networks along a leading seed axis
        of every variable; network n is initialised with `seed + n`.
      name: layer name.

    Raises:
      ValueError: on non-positive sizes or `num_seeds`.
    """
    super().__init__(name=name, dtype=dtype)
    hidden_sizes = tuple(int(h) for h in hidden_sizes)
    if any(h <= 0 for h in hidden_sizes):
      raise ValueError(f'hidden_sizes: all widths must be positive, got '
                       f'{hidden_sizes}.')
    if output_size is not None and int(output_size) <= 0:
      raise ValueError(f'output_size: must be positive, got {output_size}.')
    if not hidden_sizes and output_size is None:
      raise ValueError('hidden_sizes/output_size: the MLP has no layer.')
    self.num_seeds = check_num_seeds(num_seeds)
    self._hidden_sizes = hidden_sizes
    self._output_size = None if output_size is None else int(output_size)
    self._activation = tf.keras.activations.get(activation)
    self._output_kernel_scale = float(output_kernel_scale)
    self._seed = seed
    self._weights_list = []
    if input_dim is not None:
      self.build(tf.TensorShape([None, int(input_dim)]))

  @property
  def layer_sizes(self):
    sizes = list(self._hidden_sizes)
    if self._output_size is not None:
      sizes.append(self._output_size)
    return tuple(sizes)

  def build(self, input_shape):
    input_dim = int(tf.TensorShape(input_shape)[-1])
    fan_in = input_dim
    n_layers = len(self.layer_sizes)
    seeds = [None] if self.num_seeds is None else list(range(
        self.num_seeds))
    lead = () if self.num_seeds is None else (self.num_seeds,)
    for i, width in enumerate(self.layer_sizes):
      is_output = self._output_size is not None and i == n_layers - 1
      limit = math.sqrt(6.0 / (fan_in + width))
      scale = self._output_kernel_scale if is_output else 1.0

      def kernel_init(shape, dtype=None, i=i, limit=limit, scale=scale):
        del shape
        values = []
        for n in seeds:
          seed = None if self._seed is None else self._seed + (n or 0) + i
          init = tf.keras.initializers.RandomUniform(
              -limit * scale, limit * scale, seed=seed)
          if scale == 0.0:
            init = tf.keras.initializers.Zeros()
          values.append(init((fan_in, width), dtype=dtype))
        return values[0] if self.num_seeds is None else tf.stack(values)

      w = self.add_weight(name=f'kernel_{i}', shape=lead + (fan_in, width),
                          initializer=kernel_init, dtype=self.dtype)
      b = self.add_weight(name=f'bias_{i}', shape=lead + (width,),
                          initializer='zeros', dtype=self.dtype)
      self._weights_list.extend([w, b])
      fan_in = width
    super().build(input_shape)

  @property
  def params(self) -> List[tf.Variable]:
    """The variables in functional order `[w_0, b_0, w_1, b_1, ...]`."""
    if not self.built:
      raise ValueError(f'{self.name}: call the network once (or pass '
                       'input_dim) before reading its params.')
    return list(self._weights_list)

  def call(self, inputs):
    return self._forward(self._weights_list, inputs)

  def apply(self, params: Sequence[tf.Tensor], inputs: tf.Tensor) -> tf.Tensor:
    """Runs the network on explicit parameter tensors.

    Args:
      params: list of tensors shaped like `self.params`.
      inputs: float tensor `[..., input_dim]`.

    Returns:
      Tensor `[..., layer_sizes[-1]]`, differentiable w.r.t. `params`.
    """
    if not self.built:
      self.build(tf.TensorShape(inputs.shape))
    params = check_params(params, self._weights_list)
    return self._forward(params, inputs)

  def _forward(self, params, inputs):
    with tf.name_scope(self.name):
      h = tf.cast(inputs, self.dtype)
      if self.num_seeds is not None and (
          h.shape.rank is not None and
          (h.shape.rank < 2 or h.shape[-2] not in (None, self.num_seeds))):
        raise ValueError(f'{self.name}: inputs must be [..., num_seeds='
                         f'{self.num_seeds}, in], got shape {h.shape}.')
      n_layers = len(self.layer_sizes)
      for i in range(n_layers):
        w, b = params[2 * i], params[2 * i + 1]
        if self.num_seeds is not None:
          h = _seeded_matmul(h, w) + b
        elif h.shape.rank == 2:
          h = tf.matmul(h, w) + b
        else:
          h = tf.tensordot(h, w, axes=1) + b
        is_output = self._output_size is not None and i == n_layers - 1
        if not is_output:
          h = self._activation(h)
      return h
