"""Atari (ALE) and MinAtar environments for the IMPALA pipelines.

Factories:

*   `make_atari(game, ...)`: an ALE v5 game with the standard DQN/IMPALA
    preprocessing (Machado et al. 2018 settings by default: sticky actions
    with probability 0.25, no life-loss termination, full games capped at
    108,000 frames). Observations are uint8 `[84, 84, frame_stack]` (channels
    last, grayscale frames, oldest first), actions `Discrete(n)` (the game's
    minimal action set unless `full_action_space`).
*   `make_minatar(game, ...)`: a MinAtar game (`minatar` package, minimal
    action set). Observations are uint8 `[10, 10, C]` with values in {0, 1}
    (C = 4 for Asterix and Breakout, 7 for Freeway, 10 for Seaquest, 6 for
    SpaceInvaders), actions `Discrete(n)`.
*   `make_batched_env(suite, game, num_envs, seed, ...)`: `num_envs` copies
    of either, as a batched TF-Agents `PyEnvironment`
    (`gym_adapter.GymnasiumVectorEnvironment`).

Rewards are NOT clipped here: the learner clips them, so that the episode
statistics (gymnasium's `RecordEpisodeStatistics`, inside each environment)
are the raw game score.

Importing this module imports neither `ale_py` nor `minatar`: the factories
import them, so that the worker processes of an asynchronous vector env
register the environments themselves.
"""

import contextlib
import difflib
import inspect
import logging
from typing import Optional

import gin
import gymnasium
from gymnasium import spaces
from gymnasium import wrappers
import numpy as np

from bmg_tf.envs import game_specs
from bmg_tf.envs import gym_adapter

__all__ = ['MINATAR_GAMES', 'SUITES', 'EpisodicLife', 'make_atari',
           'make_minatar', 'make_batched_env', 'env_specs', 'static_specs']

MINATAR_GAMES = ('Asterix', 'Breakout', 'Freeway', 'Seaquest',
                 'SpaceInvaders')
SUITES = ('atari', 'minatar')


def _atari_env_id(game):
  """Returns `'ALE/{game}-v5'` after checking that ale_py registers it.

  Args:
    game: ALE game name in camel case, e.g. 'Pong' or 'SpaceInvaders'.

  Returns:
    The gymnasium id (str).

  Raises:
    ValueError: if `game` is not a registered ALE v5 game (the message names
      `game` and suggests close names).
  """
  import ale_py  # pylint: disable=g-import-not-at-top,unused-import
  env_id = f'ALE/{game}-v5'
  if isinstance(game, str) and env_id in gymnasium.registry:
    return env_id
  names = sorted(
      spec.name for spec in gymnasium.registry.values()
      if spec.namespace == 'ALE' and spec.version == 5)
  key = str(game).replace('_', '').replace('-', '').lower()
  exact = [n for n in names if n.lower() == key]
  close = exact or difflib.get_close_matches(str(game), names, n=3)
  hint = f' Did you mean {", ".join(map(repr, close))}?' if close else ''
  raise ValueError(
      f'Unknown Atari `game` {game!r}: gymnasium has no {env_id!r}.{hint} '
      f'Use the ALE camel-case name, e.g. \'Pong\', \'Breakout\' or '
      f'\'SpaceInvaders\' ({len(names)} games are registered).')


class EpisodicLife(gymnasium.Wrapper, gymnasium.utils.RecordConstructorArgs):
  """Ends an episode on each life loss, but resets the game only at its end.

  Like OpenAI baselines' `EpisodicLifeEnv`: `step()` returns
  `terminated=True` when the ALE's life counter decreases (and is still
  positive). The following `reset()` then does not reset the game: it takes
  one no-op step (action 0) and returns that observation. Only when the game
  really ended (terminated or truncated), or when a seed is given, does
  `reset()` reset the wrapped environment.

  Wrappers inside this one (e.g. `RecordEpisodeStatistics`) thus see whole
  games; wrappers outside see one episode per life.
  """

  def __init__(self, env):
    """Wraps `env`, an ALE environment (possibly wrapped).

    Args:
      env: A `gymnasium.Env` whose `unwrapped` has an `ale` interface.
    """
    gymnasium.utils.RecordConstructorArgs.__init__(self)
    gymnasium.Wrapper.__init__(self, env)
    self._lives = 0
    self._game_over = True

  @property
  def game_over(self):
    """Whether the game really ended (the next reset is a real one)."""
    return self._game_over

  def _ale_lives(self):
    return int(self.env.unwrapped.ale.lives())

  def step(self, action):
    obs, reward, terminated, truncated, info = self.env.step(action)
    self._game_over = bool(terminated or truncated)
    lives = self._ale_lives()
    if 0 < lives < self._lives:
      terminated = True
    self._lives = lives
    return obs, reward, terminated, truncated, info

  def reset(self, *, seed=None, options=None):
    if self._game_over or seed is not None:
      obs, info = self.env.reset(seed=seed, options=options)
    else:
      obs, _, terminated, truncated, info = self.env.step(0)
      if terminated or truncated:  # The no-op ended the game: reset it.
        obs, reset_info = self.env.reset(options=options)
        info = {**info, **reset_info}  # Keeps `episode` if it was reported.
    self._game_over = False
    self._lives = self._ale_lives()
    return obs, info


class _ChannelsLast(gymnasium.ObservationWrapper,
                    gymnasium.utils.RecordConstructorArgs):
  """Moves the leading (frame-stack) axis of the observations last."""

  def __init__(self, env):
    gymnasium.utils.RecordConstructorArgs.__init__(self)
    gymnasium.ObservationWrapper.__init__(self, env)
    space = env.observation_space
    self.observation_space = spaces.Box(
        low=np.moveaxis(space.low, 0, -1), high=np.moveaxis(space.high, 0, -1),
        dtype=space.dtype)

  def observation(self, observation):
    return np.ascontiguousarray(np.moveaxis(observation, 0, -1))


class _Uint8Observation(gymnasium.ObservationWrapper,
                        gymnasium.utils.RecordConstructorArgs):
  """Casts boolean (0/1) observations to uint8."""

  def __init__(self, env):
    gymnasium.utils.RecordConstructorArgs.__init__(self)
    gymnasium.ObservationWrapper.__init__(self, env)
    shape = env.observation_space.shape
    self.observation_space = spaces.Box(0, 1, shape=shape, dtype=np.uint8)

  def observation(self, observation):
    return np.asarray(observation, dtype=np.uint8)


class _SeedNpRandom(gymnasium.Wrapper, gymnasium.utils.RecordConstructorArgs):
  """Seeds the unwrapped env's `np_random` on `reset(seed=...)`.

  MinAtar's `BaseEnv.reset` seeds its game but does not call
  `gymnasium.Env.reset(seed=seed)`, so its `np_random` is never seeded
  (gymnasium's `check_env` requires it).
  """

  def __init__(self, env):
    gymnasium.utils.RecordConstructorArgs.__init__(self)
    gymnasium.Wrapper.__init__(self, env)

  def reset(self, *, seed=None, options=None):
    if seed is not None:
      gymnasium.Env.reset(self.env.unwrapped, seed=seed)
    return self.env.reset(seed=seed, options=options)


def make_atari(
    game: str,
    *,
    noop_max: int = 30,
    frame_skip: int = 4,
    screen_size: int = 84,
    frame_stack: int = 4,
    episodic_life: bool = False,
    sticky_action_prob: float = 0.25,
    full_action_space: bool = False,
    max_episode_frames: int = 108_000,
    render_mode: Optional[str] = None) -> gymnasium.Env:
  """Returns a preprocessed ALE v5 game.

  Wrappers, innermost first: `gymnasium.make('ALE/{game}-v5', frameskip=1,
  ...)`; `RecordEpisodeStatistics`; `AtariPreprocessing` (random no-op
  starts, frame skip with max-pooling over the last two frames, grayscale,
  resize); `EpisodicLife` if `episodic_life`; `FrameStackObservation`; a
  transpose to channels last.

  Rewards are the raw game rewards: they are NOT clipped (the learner clips
  them). `RecordEpisodeStatistics` sits inside the preprocessing, so its
  `info['episode']` is reported once per whole game (also with
  `episodic_life`), with the raw score as return and the length in emulator
  frames (no-op start frames included), not agent steps.

  Args:
    game: ALE game name in camel case, e.g. 'Pong', 'Breakout'.
    noop_max: Maximum number of no-op actions at reset (uniform in
      [1, noop_max]; 0 disables them).
    frame_skip: Emulator frames per agent step (the action is repeated).
    screen_size: Observation height and width.
    frame_stack: Number of stacked frames (last axis of the observation).
    episodic_life: If True, a life loss ends the episode (`terminated=True`)
      without resetting the game; see `EpisodicLife`.
    sticky_action_prob: Probability that the emulator repeats the previous
      action at each frame (ALE's `repeat_action_probability`).
    full_action_space: If True, all 18 ALE actions; else the game's minimal
      action set.
    max_episode_frames: Emulator frames after which a game is truncated
      (ALE's `max_num_frames_per_episode`).
    render_mode: gymnasium render mode of the ALE env (e.g. 'rgb_array').

  Returns:
    A `gymnasium.Env` with observations uint8 `[screen_size, screen_size,
    frame_stack]` in [0, 255] and `Discrete` actions.

  Raises:
    ValueError: if `game` is not a registered ALE game (the message names it
      and suggests close names), or if `frame_stack` is not positive.
  """
  env_id = _atari_env_id(game)
  if isinstance(frame_stack, bool) or not isinstance(frame_stack, int) or (
      frame_stack < 1):
    raise ValueError(
        f'`frame_stack` must be a positive int, got {frame_stack!r}.')
  env = gymnasium.make(
      env_id, frameskip=1, repeat_action_probability=sticky_action_prob,
      full_action_space=full_action_space,
      max_num_frames_per_episode=max_episode_frames, render_mode=render_mode)
  env = wrappers.RecordEpisodeStatistics(env)
  env = wrappers.AtariPreprocessing(
      env, noop_max=noop_max, frame_skip=frame_skip, screen_size=screen_size,
      terminal_on_life_loss=False, grayscale_obs=True)
  if episodic_life:
    env = EpisodicLife(env)
  env = wrappers.FrameStackObservation(env, frame_stack)
  return _ChannelsLast(env)


class _DropMinatarImportWarnings(logging.Filter):
  """Drops MinAtar's 'Cannot import seaborn' import-time warnings."""

  def filter(self, record):
    return not record.getMessage().startswith('Cannot import')


@contextlib.contextmanager
def _quiet_minatar_import():
  """Silences MinAtar's import-time warnings about the optional seaborn.

  `minatar` logs them with `logging.warning` on the root logger (which also
  calls `logging.basicConfig()` if the root logger has no handler). They
  concern rendering and pixel observations, which are not used here.

  Yields:
    Nothing.
  """
  root = logging.getLogger()
  log_filter = _DropMinatarImportWarnings()
  placeholder = None if root.handlers else logging.NullHandler()
  if placeholder is not None:
    root.addHandler(placeholder)
  root.addFilter(log_filter)
  try:
    yield
  finally:
    root.removeFilter(log_filter)
    if placeholder is not None:
      root.removeHandler(placeholder)


def _minatar_env_id(game):
  """Returns `'MinAtar/{game}-v1'`, registering MinAtar's envs if needed.

  MinAtar 1.0.15 declares `minatar.gym:register_envs` as a `gymnasium.envs`
  entry point, but gymnasium 1.x does not load entry points, so it is called
  here (once per process).

  Args:
    game: One of `MINATAR_GAMES`.

  Returns:
    The gymnasium id (str).

  Raises:
    ValueError: if `game` is not one of `MINATAR_GAMES` (the message names
      `game`).
  """
  if game not in MINATAR_GAMES:
    close = difflib.get_close_matches(str(game), MINATAR_GAMES, n=1)
    hint = f' Did you mean {close[0]!r}?' if close else ''
    raise ValueError(
        f'Unknown MinAtar `game` {game!r}; expected one of '
        f'{", ".join(MINATAR_GAMES)}.{hint}')
  env_id = f'MinAtar/{game}-v1'
  if env_id not in gymnasium.registry:
    with _quiet_minatar_import():
      from minatar import gym as minatar_gym  # pylint: disable=g-import-not-at-top
    minatar_gym.register_envs()
  return env_id


def make_minatar(
    game: str,
    *,
    sticky_action_prob: float = 0.1,
    max_episode_steps: Optional[int] = None) -> gymnasium.Env:
  """Returns a MinAtar game (`MinAtar/{game}-v1`: minimal action set).

  Wrapped in `RecordEpisodeStatistics` (raw return, length in agent steps).
  Rewards are not clipped. MinAtar's difficulty ramping is on (its default).

  Args:
    game: One of `MINATAR_GAMES`: 'Asterix', 'Breakout', 'Freeway',
      'Seaquest', 'SpaceInvaders'.
    sticky_action_prob: Probability that the previous action is repeated
      instead of the chosen one, at each step.
    max_episode_steps: If not None, episodes are truncated after this many
      steps (gymnasium `TimeLimit`).

  Returns:
    A `gymnasium.Env` with observations uint8 `[10, 10, C]` in {0, 1} and
    `Discrete` actions.

  Raises:
    ValueError: if `game` is not a MinAtar game (the message names it).
  """
  env_id = _minatar_env_id(game)
  env = gymnasium.make(
      env_id, sticky_action_prob=sticky_action_prob,
      max_episode_steps=max_episode_steps)
  env = wrappers.RecordEpisodeStatistics(_SeedNpRandom(env))
  return _Uint8Observation(env)


_FACTORIES = {'atari': (make_atari, _atari_env_id),
              'minatar': (make_minatar, _minatar_env_id)}


@gin.configurable
def make_batched_env(
    suite: str,
    game: str,
    num_envs: int,
    seed: Optional[int],
    asynchronous: bool = True,
    **kwargs) -> gym_adapter.GymnasiumVectorEnvironment:
  """Returns `num_envs` copies of a game as a batched TF-Agents environment.

  Args:
    suite: 'atari' (`make_atari`) or 'minatar' (`make_minatar`).
    game: Game name for the suite's factory, e.g. 'Pong' or 'Breakout'.
    num_envs: Number of sub-environments (the batch size), >= 1.
    seed: Optional int; sub-env `i` is seeded with `seed + i` at the first
      reset.
    asynchronous: If True, one worker process per sub-env (gymnasium
      `AsyncVectorEnv`); otherwise all are stepped in this process.
    **kwargs: Keyword arguments of the suite's factory (e.g.
      `episodic_life=True`, `sticky_action_prob=0.0`).

  Returns:
    A `gym_adapter.GymnasiumVectorEnvironment` with `batch_size == num_envs`;
    its `pop_episode_stats()` reports raw episode returns.

  Raises:
    ValueError: if `suite`, `game` or `num_envs` is invalid (the message names
      the argument).
    TypeError: if `kwargs` are not arguments of the suite's factory.
  """
  if suite not in _FACTORIES:
    raise ValueError(
        f'Unknown `suite` {suite!r}; expected one of {", ".join(SUITES)}.')
  if isinstance(num_envs, bool) or not isinstance(
      num_envs, (int, np.integer)) or num_envs < 1:
    raise ValueError(f'`num_envs` must be a positive int, got {num_envs!r}.')
  factory, check_game = _FACTORIES[suite]
  check_game(game)  # Fails here, not in a worker process.
  inspect.signature(factory).bind(game, **kwargs)  # TypeError if unknown.

  def env_fn():
    return factory(game, **kwargs)

  return gym_adapter.GymnasiumVectorEnvironment(
      [env_fn] * int(num_envs), asynchronous=asynchronous, seed=seed)


def env_specs(suite: str, game: str, **kwargs):
  """The TF-Agents specs of `make_batched_env(suite, game, ...)`'s envs.

  Builds one sub-environment in this process, reads its specs and closes
  it: no vector env, no worker processes.

  Args:
    suite: 'atari' or 'minatar'.
    game: Game name for the suite's factory.
    **kwargs: Keyword arguments of the suite's factory.

  Returns:
    (time_step_spec, action_spec): the unbatched `array_spec`s, equal to
    those of the batched environment.

  Raises:
    ValueError, TypeError: as `make_batched_env`.
  """
  if suite not in _FACTORIES:
    raise ValueError(
        f'Unknown `suite` {suite!r}; expected one of {", ".join(SUITES)}.')
  factory, check_game = _FACTORIES[suite]
  check_game(game)
  inspect.signature(factory).bind(game, **kwargs)
  env = gym_adapter.GymnasiumEnvironment(factory(game, **kwargs))
  try:
    return env.time_step_spec(), env.action_spec()
  finally:
    env.close()


def static_specs(suite: str, game: str, **kwargs):
  """`env_specs(suite, game, **kwargs)` without creating any environment.

  The observation shape follows from the factory's arguments (Atari:
  `[screen_size, screen_size, frame_stack]` uint8 in [0, 255]; MinAtar:
  `[10, 10, C]` uint8 in {0, 1}); the number of actions comes from the
  tables of `bmg_tf.envs.game_specs` (18 with `full_action_space=True`).
  What `export` uses to rebuild an experiment.

  Args:
    suite: 'atari' or 'minatar'.
    game: Game name for the suite's factory.
    **kwargs: Keyword arguments of the suite's factory (checked against
      its signature).

  Returns:
    (time_step_spec, action_spec), equal to `env_specs`'s.

  Raises:
    ValueError, TypeError: as `env_specs` (unknown suite or game, bad
      arguments).
  """
  if suite not in _FACTORIES:
    raise ValueError(
        f'Unknown `suite` {suite!r}; expected one of {", ".join(SUITES)}.')
  factory, check_game = _FACTORIES[suite]
  check_game(game)
  bound = inspect.signature(factory).bind(game, **kwargs)
  bound.apply_defaults()
  args = bound.arguments
  if suite == 'atari':
    frame_stack = args['frame_stack']
    if isinstance(frame_stack, bool) or not isinstance(frame_stack, int) or (
        frame_stack < 1):
      raise ValueError(
          f'`frame_stack` must be a positive int, got {frame_stack!r}.')
    size = args['screen_size']
    observation = spaces.Box(0, 255, (size, size, frame_stack), np.uint8)
    if game not in game_specs.ALE_MINIMAL_ACTIONS:
      raise ValueError(f'game: {game!r} is registered but not in '
                       f'game_specs.ALE_MINIMAL_ACTIONS; add it there.')
    actions = (18 if args['full_action_space'] else
               game_specs.ALE_MINIMAL_ACTIONS[game])
  else:
    channels, actions = game_specs.MINATAR_SPECS[game]
    observation = spaces.Box(0, 1, (10, 10, channels), np.uint8)
  return gym_adapter.specs_from_spaces(observation, spaces.Discrete(actions))
