"""V-trace targets (Espeholt et al., 2018, "IMPALA", section 4.1).

Time-major inputs `[T, B]` for a T-step unroll of B streams. With
importance ratios `rho_t = pi(a_t|x_t) / mu(a_t|x_t)`,

    rho_bar_t = min(clip_rho_threshold, rho_t)
    c_t       = lambda_ * min(clip_c_threshold, rho_t)
    delta_t   = rho_bar_t * (r_t + gamma_t * V(x_{t+1}) - V(x_t))
    v_s       = V(x_s) + delta_s + gamma_s * c_s * (v_{s+1} - V(x_{s+1}))
    A_s       = min(clip_pg_rho_threshold, rho_s) *
                (r_s + gamma_s * v_{s+1} - V(x_s))

with `V(x_T) = v_T = bootstrap_value` and `gamma_t` the per-step discount
(0 at episode ends). A threshold of None means no clipping.

Nothing is stop-gradiented here: for the usual targets pass
`tf.stop_gradient(values)`; gradients then still reach `discounts` and
`lambda_`, which is what a self-tuning agent meta-learns (discount and
lambda as meta-parameters, BMG_SPEC section 2.3).
"""

import collections
from typing import Optional, Union

import tensorflow as tf

__all__ = ['VTraceReturns', 'vtrace']

VTraceReturns = collections.namedtuple('VTraceReturns',
                                       ['vs', 'pg_advantages'])


def _as(value, dtype):
  """`value` in `dtype`; Python numbers are converted directly (casting
  them would round through float32 first)."""
  if isinstance(value, (int, float)):
    return tf.convert_to_tensor(value, dtype=dtype)
  return tf.cast(value, dtype)


def _check_rank(name, tensor, rank):
  if tensor.shape.rank is not None and tensor.shape.rank != rank:
    raise ValueError(f'{name}: expected rank {rank}, got shape '
                     f'{tensor.shape}.')


def vtrace(log_rhos: tf.Tensor,
           discounts: tf.Tensor,
           rewards: tf.Tensor,
           values: tf.Tensor,
           bootstrap_value: tf.Tensor,
           lambda_: Union[float, tf.Tensor] = 1.0,
           clip_rho_threshold: Optional[float] = 1.0,
           clip_pg_rho_threshold: Optional[float] = 1.0,
           clip_c_threshold: Optional[float] = 1.0,
           name: str = 'vtrace') -> VTraceReturns:
  """V-trace value targets and policy-gradient advantages.

  Args:
    log_rhos: `[T, B]` float, `log pi(a_t|x_t) - log mu(a_t|x_t)`.
    discounts: `[T, B]` float, `gamma * (1 - done_t)`.
    rewards: `[T, B]` float.
    values: `[T, B]` float, `V(x_t)`.
    bootstrap_value: `[B]` float, `V(x_T)`.
    lambda_: scalar (or `[T, B]`) trace parameter in [0, 1].
    clip_rho_threshold: rho-bar of the value targets; None: no clipping.
    clip_pg_rho_threshold: clipping of the policy-gradient ratios; None:
      no clipping.
    clip_c_threshold: c-bar of the trace coefficients; None: no clipping.
    name: name scope.

  Returns:
    `VTraceReturns(vs [T, B], pg_advantages [T, B])`, in the dtype of
    `values`.

  Raises:
    ValueError: on inputs of the wrong rank or a non-positive threshold.
  """
  for label, threshold in (('clip_rho_threshold', clip_rho_threshold),
                           ('clip_pg_rho_threshold', clip_pg_rho_threshold),
                           ('clip_c_threshold', clip_c_threshold)):
    if threshold is not None and not threshold > 0:
      raise ValueError(f'{label}: must be positive or None, got '
                       f'{threshold}.')
  with tf.name_scope(name):
    values = tf.convert_to_tensor(values)
    dtype = values.dtype
    log_rhos = _as(log_rhos, dtype)
    discounts = _as(discounts, dtype)
    rewards = _as(rewards, dtype)
    bootstrap_value = _as(bootstrap_value, dtype)
    lambda_ = _as(lambda_, dtype)
    for label, tensor, rank in (('log_rhos', log_rhos, 2),
                                ('discounts', discounts, 2),
                                ('rewards', rewards, 2),
                                ('values', values, 2),
                                ('bootstrap_value', bootstrap_value, 1)):
      _check_rank(label, tensor, rank)
    rhos = tf.exp(log_rhos)

    def clip(threshold):
      if threshold is None:
        return rhos
      return tf.minimum(_as(threshold, dtype), rhos)

    rho_bar, cs = clip(clip_rho_threshold), lambda_ * clip(clip_c_threshold)
    next_values = tf.concat([values[1:], bootstrap_value[None]], axis=0)
    deltas = rho_bar * (rewards + discounts * next_values - values)

    def backward(acc, inputs):
      delta, discount, c = inputs
      return delta + discount * c * acc

    # vs_minus_v[s] = delta_s + gamma_s c_s vs_minus_v[s+1], from the end.
    vs_minus_v = tf.scan(backward, (deltas, discounts, cs),
                         initializer=tf.zeros_like(bootstrap_value),
                         reverse=True)
    vs = values + vs_minus_v
    next_vs = tf.concat([vs[1:], bootstrap_value[None]], axis=0)
    pg_advantages = clip(clip_pg_rho_threshold) * (
        rewards + discounts * next_vs - values)
    return VTraceReturns(vs=vs, pg_advantages=pg_advantages)
