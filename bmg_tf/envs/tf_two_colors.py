"""Batched, in-graph TensorFlow version of the two-colours grid world.

`TFTwoColors` runs `batch_size` independent streams of the environment of
`bmg_tf.envs.two_colors` (same parameters, same dynamics, same observation
layout, same respawn scheme) entirely in TensorFlow ops, so that it can be
stepped inside `tf.function`, including `tf.function(jit_compile=True)`.

State lives in non-trainable `tf.Variable`s (the class is also a `tf.Module`,
so `env.variables` lists them and `tf.train.Checkpoint(env=env)` saves and
restores the stream exactly). Attribute (variable name): contents.

*   `agent` (`agent`): int32 `[B, 2]`, agent `(row, col)`;
*   `objects` (`objects`): int32 `[B, 2, 2]`, `[blue, red]` `(row, col)`;
*   `step_count` (`step`): int64 `[B]`, steps taken since the last reset;
*   `last_reward` (`reward`): float32 `[B]`, reward of the last step (0 after a
    reset);
*   `rng` (`rng`): int64 `[2]`, `(key, counter)` of the stateless RNG. Every
    random draw uses `seed=(key, counter)` with `tf.random.stateless_uniform`
    and then increments `counter`. `reset()` makes 3 draws and each `step()`
    a fixed number (1 for `respawn='collected'`, 2 for `'all'`), whether or
    not anything is collected. Each draw has shape `[B]`, so a stream's
    randomness does not depend on the other streams' actions. Eager,
    `tf.function` and XLA-compiled execution give the same stream.

Time steps: `reset()` returns step_type FIRST for all streams; `step()` always
returns MID, never LAST (the stream is non-episodic), with discount 1.0.
`current_time_step()` reports FIRST for streams whose step counter is 0 and MID
otherwise. Shapes: step_type int32 `[B]`, reward float32 `[B]`, discount
float32 `[B]`, observation float32 `[B, 6 * size]`. Actions: int `[B]` in
`{0, 1, 2, 3}` (spec dtype int64, matching `gym_adapter`); out-of-range actions
are not checked.
"""

import gin
import numpy as np
import tensorflow as tf
from tf_agents.environments import tf_environment
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

from bmg_tf.envs import two_colors

__all__ = ['TFTwoColors', 'ENVS', 'make_env']

_STATE_KEYS = ('agent', 'objects', 'step', 'reward', 'rng')


@gin.configurable(allowlist=['size', 'flip_period', 'respawn', 'step_cost'])
class TFTwoColors(tf_environment.TFEnvironment, tf.Module):
  """`batch_size` independent two-colours streams as a `TFEnvironment`."""

  def __init__(self, size=5, flip_period=100_000, respawn='collected',
               step_cost=0.0, batch_size=1, seed=None, name='TFTwoColors'):
    """Creates the environment and resets all streams (3 RNG draws).

    Args:
      size: Int >= 2, grid side length.
      flip_period: Int >= 1, the good colour flips every `flip_period` steps.
      respawn: `'collected'` or `'all'`, see `bmg_tf.envs.two_colors`.
      step_cost: Finite float >= 0 subtracted from every reward.
      batch_size: Int >= 1, number of independent streams B.
      seed: Optional int, RNG key; if `None` a random key is drawn from numpy.
      name: Name of the `tf.Module`.

    Raises:
      ValueError: For an invalid argument (the message names it).
    """
    (self._size, self._flip_period, self._respawn,
     self._step_cost) = two_colors.validate_params(
         size, flip_period, respawn, step_cost)
    if (not isinstance(batch_size, (int, np.integer))
        or isinstance(batch_size, bool) or batch_size < 1):
      raise ValueError(f'batch_size must be an int >= 1, got {batch_size!r}.')
    batch_size = int(batch_size)
    if seed is None:
      seed = int(np.random.default_rng().integers(2**62))
    n = self._size
    observation_spec = tensor_spec.BoundedTensorSpec(
        shape=(6 * n,), dtype=tf.float32, minimum=0.0, maximum=1.0,
        name='observation')
    action_spec = tensor_spec.BoundedTensorSpec(
        shape=(), dtype=tf.int64, minimum=0, maximum=3, name='action')
    reward_spec = tensor_spec.TensorSpec(
        shape=(), dtype=tf.float32, name='reward')
    time_step_spec = ts.time_step_spec(observation_spec, reward_spec)
    tf.Module.__init__(self, name=name)
    tf_environment.TFEnvironment.__init__(
        self, time_step_spec, action_spec, batch_size)
    with tf.init_scope(), self.name_scope:
      b = batch_size
      self.agent = tf.Variable(
          tf.zeros([b, 2], tf.int32), trainable=False, name='agent')
      self.objects = tf.Variable(
          tf.zeros([b, 2, 2], tf.int32), trainable=False, name='objects')
      self.step_count = tf.Variable(
          tf.zeros([b], tf.int64), trainable=False, name='step')
      self.last_reward = tf.Variable(
          tf.zeros([b], tf.float32), trainable=False, name='reward')
      self.rng = tf.Variable(
          tf.constant([seed, 0], tf.int64), trainable=False, name='rng')
      self._reset()

  # ------------------------------------------------------------- properties

  @property
  def size(self):
    return self._size

  @property
  def flip_period(self):
    return self._flip_period

  @property
  def respawn(self):
    return self._respawn

  @property
  def step_cost(self):
    return self._step_cost

  @property
  def state_variables(self):
    """`(agent, objects, step_count, last_reward, rng)` variables."""
    return (self.agent, self.objects, self.step_count, self.last_reward,
            self.rng)

  # ---------------------------------------------------------------- helpers

  def _next_seed(self):
    """Returns the int64 `[2]` seed for one draw and advances the counter."""
    seed = tf.identity(self.rng.read_value())
    with tf.control_dependencies([seed]):
      self.rng.assign_add(tf.constant([0, 1], tf.int64))
    return seed

  def _sample_free(self, occupied, num_free):
    """Draws a uniform free cell per stream.

    Args:
      occupied: bool `[B, size**2]`, occupied cells (row-major cell index).
      num_free: Python int, number of free cells in every row of `occupied`.

    Returns:
      int32 `[B]` cell index: the `k`-th free cell in row-major order with
      `k ~ U{0, ..., num_free - 1}`.
    """
    k = tf.random.stateless_uniform(
        [self.batch_size], seed=self._next_seed(), minval=0, maxval=num_free,
        dtype=tf.int32)
    free = tf.cast(tf.logical_not(occupied), tf.int32)
    rank = tf.cumsum(free, axis=1) - 1
    hit = tf.logical_and(free > 0, tf.equal(rank, k[:, None]))
    return tf.argmax(tf.cast(hit, tf.int32), axis=1, output_type=tf.int32)

  def _cells(self, pos):
    """int32 `[..., 2]` (row, col) -> int32 `[...]` row-major cell index."""
    return tf.reduce_sum(pos * tf.constant([self._size, 1], tf.int32), axis=-1)

  def _pos(self, cell):
    """int32 `[...]` cell index -> int32 `[..., 2]` (row, col)."""
    return tf.stack([cell // self._size, cell % self._size], axis=-1)

  def _one_hot_cells(self, cell):
    return tf.one_hot(cell, self._size * self._size, on_value=True,
                      off_value=False, dtype=tf.bool)

  def _observation(self, agent, objects):
    """float32 `[B, 6 * size]` observation from agent `[B,2]`, objects."""
    positions = tf.concat([agent[:, None, :], objects], axis=1)  # [B, 3, 2]
    one_hot = tf.one_hot(positions, self._size, dtype=tf.float32)
    return tf.reshape(one_hot, [self.batch_size, 6 * self._size])

  def _time_step(self, step_type, reward, agent, objects):
    b = self.batch_size
    return ts.TimeStep(
        step_type=step_type,
        reward=tf.reshape(reward, [b]),
        discount=tf.ones([b], tf.float32, name='discount'),
        observation=self._observation(agent, objects))

  # --------------------------------------------------- TFEnvironment methods

  def _current_time_step(self):
    with tf.name_scope('TFTwoColors_current_time_step'):
      step_type = tf.where(
          tf.equal(self.step_count, 0),
          tf.constant(ts.StepType.FIRST, tf.int32),
          tf.constant(ts.StepType.MID, tf.int32))
      return self._time_step(step_type, self.last_reward.read_value(),
                             self.agent.read_value(),
                             self.objects.read_value())

  def _reset(self):
    """Re-places all entities uniformly on distinct cells; counters to 0."""
    with tf.name_scope('TFTwoColors_reset'):
      b, cells = self.batch_size, self._size * self._size
      occupied = tf.zeros([b, cells], tf.bool)
      agent = self._sample_free(occupied, cells)
      occupied = tf.logical_or(occupied, self._one_hot_cells(agent))
      blue = self._sample_free(occupied, cells - 1)
      occupied = tf.logical_or(occupied, self._one_hot_cells(blue))
      red = self._sample_free(occupied, cells - 2)
      agent = self._pos(agent)
      objects = tf.stack([self._pos(blue), self._pos(red)], axis=1)
      reward = tf.zeros([b], tf.float32)
      self.agent.assign(agent)
      self.objects.assign(objects)
      self.step_count.assign(tf.zeros([b], tf.int64))
      self.last_reward.assign(reward)
      step_type = tf.fill([b], tf.constant(ts.StepType.FIRST, tf.int32))
      return self._time_step(step_type, reward, agent, objects)

  def _step(self, action):
    """Steps all B streams.

    Args:
      action: int `[B]` (any int dtype) in `{0, 1, 2, 3}`.

    Returns:
      A MID `TimeStep` (see module docstring for shapes).
    """
    with tf.name_scope('TFTwoColors_step'):
      b, n = self.batch_size, self._size
      action = tf.reshape(tf.cast(action, tf.int32), [b])
      agent = self.agent.read_value()
      objects = self.objects.read_value()
      t = self.step_count.read_value()
      good = tf.cast((t // self._flip_period) % 2, tf.int32)  # [B]

      deltas = tf.constant(two_colors.ACTION_DELTAS, tf.int32)  # [4, 2]
      agent = tf.clip_by_value(agent + tf.gather(deltas, action), 0, n - 1)

      hit = tf.reduce_all(tf.equal(objects, agent[:, None, :]), axis=-1)
      collected_any = tf.reduce_any(hit, axis=-1)  # [B]
      collected = tf.argmax(tf.cast(hit, tf.int32), axis=-1,
                            output_type=tf.int32)  # [B], 0 if none
      # Computed in float64 and rounded once, so that it equals
      # np.float32(reward of the gymnasium version) exactly.
      one = tf.constant(1.0, tf.float64)
      sign = tf.where(tf.equal(collected, good), one, -one)
      reward = tf.where(collected_any, sign, tf.zeros_like(sign))
      reward = tf.cast(reward - self._step_cost, tf.float32)

      agent_cells = self._one_hot_cells(self._cells(agent))  # [B, C]
      cells = n * n
      if self._respawn == 'collected':
        other = tf.gather(objects, 1 - collected, batch_dims=1)  # [B, 2]
        occupied = tf.logical_or(
            agent_cells, self._one_hot_cells(self._cells(other)))
        new_pos = self._pos(self._sample_free(occupied, cells - 2))
        # hit [B, 2] is all-False for streams that collected nothing.
        objects = tf.where(hit[:, :, None], new_pos[:, None, :], objects)
      else:
        blue = self._sample_free(agent_cells, cells - 1)
        occupied = tf.logical_or(agent_cells, self._one_hot_cells(blue))
        red = self._sample_free(occupied, cells - 2)
        new_objects = tf.stack([self._pos(blue), self._pos(red)], axis=1)
        objects = tf.where(collected_any[:, None, None], new_objects, objects)

      self.agent.assign(agent)
      self.objects.assign(objects)
      self.step_count.assign_add(tf.ones([b], tf.int64))
      self.last_reward.assign(reward)
      step_type = tf.fill([b], tf.constant(ts.StepType.MID, tf.int32))
      return self._time_step(step_type, reward, agent, objects)

  # ------------------------------------------------------------ raw state

  def get_state(self):
    """Returns the state as a dict of tensors (copies of the variables).

    Returns:
      `dict(agent=int32 [B, 2], objects=int32 [B, 2, 2], step=int64 [B],
      reward=float32 [B], rng=int64 [2])`.
    """
    with tf.name_scope('TFTwoColors_get_state'):
      return {
          'agent': tf.identity(self.agent.read_value()),
          'objects': tf.identity(self.objects.read_value()),
          'step': tf.identity(self.step_count.read_value()),
          'reward': tf.identity(self.last_reward.read_value()),
          'rng': tf.identity(self.rng.read_value()),
      }

  def set_state(self, state):
    """Assigns the entries present in `state` (same keys as `get_state()`).

    Values are not validated in graph mode; when executing eagerly, positions
    must be on the grid and distinct per stream, else `ValueError`.

    Args:
      state: Dict with any subset of the keys `agent` `[B, 2]`, `objects`
        `[B, 2, 2]`, `step` `[B]`, `reward` `[B]`, `rng` `[2]`.

    Raises:
      ValueError: for unknown keys, or (eagerly) invalid positions.
    """
    unknown = set(state) - set(_STATE_KEYS)
    if unknown:
      raise ValueError(f'Unknown state keys {sorted(unknown)}; expected a '
                       f'subset of {_STATE_KEYS}.')
    with tf.name_scope('TFTwoColors_set_state'):
      b = self.batch_size
      values = {}
      if 'agent' in state:
        values['agent'] = tf.reshape(tf.cast(state['agent'], tf.int32), [b, 2])
      if 'objects' in state:
        values['objects'] = tf.reshape(
            tf.cast(state['objects'], tf.int32), [b, 2, 2])
      if tf.executing_eagerly():
        agent = values.get('agent', self.agent).numpy()
        objects = values.get('objects', self.objects).numpy()
        allpos = np.concatenate([agent[:, None], objects], axis=1)
        if np.any(allpos < 0) or np.any(allpos >= self._size):
          raise ValueError(f'state positions must lie in [0, {self._size}).')
        cells = allpos[..., 0] * self._size + allpos[..., 1]
        if np.any(np.sort(cells, axis=1)[:, 1:] == np.sort(cells, axis=1)[
            :, :-1]):
          raise ValueError('agent and objects must be on distinct cells.')
      ops = []
      if 'agent' in values:
        ops.append(self.agent.assign(values['agent']))
      if 'objects' in values:
        ops.append(self.objects.assign(values['objects']))
      if 'step' in state:
        ops.append(self.step_count.assign(
            tf.reshape(tf.cast(state['step'], tf.int64), [b])))
      if 'reward' in state:
        ops.append(self.last_reward.assign(
            tf.reshape(tf.cast(state['reward'], tf.float32), [b])))
      if 'rng' in state:
        ops.append(self.rng.assign(
            tf.reshape(tf.cast(state['rng'], tf.int64), [2])))
      return tf.group(ops)


ENVS = {'TwoColors': TFTwoColors}


def make_env(env_name: str, **kwargs):
  """Builds an in-graph env by name; unknown names raise a ValueError."""
  if env_name not in ENVS:
    raise ValueError(f'env_name: unknown environment {env_name!r}; known: '
                     f'{sorted(ENVS)}.')
  return ENVS[env_name](**kwargs)
