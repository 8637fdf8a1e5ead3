"""The non-stationary "two colours" grid world of the BMG paper (gymnasium).

Flennerhag et al. (2022), "Bootstrapped Meta-Learning", use a small grid world
with two coloured objects to study non-stationary, non-episodic RL. This module
implements it as a `gymnasium.Env`.

Dynamics (one continuous stream, no episodes):

*   The grid has `size` x `size` cells, addressed as `(row, col)` with
    `0 <= row, col < size`; row 0 is the top row. The agent and two objects
    (index 0 "blue", index 1 "red") each occupy one cell; all three cells are
    always distinct.
*   Actions: `0` up (row - 1), `1` down (row + 1), `2` left (col - 1),
    `3` right (col + 1). A move into a wall leaves the agent where it is.
*   If after moving the agent stands on an object it collects it. The reward is
    `+1` if that object's colour is the good colour of the current step and
    `-1` otherwise. The object(s) then respawn (see `respawn` below).
*   `step_cost` is subtracted from every step's reward, collecting or not:
    `reward = collect_reward - step_cost` with `collect_reward` in
    `{-1, 0, +1}`.
*   The step counter `t` is the number of steps taken since the last
    `reset()` (0 for the first step after a reset). The good colour of the step
    taken at counter `t` is `good_colour(t) = (t // flip_period) % 2`, i.e.
    blue (0) for `t` in `[0, flip_period)`, red (1) for
    `t` in `[flip_period, 2 * flip_period)`, blue again afterwards, and so on.
*   Respawn with `respawn='collected'`: only the collected object moves, to a
    cell drawn uniformly at random among the `size**2 - 2` cells that hold
    neither the agent nor the other object. With `respawn='all'`: both objects
    are re-placed (the agent stays): blue is drawn uniformly among the
    `size**2 - 1` cells without the agent, then red uniformly among the
    `size**2 - 2` cells holding neither the agent nor blue.
    A uniform draw among free cells is made as `k ~ U{0, ..., n_free - 1}`
    followed by taking the `k`-th free cell in row-major order (cell index
    `row * size + col`); `bmg_tf.envs.tf_two_colors` uses the same scheme.

The environment never terminates and never truncates: `step()` always returns
`terminated=False` and `truncated=False`. Users who want finite episodes can
wrap it, e.g. with `gymnasium.wrappers.TimeLimit`. It is registered (without a
`max_episode_steps`) as `'bmg_tf/TwoColors-v0'` by importing `bmg_tf.envs`.

Observation (float32 vector of shape `[6 * size]`, 30 for `size=5`): the
concatenation of six one-hot vectors of length `size`:

    obs[0 * size:1 * size]  one-hot of the agent's row
    obs[1 * size:2 * size]  one-hot of the agent's column
    obs[2 * size:3 * size]  one-hot of blue's row     (object 0)
    obs[3 * size:4 * size]  one-hot of blue's column
    obs[4 * size:5 * size]  one-hot of red's row      (object 1)
    obs[5 * size:6 * size]  one-hot of red's column

`info` (from `reset()` and `step()`) holds `'step'`, the step counter after
the call (`0` after reset), `'good_colour'`, the good colour for the *next*
step, i.e. `good_colour(info['step'])`, and `'collected'`, the index of the
object collected by this step (`-1` if none; always `-1` after reset).
"""

import math
import numbers

import gymnasium
from gymnasium import spaces
import numpy as np

__all__ = [
    'ACTION_DELTAS',
    'BLUE',
    'RED',
    'RESPAWN_MODES',
    'TwoColors',
    'good_colour',
    'validate_params',
]

BLUE = 0
RED = 1
RESPAWN_MODES = ('collected', 'all')

# (d_row, d_col) for actions 0 up, 1 down, 2 left, 3 right.
ACTION_DELTAS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def good_colour(step, flip_period):
  """Returns the colour (0 blue, 1 red) that pays +1 at step counter `step`.

  Args:
    step: Non-negative int (or int array), the number of steps taken before
      the step in question.
    flip_period: Positive int, number of steps between flips.

  Returns:
    `(step // flip_period) % 2`, same type/shape as `step`.
  """
  return (step // flip_period) % 2


def _is_int(x):
  return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def validate_params(size, flip_period, respawn, step_cost):
  """Checks the two-colours parameters, raising `ValueError` if invalid.

  Args:
    size: Int >= 2, grid side length.
    flip_period: Int >= 1, steps between flips of the good colour.
    respawn: One of `RESPAWN_MODES`.
    step_cost: Finite float >= 0.

  Returns:
    `(size, flip_period, respawn, step_cost)` as `(int, int, str, float)`.

  Raises:
    ValueError: naming the offending argument.
  """
  if not _is_int(size) or size < 2:
    raise ValueError(f'size must be an int >= 2, got {size!r}.')
  if not _is_int(flip_period) or flip_period < 1:
    raise ValueError(f'flip_period must be an int >= 1, got {flip_period!r}.')
  if not isinstance(respawn, str) or respawn not in RESPAWN_MODES:
    raise ValueError(
        f'respawn must be one of {RESPAWN_MODES}, got {respawn!r}.')
  if (isinstance(step_cost, bool) or not isinstance(step_cost, numbers.Real)
      or not math.isfinite(step_cost) or step_cost < 0):
    raise ValueError(
        f'step_cost must be a finite number >= 0, got {step_cost!r}.')
  return int(size), int(flip_period), respawn, float(step_cost)


class TwoColors(gymnasium.Env):
  """Non-episodic two-colours grid world; see the module docstring.

  Observation space: `Box(0, 1, shape=[6 * size], dtype=float32)`.
  Action space: `Discrete(4)`.
  """

  metadata = {'render_modes': ['ansi'], 'render_fps': 4}

  def __init__(self, size=5, flip_period=100_000, respawn='collected',
               step_cost=0.0, render_mode=None):
    """Creates the environment. Call `reset()` before `step()`.

    Args:
      size: Int >= 2, the grid is `size` x `size`.
      flip_period: Int >= 1, the good colour flips every `flip_period` steps.
      respawn: `'collected'` (only the collected object respawns) or `'all'`
        (both objects are re-placed whenever one is collected).
      step_cost: Finite float >= 0 subtracted from every step's reward.
      render_mode: `None` or `'ansi'` (text grid; `A` agent, `B` blue, `R`
        red).

    Raises:
      ValueError: For an invalid argument (the message names it).
    """
    (self.size, self.flip_period, self.respawn,
     self.step_cost) = validate_params(size, flip_period, respawn, step_cost)
    if render_mode is not None and render_mode not in self.metadata[
        'render_modes']:
      raise ValueError(
          f'render_mode must be None or one of '
          f'{self.metadata["render_modes"]}, got {render_mode!r}.')
    self.render_mode = render_mode
    n = self.size
    self.observation_space = spaces.Box(
        low=0.0, high=1.0, shape=(6 * n,), dtype=np.float32)
    self.action_space = spaces.Discrete(4)
    self._agent = None   # np.int64 [2]
    self._objects = None  # np.int64 [2, 2]
    self._step_count = 0

  # ---------------------------------------------------------------- helpers

  def _cell(self, pos):
    return int(pos[0]) * self.size + int(pos[1])

  def _pos(self, cell):
    return np.array(divmod(int(cell), self.size), dtype=np.int64)

  def _sample_free(self, occupied_cells):
    """Uniform cell index among cells not in `occupied_cells`."""
    occupied = set(int(c) for c in occupied_cells)
    free = [c for c in range(self.size * self.size) if c not in occupied]
    k = int(self.np_random.integers(len(free)))
    return free[k]

  def _obs(self):
    n = self.size
    obs = np.zeros((3, 2, n), dtype=np.float32)
    positions = np.concatenate([self._agent[None], self._objects], axis=0)
    for e in range(3):
      obs[e, 0, positions[e, 0]] = 1.0
      obs[e, 1, positions[e, 1]] = 1.0
    return obs.reshape(6 * n)

  def _info(self, collected):
    return {
        'good_colour': int(good_colour(self._step_count, self.flip_period)),
        'step': int(self._step_count),
        'collected': int(collected),
    }

  def _check_ready(self):
    if self._agent is None:
      raise RuntimeError('Call reset() (or set_state()) before step().')

  # ------------------------------------------------------------------- API

  @property
  def good_colour(self):
    """Colour (0 blue, 1 red) that pays +1 on the next step."""
    return int(good_colour(self._step_count, self.flip_period))

  def reset(self, *, seed=None, options=None):
    """Places agent and objects on distinct uniform cells; step counter = 0.

    Args:
      seed: Optional int seeding `self.np_random` (gymnasium semantics).
      options: Unused.

    Returns:
      `(observation, info)`: float32 `[6 * size]` and a dict (module doc).
    """
    super().reset(seed=seed)
    del options
    agent = self._sample_free([])
    blue = self._sample_free([agent])
    red = self._sample_free([agent, blue])
    self._agent = self._pos(agent)
    self._objects = np.stack([self._pos(blue), self._pos(red)])
    self._step_count = 0
    return self._obs(), self._info(-1)

  def step(self, action):
    """Takes one step; see the module docstring for the dynamics.

    Args:
      action: Int in `{0, 1, 2, 3}`.

    Returns:
      `(observation, reward, terminated, truncated, info)` with observation
      float32 `[6 * size]`, reward a Python float, `terminated` and
      `truncated` always `False`.
    """
    self._check_ready()
    if not self.action_space.contains(action):
      raise ValueError(f'Invalid action {action!r}; expected 0, 1, 2 or 3.')
    good = good_colour(self._step_count, self.flip_period)
    d_row, d_col = ACTION_DELTAS[int(action)]
    n = self.size
    self._agent = np.array([min(max(self._agent[0] + d_row, 0), n - 1),
                            min(max(self._agent[1] + d_col, 0), n - 1)],
                           dtype=np.int64)
    collected = -1
    for k in (BLUE, RED):
      if np.array_equal(self._objects[k], self._agent):
        collected = k
    reward = 0.0
    if collected >= 0:
      reward = 1.0 if collected == good else -1.0
      agent_cell = self._cell(self._agent)
      if self.respawn == 'collected':
        other = self._cell(self._objects[1 - collected])
        self._objects[collected] = self._pos(
            self._sample_free([agent_cell, other]))
      else:
        blue = self._sample_free([agent_cell])
        red = self._sample_free([agent_cell, blue])
        self._objects = np.stack([self._pos(blue), self._pos(red)])
    reward -= self.step_cost
    self._step_count += 1
    return self._obs(), float(reward), False, False, self._info(collected)

  def render(self):
    """Returns a text grid for `render_mode='ansi'`, else `None`."""
    if self.render_mode != 'ansi' or self._agent is None:
      return None
    grid = [['.'] * self.size for _ in range(self.size)]
    grid[self._objects[0][0]][self._objects[0][1]] = 'B'
    grid[self._objects[1][0]][self._objects[1][1]] = 'R'
    grid[self._agent[0]][self._agent[1]] = 'A'
    return '\n'.join(''.join(row) for row in grid) + '\n'

  def get_state(self):
    """Returns the raw state (not including the RNG).

    Returns:
      `dict(agent=(row, col), objects=[(row, col), (row, col)], step=int)`,
      plain Python ints; objects are `[blue, red]`.
    """
    self._check_ready()
    return {
        'agent': (int(self._agent[0]), int(self._agent[1])),
        'objects': [(int(r), int(c)) for r, c in self._objects],
        'step': int(self._step_count),
    }

  def set_state(self, state):
    """Sets the raw state, as returned by `get_state()`.

    Args:
      state: Dict with `agent` (row, col), `objects` [(row, col), (row, col)]
        and `step` (int >= 0).

    Raises:
      ValueError: if positions are off-grid or not distinct, or `step < 0`.
    """
    agent = np.asarray(state['agent'], dtype=np.int64).reshape(2)
    objects = np.asarray(state['objects'], dtype=np.int64).reshape(2, 2)
    step = int(state['step'])
    allpos = np.concatenate([agent[None], objects])
    if np.any(allpos < 0) or np.any(allpos >= self.size):
      raise ValueError(f'state positions must lie in [0, {self.size}): '
                       f'{state!r}.')
    if len({(int(r), int(c)) for r, c in allpos}) != 3:
      raise ValueError(f'agent and objects must be on distinct cells: '
                       f'{state!r}.')
    if step < 0:
      raise ValueError(f'state step must be >= 0, got {step}.')
    self._agent = agent
    self._objects = objects
    self._step_count = step

  def observation(self):
    """Current observation, float32 `[6 * size]` (see module docstring)."""
    self._check_ready()
    return self._obs()
