"""Tests for bmg_tf.envs.atari (ALE and MinAtar factories, batched env)."""

import gin
from gymnasium.utils import env_checker
import numpy as np
import pytest
from tf_agents.environments import utils as env_utils
from tf_agents.trajectories import time_step as ts

from bmg_tf.envs import atari
from bmg_tf.envs import game_specs

__all__ = []

# Short Atari games (100 agent steps) keep validate_py_environment fast.
_SHORT_ATARI = {'max_episode_frames': 400}
# check_env on the wrapped env (the preprocessing is what is checked).
_WRAPPED = pytest.mark.filterwarnings(
    'ignore:.*is different from the unwrapped version')


@_WRAPPED
def test_check_env_atari_pong():
  env = atari.make_atari('Pong')
  env_checker.check_env(env, skip_render_check=True)
  env.close()


@_WRAPPED
def test_check_env_minatar_breakout():
  env = atari.make_minatar('Breakout')
  env_checker.check_env(env, skip_render_check=True)
  env.close()


def test_atari_observation_space_and_values():
  env = atari.make_atari('Breakout', frame_stack=4)
  assert env.observation_space.shape == (84, 84, 4)
  assert env.observation_space.dtype == np.uint8
  obs, _ = env.reset(seed=0)
  assert obs.shape == (84, 84, 4) and obs.dtype == np.uint8
  assert obs.flags['C_CONTIGUOUS']
  for _ in range(3):
    obs, *_ = env.step(1)
  assert obs.max() > 0
  # Channels are frames, oldest first: the last frame is the newest.
  newest, *_ = env.step(0)
  np.testing.assert_array_equal(newest[..., :3], obs[..., 1:])
  env.close()


@pytest.mark.parametrize('game,channels', [
    ('Asterix', 4), ('Breakout', 4), ('Freeway', 7), ('Seaquest', 10),
    ('SpaceInvaders', 6)])
def test_minatar_observation_space_and_values(game, channels):
  env = atari.make_minatar(game)
  space = env.observation_space
  assert space.shape == (10, 10, channels) and space.dtype == np.uint8
  obs, _ = env.reset(seed=0)
  assert obs.shape == (10, 10, channels) and obs.dtype == np.uint8
  assert set(np.unique(obs)) <= {0, 1} and obs.max() == 1
  env.close()


def test_minatar_time_limit_truncates():
  env = atari.make_minatar('Freeway', max_episode_steps=5)
  env.reset(seed=0)
  for _ in range(5):
    _, _, terminated, truncated, info = env.step(0)
  assert truncated and not terminated
  assert info['episode']['l'] == 5


def test_validate_batched_atari_sync():
  env = atari.make_batched_env(
      'atari', 'Pong', num_envs=2, seed=0, asynchronous=False, **_SHORT_ATARI)
  assert env.batch_size == 2
  obs_spec = env.observation_spec()
  assert obs_spec.shape == (84, 84, 4) and obs_spec.dtype == np.uint8
  assert env.action_spec().dtype == np.int64
  assert env.action_spec().maximum == 5  # Pong's minimal action set: 6.
  env_utils.validate_py_environment(env, episodes=2)
  stats = env.pop_episode_stats()
  assert len(stats) >= 2
  for score, frames in stats:  # Truncated at 400 frames: raw Pong score.
    assert -21 <= score <= 21 and score == int(score)
    assert frames == 400
  env.close()


@pytest.mark.parametrize('asynchronous', [False, True])
def test_validate_batched_minatar(asynchronous):
  env = atari.make_batched_env(
      'minatar', 'Breakout', num_envs=2, seed=0, asynchronous=asynchronous)
  obs_spec = env.observation_spec()
  assert obs_spec.shape == (10, 10, 4) and obs_spec.dtype == np.uint8
  env_utils.validate_py_environment(env, episodes=4)
  time_step = env.current_time_step()
  assert time_step.observation.shape == (2, 10, 10, 4)
  assert set(np.unique(time_step.observation)) <= {0, 1}
  assert len(env.pop_episode_stats()) >= 4
  env.close()


def test_batched_atari_async_steps():
  env = atari.make_batched_env(
      'atari', 'Breakout', num_envs=2, seed=0, asynchronous=True)
  time_step = env.reset()
  assert time_step.observation.shape == (2, 84, 84, 4)
  for _ in range(5):
    time_step = env.step(np.array([1, 3]))
  np.testing.assert_array_equal(time_step.step_type, [1, 1])
  env.close()


def test_episodic_life_breakout():
  env = atari.make_batched_env(
      'atari', 'Breakout', num_envs=1, seed=0, asynchronous=False,
      episodic_life=True)
  ale = env.vector_env.envs[0].unwrapped.ale
  rng = np.random.default_rng(0)
  time_step = env.reset()
  assert ale.lives() == 5
  life_losses = 0
  last_frame = 0
  for _ in range(5000):
    if time_step.is_last()[0]:
      time_step = env.step(np.zeros(1, np.int64))
      assert time_step.step_type[0] == ts.StepType.FIRST
      if ale.lives() > 0 and life_losses < 5:
        # Not reset: the life counter and the frame counter went on.
        assert ale.lives() == 5 - life_losses
        frame = env.get_info()['episode_frame_number'][0]
        assert frame > last_frame
      else:
        break
    lives_before = ale.lives()
    time_step = env.step(rng.integers(0, 4, size=1))
    last_frame = env.get_info()['episode_frame_number'][0]
    if time_step.is_last()[0]:
      life_losses += 1
      assert time_step.discount[0] == 0.0
      assert ale.lives() == lives_before - 1
      stats = env.pop_episode_stats()
      if life_losses < 5:
        assert stats == []  # A life, not a game.
      else:
        assert ale.lives() == 0
        assert len(stats) == 1
        score, frames = stats[0]
        assert score >= 0 and frames >= last_frame
  assert life_losses == 5
  # The real game ended: the last FIRST came from a reset of the game.
  assert ale.lives() == 5
  assert env.get_info()['episode_frame_number'][0] < last_frame
  env.close()


def _first_observations(seed, steps=10):
  env = atari.make_batched_env(
      'minatar', 'Asterix', num_envs=2, seed=seed, asynchronous=False)
  observations = [env.reset().observation]
  for k in range(steps):
    observations.append(env.step(np.array([k % 5, (k + 1) % 5])).observation)
  env.close()
  return np.stack(observations)


def test_seeding():
  np.testing.assert_array_equal(_first_observations(3), _first_observations(3))
  assert not np.array_equal(_first_observations(3), _first_observations(100))
  first = _first_observations(3)
  assert not np.array_equal(first[:, 0], first[:, 1])  # Seeds 3 and 4.


def test_atari_seeding():
  def first(seed):
    env = atari.make_atari('Pong', noop_max=30)
    obs = [env.reset(seed=seed)[0]] + [env.step(2)[0] for _ in range(30)]
    env.close()
    return np.stack(obs)
  np.testing.assert_array_equal(first(1), first(1))


def test_gin_binds_batched_env():
  with gin.unlock_config():
    gin.bind_parameter('make_batched_env.num_envs', 3)
    gin.bind_parameter('make_batched_env.asynchronous', False)
  try:
    env = atari.make_batched_env('minatar', 'Freeway', seed=None)
    assert env.batch_size == 3
    assert env.vector_env.__class__.__name__ == 'SyncVectorEnv'
    env.close()
  finally:
    gin.clear_config()


@pytest.mark.parametrize('game', ['pong', 'Pongg', 'NotAGame', 3])
def test_unknown_atari_game_raises(game):
  with pytest.raises(ValueError, match='`game`'):
    atari.make_atari(game)
  with pytest.raises(ValueError, match='`game`'):
    atari.make_batched_env('atari', game, num_envs=1, seed=0)


def test_unknown_atari_game_hint():
  with pytest.raises(ValueError, match="Did you mean 'SpaceInvaders'"):
    atari.make_atari('space_invaders')


@pytest.mark.parametrize('game', ['breakout', 'Pong', 'MinAtar/Breakout-v1'])
def test_unknown_minatar_game_raises(game):
  with pytest.raises(ValueError, match='`game`.*Asterix'):
    atari.make_minatar(game)
  with pytest.raises(ValueError, match='`game`'):
    atari.make_batched_env('minatar', game, num_envs=1, seed=0)


@pytest.mark.parametrize('suite', ['ale', 'Atari', '', None])
def test_bad_suite_raises(suite):
  with pytest.raises(ValueError, match='`suite`'):
    atari.make_batched_env(suite, 'Breakout', num_envs=1, seed=0)


@pytest.mark.parametrize('num_envs', [0, -1, 1.5, True, '2'])
def test_bad_num_envs_raises(num_envs):
  with pytest.raises(ValueError, match='`num_envs`'):
    atari.make_batched_env('minatar', 'Breakout', num_envs=num_envs, seed=0)


def test_bad_factory_kwargs_raise_early():
  with pytest.raises(TypeError, match='frame_stack'):
    atari.make_batched_env('minatar', 'Breakout', num_envs=1, seed=0,
                           frame_stack=4)
  with pytest.raises(ValueError, match='`frame_stack`'):
    atari.make_atari('Pong', frame_stack=0)


def test_ale_action_table_matches_every_rom():
  # The independent reference: each registered ALE v5 game's ROM loaded
  # into the emulator, and its minimal action set counted.
  import ale_py  # pylint: disable=g-import-not-at-top
  from ale_py import roms  # pylint: disable=g-import-not-at-top
  import gymnasium  # pylint: disable=g-import-not-at-top
  registered = {spec.name: spec.kwargs['game']
                for spec in gymnasium.registry.values()
                if spec.namespace == 'ALE' and spec.version == 5}
  assert sorted(registered) == sorted(game_specs.ALE_MINIMAL_ACTIONS)
  ale = ale_py.ALEInterface()
  ale.setLoggerMode(ale_py.LoggerMode.Error)
  for name, rom in registered.items():
    ale.loadROM(roms.get_rom_path(rom))
    assert len(ale.getMinimalActionSet()) == (
        game_specs.ALE_MINIMAL_ACTIONS[name]), name


@pytest.mark.parametrize('suite, game, kwargs', [
    *[('minatar', g, {}) for g in atari.MINATAR_GAMES],
    ('atari', 'Pong', {}),
    ('atari', 'Breakout', {'frame_stack': 2, 'screen_size': 64}),
    ('atari', 'MsPacman', {'full_action_space': True}),
])
def test_static_specs_equal_the_env_specs(suite, game, kwargs, monkeypatch):
  want = atari.env_specs(suite, game, **kwargs)

  def no_env(*args, **kw):
    raise AssertionError('static_specs created an environment')

  monkeypatch.setattr(atari.gymnasium, 'make', no_env)
  got = atari.static_specs(suite, game, **kwargs)
  assert got == want
  assert got[0].observation.name == 'observation'
  assert got[1].name == 'action'


@pytest.mark.parametrize('suite, game, kwargs, message', [
    ('nes', 'Pong', {}, 'suite'),
    ('atari', 'Pongg', {}, 'game'),
    ('minatar', 'Pong', {}, 'game'),
    ('atari', 'Pong', {'frame_stack': 0}, 'frame_stack'),
])
def test_static_specs_reject_what_the_factories_reject(suite, game, kwargs,
                                                       message):
  with pytest.raises(ValueError, match=message):
    atari.static_specs(suite, game, **kwargs)
  with pytest.raises(TypeError):
    atari.static_specs('atari', 'Pong', frames=3)
