"""Adapters from gymnasium environments to TF-Agents `PyEnvironment`s.

TF-Agents 0.19 only wraps the legacy `gym` package. `GymnasiumEnvironment`
wraps any `gymnasium.Env`, and `GymnasiumVectorEnvironment` a batch of them
(a gymnasium `SyncVectorEnv` or `AsyncVectorEnv`), whose observation and
action spaces are `Box` or `Discrete`.

Step mapping for gymnasium's `(obs, reward, terminated, truncated, info)`:

*   `terminated` -> `ts.termination` (step_type LAST, discount 0);
*   otherwise `truncated` -> `ts.truncation` (step_type LAST, discount 1);
*   otherwise -> `ts.transition` (step_type MID, discount 1).

After a LAST time step, the next `step()` call resets the gymnasium
environment and returns its FIRST time step, ignoring the action (TF-Agents
auto-reset semantics). `GymnasiumVectorEnvironment` does this per sub-env.

Specs:

*   `Discrete(n, start=s)` -> `BoundedArraySpec((), np.int64, s, s + n - 1)`.
    int64 is used for all discrete spaces (gymnasium's `Discrete` dtype and
    the TF-Agents `gym_wrapper` convention). Discrete observations are
    returned as int64 scalars; discrete actions are passed to gymnasium as
    Python ints.
*   `Box(low, high, shape, dtype)` -> `BoundedArraySpec(shape, dtype, low,
    high)`. As with any `BoundedArraySpec`, infinite bounds become the
    dtype's finite extremes (e.g. `-inf` -> `np.finfo(np.float32).min`).
*   reward: `ArraySpec((), np.float32)`; discount: `BoundedArraySpec((),
    np.float32, 0, 1)`.

The batched environment's specs are these same (unbatched) specs; its time
steps have an outer batch dimension `[num_envs]`.
"""

from typing import Callable, List, Optional, Sequence, Tuple

import gymnasium
from gymnasium import spaces
from gymnasium import vector
import numpy as np
from tf_agents.environments import py_environment
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

__all__ = ['GymnasiumEnvironment', 'GymnasiumVectorEnvironment',
           'spec_from_space', 'specs_from_spaces']


def spec_from_space(space, name):
  """Returns the `BoundedArraySpec` for a gymnasium `Box` or `Discrete` space.

  Args:
    space: A `gymnasium.spaces.Box` or `gymnasium.spaces.Discrete`.
    name: Name of the returned spec.

  Returns:
    An `array_spec.BoundedArraySpec` (see module docstring).

  Raises:
    ValueError: if `space` is of another type (the message names it).
  """
  if isinstance(space, spaces.Discrete):
    start = int(space.start)
    return array_spec.BoundedArraySpec(
        shape=(), dtype=np.int64, minimum=start,
        maximum=start + int(space.n) - 1, name=name)
  if isinstance(space, spaces.Box):
    return array_spec.BoundedArraySpec(
        shape=space.shape, dtype=space.dtype, minimum=space.low,
        maximum=space.high, name=name)
  raise ValueError(
      f'Unsupported gymnasium {name} space {space!r} '
      f'({type(space).__name__}); only Box and Discrete are supported.')


def specs_from_spaces(observation_space, action_space):
  """The specs an adapter over envs with these spaces reports.

  Args:
    observation_space: A single env's `Box` or `Discrete` observation space.
    action_space: Its action space.

  Returns:
    (time_step_spec, action_spec): unbatched `array_spec`s, a float32
    reward and a [0, 1] float32 discount.
  """
  reward = array_spec.ArraySpec(shape=(), dtype=np.float32, name='reward')
  return (ts.time_step_spec(spec_from_space(observation_space, 'observation'),
                            reward),
          spec_from_space(action_space, 'action'))


class _SpecsFromSpaces(py_environment.PyEnvironment):
  """The specs both adapters share: from the (single-env) spaces, plus a
  float32 reward and a [0, 1] float32 discount."""

  def _set_specs(self, observation_space, action_space):
    self._observation_spec = spec_from_space(observation_space,
                                             'observation')
    self._action_spec = spec_from_space(action_space, 'action')

  def observation_spec(self):
    return self._observation_spec

  def action_spec(self):
    return self._action_spec

  def reward_spec(self):
    return array_spec.ArraySpec(shape=(), dtype=np.float32, name='reward')

  def discount_spec(self):
    return array_spec.BoundedArraySpec(
        shape=(), dtype=np.float32, minimum=0.0, maximum=1.0, name='discount')


class GymnasiumEnvironment(_SpecsFromSpaces):
  """Unbatched TF-Agents `PyEnvironment` wrapping a `gymnasium.Env`."""

  def __init__(self, env, seed=None):
    """Wraps `env`.

    Args:
      env: A `gymnasium.Env` (possibly wrapped, e.g. in `TimeLimit`) with Box
        or Discrete observation and action spaces.
      seed: Optional int passed as `seed=` to the first `env.reset()`; later
        resets pass no seed, so the environment's RNG continues.

    Raises:
      ValueError: if a space is unsupported (the message names it).
    """
    super().__init__(handle_auto_reset=True)
    self._env = env
    self._set_specs(env.observation_space, env.action_space)
    self._discrete_action = isinstance(env.action_space, spaces.Discrete)
    self._seed = seed
    self._info = None

  @property
  def gym_env(self):
    """The wrapped gymnasium environment."""
    return self._env

  def get_info(self):
    """Returns the gymnasium `info` dict of the last reset/step."""
    return self._info

  def _convert_obs(self, obs):
    return np.asarray(obs, dtype=self._observation_spec.dtype).reshape(
        self._observation_spec.shape)

  def _reset(self):
    seed, self._seed = self._seed, None
    obs, self._info = self._env.reset(seed=seed)
    return ts.restart(self._convert_obs(obs))

  def _step(self, action):
    if self._discrete_action:
      action = int(np.asarray(action).reshape(()))
    else:
      action = np.asarray(action, dtype=self._action_spec.dtype)
    obs, reward, terminated, truncated, self._info = self._env.step(action)
    obs = self._convert_obs(obs)
    reward = np.asarray(reward, dtype=np.float32)
    if terminated:
      return ts.termination(obs, reward)
    if truncated:
      return ts.truncation(obs, reward)
    return ts.transition(obs, reward)

  def render(self, mode='rgb_array'):
    """Returns `env.render()`.

    Args:
      mode: Ignored: gymnasium fixes the render mode when the environment is
        constructed (`render_mode=`).

    Returns:
      Whatever the gymnasium environment's `render()` returns.
    """
    del mode
    return self._env.render()

  def close(self):
    self._env.close()


class GymnasiumVectorEnvironment(_SpecsFromSpaces):
  """Batched TF-Agents `PyEnvironment` over a gymnasium vector environment.

  Runs `len(env_fns)` sub-environments in a gymnasium `SyncVectorEnv` (in
  this process) or `AsyncVectorEnv` (one worker process each), with
  gymnasium's NEXT_STEP autoreset: the `step()` after a sub-env's LAST time
  step resets that sub-env and ignores its action. Per sub-env:

  *   first step after a reset or after a LAST -> FIRST (reward 0,
      discount 1);
  *   `terminated` -> LAST, discount 0;
  *   otherwise `truncated` -> LAST, discount 1;
  *   otherwise -> MID, discount 1.

  This is TF-Agents' auto-reset semantics, applied to each sub-env
  independently (the base class' all-LAST auto-reset is off).

  Time steps have an outer batch dimension `[num_envs]`: `step_type` int32,
  `reward` and `discount` float32, `observation` of the spec's dtype with
  shape `[num_envs, *observation_spec().shape]`. `step(action)` takes an
  action of shape `[num_envs, *action_spec().shape]` (discrete actions as an
  int array `[num_envs]`).

  Finished episodes: sub-envs wrapped in gymnasium's
  `RecordEpisodeStatistics` report `info['episode']` when an episode ends;
  `pop_episode_stats()` returns those (return, length) pairs.
  """

  def __init__(
      self,
      env_fns: Sequence[Callable[[], gymnasium.Env]],
      asynchronous: bool = False,
      seed: Optional[int] = None):
    """Creates the vector environment (and, if asynchronous, its workers).

    Args:
      env_fns: Non-empty sequence of zero-argument callables, each returning a
        `gymnasium.Env` with the same Box or Discrete observation and action
        spaces. With `asynchronous=True` each is called in a worker process.
      asynchronous: If True, a gymnasium `AsyncVectorEnv` (one process per
        sub-env); otherwise a `SyncVectorEnv` (sub-envs stepped in turn in
        this process).
      seed: Optional int. The first reset seeds sub-env `i` with `seed + i`;
        later resets pass no seed, so each sub-env's RNG continues.

    Raises:
      ValueError: if `env_fns` is empty or not a sequence of callables, if
        `seed` is not an int, or if a space is unsupported (the message names
        it).
    """
    super().__init__(handle_auto_reset=False)
    env_fns = list(env_fns) if isinstance(env_fns, (list, tuple)) else None
    if not env_fns or not all(callable(f) for f in env_fns):
      raise ValueError(
          '`env_fns` must be a non-empty list of callables returning '
          'gymnasium environments.')
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
      raise ValueError(f'`seed` must be an int or None, got {seed!r}.')
    vector_cls = vector.AsyncVectorEnv if asynchronous else vector.SyncVectorEnv
    self._env = vector_cls(
        env_fns, autoreset_mode=vector.AutoresetMode.NEXT_STEP)
    try:
      self._set_specs(self._env.single_observation_space,
                      self._env.single_action_space)
    except ValueError:
      self._env.close()
      raise
    self._num_envs = len(env_fns)
    self._discrete_action = isinstance(
        self._env.single_action_space, spaces.Discrete)
    self._seed = None if seed is None else int(seed)
    self._needs_reset = np.zeros(self._num_envs, dtype=bool)
    self._episode_stats = []
    self._info = None

  @property
  def vector_env(self):
    """The wrapped gymnasium `SyncVectorEnv` or `AsyncVectorEnv`."""
    return self._env

  @property
  def batched(self) -> bool:
    return True

  @property
  def batch_size(self) -> int:
    return self._num_envs

  def get_info(self):
    """Returns the gymnasium vector `info` dict of the last reset/step."""
    return self._info

  def pop_episode_stats(self) -> List[Tuple[float, int]]:
    """Returns and forgets the episodes finished since the last call.

    Returns:
      A list of `(return, length)` pairs (Python float and int), in the order
      the episodes finished (sub-env index order within one step), as
      reported by the sub-envs' `RecordEpisodeStatistics` wrappers (so in
      that wrapper's units: e.g. raw game score and emulator frames for
      `bmg_tf.envs.atari.make_atari`). Empty if no sub-env records them.
    """
    stats, self._episode_stats = self._episode_stats, []
    return stats

  def _record_episodes(self, info):
    """Appends the finished episodes of a vector `info` dict."""
    if 'episode' not in info:
      return
    episode = info['episode']
    mask = info.get('_episode', np.ones(self._num_envs, dtype=bool))
    for i in np.flatnonzero(mask):
      self._episode_stats.append(
          (float(episode['r'][i]), int(episode['l'][i])))

  def _convert_obs(self, obs):
    return np.asarray(obs, dtype=self._observation_spec.dtype).reshape(
        (self._num_envs,) + tuple(self._observation_spec.shape))

  def _reset(self):
    if self._seed is None:
      seed = None
    else:
      seed = [self._seed + i for i in range(self._num_envs)]
      self._seed = None
    obs, self._info = self._env.reset(seed=seed)
    self._record_episodes(self._info)
    self._needs_reset[:] = False
    return ts.restart(self._convert_obs(obs), batch_size=self._num_envs)

  def _step(self, action):
    shape = (self._num_envs,) + tuple(self._action_spec.shape)
    if self._discrete_action:
      action = np.asarray(action).astype(np.int64).reshape(shape)
    else:
      action = np.asarray(action, dtype=self._action_spec.dtype).reshape(shape)
    obs, reward, terminated, truncated, self._info = self._env.step(action)
    self._record_episodes(self._info)
    terminated = np.asarray(terminated, dtype=bool)
    truncated = np.asarray(truncated, dtype=bool)
    first = self._needs_reset
    last = ~first & (terminated | truncated)
    step_type = np.where(
        first, ts.StepType.FIRST,
        np.where(last, ts.StepType.LAST, ts.StepType.MID)).astype(np.int32)
    reward = np.where(first, 0.0, reward).astype(np.float32)
    discount = np.where(~first & terminated, 0.0, 1.0).astype(np.float32)
    self._needs_reset = last
    return ts.TimeStep(step_type, reward, discount, self._convert_obs(obs))

  def close(self):
    self._env.close()
