"""Epsilon-greedy Q(lambda) learner whose epsilon BMG can meta-learn.

BMG_SPEC section 2.2, "a new kind of meta-learning": epsilon enters only the
behaviour policy, not the Q-learning update, so the inner parameters `x_K`
do not depend on it and a meta-gradient (MG) has no gradient for it. BMG
with K = 0 can learn it: it matches the epsilon-greedy policy of the current
Q-values to the greedy policy of bootstrapped Q-values `q_{x~}`, where `x~`
is reached by L more Q-learning steps (the engine, `bmg_tf.core.bootstrap`,
builds `x~`; this module provides only losses and heads):

    pi_eps(a|s) = 1 - eps + eps / |A|   if a = argmax_a' q_x(s, a'),
                  eps / |A|             otherwise;
    meta-loss   = E_s KL(one_hot(argmax_a q_{x~}(s, a)) || pi_eps(.|s))
                = E_s -log pi_eps(argmax_a q_{x~}(s, a) | s).

If a fraction `f` of the matched states has a current greedy action that
disagrees with the target's, the meta-loss is minimised at
`eps* = min(1, f * |A| / (|A| - 1))`: BMG raises epsilon while the greedy
policy is still changing (e.g. after the two-colours reward flips) and lowers
it as the Q-values settle.

Batches: sequences sampled from a replay buffer, batch-major, T >= 1:

  'observation': float `[B, T+1, obs_dim]`, `s_0 .. s_T`;
  'action':      int64 `[B, T+1]`, `a_t`, the action taken in `s_t`;
  'reward':      float32 `[B, T+1]`, the reward that followed `a_t`;
  'discount':    float32 `[B, T+1]`, the env's discount after `a_t` (0 at a
                 terminal transition);
  'mask':        optional float32 `[B, T+1]`, 1 for a real transition
                 `s_t -> s_{t+1}` and 0 for a TF-Agents episode boundary
                 (step LAST -> FIRST, whose action is not a real one). A
                 missing mask means all ones.

This is the layout of a TF-Agents `Trajectory` (built by a driver with
`trajectory.from_transition`) sampled with
`TFUniformReplayBuffer.get_next(sample_batch_size=B, num_steps=T+1)` or
`as_dataset(sample_batch_size=B, num_steps=T+1)`; `batch_from_trajectory`
converts one. Step `t = T` contributes only its observation `s_T`, for
bootstrapping; its action, reward and discount are ignored.

Targets: Peng's Q(lambda) by default (`trace='peng'`), computed backwards
over the sequence:

    G_t = r_t + gamma * d_t * ((1 - lambda_t) * max_a Q~(s_{t+1}, a)
                               + lambda_t * G_{t+1}),   t = T-1 .. 0,
    G_T = max_a Q~(s_T, a)    (so G_{T-1} = r + gamma * d * max_a Q~(s_T, a)),

with `lambda_t = lambda * mask_{t+1}`: the trace is cut before an episode
boundary, where the return bootstraps fully from `s_{t+1}`. Peng's Q(lambda)
never cuts the trace on exploratory actions, so it is biased towards the
behaviour policy's values for lambda > 0 but uses the whole sequence, which
suits the large epsilons that BMG explores; `trace='watkins'` gives Watkins'
Q(lambda) instead, which also multiplies `lambda_t` by
`1[Q~(s_{t+1}, a_{t+1}) = max_a Q~(s_{t+1}, a)]` (the trace is cut after a
non-greedy action; a tie with the max counts as greedy). `lambda_=0` is
one-step Q-learning, and `lambda_=1` the n-step return of every step up to
the end of the sequence (bootstrapped at `s_T`), for both traces under a
greedy behaviour.

`Q~` is the Q-network on `tf.stop_gradient(params)` (no separate target
network), or on explicit `target_params` when given: the targets are
constants, and the loss `0.5 * mean_{b,t} mask * (G_t - Q(s_t, a_t))^2`
(a masked mean over `[B, T]`) differentiates only through `Q(s_t, a_t)`.
"""

from typing import Callable, Dict, List, Mapping, Optional, Sequence

import gin
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from bmg_tf.agents import rollout as rollout_lib
from bmg_tf.core import bootstrap
from bmg_tf.networks import mlp

__all__ = [
    'TRACES',
    'QLearner',
    'batch_from_trajectory',
    'epsilon_greedy_log_probs',
    'epsilon_greedy_policy',
    'epsilon_greedy_probs',
    'greedy_one_hot',
    'q_lambda_returns',
]

tfd = tfp.distributions

TRACES = ('peng', 'watkins')
_BATCH_KEYS = ('observation', 'action', 'reward', 'discount')


def _check_q_values(q_values) -> tf.Tensor:
  q_values = tf.convert_to_tensor(q_values)
  if not q_values.dtype.is_floating:
    raise ValueError(f'q_values: must be floating point, got '
                     f'{q_values.dtype.name}.')
  if q_values.shape.rank is not None and q_values.shape.rank < 1:
    raise ValueError('q_values: must have shape [..., A], got a scalar.')
  if q_values.shape[-1] is None:
    raise ValueError(f'q_values: the number of actions (last dimension) '
                     f'must be static, got shape {q_values.shape}.')
  if q_values.shape[-1] < 1:
    raise ValueError(f'q_values: needs at least one action, got shape '
                     f'{q_values.shape}.')
  return q_values


def _check_epsilon(epsilon, q_values: tf.Tensor) -> tf.Tensor:
  epsilon = tf.convert_to_tensor(epsilon)
  if not epsilon.dtype.is_floating:
    raise ValueError(f'epsilon: must be floating point, got '
                     f'{epsilon.dtype.name}.')
  epsilon = tf.cast(epsilon, q_values.dtype)
  state_shape = q_values.shape[:-1]
  if epsilon.shape.rank is not None and state_shape.rank is not None:
    try:
      tf.broadcast_static_shape(epsilon.shape, state_shape)
    except ValueError:
      raise ValueError(f'epsilon: shape {epsilon.shape} does not broadcast '
                       f'to the states\' shape {state_shape}.') from None
    if epsilon.shape.rank > state_shape.rank:
      raise ValueError(f'epsilon: rank {epsilon.shape.rank} exceeds the rank '
                       f'of the states\' shape {state_shape}.')
  return epsilon


def greedy_one_hot(q_values: tf.Tensor) -> tf.Tensor:
  """One-hot of the greedy action, ties to the first maximum.

  Args:
    q_values: float `[..., A]`.

  Returns:
    `[..., A]` of `q_values.dtype`, one 1 per state at
    `tf.argmax(q_values, -1)`. No gradient.
  """
  with tf.name_scope('greedy_one_hot'):
    q_values = _check_q_values(q_values)
    greedy = tf.argmax(q_values, axis=-1)
    return tf.stop_gradient(
        tf.one_hot(greedy, q_values.shape[-1], dtype=q_values.dtype))


def epsilon_greedy_log_probs(q_values: tf.Tensor, epsilon) -> tf.Tensor:
  """`log pi_eps(a|s)` of the epsilon-greedy policy over `q_values`.

  `pi_eps(a|s) = 1 - eps + eps/A` for the greedy action (`tf.argmax`, ties to
  the first maximum) and `eps/A` for the others. The greedy entry is computed
  as `log1p(-eps * (A - 1) / A)` and the others as `log(eps) - log(A)`.

  Args:
    q_values: float `[..., A]` Q-values. The greedy action carries no
      gradient (the result is differentiable in `epsilon` only).
    epsilon: float scalar or a tensor broadcastable to `q_values.shape[:-1]`,
      in (0, 1] (at 0 the non-greedy entries are `-inf`). Cast to
      `q_values.dtype`; gradients flow into it.

  Returns:
    `[..., A]` log-probabilities of `q_values.dtype`; they are normalised
    logits, usable directly as `Categorical` logits.

  Raises:
    ValueError: naming `q_values` or `epsilon`, on bad dtypes or shapes.
  """
  with tf.name_scope('epsilon_greedy_log_probs'):
    q_values = _check_q_values(q_values)
    epsilon = _check_epsilon(epsilon, q_values)
    num_actions = q_values.shape[-1]
    eps = epsilon[..., None]
    one_hot = greedy_one_hot(q_values)
    frac = tf.constant((num_actions - 1) / num_actions, q_values.dtype)
    log_greedy = tf.math.log1p(-eps * frac)
    log_other = tf.math.log(eps) - tf.math.log(
        tf.constant(num_actions, q_values.dtype))
    log_greedy = tf.broadcast_to(log_greedy, tf.shape(q_values))
    log_other = tf.broadcast_to(log_other, tf.shape(q_values))
    return tf.where(one_hot > 0, log_greedy, log_other)


def epsilon_greedy_probs(q_values: tf.Tensor, epsilon) -> tf.Tensor:
  """`pi_eps(a|s)`, i.e. `exp(epsilon_greedy_log_probs(q_values, epsilon))`.

  Args:
    q_values: float `[..., A]`.
    epsilon: float scalar or broadcastable to `q_values.shape[:-1]`.

  Returns:
    `[..., A]` probabilities of `q_values.dtype`, summing to 1 over actions.
  """
  with tf.name_scope('epsilon_greedy_probs'):
    return tf.exp(epsilon_greedy_log_probs(q_values, epsilon))


def q_lambda_returns(rewards: tf.Tensor,
                     discounts: tf.Tensor,
                     next_values: tf.Tensor,
                     lambdas: tf.Tensor,
                     gamma) -> tf.Tensor:
  """Backward lambda-returns over batch-major sequences.

  `G_t = r_t + gamma * d_t * ((1 - lambda_t) * v_{t+1} + lambda_t * G_{t+1})`
  for `t = T-1 .. 0`, with `G_T = v_T`, so `G_{T-1} = r + gamma * d * v_T`.

  Args:
    rewards: float `[B, T]`, `r_t`.
    discounts: float `[B, T]`, `d_t`.
    next_values: float `[B, T]`, `v_{t+1}` (e.g. `max_a Q(s_{t+1}, a)`).
    lambdas: float `[B, T]`, `lambda_t`, the weight of `G_{t+1}` in `G_t`.
    gamma: scalar discount factor.

  Returns:
    `[B, T]` returns of `rewards.dtype`.
  """
  with tf.name_scope('q_lambda_returns'):
    dtype = rewards.dtype
    # Time-major for tf.scan.
    r, d, v, lam = [tf.transpose(tf.cast(x, dtype))
                    for x in (rewards, discounts, next_values, lambdas)]
    gamma = tf.cast(gamma, dtype)

    def step(carry, inputs):
      reward, discount, value, lam_t = inputs
      return reward + gamma * discount * ((1 - lam_t) * value + lam_t * carry)

    returns = tf.scan(step, (r, d, v, lam), initializer=v[-1], reverse=True)
    return tf.transpose(returns)


def batch_from_trajectory(traj) -> Dict[str, tf.Tensor]:
  """Turns a sampled TF-Agents `Trajectory` `[B, T+1]` into a batch dict.

  Args:
    traj: a `tf_agents.trajectories.Trajectory` whose fields have leading
      dimensions `[B, T+1]` (e.g. from `TFUniformReplayBuffer.get_next(
      sample_batch_size=B, num_steps=T+1)`), built by a driver with
      `trajectory.from_transition`, so that `reward[t]` and `discount[t]` are
      those of the step after `action[t]`.

  Returns:
    dict 'observation' `[B, T+1, ...]` (as stored), 'action' int64
    `[B, T+1]`, 'reward' float32 `[B, T+1]`, 'discount' float32 `[B, T+1]`,
    'mask' float32 `[B, T+1]` (0 at boundary steps, LAST -> FIRST).

  Raises:
    ValueError: naming `traj`, if it lacks a field or has the wrong rank.
  """
  with tf.name_scope('batch_from_trajectory'):
    for field in _BATCH_KEYS + ('step_type', 'next_step_type'):
      if not hasattr(traj, field):
        raise ValueError(f'traj: expected a TF-Agents Trajectory, missing '
                         f'field {field!r}.')
    action = tf.convert_to_tensor(traj.action)
    if action.shape.rank is not None and action.shape.rank != 2:
      raise ValueError(f'traj: expected a [B, T+1] sample with scalar '
                       f'actions, got action shape {action.shape}.')
    boundary = tf.logical_and(
        tf.equal(traj.step_type, 2), tf.equal(traj.next_step_type, 0))
    return {
        'observation': tf.convert_to_tensor(traj.observation),
        'action': tf.cast(action, tf.int64),
        'reward': tf.cast(traj.reward, tf.float32),
        'discount': tf.cast(traj.discount, tf.float32),
        'mask': 1.0 - tf.cast(boundary, tf.float32),
    }


def _check_batch(batch: Mapping[str, tf.Tensor]):
  if not isinstance(batch, Mapping):
    raise ValueError(f'batch: expected a dict, got {type(batch).__name__}.')
  missing = [k for k in _BATCH_KEYS if k not in batch]
  if missing:
    raise ValueError(f'batch: missing keys {missing}; expected '
                     f'{list(_BATCH_KEYS)} (and optionally "mask").')
  obs = batch['observation']
  if obs.shape.rank is not None and obs.shape.rank != 3:
    raise ValueError(f"batch['observation']: expected [B, T+1, obs_dim], got "
                     f'shape {obs.shape}.')
  steps = obs.shape[1]
  if steps is not None and steps < 2:
    raise ValueError(f"batch['observation']: needs T+1 >= 2 steps, got "
                     f'shape {obs.shape}.')
  for key in ('action', 'reward', 'discount', 'mask'):
    if key not in batch:
      continue
    shape = tf.TensorShape(batch[key].shape)
    if not shape.is_compatible_with(obs.shape[:2]):
      raise ValueError(f'batch[{key!r}]: expected shape {obs.shape[:2]} '
                       f'([B, T+1]), got {shape}.')


def epsilon_greedy_policy(time_step_spec,
                          action_spec,
                          q_values_fn: Callable[[Sequence[tf.Tensor],
                                                 tf.Tensor], tf.Tensor],
                          epsilon_fn: Callable[[], tf.Tensor],
                          default_params: Callable[[], Sequence[tf.Tensor]],
                          seed: int = 0,
                          name: str = 'epsilon_greedy_policy'):
  """A TF-Agents policy acting epsilon-greedily on explicit parameters.

  A `rollout.FunctionalPolicy` whose distribution is
  `Categorical(probs=pi_eps(q_values_fn(params, obs), epsilon_fn()))`, so it
  acts with `policy.acting_with(params)` tensors or `default_params()`.

  Args:
    time_step_spec: the environment's time-step spec.
    action_spec: a scalar integer action spec with `A` actions.
    q_values_fn: `(params, observation [B, ...]) -> [B, A]`.
    epsilon_fn: `() -> epsilon`, a float scalar or `[B]` tensor, called at
      every action (e.g. reads a meta-parameter).
    default_params: `() -> params` used outside `acting_with`.
    seed: seed of the policy's sampling generator.
    name: policy name.

  Returns:
    A `rollout.FunctionalPolicy`.
  """
  if not callable(q_values_fn):
    raise ValueError('q_values_fn: must be callable.')
  if not callable(epsilon_fn):
    raise ValueError('epsilon_fn: must be callable, () -> scalar tensor.')

  def distribution_fn(params, observation):
    probs = epsilon_greedy_probs(q_values_fn(params, observation),
                                 epsilon_fn())
    return tfd.Categorical(probs=probs, dtype=action_spec.dtype)

  return rollout_lib.FunctionalPolicy(
      time_step_spec, action_spec, distribution_fn=distribution_fn,
      default_params=default_params, seed=seed, name=name)


def _as_number(value, arg: str) -> float:
  if isinstance(value, bool):
    raise ValueError(f'{arg}: must be a number, got {value!r}.')
  try:
    return float(value)
  except (TypeError, ValueError):
    raise ValueError(f'{arg}: must be a number, got {value!r}.') from None


def _as_positive_int(value, arg: str, minimum: int) -> int:
  if isinstance(value, np.integer):
    value = int(value)
  if isinstance(value, bool) or not isinstance(value, int):
    raise ValueError(f'{arg}: must be an int, got {value!r}.')
  if value < minimum:
    raise ValueError(f'{arg}: must be >= {minimum}, got {value}.')
  return value


@gin.configurable(allowlist=['hidden_sizes', 'gamma', 'lambda_', 'trace'])
class QLearner(tf.Module):
  """Q(lambda) learner with an MLP Q-network and an epsilon-greedy policy."""

  def __init__(self,
               observation_dim: int,
               num_actions: int,
               hidden_sizes: Sequence[int] = (256, 256),
               gamma: float = 0.99,
               lambda_: float = 0.9,
               trace: str = 'peng',
               seed: int = 0,
               name: str = 'q_learner'):
    """Creates the Q-network.

    Args:
      observation_dim: size of the flat observation, >= 1.
      num_actions: number of discrete actions A, >= 2.
      hidden_sizes: hidden widths of the ReLU MLP (2 x 256 in the paper).
      gamma: discount factor in [0, 1].
      lambda_: trace parameter in [0, 1]; 0 is one-step Q-learning.
      trace: 'peng' (Peng's Q(lambda), default) or 'watkins' (cut after
        non-greedy actions). See the module docstring.
      seed: initialisation seed.
      name: module name.

    Raises:
      ValueError: naming the argument, on bad sizes or settings.
    """
    super().__init__(name=name)
    observation_dim = _as_positive_int(observation_dim, 'observation_dim', 1)
    num_actions = _as_positive_int(num_actions, 'num_actions', 2)
    gamma = _as_number(gamma, 'gamma')
    if not 0.0 <= gamma <= 1.0:
      raise ValueError(f'gamma: must be in [0, 1], got {gamma}.')
    lambda_ = _as_number(lambda_, 'lambda_')
    if not 0.0 <= lambda_ <= 1.0:
      raise ValueError(f'lambda_: must be in [0, 1], got {lambda_}.')
    if trace not in TRACES:
      raise ValueError(f'trace: must be one of {TRACES}, got {trace!r}.')
    self.observation_dim = observation_dim
    self.num_actions = num_actions
    self.gamma = gamma
    self.lambda_ = lambda_
    self.trace = trace
    with self.name_scope:
      self.q_net = mlp.MLP(hidden_sizes, num_actions,
                           input_dim=observation_dim, seed=seed, name='q')

  @property
  def params(self) -> List[tf.Variable]:
    """The Q-network's variables `[w_0, b_0, ...]`: the functional order."""
    return self.q_net.params

  def q_values(self, params: Sequence[tf.Tensor],
               observation: tf.Tensor) -> tf.Tensor:
    """`[..., obs_dim] -> [..., A]` Q-values (float32), on `params`."""
    with tf.name_scope('q_values'):
      observation = tf.convert_to_tensor(observation)
      if (observation.shape.rank is not None and
          observation.shape[-1] is not None and
          observation.shape[-1] != self.observation_dim):
        raise ValueError(f'observation: expected last dimension '
                         f'{self.observation_dim}, got shape '
                         f'{observation.shape}.')
      return self.q_net.apply(params, observation)

  def td_targets(self, params: Sequence[tf.Tensor],
                 batch: Mapping[str, tf.Tensor],
                 target_params: Optional[Sequence[tf.Tensor]] = None
                 ) -> tf.Tensor:
    """Q(lambda) targets `G_t`, `t = 0..T-1`: constants `[B, T]` (float32).

    Args:
      params: Q-network parameters; the targets use
        `tf.stop_gradient(params)` unless `target_params` is given.
      batch: a batch dict (module docstring), `[B, T+1, ...]`.
      target_params: optional parameters of a separate target network.

    Returns:
      `[B, T]` float32 targets, under `tf.stop_gradient`.

    Raises:
      ValueError: naming `batch`, on missing keys or bad shapes.
    """
    _check_batch(batch)
    with tf.name_scope('td_targets'):
      if target_params is None:
        target_params = params
      target_params = [tf.stop_gradient(p) for p in target_params]
      q_next = self.q_values(target_params, batch['observation'][:, 1:])
      v_next = tf.reduce_max(q_next, axis=-1)  # [B, T]
      rewards = tf.cast(batch['reward'][:, :-1], q_next.dtype)
      discounts = tf.cast(batch['discount'][:, :-1], q_next.dtype)
      lambdas = self.lambda_ * self._mask(batch, q_next.dtype)[:, 1:]
      if self.trace == 'watkins':
        next_actions = tf.cast(batch['action'][:, 1:], tf.int32)
        q_taken = tf.gather(q_next, next_actions, axis=-1, batch_dims=2)
        lambdas *= tf.cast(q_taken >= v_next, q_next.dtype)
      returns = q_lambda_returns(rewards, discounts, v_next, lambdas,
                                 self.gamma)
      return tf.stop_gradient(returns)

  @staticmethod
  def _mask(batch, dtype) -> tf.Tensor:
    if 'mask' in batch:
      return tf.cast(batch['mask'], dtype)
    return tf.ones(tf.shape(batch['reward']), dtype)

  def td_loss(self, params: Sequence[tf.Tensor],
              batch: Mapping[str, tf.Tensor],
              target_params: Optional[Sequence[tf.Tensor]] = None
              ) -> tf.Tensor:
    """`0.5 * mean_{b,t} mask * (G_t - Q(s_t, a_t))^2`, a float32 scalar.

    The mean is over the unmasked entries of `[B, T]` (over all of them when
    there is no mask). Differentiable in `params` through `Q(s_t, a_t)` only.

    Args:
      params: Q-network parameters.
      batch: a batch dict (module docstring).
      target_params: optional separate target-network parameters.

    Returns:
      float32 scalar.
    """
    with tf.name_scope('td_loss'):
      targets = self.td_targets(params, batch, target_params)
      q = self.q_values(params, batch['observation'][:, :-1])  # [B, T, A]
      actions = tf.cast(batch['action'][:, :-1], tf.int32)
      q_taken = tf.gather(q, actions, axis=-1, batch_dims=2)  # [B, T]
      mask = self._mask(batch, q.dtype)[:, :-1]
      sq = 0.5 * mask * tf.square(targets - q_taken)
      return tf.reduce_sum(sq) / tf.maximum(tf.reduce_sum(mask), 1.0)

  def policy_log_probs(self, params: Sequence[tf.Tensor],
                       batch: Mapping[str, tf.Tensor],
                       meta_values: Mapping[str, tf.Tensor]) -> tf.Tensor:
    """`log pi_eps` on the states `s_0..s_{T-1}` of `batch`: `[B, T, A]`.

    Args:
      params: Q-network parameters.
      batch: a batch dict (module docstring).
      meta_values: dict with 'epsilon', a float scalar or `[B]`.

    Returns:
      `[B, T, A]` float32 log-probabilities, differentiable in epsilon.
    """
    with tf.name_scope('policy_log_probs'):
      if 'epsilon' not in meta_values:
        raise ValueError(f"meta_values: needs 'epsilon', got keys "
                         f'{sorted(meta_values)}.')
      epsilon = tf.convert_to_tensor(meta_values['epsilon'])
      if epsilon.shape.rank == 1:  # Per sequence: [B] -> [B, 1].
        epsilon = epsilon[:, None]
      q = self.q_values(params, batch['observation'][:, :-1])
      return epsilon_greedy_log_probs(q, epsilon)

  def target_policy(self, params: Sequence[tf.Tensor],
                    batch: Mapping[str, tf.Tensor]) -> tfd.Categorical:
    """Greedy policy of `params` on `s_0..s_{T-1}`: batch shape `[B, T]`.

    A `Categorical(probs=one_hot)`: `matching.policy_kl` then gives
    `KL(one_hot(a*) || pi) = -log pi(a*)` without NaN (TFP drops the
    `0 * log 0` terms).
    """
    with tf.name_scope('target_policy'):
      q = self.q_values(params, batch['observation'][:, :-1])
      return tfd.Categorical(probs=greedy_one_hot(q))

  def objectives(self) -> bootstrap.Objectives:
    """The engine's view of the learner.

    inner_loss and outer_loss are both `td_loss` (epsilon is not in the
    update: the target step is one more Q-learning step); policy is
    `policy_log_probs` (epsilon-greedy of the current Q-values, with
    `meta_values['epsilon']`); target_policy is the greedy one-hot of the
    target Q-values; value is the Q-values `[B, T, A]` of `s_0..s_{T-1}`.
    """
    return bootstrap.Objectives(
        inner_loss=lambda params, batch, meta_values: self.td_loss(
            params, batch),
        outer_loss=self.td_loss,
        policy=self.policy_log_probs,
        target_policy=self.target_policy,
        value=lambda params, batch: self.q_values(
            params, batch['observation'][:, :-1]))

  def make_policy(self, time_step_spec, action_spec,
                  epsilon_fn: Callable[[], tf.Tensor], seed: int = 0,
                  name: str = 'epsilon_greedy_policy'):
    """An `epsilon_greedy_policy` over this learner's Q-network.

    Outside `acting_with(params)` it acts with `self.params`.

    Raises:
      ValueError: naming `action_spec`, if it is not a scalar integer spec
        over `0..num_actions-1`.
    """
    minimum = getattr(action_spec, 'minimum', None)
    maximum = getattr(action_spec, 'maximum', None)
    if (not action_spec.dtype.is_integer or action_spec.shape.rank != 0 or
        minimum is None or int(np.min(minimum)) != 0 or
        int(np.max(maximum)) != self.num_actions - 1):
      raise ValueError(f'action_spec: expected a bounded scalar integer spec '
                       f'over 0..{self.num_actions - 1}, got {action_spec}.')
    return epsilon_greedy_policy(
        time_step_spec, action_spec, q_values_fn=self.q_values,
        epsilon_fn=epsilon_fn, default_params=lambda: self.params,
        seed=seed, name=name)
