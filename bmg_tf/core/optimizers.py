# coding=utf-8
"""Differentiable inner-loop optimizers as pure functions over tensor lists.

Bootstrapped Meta-Gradients (Flennerhag et al., ICLR 2022) differentiate
*through* the updates of an inner optimizer, with respect to its
hyperparameters (for example a learning-rate meta-parameter) and through the
inner gradients themselves (second order). Keras optimizers cannot be used for
this: they `assign` to `tf.Variable`s, which cuts the gradient path. The
optimizers in this module are instead pure functions built only from
differentiable TF ops:

  opt = optimizers.Adam(learning_rate=1e-3)
  state = opt.init(params)
  with tf.GradientTape() as meta_tape:
    for _ in range(k):
      with tf.GradientTape() as tape:
        tape.watch(params)
        loss = loss_fn(params)
      grads = tape.gradient(loss, params)
      params, state = opt.update(
          grads, state, params, hparams={'learning_rate': meta_lr})
    meta_loss = meta_loss_fn(params)
  meta_grad = meta_tape.gradient(meta_loss, meta_lr)

Interface of every optimizer:

  * `init(params) -> state`: `state` is a `NamedTuple` whose per-parameter
    fields are tuples of tensors with the shapes and dtypes of `params` (empty
    tuples for unused slots); `AdamState.count` is an `int32` scalar.
  * `update(grads, state, params, hparams=None) -> (new_params, new_state)`:
    `new_params` is a list of tensors with the shapes and dtypes of `params`.
    `hparams` maps names in `hparam_names` to Python numbers or (possibly
    differentiable) tensors that are scalars or broadcastable to each
    parameter's shape; missing names take the constructor defaults. Tensor
    hyperparameters are cast to each parameter's dtype, so `float32` and
    `float64` parameters both work (and may be mixed).

`init` and `update` have no tensor-dependent Python control flow (all checks
use static shapes) and are marked `tf.autograph.experimental.do_not_convert`,
so they work unchanged, and trace quickly, inside `tf.function`.

With the same settings, the update rules equal those of `tf_keras` 2.21's
`SGD`, `RMSprop` and `Adam` (dense gradients, no weight decay, clipping or
EMA), including the order of floating-point operations. Deviations:

  * A `None` gradient is treated as a zero gradient (slots decay, and
    momentum/Adam still move the parameter); Keras skips such variables.
  * Square roots of second-moment accumulators use `_safe_sqrt`/
    `_safe_rsqrt`: their values equal `tf.sqrt`/`tf.math.rsqrt` wherever
    those are finite and positive, but their gradients at exactly 0 are 0
    instead of inf, so a parameter whose second moment is exactly zero (e.g.
    a dead ReLU unit, or a float32 gradient below ~1e-23 whose square
    underflows) does not put inf/NaN into second-order gradients. Where Keras
    would divide 0 by 0 (only possible with `epsilon=0`) the update is 0, not
    NaN.
  * Sparse `tf.IndexedSlices` gradients are densified.
  * For `float64` parameters Keras rounds `learning_rate`, SGD's `momentum`
    and Adam's `beta_1`/`beta_2` (in `beta^t`) through float32, because it
    `tf.cast`s Python floats; here they keep full float64 precision. Results
    are identical for values exactly representable in float32.
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import collections.abc
import inspect
import math
import numbers
from typing import (Any, Dict, List, Mapping, NamedTuple, Optional, Sequence,
                    Tuple, Union)

import gin
import numpy as np
import tensorflow as tf

__all__ = [
    'OPTIMIZER_NAMES',
    'Adam',
    'AdamState',
    'GlobalNormClipped',
    'clip_by_global_norm',
    'create_optimizer',
    'Momentum',
    'MomentumState',
    'Optimizer',
    'RMSProp',
    'RMSPropState',
    'SGD',
    'SGDState',
    'get',
]

OPTIMIZER_NAMES = ('sgd', 'momentum', 'rmsprop', 'adam')

HParam = Union[float, tf.Tensor]
TensorList = List[tf.Tensor]

# Allowed ranges of hyperparameter values, as (low, high, high_inclusive).
_NON_NEGATIVE = (0.0, math.inf, False)
_UNIT_CLOSED = (0.0, 1.0, True)
_UNIT_HALF_OPEN = (0.0, 1.0, False)


class SGDState(NamedTuple):
  """State of `SGD`: empty (plain SGD keeps no slots)."""


class MomentumState(NamedTuple):
  """State of `Momentum`.

  Attributes:
    velocity: Tuple of tensors, one per parameter, same shapes and dtypes;
      the Keras `m` slot (`v <- momentum * v - lr * g`).
  """
  velocity: Tuple[tf.Tensor, ...]


class RMSPropState(NamedTuple):
  """State of `RMSProp`.

  Attributes:
    nu: Tuple of tensors, one per parameter (same shapes and dtypes): moving
      average of squared gradients (Keras `velocity`).
    mom: Tuple of momentum buffers, one per parameter, or `()` when the
      optimizer was built with `momentum=0`.
    mu: Tuple of moving averages of gradients, one per parameter, or `()`
      unless `centered=True`.
  """
  nu: Tuple[tf.Tensor, ...]
  mom: Tuple[tf.Tensor, ...]
  mu: Tuple[tf.Tensor, ...]


class AdamState(NamedTuple):
  """State of `Adam`.

  Attributes:
    count: `int32` scalar, number of updates applied so far.
    mu: Tuple of first-moment estimates, one per parameter (same shapes and
      dtypes).
    nu: Tuple of second-moment estimates, one per parameter.
  """
  count: tf.Tensor
  mu: Tuple[tf.Tensor, ...]
  nu: Tuple[tf.Tensor, ...]


def _is_python_number(value: Any) -> bool:
  """True for Python/NumPy real scalars (not bools, not tensors)."""
  return (isinstance(value, (numbers.Real, np.floating, np.integer)) and
          not isinstance(value, (bool, np.bool_)))


def _validate_hparam(name: str, value: Any, allowed: Tuple[float, float, bool],
                     what: str = 'argument') -> float:
  """Checks a Python-number hyperparameter; returns it as a `float`.

  Args:
    name: Hyperparameter name, used in the error message.
    value: The value to check.
    allowed: `(low, high, high_inclusive)`; `low` is always inclusive.
    what: Word describing `name` in error messages.

  Returns:
    `float(value)`.

  Raises:
    ValueError: If `value` is not a finite real number in the allowed range.
  """
  low, high, high_inclusive = allowed
  if math.isinf(high):
    range_text = f'>= {low}'
  else:
    range_text = f"in [{low}, {high}{']' if high_inclusive else ')'}"
  message = (f'{what.capitalize()} `{name}` must be a finite real number '
             f'{range_text}, got {value!r}.')
  if not _is_python_number(value):
    raise ValueError(message)
  value = float(value)
  in_range = (math.isfinite(value) and value >= low and
              (value <= high if high_inclusive else value < high))
  if not in_range:
    raise ValueError(message)
  return value


def _as_tensor_list(values: Any, arg_name: str) -> List[Any]:
  """Returns `values` as a Python list; rejects a single tensor."""
  if (isinstance(values, (tf.Tensor, tf.Variable, np.ndarray, str)) or
      not isinstance(values, collections.abc.Sequence)):
    raise TypeError(f'`{arg_name}` must be a list or tuple of tensors, got '
                    f'{type(values).__name__}.')
  return list(values)


def _check_params(params: Any) -> TensorList:
  """Converts `params` to a list of floating tensors."""
  params = _as_tensor_list(params, 'params')
  out = []
  for i, p in enumerate(params):
    if p is None:
      raise ValueError(f'`params[{i}]` is None.')
    p = tf.convert_to_tensor(p) if not isinstance(p, tf.Variable) else p
    if not p.dtype.is_floating:
      raise ValueError(
          f'`params[{i}]` must have a floating dtype, got {p.dtype.name}.')
    out.append(p)
  return out


def _check_grads(grads: Any, params: TensorList) -> TensorList:
  """Converts `grads` to dense tensors matching `params`; `None` -> zeros."""
  grads = _as_tensor_list(grads, 'grads')
  if len(grads) != len(params):
    raise ValueError(
        f'`grads` has {len(grads)} elements but `params` has {len(params)}.')
  out = []
  for i, (g, p) in enumerate(zip(grads, params)):
    if g is None:
      out.append(tf.zeros_like(p))
      continue
    g = tf.convert_to_tensor(g)  # Also densifies tf.IndexedSlices.
    if g.dtype != p.dtype:
      raise ValueError(
          f'`grads[{i}]` has dtype {g.dtype.name} but `params[{i}]` has dtype '
          f'{p.dtype.name}.')
    if not g.shape.is_compatible_with(p.shape):
      raise ValueError(
          f'`grads[{i}]` has shape {g.shape} but `params[{i}]` has shape '
          f'{p.shape}.')
    out.append(g)
  return out


def _check_slots(slots: Any, params: TensorList, field: str) -> None:
  """Checks that a per-parameter state field matches `params`."""
  if not isinstance(slots, (tuple, list)):
    raise ValueError(f'`state.{field}` must be a tuple of tensors, got '
                     f'{type(slots).__name__}.')
  if len(slots) != len(params):
    raise ValueError(f'`state.{field}` has {len(slots)} elements but `params` '
                     f'has {len(params)}.')
  for i, (s, p) in enumerate(zip(slots, params)):
    shape = getattr(s, 'shape', None)
    if shape is None or not tf.TensorShape(shape).is_compatible_with(p.shape):
      raise ValueError(
          f'`state.{field}[{i}]` has shape {shape} but `params[{i}]` has '
          f'shape {p.shape}.')
    dtype = getattr(s, 'dtype', None)
    if dtype is not None and tf.as_dtype(dtype) != p.dtype:
      raise ValueError(
          f'`state.{field}[{i}]` has dtype {tf.as_dtype(dtype).name} but '
          f'`params[{i}]` has dtype {p.dtype.name}.')


def _check_broadcast(value: tf.Tensor, param: tf.Tensor, name: str) -> None:
  """Raises `ValueError` unless `value`'s static shape broadcasts to `param`'s.

  Args:
    value: Hyperparameter tensor.
    param: The parameter tensor the hyperparameter is applied to.
    name: Hyperparameter name, for error messages.
  """
  if not value.shape.rank:  # Scalar, or unknown rank.
    return
  try:
    bshape = tf.broadcast_static_shape(value.shape, param.shape)
  except ValueError:
    bshape = None
  if bshape is None or not bshape.is_compatible_with(param.shape):
    raise ValueError(
        f'Hyperparameter `{name}` has shape {value.shape}, which does not '
        f'broadcast to the parameter shape {param.shape}.')


class _CastHParams:
  """Resolved hyperparameters, cast to each parameter's dtype on demand.

  Casts are computed once per (name, dtype) and reused across parameters.
  Python numbers become constants; `1 - x` of a Python number is computed in
  Python (float64) first, as Keras does (e.g. `1 - beta_1`), so defaults give
  bit-identical results.
  """

  def __init__(self, values: Mapping[str, HParam]):
    self._values = values
    self._cache = {}

  def get(self, name: str, param: tf.Tensor) -> tf.Tensor:
    """Hyperparameter `name` as a tensor of `param`'s dtype."""
    key = (name, param.dtype)
    if key not in self._cache:
      value = self._values[name]
      if _is_python_number(value):
        self._cache[key] = tf.constant(value, dtype=param.dtype)
      else:
        self._cache[key] = tf.cast(value, param.dtype)
    value = self._cache[key]
    _check_broadcast(value, param, name)
    return value

  def one_minus(self, name: str, param: tf.Tensor) -> tf.Tensor:
    """`1 - hparams[name]` as a tensor of `param`'s dtype."""
    key = (f"1-{name}", param.dtype)
    if key not in self._cache:
      value = self._values[name]
      if _is_python_number(value):
        self._cache[key] = tf.constant(1.0 - float(value), dtype=param.dtype)
      else:
        self._cache[key] = 1.0 - self.get(name, param)
    return self._cache[key]


def _safe_sqrt(x: tf.Tensor) -> tf.Tensor:
  """`tf.sqrt(x)` for `x >= 0`, with gradient 0 (not inf) at `x == 0`.

  Uses the double-`tf.where` trick so that the unselected branch never sees
  `x == 0`; the forward value equals `tf.sqrt(x)` exactly for `x > 0`, and is
  0 for `x <= 0` (second-moment accumulators are never negative).

  Args:
    x: Floating tensor, any shape.

  Returns:
    Tensor of the same shape and dtype as `x`.
  """
  positive = x > 0
  safe_x = tf.where(positive, x, tf.ones_like(x))
  return tf.where(positive, tf.sqrt(safe_x), tf.zeros_like(x))


def _safe_rsqrt(x: tf.Tensor) -> tf.Tensor:
  """`tf.math.rsqrt(x)` for `x > 0`; 0 (with gradient 0) for `x <= 0`.

  Args:
    x: Floating tensor, any shape.

  Returns:
    Tensor of the same shape and dtype as `x`.
  """
  positive = x > 0
  safe_x = tf.where(positive, x, tf.ones_like(x))
  return tf.where(positive, tf.math.rsqrt(safe_x), tf.zeros_like(x))


def _safe_div(numerator: tf.Tensor, denominator: tf.Tensor) -> tf.Tensor:
  """`numerator / denominator`, with 0 (and gradient 0) where it is 0."""
  nonzero = tf.not_equal(denominator, 0)
  safe_den = tf.where(nonzero, denominator, tf.ones_like(denominator))
  return tf.where(nonzero, numerator / safe_den, tf.zeros_like(numerator))


class Optimizer:
  """Base class of the functional optimizers.

  Subclasses set `hparam_names` and `_hparam_ranges`, and implement
  `_init(params)`, `_check_state(state, params)` and
  `_update(grads, state, params, hp)`, where `hp.get(name, param)` returns a
  hyperparameter in `param`'s dtype.

  Attributes:
    hparam_names: Names of the float hyperparameters that `update` accepts in
      its `hparams` argument (and the constructor as keyword arguments).
  """

  hparam_names: Tuple[str, ...] = ()
  _hparam_ranges: Dict[str, Tuple[float, float, bool]] = {}

  def __init__(self, **default_hparams: float):
    """Validates and stores the default hyperparameters.

    Args:
      **default_hparams: One Python number per name in `hparam_names`.

    Raises:
      ValueError: If a name is missing or unknown, or a value is not a finite
        real number in its allowed range.
    """
    for name in default_hparams:
      if name not in self.hparam_names:
        raise ValueError(
            f'Unknown hyperparameter `{name}` for {type(self).__name__}; '
            f'valid: {self.hparam_names}.')
    self._defaults = {}
    for name in self.hparam_names:
      if name not in default_hparams:
        raise ValueError(f'Missing hyperparameter `{name}` for '
                         f'{type(self).__name__}.')
      self._defaults[name] = _validate_hparam(
          name, default_hparams[name], self._hparam_ranges[name])

  @property
  def default_hparams(self) -> Dict[str, float]:
    """A copy of the constructor's hyperparameters (Python floats)."""
    return dict(self._defaults)

  def __repr__(self) -> str:
    args = ', '.join(f'{k}={v!r}' for k, v in self._config().items())
    return f'{type(self).__name__}({args})'

  def _config(self) -> Dict[str, Any]:
    return dict(self._defaults)

  def _scope(self, op: str) -> str:
    return f'{type(self).__name__.lower()}_{op}'

  def resolve_hparams(
      self, hparams: Optional[Mapping[str, HParam]] = None
  ) -> Dict[str, HParam]:
    """Merges per-call `hparams` over the defaults.

    Args:
      hparams: Optional mapping from names in `hparam_names` to Python numbers
        or tensors. Python numbers are range-checked like constructor args.

    Returns:
      Dict with one entry per name in `hparam_names`.

    Raises:
      ValueError: On an unknown name or an out-of-range Python number.
    """
    resolved = dict(self._defaults)
    if hparams is None:
      return resolved
    if not isinstance(hparams, collections.abc.Mapping):
      raise ValueError(f'`hparams` must be a mapping or None, got '
                       f'{type(hparams).__name__}.')
    for name, value in hparams.items():
      if name not in self.hparam_names:
        raise ValueError(
            f'Unknown hyperparameter `{name}` for {type(self).__name__}; '
            f'valid: {self.hparam_names}.')
      if value is None:
        raise ValueError(f'Hyperparameter `{name}` is None.')
      if _is_python_number(value):
        value = _validate_hparam(name, value, self._hparam_ranges[name],
                                 what='hyperparameter')
      resolved[name] = value
    return resolved

  @tf.autograph.experimental.do_not_convert
  def init(self, params: Sequence[tf.Tensor]) -> Any:
    """Creates the optimizer state for `params`.

    Args:
      params: List or tuple of floating tensors (any shapes and dtypes).

    Returns:
      The state `NamedTuple`; per-parameter slots are zeros with the shapes
      and dtypes of `params`.
    """
    with tf.name_scope(self._scope('init')):
      return self._init(_check_params(params))

  @tf.autograph.experimental.do_not_convert
  def update(
      self,
      grads: Sequence[Optional[tf.Tensor]],
      state: Any,
      params: Sequence[tf.Tensor],
      hparams: Optional[Mapping[str, HParam]] = None,
  ) -> Tuple[TensorList, Any]:
    """Applies one optimizer step, as differentiable TF ops.

    Args:
      grads: List of gradients, one per parameter, same shapes and dtypes as
        `params`. `None` entries are treated as zero gradients;
        `tf.IndexedSlices` are densified.
      state: State from `init` or a previous `update`.
      params: List or tuple of floating tensors.
      hparams: Optional mapping overriding the constructor hyperparameters
        for this call; values are Python numbers or tensors (scalar or
        broadcastable to each parameter), which are cast to each parameter's
        dtype and may carry gradients.

    Returns:
      `(new_params, new_state)`: `new_params` is a list of tensors with the
      shapes and dtypes of `params`; `new_state` has the structure of `state`.

    Raises:
      ValueError: If `grads`, `state` and `params` disagree in length, shape
        or dtype (checked on static shapes), or `hparams` is invalid.
    """
    with tf.name_scope(self._scope('update')):
      params = _check_params(params)
      grads = _check_grads(grads, params)
      self._check_state(state, params)
      resolved = self.resolve_hparams(hparams)
      return self._update(grads, state, params, _CastHParams(resolved))

  # To be implemented by subclasses.

  def _init(self, params: TensorList) -> Any:
    raise NotImplementedError

  def _check_state(self, state: Any, params: TensorList) -> None:
    raise NotImplementedError

  def _update(self, grads: TensorList, state: Any, params: TensorList,
              hp: '_CastHParams') -> Tuple[TensorList, Any]:
    raise NotImplementedError


def _check_state_type(state: Any, state_cls: type) -> None:
  if not isinstance(state, state_cls):
    raise ValueError(f'`state` must be a {state_cls.__name__}, got '
                     f'{type(state).__name__}.')


class SGD(Optimizer):
  """Plain stochastic gradient descent: `p <- p - lr * g`.

  Equals `tf_keras.optimizers.SGD(learning_rate, momentum=0.0)`.
  """

  hparam_names = ('learning_rate',)
  _hparam_ranges = {'learning_rate': _NON_NEGATIVE}

  def __init__(self, learning_rate: float):
    """Creates the optimizer.

    Args:
      learning_rate: Finite Python number >= 0.

    Raises:
      ValueError: If `learning_rate` is invalid.
    """
    super().__init__(learning_rate=learning_rate)

  def _init(self, params):
    return SGDState()

  def _check_state(self, state, params):
    _check_state_type(state, SGDState)

  def _update(self, grads, state, params, hp):
    new_params = []
    for g, p in zip(grads, params):
      lr = hp.get('learning_rate', p)
      new_params.append(p + -g * lr)
    return new_params, SGDState()


class Momentum(Optimizer):
  """SGD with (optionally Nesterov) momentum, in the Keras form.

    v <- momentum * v - lr * g
    p <- p + v                          (nesterov=False)
    p <- p + momentum * v - lr * g      (nesterov=True, with the new v)

  Equals `tf_keras.optimizers.SGD(learning_rate, momentum, nesterov)`.
  """

  hparam_names = ('learning_rate', 'momentum')
  _hparam_ranges = {'learning_rate': _NON_NEGATIVE, 'momentum': _UNIT_CLOSED}

  def __init__(self,
               learning_rate: float,
               momentum: float = 0.9,
               nesterov: bool = False):
    """Creates the optimizer.

    Args:
      learning_rate: Finite Python number >= 0.
      momentum: Python number in [0, 1].
      nesterov: Python bool, whether to use Nesterov momentum.

    Raises:
      ValueError: If an argument is invalid.
    """
    if not isinstance(nesterov, (bool, np.bool_)):
      raise ValueError(f'`nesterov` must be a bool, got {nesterov!r}.')
    super().__init__(
        learning_rate=learning_rate, momentum=momentum)
    self.nesterov = bool(nesterov)

  def _config(self):
    config = super()._config()
    config['nesterov'] = self.nesterov
    return config

  def _init(self, params):
    return MomentumState(velocity=tuple(tf.zeros_like(p) for p in params))

  def _check_state(self, state, params):
    _check_state_type(state, MomentumState)
    _check_slots(state.velocity, params, 'velocity')

  def _update(self, grads, state, params, hp):
    new_params, new_velocity = [], []
    for g, v, p in zip(grads, state.velocity, params):
      lr = hp.get('learning_rate', p)
      momentum = hp.get('momentum', p)
      v = -g * lr + v * momentum
      if self.nesterov:
        p = p + (-g * lr + v * momentum)
      else:
        p = p + v
      new_params.append(p)
      new_velocity.append(v)
    return new_params, MomentumState(velocity=tuple(new_velocity))


class RMSProp(Optimizer):
  """RMSProp, in the Keras form.

    nu  <- rho * nu + (1 - rho) * g^2
    mu  <- rho * mu + (1 - rho) * g                (centered only)
    d   <- nu + epsilon        or  nu - mu^2 + epsilon   (centered)
    inc <- lr * g * rsqrt(d)
    mom <- momentum * mom + inc; p <- p - mom      (momentum > 0)
    p   <- p - inc                                 (momentum == 0)

  Equals `tf_keras.optimizers.RMSprop` with the same arguments. Whether a
  momentum buffer exists is fixed at construction (as in Keras): built with
  `momentum=0`, the `momentum` hyperparameter cannot be overridden in
  `update`.
  """

  hparam_names = ('learning_rate', 'rho', 'epsilon', 'momentum')
  _hparam_ranges = {
      'learning_rate': _NON_NEGATIVE,
      'rho': _UNIT_HALF_OPEN,
      'epsilon': _NON_NEGATIVE,
      'momentum': _UNIT_CLOSED,
  }

  def __init__(self,
               learning_rate: float,
               rho: float = 0.9,
               epsilon: float = 1e-7,
               momentum: float = 0.0,
               centered: bool = False):
    """Creates the optimizer.

    Args:
      learning_rate: Finite Python number >= 0.
      rho: Python number in [0, 1), decay of the squared-gradient average.
      epsilon: Python number >= 0, added to the squared-gradient average
        inside the square root.
      momentum: Python number in [0, 1]; 0 disables the momentum buffer.
      centered: Python bool; if True, normalise by the estimated variance
        `nu - mu^2` instead of the second moment `nu`.

    Raises:
      ValueError: If an argument is invalid.
    """
    if not isinstance(centered, (bool, np.bool_)):
      raise ValueError(f'`centered` must be a bool, got {centered!r}.')
    super().__init__(
        learning_rate=learning_rate, rho=rho, epsilon=epsilon,
        momentum=momentum)
    self.centered = bool(centered)
    self._use_momentum = self._defaults['momentum'] > 0

  def _config(self):
    config = super()._config()
    config['centered'] = self.centered
    return config

  def resolve_hparams(self, hparams=None):
    if (isinstance(hparams, collections.abc.Mapping) and
        'momentum' in hparams and not self._use_momentum):
      raise ValueError(
          'Hyperparameter `momentum` cannot be overridden: this RMSProp was '
          'built with momentum=0 and has no momentum buffer.')
    return super().resolve_hparams(hparams)

  def _init(self, params):
    zeros = lambda: tuple(tf.zeros_like(p) for p in params)
    return RMSPropState(
        nu=zeros(),
        mom=zeros() if self._use_momentum else (),
        mu=zeros() if self.centered else ())

  def _check_state(self, state, params):
    _check_state_type(state, RMSPropState)
    _check_slots(state.nu, params, 'nu')
    _check_slots(state.mom, params if self._use_momentum else [], 'mom')
    _check_slots(state.mu, params if self.centered else [], 'mu')

  def _update(self, grads, state, params, hp):
    n = len(params)
    moms = state.mom if self._use_momentum else (None,) * n
    mus = state.mu if self.centered else (None,) * n
    new_params, new_nu, new_mom, new_mu = [], [], [], []
    for g, p, nu, mom, mu in zip(grads, params, state.nu, moms, mus):
      lr = hp.get('learning_rate', p)
      rho = hp.get('rho', p)
      one_minus_rho = hp.one_minus('rho', p)
      epsilon = hp.get('epsilon', p)
      nu = rho * nu + one_minus_rho * tf.square(g)
      if self.centered:
        mu = rho * mu + one_minus_rho * g
        denominator = nu - tf.square(mu) + epsilon
        new_mu.append(mu)
      else:
        denominator = nu + epsilon
      increment = lr * g * _safe_rsqrt(denominator)
      if self._use_momentum:
        momentum = hp.get('momentum', p)
        mom = momentum * mom + increment
        p = p + -mom
        new_mom.append(mom)
      else:
        p = p + -increment
      new_params.append(p)
      new_nu.append(nu)
    return new_params, RMSPropState(
        nu=tuple(new_nu), mom=tuple(new_mom), mu=tuple(new_mu))


class Adam(Optimizer):
  """Adam, in the Keras form (bias correction folded into the step size).

    t     <- count + 1
    alpha <- lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
    m     <- m + (g - m) * (1 - beta_1)
    v     <- v + (g^2 - v) * (1 - beta_2)
    p     <- p - m * alpha / (sqrt(v) + epsilon)

  Equals `tf_keras.optimizers.Adam(learning_rate, beta_1, beta_2, epsilon)`
  (with `amsgrad=False`, `adaptive_epsilon=False`).
  """

  hparam_names = ('learning_rate', 'beta_1', 'beta_2', 'epsilon')
  _hparam_ranges = {
      'learning_rate': _NON_NEGATIVE,
      'beta_1': _UNIT_HALF_OPEN,
      'beta_2': _UNIT_HALF_OPEN,
      'epsilon': _NON_NEGATIVE,
  }

  def __init__(self,
               learning_rate: float,
               beta_1: float = 0.9,
               beta_2: float = 0.999,
               epsilon: float = 1e-7):
    """Creates the optimizer.

    Args:
      learning_rate: Finite Python number >= 0.
      beta_1: Python number in [0, 1), decay of the first moment.
      beta_2: Python number in [0, 1), decay of the second moment.
      epsilon: Python number >= 0, added to `sqrt(v)`.

    Raises:
      ValueError: If an argument is invalid.
    """
    super().__init__(
        learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
        epsilon=epsilon)

  def _init(self, params):
    return AdamState(
        count=tf.zeros([], tf.int32),
        mu=tuple(tf.zeros_like(p) for p in params),
        nu=tuple(tf.zeros_like(p) for p in params))

  def _check_state(self, state, params):
    _check_state_type(state, AdamState)
    count_shape = getattr(state.count, 'shape', None)
    if count_shape is None or tf.TensorShape(count_shape).rank not in (0, None):
      raise ValueError(f'`state.count` must be a scalar, got shape '
                       f'{count_shape}.')
    _check_slots(state.mu, params, 'mu')
    _check_slots(state.nu, params, 'nu')

  def _update(self, grads, state, params, hp):
    count = state.count + 1
    new_params, new_mu, new_nu = [], [], []
    for g, p, m, v in zip(grads, params, state.mu, state.nu):
      lr = hp.get('learning_rate', p)
      beta_1 = hp.get('beta_1', p)
      beta_2 = hp.get('beta_2', p)
      one_minus_beta_1 = hp.one_minus('beta_1', p)
      one_minus_beta_2 = hp.one_minus('beta_2', p)
      epsilon = hp.get('epsilon', p)
      local_step = tf.cast(count, p.dtype)
      beta_1_power = tf.pow(beta_1, local_step)
      beta_2_power = tf.pow(beta_2, local_step)
      alpha = lr * tf.sqrt(1 - beta_2_power) / (1 - beta_1_power)
      m = m + (g - m) * one_minus_beta_1
      v = v + (tf.square(g) - v) * one_minus_beta_2
      p = p - _safe_div(m * alpha, _safe_sqrt(v) + epsilon)
      new_params.append(p)
      new_mu.append(m)
      new_nu.append(v)
    return new_params, AdamState(
        count=count, mu=tuple(new_mu), nu=tuple(new_nu))


_REGISTRY = {
    'sgd': SGD,
    'momentum': Momentum,
    'rmsprop': RMSProp,
    'adam': Adam,
}


def clip_by_global_norm(grads: Sequence[tf.Tensor],
                        clip_norm: HParam,
                        batch_dims: int = 0) -> List[tf.Tensor]:
  """Scales `grads` so that their global norm is at most `clip_norm`.

  Differentiable, including at all-zero gradients (where `tf.norm`'s
  gradient is NaN): the norm is computed with the safe square root.

  Args:
    grads: list of float tensors. With `batch_dims=1` every tensor has the
      same leading dimension N (independent problems stacked, e.g. N seeds
      of one learner), shape `[N, ...]`.
    clip_norm: positive scalar.
    batch_dims: 0 for one global norm over all elements; 1 for one norm per
      leading index: problem `n` is clipped by the norm of `g[n]` over all
      tensors `g`, exactly as if it were clipped alone.

  Returns:
    The scaled list, same shapes and dtypes.

  Raises:
    ValueError: if `batch_dims` is not 0 or 1, or the leading dimensions
      differ.
  """
  if batch_dims not in (0, 1):
    raise ValueError(f'batch_dims: must be 0 or 1, got {batch_dims!r}.')
  with tf.name_scope('clip_by_global_norm'):
    if batch_dims == 0:
      sq = tf.add_n([tf.reduce_sum(tf.square(tf.cast(g, tf.float32)))
                     for g in grads])
    else:
      leading = {int(g.shape[0]) for g in grads if g.shape[0] is not None}
      if len(leading) > 1 or any(g.shape.rank == 0 for g in grads):
        raise ValueError('grads: with batch_dims=1 every gradient needs the '
                         f'same leading dimension, got shapes '
                         f'{[g.shape.as_list() for g in grads]}.')
      sq = tf.add_n([
          tf.reduce_sum(tf.reshape(tf.square(tf.cast(g, tf.float32)),
                                   [tf.shape(g)[0], -1]), axis=1)
          for g in grads])  # [N]
    norm = _safe_sqrt(sq)
    clip = tf.cast(clip_norm, tf.float32)
    scale = clip / tf.maximum(norm, clip)

    def scaled(g):
      s = tf.cast(scale, g.dtype)
      if batch_dims:
        s = tf.reshape(s, [-1] + [1] * (g.shape.rank - 1))
      return g * s
    return [scaled(g) for g in grads]


class GlobalNormClipped(Optimizer):
  """Wraps an optimizer: clips the gradients' global norm, then updates.

  Same hyperparameters and state as the wrapped optimizer; the clipping is
  differentiable, so it can sit inside the meta-learner's unroll (a standard
  guard against exploding actor-critic updates).
  """

  def __init__(self, optimizer: Optimizer, clip_norm: float,
               batch_dims: int = 0):
    """Creates the wrapper.

    Args:
      optimizer: the optimizer to wrap.
      clip_norm: finite, positive maximum global norm.
      batch_dims: 1 when the parameters stack N independent problems along
        their leading axis (N seeds in one graph): each is clipped by its own
        norm. See `clip_by_global_norm`.

    Raises:
      ValueError: naming `clip_norm` or `optimizer`.
    """
    if not isinstance(optimizer, Optimizer):
      raise ValueError(f'`optimizer` must be an Optimizer, got '
                       f'{type(optimizer).__name__}.')
    if (not _is_python_number(clip_norm) or not math.isfinite(clip_norm) or
        clip_norm <= 0):
      raise ValueError(f'`clip_norm` must be a finite number > 0, got '
                       f'{clip_norm!r}.')
    # Composes: the wrapped optimizer keeps its hyperparameters, ranges and
    # state; this object only clips the gradients it is given.
    self._optimizer = optimizer
    if batch_dims not in (0, 1):
      raise ValueError(f'batch_dims: must be 0 or 1, got {batch_dims!r}.')
    self.clip_norm = float(clip_norm)
    self.batch_dims = int(batch_dims)

  @property
  def hparam_names(self) -> Tuple[str, ...]:
    return self._optimizer.hparam_names

  @property
  def default_hparams(self) -> Dict[str, float]:
    return self._optimizer.default_hparams

  def resolve_hparams(self, hparams=None):
    return self._optimizer.resolve_hparams(hparams)

  def _config(self):
    config = {'optimizer': self._optimizer, 'clip_norm': self.clip_norm}
    if self.batch_dims:
      config['batch_dims'] = self.batch_dims
    return config

  def init(self, params):
    return self._optimizer.init(params)

  def update(self, grads, state, params, hparams=None):
    params = _check_params(params)
    grads = [tf.zeros_like(p) if g is None else g
             for g, p in zip(grads, params)]
    return self._optimizer.update(
        clip_by_global_norm(grads, self.clip_norm, self.batch_dims), state,
        params, hparams)


def get(name: str, **hparams: Any) -> Optimizer:
  """Builds an optimizer by name.

  Args:
    name: One of `OPTIMIZER_NAMES` ('sgd', 'momentum', 'rmsprop', 'adam'),
      case-insensitive.
    **hparams: Constructor arguments of that optimizer (e.g.
      `learning_rate=1e-3`, `nesterov=True`).

  Returns:
    An `Optimizer`.

  Raises:
    ValueError: If `name` is unknown, or an argument is unknown or invalid.
  """
  key = name.lower() if isinstance(name, str) else None
  if key not in _REGISTRY:
    raise ValueError(f'Unknown optimizer {name!r}; valid names: '
                     f'{OPTIMIZER_NAMES}.')
  try:
    return _REGISTRY[key](**hparams)
  except TypeError as e:  # Unknown or missing keyword argument.
    raise ValueError(f'Bad arguments for optimizer {key!r}: {e}') from None


# Where each optimizer adds its epsilon: inside the square root of a
# squared-gradient average (scales as g**2) or outside it (scales as g).
_EPSILON_POWER = {'rmsprop': 2, 'adam': 1}


@gin.configurable(denylist=['batch_dims', 'loss_scale'])
def create_optimizer(name: str = 'sgd',
                     learning_rate: float = gin.REQUIRED,
                     clip_global_norm: Optional[float] = None,
                     batch_dims: int = 0,
                     loss_scale: float = 1,
                     **hparams: Any) -> Optimizer:
  """Builds an inner or target optimizer, optionally clipped (gin scopes).

  The pipelines call it under the gin scopes `inner` and `target`, so that
  `inner/create_optimizer.learning_rate = 0.1` configures the learner's
  update and `target/create_optimizer.name = 'sgd'` BMG's target step; an
  unscoped binding (`create_optimizer.clip_global_norm = 5.0`) applies to
  both.

  Args:
    name: One of `OPTIMIZER_NAMES`.
    learning_rate: Its step size.
    clip_global_norm: If set, the gradients' global norm is clipped to this
      value (differentiably) before the update: `GlobalNormClipped`.
    batch_dims: Wiring, not configurable: 1 when the parameters stack N
      seeds along their leading axis (each seed is clipped by its own norm).
    loss_scale: Wiring, not configurable: the losses the optimizer sees are
      the losses its hyperparameters were stated for, divided by this (e.g.
      IMPALA's settings are for losses summed over the batch; our losses are
      means over `loss_scale` transitions). `clip_global_norm` is divided by
      it, and `epsilon` by its square (RMSProp, inside the square root) or
      by it (Adam).
    **hparams: The optimizer's other constructor arguments (`rho`,
      `epsilon`, `momentum`, `beta_1`, ...).

  Returns:
    An `Optimizer`.

  Raises:
    ValueError: On an unknown name or a bad argument (the message names it).
  """
  key = name.lower() if isinstance(name, str) else None
  if loss_scale != 1 and 'epsilon' in hparams:
    hparams = dict(hparams)
    hparams['epsilon'] = (hparams['epsilon'] /
                          loss_scale**_EPSILON_POWER.get(key, 1))
  if key in _REGISTRY:
    takes = set(inspect.signature(_REGISTRY[key]).parameters)
    extra = sorted(set(hparams) - takes)
    if extra:
      raise ValueError(f'name: the {key!r} optimizer takes no {extra} '
                       f'(bound for another optimizer?); it takes '
                       f'{sorted(takes)}.')
  optimizer = get(name, learning_rate=learning_rate, **hparams)
  if clip_global_norm is None:
    return optimizer
  if loss_scale != 1:
    clip_global_norm = clip_global_norm / loss_scale
  return GlobalNormClipped(optimizer, clip_global_norm, batch_dims=batch_dims)
