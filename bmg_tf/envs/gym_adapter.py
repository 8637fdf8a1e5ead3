"""Adapter from a gymnasium environment to a TF-Agents `PyEnvironment`.

TF-Agents 0.19 only wraps the legacy `gym` package; this adapter wraps any
`gymnasium.Env` whose observation and action spaces are `Box` or `Discrete`.

Step mapping for gymnasium's `(obs, reward, terminated, truncated, info)`:

*   `terminated` -> `ts.termination` (step_type LAST, discount 0);
*   otherwise `truncated` -> `ts.truncation` (step_type LAST, discount 1);
*   otherwise -> `ts.transition` (step_type MID, discount 1).

After a LAST time step, the next `step()` call resets the gymnasium
environment and returns its FIRST time step, ignoring the action (TF-Agents
auto-reset semantics).

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
"""

from gymnasium import spaces
import numpy as np
from tf_agents.environments import py_environment
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

__all__ = ['GymnasiumEnvironment', 'spec_from_space']


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


class GymnasiumEnvironment(py_environment.PyEnvironment):
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
    self._observation_spec = spec_from_space(
        env.observation_space, 'observation')
    self._action_spec = spec_from_space(env.action_space, 'action')
    self._discrete_action = isinstance(env.action_space, spaces.Discrete)
    self._seed = seed
    self._info = None

  @property
  def gym_env(self):
    """The wrapped gymnasium environment."""
    return self._env

  def observation_spec(self):
    return self._observation_spec

  def action_spec(self):
    return self._action_spec

  def reward_spec(self):
    return array_spec.ArraySpec(shape=(), dtype=np.float32, name='reward')

  def discount_spec(self):
    return array_spec.BoundedArraySpec(
        shape=(), dtype=np.float32, minimum=0.0, maximum=1.0, name='discount')

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
