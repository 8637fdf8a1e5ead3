"""Meta-parameters: the quantities BMG and MG learn, and their optimizer.

Three kinds of meta-parameter, all `tf.Module`s:

* `MetaParameter`: one scalar (or one array, e.g. a layer's initial
  weights in MAML-style learning) stored as an unconstrained variable and
  mapped through a transform: `'sigmoid'` for values in (0, 1) (entropy
  weight, epsilon, discount, lambda), `'exp'` for positive values (a
  learning rate), `'identity'` for unbounded ones.
* `ContextualMetaParameters`: a small MLP of a context vector (e.g. the mean
  reward of each of the last 10 rollouts) with one output per named
  meta-parameter. The context carries no gradient. By default the output
  kernel starts at zero, so each output starts exactly at its initial value
  (and the hidden layer gets no meta-gradient until that kernel moves);
  `output_kernel_scale > 0` starts it random instead.
* `MetaParameters`: a named collection of the above plus fixed values, with a
  `learn` mask saying which names the meta-optimizer updates. A name that does
  not learn is returned under `tf.stop_gradient`.

`MetaOptimizer` applies meta-gradients with a Keras optimizer (Adam with
epsilon 1e-4 by default, as in the paper's setups) and optional global-norm
clipping.
"""

import math
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import gin
import numpy as np
import tensorflow as tf

from bmg_tf.core import optimizers
from bmg_tf.networks import mlp as mlp_lib

__all__ = [
    'TRANSFORMS',
    'MetaParameter',
    'ContextualMetaParameters',
    'MetaParameters',
    'MetaOptimizer',
]


def _logit(p):
  return math.log(p) - math.log1p(-p)


# name -> (forward transform on tensors, inverse on Python floats, domain test)
TRANSFORMS = {
    'sigmoid': (tf.sigmoid, _logit, lambda v: 0.0 < v < 1.0, '(0, 1)'),
    'exp': (tf.exp, math.log, lambda v: v > 0.0, '(0, inf)'),
    'identity': (tf.identity, float, lambda v: True, '(-inf, inf)'),
}


def _check_transform(transform: str, name: str) -> str:
  if transform not in TRANSFORMS:
    raise ValueError(f'{name}: unknown transform {transform!r}; valid: '
                     f'{sorted(TRANSFORMS)}.')
  return transform


# The inverses on arrays (the scalar path keeps Python's math).
_ARRAY_INVERSES = {
    'sigmoid': lambda p: np.log(p) - np.log1p(-p),
    'exp': np.log,
    'identity': lambda v: v,
}


def _raw_init(value, transform: str, name: str):
  """Maps an initial value (a number or an array) to the unconstrained
  space, validating it: a float, or a float64 array."""
  if np.ndim(value) > 0:
    try:
      array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
      raise ValueError(f'{name}: initial value must be numeric, got '
                       f'{type(value).__name__}.') from None
    if not np.all(np.isfinite(array)):
      raise ValueError(f'{name}: initial value must be finite everywhere.')
    _, _, in_domain, domain = TRANSFORMS[transform]
    if not all(in_domain(v) for v in array.ravel().tolist()):
      raise ValueError(f'{name}: initial values must be in {domain}, the '
                       f'range of the {transform!r} transform.')
    return _ARRAY_INVERSES[transform](array)
  try:
    value = float(value)
  except (TypeError, ValueError):
    raise ValueError(f'{name}: initial value must be a number, got '
                     f'{value!r}.') from None
  if not math.isfinite(value):
    raise ValueError(f'{name}: initial value must be finite, got {value}.')
  _, inverse, in_domain, domain = TRANSFORMS[transform]
  if not in_domain(value):
    raise ValueError(f'{name}: initial value {value} is outside {domain}, '
                     f'the range of the {transform!r} transform.')
  return inverse(value)


@gin.configurable
class MetaParameter(tf.Module):
  """A meta-parameter `transform(raw)` with a given initial value: a
  scalar, or an array of any shape (e.g. initial weights)."""

  def __init__(self,
               init_value: float,
               transform: str = 'sigmoid',
               dtype=tf.float32,
               num_seeds: Optional[int] = None,
               name: str = 'meta_parameter'):
    """Creates the variable.

    Args:
      init_value: the value of the meta-parameter at initialisation, in the
        range of `transform`: a number, or an array (numpy or tensor) whose
        shape becomes the meta-parameter's.
      transform: 'sigmoid', 'exp' or 'identity'.
      dtype: float dtype of the variable and of the value.
      num_seeds: if set, N independent copies (one per seed of a run that
        batches N seeds in one graph): the variable and the value are `[N]`
        (`[N, *init_value.shape]` for an array).
      name: module name; also used in error messages.

    Raises:
      ValueError: naming the parameter, on an unknown transform or a
        non-finite or out-of-range initial value, or a bad `num_seeds`.
    """
    super().__init__(name=name)
    self._transform = _check_transform(transform, name)
    raw = _raw_init(init_value, transform, name)
    self.num_seeds = mlp_lib.check_num_seeds(num_seeds)
    lead = [] if num_seeds is None else [self.num_seeds]
    if np.ndim(raw) > 0:
      initial = tf.broadcast_to(tf.constant(raw, dtype),
                                lead + list(np.shape(raw)))
    else:
      initial = tf.fill(lead, tf.constant(raw, dtype))
    self.raw = tf.Variable(initial, dtype=dtype, name='raw')

  @property
  def transform(self) -> str:
    return self._transform

  def __call__(self, context=None) -> tf.Tensor:
    """Returns the value (the variable's shape), differentiable w.r.t.
    `raw`."""
    del context  # Not contextual.
    with tf.name_scope(self.name):
      return TRANSFORMS[self._transform][0](self.raw)


@gin.configurable(allowlist=['hidden_sizes', 'output_kernel_scale'])
class ContextualMetaParameters(tf.Module):
  """Meta-parameters as outputs of an MLP of a context vector.

  Input context: float tensor `[C]` or `[B, C]`. Output: a dict name ->
  tensor of shape `[]` or `[B]`. The context is wrapped in `tf.stop_gradient`.

  With `num_seeds=N` there are N independent networks (seed `n`'s equals the
  single network built with `seed + n`): the context is `[..., N, C]` (one
  context per seed) and each output `[..., N]`.
  """

  def __init__(self,
               context_dim: int,
               init_values: Mapping[str, float],
               transforms: Optional[Mapping[str, str]] = None,
               hidden_sizes: Sequence[int] = (32,),
               seed: Optional[int] = None,
               dtype=tf.float32,
               num_seeds: Optional[int] = None,
               output_kernel_scale: float = 0.0,
               name: str = 'contextual_meta_parameters'):
    """Creates the network.

    Args:
      context_dim: size C of the context vector.
      init_values: name -> initial value of each output (at any context).
      transforms: name -> transform; default 'sigmoid' for every name.
      hidden_sizes: hidden widths of the MLP (ReLU).
      seed: initialisation seed of the hidden layers.
      dtype: float dtype.
      num_seeds: if set, N independent networks along a seed axis.
      output_kernel_scale: multiplies the Glorot-uniform initial output
        kernel. 0 (default): every output starts exactly at its initial
        value at any context. > 0: a random output layer (as the public
        PyTorch port's meta-network); outputs then start at their initial
        value at a zero context and vary with the context.
      name: module name.

    Raises:
      ValueError: on a bad context_dim, no outputs, unknown transform or bad
        initial value, or a negative or non-finite output_kernel_scale,
        naming the argument.
    """
    super().__init__(name=name)
    if int(context_dim) <= 0:
      raise ValueError(f'context_dim: must be positive, got {context_dim}.')
    if not init_values:
      raise ValueError('init_values: at least one output is needed.')
    transforms = dict(transforms or {})
    unknown = set(transforms) - set(init_values)
    if unknown:
      raise ValueError(f'transforms: names {sorted(unknown)} have no '
                       'init_values entry.')
    self._names = tuple(init_values)
    self._transforms = {
        n: _check_transform(transforms.get(n, 'sigmoid'), f'transforms[{n}]')
        for n in self._names
    }
    raw = [_raw_init(init_values[n], self._transforms[n], f'init_values[{n}]')
           for n in self._names]
    self._context_dim = int(context_dim)
    self.num_seeds = mlp_lib.check_num_seeds(num_seeds)
    if not (isinstance(output_kernel_scale, (int, float)) and
            math.isfinite(output_kernel_scale) and output_kernel_scale >= 0):
      raise ValueError(f'output_kernel_scale: must be finite and >= 0, got '
                       f'{output_kernel_scale!r}.')
    with self.name_scope:
      self.net = mlp_lib.MLP(hidden_sizes, output_size=len(self._names),
                             output_kernel_scale=float(output_kernel_scale),
                             input_dim=self._context_dim, seed=seed,
                             dtype=dtype, num_seeds=self.num_seeds,
                             name='net')
      # Output bias = inverse transform of the initial values: with a zero
      # output kernel, every output starts exactly at its initial value (with
      # a random one, at a zero context).
      bias = self.net.params[-1]
      bias.assign(tf.broadcast_to(tf.constant(raw, dtype=dtype),
                                  bias.shape))

  @property
  def names(self) -> Tuple[str, ...]:
    return self._names

  @property
  def context_dim(self) -> int:
    return self._context_dim

  def __call__(self, context) -> Dict[str, tf.Tensor]:
    if context is None:
      raise ValueError(f'{self.name}: context is required.')
    with tf.name_scope(self.name):
      context = tf.stop_gradient(tf.convert_to_tensor(context,
                                                      self.net.dtype))
      if context.shape[-1] != self._context_dim:
        raise ValueError(f'context: expected last dimension '
                         f'{self._context_dim}, got shape {context.shape}.')
      unbatched = context.shape.rank == 1
      if unbatched:
        if self.num_seeds is not None:
          raise ValueError(f'context: expected [..., {self.num_seeds}, '
                           f'{self._context_dim}] (one per seed), got shape '
                           f'{context.shape}.')
        context = context[None]
      raw = self.net(context)
      out = {}
      for i, n in enumerate(self._names):
        v = TRANSFORMS[self._transforms[n]][0](raw[..., i])
        out[n] = v[0] if unbatched else v
      return out


MetaSource = Union[MetaParameter, ContextualMetaParameters, float]


@gin.configurable
class MetaParameters(tf.Module):
  """A named collection of meta-parameters with a learn mask.

  `meta_parameters(context)` returns a dict name -> tensor. Names not in
  `learn` are constant (`tf.stop_gradient`), and their variables are not in
  `trainable_variables` unless another, learned, name shares them.
  """

  def __init__(self,
               parameters: Mapping[str, MetaSource],
               contextual: Optional[ContextualMetaParameters] = None,
               learn: Optional[Sequence[str]] = None,
               name: str = 'meta_parameters'):
    """Creates the collection.

    Args:
      parameters: name -> `MetaParameter` or a fixed float. Floats are never
        learned.
      contextual: optional contextual network; its output names join the
        collection.
      learn: names to learn. None means every name that has a variable.
      name: module name.

    Raises:
      ValueError: on duplicate or unknown names, or a non-finite fixed value.
    """
    super().__init__(name=name)
    self._fixed = {}
    self._scalars = {}
    for n, p in dict(parameters).items():
      if isinstance(p, MetaParameter):
        self._scalars[n] = p
      else:
        try:
          value = float(p)
        except (TypeError, ValueError):
          raise ValueError(f'parameters[{n}]: expected a MetaParameter or a '
                           f'float, got {p!r}.') from None
        if not math.isfinite(value):
          raise ValueError(f'parameters[{n}]: must be finite, got {value}.')
        self._fixed[n] = value
    self.contextual = contextual
    ctx_names = contextual.names if contextual is not None else ()
    clash = set(ctx_names) & (set(self._fixed) | set(self._scalars))
    if clash:
      raise ValueError(f'contextual: names {sorted(clash)} are also in '
                       'parameters.')
    self._all_names = tuple(self._fixed) + tuple(self._scalars) + tuple(
        ctx_names)
    learnable = set(self._scalars) | set(ctx_names)
    if learn is None:
      learn = sorted(learnable)
    learn = tuple(learn)
    bad = [n for n in learn if n not in learnable]
    if bad:
      raise ValueError(f'learn: {bad} are not learnable meta-parameters; '
                       f'learnable: {sorted(learnable)}.')
    self._learn = frozenset(learn)
    # Tracked attributes, so checkpoints see every variable.
    self.scalars = dict(self._scalars)

  @property
  def names(self) -> Tuple[str, ...]:
    return self._all_names

  @property
  def learned_names(self) -> Tuple[str, ...]:
    return tuple(n for n in self._all_names if n in self._learn)

  @property
  def needs_context(self) -> bool:
    return self.contextual is not None

  @property
  def trainable_variables(self) -> Tuple[tf.Variable, ...]:
    variables = []
    for n, p in self._scalars.items():
      if n in self._learn:
        variables.append(p.raw)
    if self.contextual is not None and any(
        n in self._learn for n in self.contextual.names):
      variables.extend(self.contextual.net.params)
    return tuple(variables)

  def __call__(self, context=None) -> Dict[str, tf.Tensor]:
    """Returns name -> value.

    Args:
      context: float `[C]` or `[B, C]` when there is a contextual network,
        else ignored.

    Returns:
      dict name -> float tensor (scalar, or `[B]` for batched contexts).
    """
    with tf.name_scope(self.name):
      out = {}
      for n, v in self._fixed.items():
        out[n] = tf.constant(v, tf.float32)
      for n, p in self._scalars.items():
        out[n] = p()
      if self.contextual is not None:
        out.update(self.contextual(context))
      return {
          n: (v if n in self._learn else tf.stop_gradient(v))
          for n, v in out.items()
      }


@gin.configurable(allowlist=['learning_rate', 'epsilon', 'beta_1', 'beta_2',
                             'clip_global_norm'])
class MetaOptimizer(tf.Module):
  """Applies meta-gradients: a Keras optimizer plus global-norm clipping."""

  def __init__(self,
               learning_rate: float = 1e-3,
               epsilon: float = 1e-4,
               beta_1: float = 0.9,
               beta_2: float = 0.999,
               clip_global_norm: Optional[float] = None,
               optimizer: Optional[tf.keras.optimizers.Optimizer] = None,
               clip_batch_dims: int = 0,
               name: str = 'meta_optimizer'):
    """Creates the optimizer.

    Args:
      learning_rate: Adam's step size (ignored if `optimizer` is given).
      epsilon: Adam's epsilon; 1e-4 as in the paper's setups.
      beta_1: Adam's beta_1.
      beta_2: Adam's beta_2.
      clip_global_norm: if set, meta-gradients are clipped to this global
        norm before the update.
      optimizer: any tf_keras optimizer, to use instead of Adam.
      clip_batch_dims: 1 when every meta-variable stacks N independent
        seeds along its leading axis: each seed is clipped by its own norm
        (`optimizers.clip_by_global_norm`).
      name: module name.

    Raises:
      ValueError: on a non-finite or non-positive learning rate or clip norm.
    """
    super().__init__(name=name)
    for arg, v in (('learning_rate', learning_rate),
                   ('clip_global_norm', clip_global_norm)):
      if v is not None and not (math.isfinite(float(v)) and float(v) > 0):
        raise ValueError(f'{arg}: must be finite and positive, got {v}.')
    if not (math.isfinite(float(epsilon)) and float(epsilon) > 0):
      raise ValueError(f'epsilon: must be finite and positive, got {epsilon}.')
    if clip_batch_dims not in (0, 1):
      raise ValueError(f'clip_batch_dims: must be 0 or 1, got '
                       f'{clip_batch_dims!r}.')
    self._clip = clip_global_norm
    self._clip_batch_dims = int(clip_batch_dims)
    self.optimizer = optimizer or tf.keras.optimizers.Adam(
        learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
        epsilon=epsilon)

  def apply(self, grads: Sequence[tf.Tensor],
            variables: Sequence[tf.Variable],
            aggregate: bool = True) -> tf.Tensor:
    """Clips (optionally) and applies `grads` to `variables`.

    Args:
      grads: list of tensors aligned with `variables`; None means zero.
      variables: the meta-variables.
      aggregate: let the Keras optimizer sum the gradients across replicas
        (its default under a `tf.distribute` strategy). False when they are
        already reduced, e.g. the MEAN over replicas, the same on every
        replica: then the norm and the clipping are global as they are.

    Returns:
      The global norm of the gradients before clipping (float32 scalar).
    """
    with tf.name_scope(self.name):
      grads = [tf.zeros_like(v) if g is None else g
               for g, v in zip(grads, variables)]
      if not grads:
        return tf.constant(0.0)
      norm = tf.linalg.global_norm(grads)
      if self._clip is not None and self._clip_batch_dims:
        grads = optimizers.clip_by_global_norm(grads, self._clip,
                                               batch_dims=1)
      elif self._clip is not None:
        grads, _ = tf.clip_by_global_norm(grads, self._clip, use_norm=norm)
      self.optimizer.apply_gradients(
          zip(grads, variables), experimental_aggregate_gradients=aggregate)
      return tf.cast(norm, tf.float32)
