"""In-graph rollout collection with a TF-Agents driver, for explicit params.

The meta-learner's inner steps run on parameter *tensors* (the K-step unroll
and the bootstrap loop), so the acting policy must act with those tensors,
not with the networks' variables. The pieces:

* `FunctionalPolicy`: a TF-Agents `TFPolicy` whose action distribution is
  `distribution_fn(params, observation)`; `params` are set for the duration
  of a collection with `policy.acting_with(params)`. Sampling uses stateless
  seeds drawn from a `tf.random.Generator` held by the policy, so the stream
  of actions is checkpointable, and for Categorical policies (Gumbel-max on
  stateless uniforms) identical with and without XLA.
* `RolloutBuffer`: a TF-Agents observer that writes each step of a
  `Trajectory` into `[T, B, ...]` variables. TF-Agents' `TFUniformReplayBuffer`
  uses a `CriticalSection`, which XLA cannot compile; this buffer can.
* `RolloutCollector`: a `DynamicStepDriver` over a `TFEnvironment`, the policy
  and the buffer. `collect(params)` runs T env steps and returns a time-major
  rollout dict.

Rollout dict (time-major, T steps, B streams):
  'observation': [T, B, ...] the observation each action was taken in;
  'action':      [T, B] int64;
  'reward':      [T, B] float32, the reward that followed the action;
  'discount':    [T, B] float32, the env's discount after the action;
  'bootstrap_observation': [B, ...] the observation after the last step.
"""

import contextlib
import math
from typing import Callable, Dict, Optional, Sequence

import gin
import tensorflow as tf
import tensorflow_probability as tfp
from tf_agents.drivers import dynamic_step_driver
from tf_agents.environments import tf_environment
from tf_agents.policies import tf_policy
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import trajectory as trajectory_lib

__all__ = [
    'CONTEXT_TRANSFORMS', 'FunctionalPolicy', 'RolloutBuffer',
    'RolloutCollector', 'RewardContext', 'RunStats',
    'gumbel_max'
]

tfd = tfp.distributions


def gumbel_max(logits: tf.Tensor, uniform: tf.Tensor) -> tf.Tensor:
  """A categorical sample by the Gumbel-max trick.

  Args:
    logits: float `[..., A]` unnormalised log-probabilities.
    uniform: draws in (0, 1), the shape and dtype of `logits` (the caller
      chooses the generator: stateless integer draws agree between CPU and
      XLA, a `tf.random.Generator` is checkpointable).

  Returns:
    int64 `[...]`: `argmax(logits - log(-log(uniform)))`, an action
    distributed as `softmax(logits)`.
  """
  with tf.name_scope('gumbel_max'):
    return tf.argmax(logits - tf.math.log(-tf.math.log(uniform)), axis=-1)


class FunctionalPolicy(tf_policy.TFPolicy):
  """A TFPolicy that acts with explicit parameter tensors."""

  def __init__(self,
               time_step_spec,
               action_spec,
               distribution_fn: Callable[[Sequence[tf.Tensor], tf.Tensor],
                                         tfd.Distribution],
               default_params: Callable[[], Sequence[tf.Tensor]],
               seed: int = 0,
               name: str = 'functional_policy'):
    """Creates the policy.

    Args:
      time_step_spec: the environment's time-step spec.
      action_spec: the environment's action spec (a scalar int spec).
      distribution_fn: `(params, observation [B, ...]) -> distribution` with
        batch shape [B] and integer events of the action spec's dtype.
      default_params: `() -> params`, used outside `acting_with` (e.g. the
        learner's variables).
      seed: seed of the sampling generator.
      name: policy name.
    """
    super().__init__(time_step_spec, action_spec, name=name)
    self._distribution_fn = distribution_fn
    self._default_params = default_params
    self._params = None
    self.generator = tf.random.Generator.from_seed(seed)

  @contextlib.contextmanager
  def acting_with(self, params: Sequence[tf.Tensor]):
    """Within the block, the policy acts with `params`."""
    previous, self._params = self._params, list(params)
    try:
      yield self
    finally:
      self._params = previous

  def _current_params(self):
    return (self._params if self._params is not None else
            list(self._default_params()))

  def _distribution(self, time_step, policy_state):
    dist = self._distribution_fn(self._current_params(),
                                 time_step.observation)
    return policy_step.PolicyStep(dist, policy_state, ())

  def _action(self, time_step, policy_state, seed=None):
    del seed  # The policy's own generator makes the stream checkpointable.
    dist = self._distribution(time_step, policy_state).action
    # Two 31-bit seed words: XLA and CPU disagree on stateless draws from
    # seeds beyond 31 bits.
    seed = tf.bitwise.bitwise_and(self.generator.make_seeds(2)[0],
                                  tf.constant(0x7FFFFFFF, tf.int64))
    if isinstance(dist, tfd.Categorical):
      # Gumbel-max on integer stateless uniforms. Float stateless uniforms
      # and stateless_categorical draw differently on CPU and under XLA;
      # integer draws agree, so the same actions come out with or without
      # jit_compile.
      logits = dist.logits_parameter()
      bits = tf.random.stateless_uniform(tf.shape(logits), seed, minval=1,
                                         maxval=2**24, dtype=tf.int32)
      action = gumbel_max(logits, tf.cast(bits, logits.dtype) / 2.0**24)
    else:
      action = dist.sample(seed=tf.cast(seed, tf.int32))
    action = tf.cast(action, self.action_spec.dtype)
    return policy_step.PolicyStep(action, policy_state, ())


class RolloutBuffer(tf.Module):
  """An XLA-compatible TF-Agents observer holding one rollout."""

  def __init__(self, trajectory_spec, length: int, batch_size: int,
               name: str = 'rollout_buffer'):
    """Creates `[length, batch_size, ...]` variables for every field."""
    super().__init__(name=name)
    if length <= 0 or batch_size <= 0:
      raise ValueError(f'length/batch_size: must be positive, got {length}, '
                       f'{batch_size}.')
    self.length = int(length)
    self.batch_size = int(batch_size)
    self._spec = trajectory_spec
    self.storage = [
        tf.Variable(tf.zeros([length, batch_size] + s.shape.as_list(),
                             s.dtype), trainable=False, name='storage')
        for s in tf.nest.flatten(trajectory_spec)
    ]
    self.index = tf.Variable(0, dtype=tf.int32, trainable=False,
                             name='index')

  def __call__(self, traj: trajectory_lib.Trajectory):
    """Writes one batched step `[B, ...]` at the current index."""
    with tf.name_scope(self.name):
      i = self.index.read_value()
      for var, value in zip(self.storage, tf.nest.flatten(traj)):
        var.scatter_nd_update([[i]], value[None])
      self.index.assign_add(1)

  def clear(self):
    self.index.assign(0)

  def read(self) -> trajectory_lib.Trajectory:
    """Returns the stored `Trajectory`, each field `[T, B, ...]`."""
    return tf.nest.pack_sequence_as(
        self._spec, [v.read_value() for v in self.storage])


class RolloutCollector(tf.Module):
  """Collects T-step rollouts from a TFEnvironment with a FunctionalPolicy."""

  def __init__(self,
               env: tf_environment.TFEnvironment,
               policy: FunctionalPolicy,
               rollout_length: int,
               name: str = 'rollout_collector'):
    """Creates the driver and the buffer.

    Args:
      env: a batched `TFEnvironment` (its variables hold the stream).
      policy: the acting policy.
      rollout_length: T, env steps per rollout.
      name: module name.
    """
    super().__init__(name=name)
    self.env = env
    self.policy = policy
    self.buffer = RolloutBuffer(policy.trajectory_spec, rollout_length,
                                env.batch_size)
    self.driver = dynamic_step_driver.DynamicStepDriver(
        env, policy, observers=[self.buffer], num_steps=rollout_length *
        env.batch_size)

  @property
  def rollout_length(self) -> int:
    return self.buffer.length

  def rollout_spec(self) -> Dict[str, tf.TensorSpec]:
    """Shapes and dtypes of the dict `collect` returns."""
    t, b = self.buffer.length, self.buffer.batch_size
    obs = self.env.observation_spec()
    spec = {
        'observation': tf.TensorSpec([t, b] + obs.shape.as_list(), obs.dtype),
        'action': tf.TensorSpec([t, b], self.policy.action_spec.dtype),
        'reward': tf.TensorSpec([t, b], tf.float32),
        'discount': tf.TensorSpec([t, b], tf.float32),
        'bootstrap_observation': tf.TensorSpec([b] + obs.shape.as_list(),
                                               obs.dtype),
    }
    return spec

  def collect(self, params: Sequence[tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Runs T env steps acting with `params`; returns the rollout dict."""
    with tf.name_scope(self.name):
      self.buffer.clear()
      with self.policy.acting_with([tf.stop_gradient(p) for p in params]):
        time_step, _ = self.driver.run()
      traj = self.buffer.read()
      return {
          'observation': traj.observation,
          'action': traj.action,
          'reward': traj.reward,
          'discount': traj.discount,
          'bootstrap_observation': time_step.observation,
      }


CONTEXT_TRANSFORMS = ('none', 'tanh', 'running_tanh')


@gin.configurable(allowlist=['window', 'transform', 'scale', 'decay',
                             'granularity'])
class RewardContext(tf.Module):
  """The mean reward of each of the last `window` rollouts: `[window]`.

  With `granularity='step'` the entries are single-step rewards instead:
  every `update` appends each time step's reward (the mean over the batch
  of envs, or per stream), so the context is the last `window` steps' (the
  follow-up paper's epsilon-Q context: the last 100 rewards).

  The context of contextual meta-parameters (BMG_SPEC section 2.1). Oldest
  first; starts at zeros. With `num_streams=N` (N seeds batched in one graph,
  one stream each) every stream keeps its own context: `[N, window]`.

  `transform` says what `value()` returns, elementwise on the stored means
  `r` (the follow-up paper squashes a normalised reward context to
  [-1, 1]; two-colours rollout means are ~0.1 in size, which a small
  meta-network barely sees):

  * 'none': `r`;
  * 'tanh': `tanh(r / scale)`, a fixed scale;
  * 'running_tanh': `tanh((r - m) / s)`, with `m` and `s**2` exponential
    moving averages (factor `decay` per rollout, per stream) of the rollout
    mean reward and of its squared deviation from `m`; they start at 0 and
    `scale**2`. After a reward flip the context then swings negative for as
    long as the averages take to adapt (about `1 / (1 - decay)` rollouts).

  The transform is part of the context: a SavedModel's `meta_parameters`
  signature takes `value()`, not the raw means.
  """

  def __init__(self, window: int = 10, num_streams: Optional[int] = None,
               transform: str = 'none', scale: float = 0.1,
               decay: float = 0.999, granularity: str = 'rollout',
               name: str = 'reward_context'):
    super().__init__(name=name)
    if granularity not in ('rollout', 'step'):
      raise ValueError(f"granularity: must be 'rollout' or 'step', got "
                       f'{granularity!r}.')
    if granularity == 'step' and transform == 'running_tanh':
      raise ValueError("granularity: 'step' does not combine with "
                       "transform='running_tanh' (its statistics are per "
                       'rollout).')
    if window <= 0:
      raise ValueError(f'window: must be positive, got {window}.')
    if num_streams is not None and num_streams <= 0:
      raise ValueError(f'num_streams: must be positive, got {num_streams}.')
    if transform not in CONTEXT_TRANSFORMS:
      raise ValueError(f'transform: must be one of {CONTEXT_TRANSFORMS}, got '
                       f'{transform!r}.')
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and
            scale > 0):
      raise ValueError(f'scale: must be finite and positive, got {scale!r}.')
    if not (isinstance(decay, (int, float)) and 0.0 <= decay < 1.0):
      raise ValueError(f'decay: must be in [0, 1), got {decay!r}.')
    self.window = int(window)
    self.num_streams = num_streams
    self.transform = transform
    self.scale = float(scale)
    self.decay = float(decay)
    self.granularity = granularity
    shape = [window] if num_streams is None else [num_streams, window]
    self.rewards = tf.Variable(tf.zeros(shape), trainable=False,
                               name='rewards')
    if transform == 'running_tanh':
      stat_shape = [1] if num_streams is None else [num_streams, 1]
      self.running_mean = tf.Variable(tf.zeros(stat_shape), trainable=False,
                                      name='running_mean')
      self.running_var = tf.Variable(tf.fill(stat_shape, self.scale**2),
                                     trainable=False, name='running_var')

  def update(self, rollout: Dict[str, tf.Tensor]):
    """Appends the rollout's mean reward (or, per step, its rewards).

    Args:
      rollout: a rollout dict; its 'reward' is `[T, B]`. The mean is over
        time and streams, or over time per stream with `num_streams`.
    """
    reward = tf.cast(rollout['reward'], tf.float32)  # [T, B]
    if self.granularity == 'step':
      steps = (tf.reduce_mean(reward, axis=1) if self.num_streams is None
               else tf.transpose(reward))  # [T] or [N, T]
      self.rewards.assign(tf.concat([self.rewards, steps],
                                    axis=-1)[..., -self.window:])
      return
    if self.num_streams is None:
      mean = tf.reduce_mean(reward)[None]
    else:
      mean = tf.reduce_mean(reward, axis=0)[:, None]  # [N, 1]
    self.rewards.assign(tf.concat([self.rewards[..., 1:], mean], axis=-1))
    if self.transform == 'running_tanh':
      d = self.decay
      m = d * self.running_mean + (1.0 - d) * mean
      self.running_var.assign(d * self.running_var +
                              (1.0 - d) * tf.square(mean - m))
      self.running_mean.assign(m)

  def value(self) -> tf.Tensor:
    """The context, `[window]` or `[N, window]` float32, transformed."""
    r = self.rewards.read_value()
    if self.transform == 'tanh':
      return tf.tanh(r / self.scale)
    if self.transform == 'running_tanh':
      std = tf.sqrt(self.running_var + 1e-8)
      return tf.tanh((r - self.running_mean) / std)
    return r


class RunStats(tf.Module):
  """Env-step and reward counters, updated in-graph by every collection.

  `env_steps` counts the steps of one stream (per seed). `total_reward` and
  `entropy_sum` are scalars, or `[N]` (one per seed) with `num_seeds`.
  """

  def __init__(self, num_seeds: Optional[int] = None):
    super().__init__(name='run_stats')
    shape = [] if num_seeds is None else [num_seeds]
    self.num_seeds = num_seeds
    self.env_steps = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.total_reward = tf.Variable(tf.zeros(shape, tf.float64),
                                    trainable=False)
    self.entropy_sum = tf.Variable(tf.zeros(shape, tf.float64),
                                   trainable=False)
    self.rollouts = tf.Variable(0, dtype=tf.int64, trainable=False)

  def update(self, rollout, entropy):
    """Counts one rollout: reward `[T, B]`, entropy scalar or `[N]`."""
    reward = tf.cast(rollout['reward'], tf.float64)
    steps = tf.size(reward) // (self.num_seeds or 1)
    self.env_steps.assign_add(tf.cast(steps, tf.int64))
    self.total_reward.assign_add(
        tf.reduce_sum(reward) if self.num_seeds is None else
        tf.reduce_sum(reward, axis=0))
    self.entropy_sum.assign_add(tf.cast(entropy, tf.float64))
    self.rollouts.assign_add(1)
