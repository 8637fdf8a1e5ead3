# coding=utf-8
"""Matching functions mu(target, current) for Bootstrapped Meta-Gradients.

In BMG (Flennerhag et al., ICLR 2022) the meta-learner minimises a distance
`mu(x~, x_K)` between a bootstrapped target `x~` and the parameters (or their
outputs, e.g. a policy) `x_K` reached after `K` inner updates. The target is a
constant: every function in this module wraps it in `tf.stop_gradient`, so no
gradient ever reaches it, while gradients flow freely into `current`.

Argument order is always `(target, current)`. For the KL matching function
this means `KL(pi_target || pi_current)`, as in the paper.

Functions:

  * `param_l2`: `0.5 * sum_i ||t_i - c_i||^2` over nests of tensors.
  * `policy_kl`: `KL(pi_target || pi_current)` per state, reduced over states.
  * `value_l2`: `0.5 * (t - c)^2` reduced over all elements.

`MatchingSpec` and `combine` form a weighted sum of such terms.

All functions work for `float32` and `float64` (and other floating dtypes);
both arguments of a function must share a dtype.
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import math
import numbers
import types
from typing import Any, Dict, Mapping, Tuple, Union

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

__all__ = [
    'MATCHING_NAMES',
    'REDUCTIONS',
    'MatchingSpec',
    'as_categorical',
    'combine',
    'param_l2',
    'policy_kl',
    'value_l2',
]

MATCHING_NAMES = ('param_l2', 'policy_kl', 'value_l2')
REDUCTIONS = ('mean', 'sum')

DistributionOrLogits = Union[tfd.Distribution, tf.Tensor]


def _check_reduction(reduction: str) -> None:
  """Raises `ValueError` unless `reduction` is one of `REDUCTIONS`."""
  if not isinstance(reduction, str) or reduction not in REDUCTIONS:
    raise ValueError(
        f'`reduction` must be one of {REDUCTIONS}, got {reduction!r}.')


def _reduce(x: tf.Tensor, reduction: str) -> tf.Tensor:
  """Reduces all elements of `x` to a scalar by mean or sum."""
  if reduction == 'mean':
    return tf.reduce_mean(x)
  return tf.reduce_sum(x)


def _check_float(x: tf.Tensor, name: str) -> None:
  if not x.dtype.is_floating:
    raise TypeError(f'`{name}` must have a floating dtype, got {x.dtype.name}.')


def param_l2(target_params: Any, current_params: Any) -> tf.Tensor:
  """Squared L2 distance between two nests of parameters.

  Computes `0.5 * sum_i ||stop_gradient(t_i) - c_i||^2` over corresponding
  leaves `t_i` of `target_params` and `c_i` of `current_params`.

  Args:
    target_params: A nest (list, tuple, dict, ...) of float tensors or
      variables: the bootstrapped target `x~`. Treated as a constant (gradients
      are stopped).
    current_params: A nest of float tensors or variables with the same
      structure, shapes and dtype as `target_params`: the current parameters
      `x_K`. Gradients flow into these.

  Returns:
    A scalar tensor of the leaves' dtype (e.g. `float32` or `float64`).

  Raises:
    ValueError: If the nests have different structures or corresponding
      leaves have incompatible static shapes, or the nests are empty.
    TypeError: If a leaf is not floating point or the dtypes differ.
  """
  with tf.name_scope('param_l2'):
    try:
      tf.nest.assert_same_structure(target_params, current_params)
    except (ValueError, TypeError) as e:
      first_line = str(e).strip().splitlines()[0] if str(e).strip() else ''
      raise ValueError(
          f'`target_params` and `current_params` must have the same nested '
          f'structure: {first_line}') from None
    targets = tf.nest.flatten(target_params)
    currents = tf.nest.flatten(current_params)
    if not targets:
      raise ValueError(
          '`target_params` and `current_params` must contain at least one '
          'tensor.')
    sq_norms = []
    dtype = None
    for index, (t, c) in enumerate(zip(targets, currents)):
      t = tf.convert_to_tensor(t)
      c = tf.convert_to_tensor(c)
      _check_float(t, 'target_params')
      _check_float(c, 'current_params')
      if t.dtype != c.dtype or (dtype is not None and c.dtype != dtype):
        raise TypeError(
            f'`target_params` and `current_params` leaves must all share one '
            f'dtype; at flat leaf {index} got {t.dtype.name} and '
            f'{c.dtype.name}.')
      dtype = c.dtype
      if not t.shape.is_compatible_with(c.shape):
        raise ValueError(
            f'`target_params` and `current_params` have mismatched shapes at '
            f'flat leaf {index}: {t.shape} vs {c.shape}.')
      sq_norms.append(tf.reduce_sum(tf.square(tf.stop_gradient(t) - c)))
    return tf.constant(0.5, dtype=dtype) * tf.add_n(sq_norms)


def as_categorical(x: DistributionOrLogits) -> tfd.Categorical:
  """Returns `x` as a `tfp.distributions.Categorical`.

  Args:
    x: One of
      * a `tfd.Categorical`, returned unchanged;
      * a `tfd.OneHotCategorical`, converted to a `Categorical` over the same
        probabilities (built from the same `logits` or `probs` parameter);
      * a float tensor (or array-like) of logits with shape `[..., A]`, where
        `A` is the number of actions. The leading dimensions become the
        distribution's batch shape.

  Returns:
    A `tfd.Categorical` with batch shape `x.shape[:-1]` (for logits) and event
    shape `[]`.

  Raises:
    TypeError: If `x` is another kind of distribution, or logits that are not
      floating point.
    ValueError: If logits have rank 0.
  """
  if isinstance(x, tfd.Categorical):
    return x
  if isinstance(x, tfd.OneHotCategorical):
    if x.logits is not None:
      return tfd.Categorical(
          logits=x.logits, validate_args=x.validate_args,
          allow_nan_stats=x.allow_nan_stats)
    return tfd.Categorical(
        probs=x.probs, validate_args=x.validate_args,
        allow_nan_stats=x.allow_nan_stats)
  if isinstance(x, tfd.Distribution):
    raise TypeError(
        f'Expected a Categorical/OneHotCategorical distribution or logits, '
        f'got {type(x).__name__}.')
  logits = tf.convert_to_tensor(x)
  _check_float(logits, 'logits')
  if logits.shape.rank == 0:
    raise ValueError('Logits must have shape [..., A], got a scalar.')
  return tfd.Categorical(logits=logits)


def _stop_gradient_categorical(dist: tfd.Categorical) -> tfd.Categorical:
  """Rebuilds a `Categorical` from gradient-stopped parameters."""
  kwargs = dict(
      dtype=dist.dtype,
      validate_args=dist.validate_args,
      allow_nan_stats=dist.allow_nan_stats)
  if dist.logits is not None:
    return tfd.Categorical(
        logits=tf.stop_gradient(tf.convert_to_tensor(dist.logits)), **kwargs)
  return tfd.Categorical(
      probs=tf.stop_gradient(tf.convert_to_tensor(dist.probs)), **kwargs)


def _categorical_param(dist: tfd.Categorical) -> tf.Tensor:
  return dist.logits if dist.logits is not None else dist.probs


def _to_distribution(x: DistributionOrLogits) -> tfd.Distribution:
  if isinstance(x, tfd.Distribution):
    return x
  return as_categorical(x)


def policy_kl(target: DistributionOrLogits,
              current: DistributionOrLogits,
              reduction: str = 'mean') -> tf.Tensor:
  """KL divergence `KL(pi_target || pi_current)`, reduced over states.

  The KL is computed per state with `tfp.distributions.kl_divergence` and then
  averaged (`'mean'`) or summed (`'sum'`) over all state (batch) dimensions.
  Note the order: the target comes first, as in BMG.

  Gradient stopping on the target:
    * logits tensors and `Categorical`/`OneHotCategorical` distributions are
      rebuilt from `tf.stop_gradient`-ed `logits` (or `probs`, if that is how
      the distribution was built), so no gradient reaches the target;
    * for any other `Distribution` the target is used as given: the caller
      must build it from already-stopped parameters. Prefer passing logits.

  A target given by probabilities with zeros (e.g. a greedy one-hot policy,
  `tfd.Categorical(probs=one_hot)`) is supported: TFP drops the `0 * log 0`
  terms, so `KL(one_hot(a*) || q) = -log q(a*)` with finite gradients.

  Args:
    target: The target policy `pi_target`: a `tfd.Distribution` (e.g.
      `Categorical` with batch shape `[B]` or `[T, B]`) or a float logits
      tensor of shape `[..., A]` interpreted as `Categorical` logits.
    current: The current policy `pi_current`, same kind of input and the same
      batch shape and dtype as `target`. Gradients flow into it.
    reduction: `'mean'` or `'sum'` over all batch (state) dimensions.

  Returns:
    A scalar tensor with the dtype of the parameters (`float32`/`float64`).

  Raises:
    ValueError: If `reduction` is not `'mean'` or `'sum'`, or the static batch
      shapes (or numbers of actions) of `target` and `current` differ.
    TypeError: If a logits input is not floating point, or the two inputs have
      different parameter dtypes.
  """
  _check_reduction(reduction)
  with tf.name_scope('policy_kl'):
    target_dist = _to_distribution(target)
    current_dist = _to_distribution(current)
    if isinstance(target_dist, tfd.OneHotCategorical):
      target_dist = as_categorical(target_dist)
    if isinstance(current_dist, tfd.OneHotCategorical):
      current_dist = as_categorical(current_dist)
    if isinstance(target_dist, tfd.Categorical):
      target_dist = _stop_gradient_categorical(target_dist)
    if (isinstance(target_dist, tfd.Categorical) and
        isinstance(current_dist, tfd.Categorical)):
      t_param = _categorical_param(target_dist)
      c_param = _categorical_param(current_dist)
      if t_param.dtype != c_param.dtype:
        raise TypeError(
            f'`target` and `current` must have the same dtype, got '
            f'{t_param.dtype.name} and {c_param.dtype.name}.')
      if not t_param.shape.is_compatible_with(c_param.shape):
        raise ValueError(
            f'`target` and `current` must have the same batch shape and '
            f'number of actions, got parameter shapes {t_param.shape} and '
            f'{c_param.shape}.')
    elif not target_dist.batch_shape.is_compatible_with(
        current_dist.batch_shape):
      raise ValueError(
          f'`target` and `current` must have the same batch shape, got '
          f'{target_dist.batch_shape} and {current_dist.batch_shape}.')
    kl = tfd.kl_divergence(target_dist, current_dist)
    return _reduce(kl, reduction)


def value_l2(target_values: tf.Tensor,
             current_values: tf.Tensor,
             reduction: str = 'mean') -> tf.Tensor:
  """Squared error `0.5 * (stop_gradient(target) - current)^2`, reduced.

  Args:
    target_values: Float tensor of any shape, e.g. `[B]` or `[T, B]`: the
      target values. Treated as a constant.
    current_values: Float tensor with the same shape and dtype as
      `target_values`. Gradients flow into it. Shapes must match exactly (no
      broadcasting), to catch e.g. `[B]` vs `[B, 1]` mistakes.
    reduction: `'mean'` or `'sum'` over all elements.

  Returns:
    A scalar tensor of the inputs' dtype.

  Raises:
    ValueError: If `reduction` is invalid or the static shapes differ.
    TypeError: If the inputs are not floating point or their dtypes differ.
  """
  _check_reduction(reduction)
  with tf.name_scope('value_l2'):
    target_values = tf.convert_to_tensor(target_values)
    current_values = tf.convert_to_tensor(current_values)
    _check_float(target_values, 'target_values')
    _check_float(current_values, 'current_values')
    if target_values.dtype != current_values.dtype:
      raise TypeError(
          f'`target_values` and `current_values` must have the same dtype, '
          f'got {target_values.dtype.name} and {current_values.dtype.name}.')
    if not target_values.shape.is_compatible_with(current_values.shape):
      raise ValueError(
          f'`target_values` and `current_values` must have the same shape, '
          f'got {target_values.shape} and {current_values.shape}.')
    diff = tf.stop_gradient(target_values) - current_values
    return _reduce(0.5 * tf.square(diff), reduction)


class MatchingSpec:
  """Immutable weights of a combination of matching functions.

  Example:

    spec = MatchingSpec({'policy_kl': 1.0, 'value_l2': 0.5})
    spec.names      # ('policy_kl', 'value_l2'), in `MATCHING_NAMES` order.
    spec.weights    # read-only mapping name -> float weight.
    spec.reduction  # 'mean'; the reduction callers should pass to
                    # `policy_kl` / `value_l2` when computing the terms.
  """

  __slots__ = ('_weights', '_reduction')

  def __init__(self, weights: Mapping[str, float], reduction: str = 'mean'):
    """Creates the spec.

    Args:
      weights: Mapping from names in `MATCHING_NAMES` to finite non-negative
        real weights. At least one weight must be positive; zero-weight terms
        are kept in `weights` but excluded from `names`.
      reduction: `'mean'` or `'sum'`.

    Raises:
      TypeError: If `weights` is not a mapping or a weight is not a real
        number.
      ValueError: If `weights` is empty or all zero, contains an unknown name,
        or a negative or non-finite weight; or `reduction` is invalid.
    """
    if not isinstance(weights, Mapping):
      raise TypeError(f'`weights` must be a mapping from name to float, got '
                      f'{type(weights).__name__}.')
    if not weights:
      raise ValueError(f'`weights` must not be empty; valid names are '
                       f'{MATCHING_NAMES}.')
    checked = {}
    for name, weight in weights.items():
      if name not in MATCHING_NAMES:
        raise ValueError(f'Unknown matching name {name!r} in `weights`; valid '
                         f'names are {MATCHING_NAMES}.')
      if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
        raise TypeError(f'Weight for {name!r} must be a real number, got '
                        f'{weight!r}.')
      weight = float(weight)
      if not math.isfinite(weight) or weight < 0.0:
        raise ValueError(f'Weight for {name!r} must be finite and '
                         f'non-negative, got {weight!r}.')
      checked[name] = weight
    if not any(w > 0.0 for w in checked.values()):
      raise ValueError(f'At least one weight in `weights` must be positive, '
                       f'got {checked!r}.')
    _check_reduction(reduction)
    ordered = {n: checked[n] for n in MATCHING_NAMES if n in checked}
    object.__setattr__(self, '_weights', types.MappingProxyType(ordered))
    object.__setattr__(self, '_reduction', reduction)

  def __setattr__(self, name, value):
    raise AttributeError('MatchingSpec is immutable.')

  def __delattr__(self, name):
    raise AttributeError('MatchingSpec is immutable.')

  @property
  def weights(self) -> Mapping[str, float]:
    """Read-only mapping name -> weight (including zero weights)."""
    return self._weights

  @property
  def reduction(self) -> str:
    """`'mean'` or `'sum'`."""
    return self._reduction

  @property
  def names(self) -> Tuple[str, ...]:
    """Names with non-zero weight, in `MATCHING_NAMES` order."""
    return tuple(n for n, w in self._weights.items() if w != 0.0)

  def __eq__(self, other):
    if not isinstance(other, MatchingSpec):
      return NotImplemented
    return (dict(self._weights) == dict(other._weights) and
            self._reduction == other._reduction)

  def __hash__(self):
    return hash((tuple(self._weights.items()), self._reduction))

  def __repr__(self):
    return (f'MatchingSpec(weights={dict(self._weights)!r}, '
            f'reduction={self._reduction!r})')


def combine(spec: MatchingSpec,
            terms: Mapping[str, tf.Tensor]
           ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
  """Weighted sum of matching terms.

  Args:
    spec: A `MatchingSpec`.
    terms: Mapping from names in `MATCHING_NAMES` to scalar float tensors
      (e.g. the outputs of `param_l2`, `policy_kl`, `value_l2`). Must contain
      every name in `spec.names`; terms whose weight is zero or absent from
      the spec are ignored. All used terms must share a dtype.

  Returns:
    A tuple `(total, used_terms)`: `total` is the scalar
    `sum_{name in spec.names} spec.weights[name] * terms[name]` in the terms'
    dtype, and `used_terms` is a dict of the *unweighted* terms that entered
    the sum, keyed by name.

  Raises:
    TypeError: If `spec` is not a `MatchingSpec` or the dtypes differ.
    ValueError: If a required term is missing, a term is not a scalar, or
      `terms` contains a name not in `MATCHING_NAMES` (likely a typo).
  """
  if not isinstance(spec, MatchingSpec):
    raise TypeError(f'`spec` must be a MatchingSpec, got '
                    f'{type(spec).__name__}.')
  for name in terms:
    if name not in MATCHING_NAMES:
      raise ValueError(f'Unknown matching name {name!r} in `terms`; valid '
                       f'names are {MATCHING_NAMES}.')
  with tf.name_scope('combine_matching'):
    used = {}
    for name in spec.names:
      if name not in terms:
        raise ValueError(f'Missing matching term {name!r} in `terms` '
                         f'(required by the spec {spec!r}).')
      term = tf.convert_to_tensor(terms[name])
      _check_float(term, f'terms[{name!r}]')
      if term.shape.rank is not None and term.shape.rank != 0:
        raise ValueError(f'Matching term {name!r} must be a scalar, got shape '
                         f'{term.shape}.')
      used[name] = term
    dtypes = {t.dtype for t in used.values()}
    if len(dtypes) > 1:
      names = {n: t.dtype.name for n, t in used.items()}
      raise TypeError(f'All matching terms must have the same dtype, got '
                      f'{names}.')
    total = tf.add_n([
        tf.constant(spec.weights[n], dtype=t.dtype) * t
        for n, t in used.items()
    ])
    return total, used
