"""Actor-critic losses for the engine: policy gradient, value and entropy.

Losses only: the engine (`bmg_tf.core.bootstrap`) does the unroll, the
bootstrap and the matching. The agent owns two MLPs, a softmax policy and a
state-value function (2 x 256 ReLU each by default), and exposes

* `inner_loss(params, rollout, meta)`: `pg + value_coef * value
  - meta['entropy_weight'] * entropy`;
* `outer_loss(params, rollout)`: `pg - outer_entropy_weight * entropy`, MG's
  outer objective and BMG's target-step objective (no meta terms);
* `logits` / `values` heads for policy and value matching.

Returns are n-step, bootstrapped from the value of the observation after the
rollout: `G_t = r_t + gamma * d_t * G_{t+1}`, `G_T = V(s_T)`, with `d_t` the
env's discount (1 in the non-episodic two-colours stream). `return_steps=1`
gives one-step TD targets `r_t + gamma * d_t * V(s_{t+1})` instead.

Rollouts are time-major dicts (see `bmg_tf.agents.rollout`).

N seeds in one graph (`num_seeds=N`): the networks stack N independent
copies along a seed axis (`bmg_tf.networks.mlp`), the rollout's stream axis
is the seed axis (`[T, N, ...]`, one stream per seed) and `meta` values are
`[N]`. Each loss term is then a per-seed mean over time, `[N]`, and the
inner and outer losses are their sum over seeds, so that seed n's gradient is
exactly the gradient of its own single-seed loss.
"""

from typing import Dict, List, Optional, Sequence

import gin
import tensorflow as tf
import tensorflow_probability as tfp

from bmg_tf.core import bootstrap
from bmg_tf.networks import mlp

__all__ = ['n_step_returns', 'ActorCritic']

tfd = tfp.distributions


def n_step_returns(rewards: tf.Tensor, discounts: tf.Tensor,
                   bootstrap_value: tf.Tensor, gamma) -> tf.Tensor:
  """Bootstrapped discounted returns over a rollout.

  Args:
    rewards: `[T, B]` float.
    discounts: `[T, B]` float, the env's discount after each step.
    bootstrap_value: `[B]` float, `V(s_T)`.
    gamma: scalar discount factor.

  Returns:
    `[T, B]` returns `G_t = r_t + gamma * d_t * G_{t+1}`, `G_T` =
    `bootstrap_value`.
  """
  with tf.name_scope('n_step_returns'):
    gamma = tf.cast(gamma, rewards.dtype)
    factors = gamma * tf.cast(discounts, rewards.dtype)

    def step(carry, inputs):
      reward, factor = inputs
      return reward + factor * carry

    returns = tf.scan(step, (rewards, factors), initializer=bootstrap_value,
                      reverse=True)
    return returns


@gin.configurable(allowlist=['hidden_sizes', 'gamma', 'value_coef',
                             'outer_entropy_weight', 'return_steps'])
class ActorCritic(tf.Module):
  """Softmax actor-critic with separate policy and value MLPs."""

  def __init__(self,
               observation_dim: int,
               num_actions: int,
               hidden_sizes: Sequence[int] = (256, 256),
               gamma: float = 0.99,
               value_coef: float = 1.0,
               outer_entropy_weight: float = 0.0,
               return_steps: str = 'n_step',
               seed: int = 0,
               num_seeds: Optional[int] = None,
               name: str = 'actor_critic'):
    """Creates the networks.

    Args:
      observation_dim: size of the flat observation.
      num_actions: number of discrete actions.
      hidden_sizes: hidden widths of each MLP.
      gamma: discount factor.
      value_coef: weight of the value loss `0.5 * (G - V)^2`.
      outer_entropy_weight: fixed entropy bonus in the outer objective.
      return_steps: 'n_step' (bootstrapped at the rollout's end) or '1_step'.
      seed: initialisation seed.
      num_seeds: if set, N independent seeds batched along the stream axis;
        seed n's networks are initialised as the single agent with
        `seed + n`.
      name: module name.

    Raises:
      ValueError: naming the argument, on bad sizes or settings.
    """
    super().__init__(name=name)
    if observation_dim <= 0 or num_actions <= 1:
      raise ValueError(f'observation_dim/num_actions: got {observation_dim}, '
                       f'{num_actions}.')
    if not 0.0 <= gamma <= 1.0:
      raise ValueError(f'gamma: must be in [0, 1], got {gamma}.')
    if return_steps not in ('n_step', '1_step'):
      raise ValueError(f"return_steps: must be 'n_step' or '1_step', got "
                       f'{return_steps!r}.')
    self.observation_dim = int(observation_dim)
    self.num_actions = int(num_actions)
    self.gamma = float(gamma)
    self.value_coef = float(value_coef)
    self.outer_entropy_weight = float(outer_entropy_weight)
    self.return_steps = return_steps
    with self.name_scope:
      self.policy_net = mlp.MLP(hidden_sizes, num_actions,
                                input_dim=observation_dim, seed=seed,
                                num_seeds=num_seeds, name='policy')
      self.value_net = mlp.MLP(hidden_sizes, 1, input_dim=observation_dim,
                               seed=seed + 1000, num_seeds=num_seeds,
                               name='value')
    self.num_seeds = self.policy_net.num_seeds
    self._n_policy = len(self.policy_net.params)

  @property
  def params(self) -> List[tf.Variable]:
    """Policy then value variables: the functional parameter order."""
    return self.policy_net.params + self.value_net.params

  def logits(self, params, observation) -> tf.Tensor:
    """`[..., obs] -> [..., A]` policy logits."""
    return self.policy_net.apply(params[:self._n_policy], observation)

  def values(self, params, observation) -> tf.Tensor:
    """`[..., obs] -> [...]` state values."""
    return self.value_net.apply(params[self._n_policy:], observation)[..., 0]

  def distribution(self, params, observation) -> tfd.Categorical:
    """The policy as a TFP Categorical over int64 actions."""
    return tfd.Categorical(logits=self.logits(params, observation),
                           dtype=tf.int64)

  def _mean(self, x: tf.Tensor) -> tf.Tensor:
    """Mean over time and streams; per seed (over time) with `num_seeds`."""
    if self.num_seeds is None:
      return tf.reduce_mean(x)
    return tf.reduce_mean(x, axis=0)

  def loss_terms(self, params, rollout) -> Dict[str, tf.Tensor]:
    """The unweighted loss terms on a rollout (each a float32 scalar).

    Returns:
      dict: 'pg' (policy-gradient loss), 'value' (0.5 * mean squared
      advantage), 'entropy' (mean policy entropy), 'mean_reward'. Each is
      `[N]`, one per seed, with `num_seeds`.
    """
    with tf.name_scope('actor_critic_loss'):
      obs = rollout['observation']
      dist = self.distribution(params, obs)
      values = self.values(params, obs)
      boot = self.values(params, rollout['bootstrap_observation'])
      rewards, discounts = rollout['reward'], rollout['discount']
      if self.return_steps == 'n_step':
        returns = n_step_returns(rewards, discounts, boot, self.gamma)
      else:
        next_values = tf.concat([values[1:], boot[None]], axis=0)
        returns = rewards + self.gamma * discounts * next_values
      returns = tf.stop_gradient(returns)
      advantage = returns - values
      log_prob = dist.log_prob(rollout['action'])
      return {
          'pg': -self._mean(log_prob * tf.stop_gradient(advantage)),
          'value': 0.5 * self._mean(tf.square(advantage)),
          'entropy': self._mean(dist.entropy()),
          'mean_reward': self._mean(rewards),
      }

  def inner_loss(self, params, rollout, meta) -> tf.Tensor:
    """The inner loss, a float32 scalar.

    `pg + value_coef * value - entropy_weight * entropy`, summed over seeds
    with `num_seeds` (then `meta['entropy_weight']` is `[N]`).
    """
    t = self.loss_terms(params, rollout)
    return tf.reduce_sum(
        t['pg'] + self.value_coef * t['value'] -
        tf.cast(meta['entropy_weight'], tf.float32) * t['entropy'])

  def outer_loss(self, params, rollout) -> tf.Tensor:
    """The outer loss, a float32 scalar, with no meta-learned terms.

    `pg - outer_entropy_weight * entropy`, summed over seeds with
    `num_seeds`.
    """
    t = self.loss_terms(params, rollout)
    return tf.reduce_sum(t['pg'] - self.outer_entropy_weight * t['entropy'])

  def objectives(self) -> bootstrap.Objectives:
    """The engine's view of this agent."""
    return bootstrap.Objectives(
        inner_loss=self.inner_loss,
        outer_loss=self.outer_loss,
        policy=lambda p, rollout, meta: self.logits(p, rollout['observation']),
        value=lambda p, rollout: self.values(p, rollout['observation']))
