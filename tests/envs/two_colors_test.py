"""Tests for bmg_tf.envs.two_colors (gymnasium two-colours grid world)."""

import importlib
import warnings

import gymnasium
from gymnasium.utils import env_checker
import numpy as np
import pytest

import bmg_tf.envs
from bmg_tf.envs import two_colors

__all__ = []

UP, DOWN, LEFT, RIGHT = 0, 1, 2, 3


def _decode(obs, size):
  """float32 [6 * size] -> int [3, 2] positions; checks exact one-hotness."""
  obs = np.asarray(obs).reshape(3, 2, size)
  assert np.all((obs == 0.0) | (obs == 1.0))
  np.testing.assert_array_equal(obs.sum(axis=-1), np.ones((3, 2)))
  return obs.argmax(axis=-1)


def _positions(env):
  state = env.get_state()
  return np.array([state['agent']] + list(state['objects']))


def _make(**kwargs):
  env = two_colors.TwoColors(**kwargs)
  env.reset(seed=0)
  return env


def _set(env, agent, blue, red, step=0):
  env.set_state({'agent': agent, 'objects': [blue, red], 'step': step})


def test_check_env_unwrapped_has_no_warnings():
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    env_checker.check_env(
        gymnasium.make('bmg_tf/TwoColors-v0').unwrapped)
    env_checker.check_env(
        gymnasium.make('bmg_tf/TwoColors-v0', respawn='all').unwrapped)
    env_checker.check_env(two_colors.TwoColors(size=2),
                          skip_render_check=True)
  assert not caught, [str(w.message) for w in caught]


def test_check_env_through_make():
  env = gymnasium.make('bmg_tf/TwoColors-v0', size=4)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    env_checker.check_env(env)
  # Only the generic "env is wrapped" warning is expected.
  unexpected = [str(w.message) for w in caught
                if 'different from the unwrapped' not in str(w.message)]
  assert not unexpected, unexpected


def test_registry_make():
  env = gymnasium.make('bmg_tf/TwoColors-v0', size=3, flip_period=7)
  assert isinstance(env.unwrapped, two_colors.TwoColors)
  assert env.spec.max_episode_steps is None
  assert env.unwrapped.flip_period == 7
  obs, info = env.reset(seed=3)
  assert obs.shape == (18,) and obs.dtype == np.float32
  assert info == {'good_colour': 0, 'step': 0, 'collected': -1}
  # Re-importing the package must not try to register the id twice.
  importlib.reload(bmg_tf.envs)
  assert 'bmg_tf/TwoColors-v0' in gymnasium.registry


def test_spaces():
  env = two_colors.TwoColors()
  assert env.observation_space.shape == (30,)
  assert env.observation_space.dtype == np.float32
  assert env.action_space == gymnasium.spaces.Discrete(4)


@pytest.mark.parametrize('size', [2, 5, 7])
def test_observation_layout(size):
  env = _make(size=size)
  rng = np.random.default_rng(size)
  for _ in range(50):
    cells = rng.choice(size * size, 3, replace=False)
    pos = np.stack(np.divmod(cells, size), axis=-1)
    _set(env, pos[0], pos[1], pos[2])
    obs = env.observation()
    assert obs.shape == (6 * size,) and obs.dtype == np.float32
    np.testing.assert_array_equal(_decode(obs, size), pos)
    # Explicit layout: [agent row, agent col, blue row, blue col, red row,
    # red col], each a one-hot of length `size`.
    expected = np.zeros(6 * size, np.float32)
    for e in range(3):
      expected[(2 * e) * size + pos[e, 0]] = 1.0
      expected[(2 * e + 1) * size + pos[e, 1]] = 1.0
    np.testing.assert_array_equal(obs, expected)


def test_reset_observation_matches_state():
  env = two_colors.TwoColors()
  for seed in range(20):
    obs, info = env.reset(seed=seed)
    np.testing.assert_array_equal(_decode(obs, 5), _positions(env))
    assert len({tuple(p) for p in _positions(env)}) == 3
    assert info['step'] == 0


def test_reset_seed_determinism_and_counter_reset():
  env = two_colors.TwoColors()
  obs_a, _ = env.reset(seed=11)
  for _ in range(5):
    env.step(RIGHT)
  assert env.get_state()['step'] == 5
  obs_b, info = env.reset(seed=11)
  np.testing.assert_array_equal(obs_a, obs_b)
  assert info['step'] == 0 and env.get_state()['step'] == 0


def test_moves_and_walls():
  env = _make()
  # Free moves.
  for action, expected in [(UP, (1, 2)), (DOWN, (3, 2)), (LEFT, (2, 1)),
                           (RIGHT, (2, 3))]:
    _set(env, (2, 2), (0, 0), (4, 4))
    obs, reward, _, _, info = env.step(action)
    assert env.get_state()['agent'] == expected
    assert tuple(_decode(obs, 5)[0]) == expected
    assert reward == 0.0 and info['collected'] == -1
  # Walls leave the agent in place.
  for agent, action in [((0, 2), UP), ((4, 2), DOWN), ((2, 0), LEFT),
                        ((2, 4), RIGHT), ((0, 0), UP), ((0, 0), LEFT),
                        ((4, 4), DOWN), ((4, 4), RIGHT)]:
    _set(env, agent, (1, 1), (3, 3))
    obs, reward, _, _, _ = env.step(action)
    assert env.get_state()['agent'] == agent
    assert tuple(_decode(obs, 5)[0]) == agent
    assert reward == 0.0
    assert env.get_state()['objects'] == [(1, 1), (3, 3)]


@pytest.mark.parametrize('respawn', ['collected', 'all'])
def test_collect_reward_follows_flip_schedule(respawn):
  flip_period = 3
  env = _make(flip_period=flip_period, respawn=respawn)
  _set(env, (2, 2), (0, 0), (4, 4), step=0)
  expected_good = [0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0]
  for t in range(13):
    assert env.get_state()['step'] == t
    assert env.good_colour == expected_good[t]
    colour = t % 2  # Alternate collecting blue and red.
    # Put the agent left of the target object, keeping the step counter.
    target = (2, 3)
    other = (4, 4)
    objects = [target, other] if colour == 0 else [other, target]
    env.set_state({'agent': (2, 2), 'objects': objects, 'step': t})
    obs, reward, terminated, truncated, info = env.step(RIGHT)
    expected = 1.0 if colour == expected_good[t] else -1.0
    assert reward == expected, (t, colour)
    assert info['collected'] == colour
    assert info['step'] == t + 1
    assert info['good_colour'] == expected_good[t + 1]
    assert not terminated and not truncated
    positions = _decode(obs, 5)
    assert len({tuple(p) for p in positions}) == 3


def test_flip_at_large_step_counter():
  env = _make(flip_period=100_000)
  for step, good in [(99_999, 0), (100_000, 1), (199_999, 1), (200_000, 0)]:
    _set(env, (2, 2), (2, 3), (4, 4), step=step)
    _, reward, _, _, _ = env.step(RIGHT)  # Collects blue.
    assert reward == (1.0 if good == 0 else -1.0), step


def test_respawn_collected_moves_only_collected_object():
  env = _make(respawn='collected')
  for _ in range(100):
    _set(env, (2, 2), (2, 3), (4, 4))
    env.step(RIGHT)
    state = env.get_state()
    assert state['agent'] == (2, 3)
    assert state['objects'][1] == (4, 4)
    assert state['objects'][0] not in [(2, 3), (4, 4)]


def test_respawn_all_moves_both_objects():
  env = _make(respawn='all')
  moved_red = 0
  for _ in range(100):
    _set(env, (2, 2), (2, 3), (4, 4))
    env.step(RIGHT)
    state = env.get_state()
    assert state['agent'] == (2, 3)
    blue, red = state['objects']
    assert len({(2, 3), blue, red}) == 3
    moved_red += red != (4, 4)
  assert moved_red > 80  # P(red stays) = 1/24 per trial.


@pytest.mark.parametrize('respawn', ['collected', 'all'])
@pytest.mark.parametrize('size', [2, 3, 5])
def test_respawn_never_overlaps(respawn, size):
  env = two_colors.TwoColors(size=size, respawn=respawn, flip_period=50)
  obs, _ = env.reset(seed=size)
  rng = np.random.default_rng(0)
  collections = 0
  for _ in range(1000):
    obs, _, _, _, info = env.step(int(rng.integers(4)))
    positions = _decode(obs, size)
    np.testing.assert_array_equal(positions, _positions(env))
    assert len({tuple(p) for p in positions}) == 3
    collections += info['collected'] >= 0
  assert collections > 20


def test_step_cost():
  env = _make(step_cost=0.25)
  _set(env, (2, 2), (0, 0), (4, 4))
  assert env.step(RIGHT)[1] == -0.25
  _set(env, (2, 2), (2, 3), (4, 4))
  assert env.step(RIGHT)[1] == 0.75  # Good (blue) collected.
  _set(env, (2, 2), (4, 4), (2, 3))
  assert env.step(RIGHT)[1] == -1.25  # Bad (red) collected.


def test_never_terminates_or_truncates():
  env = two_colors.TwoColors(size=3, flip_period=10)
  env.reset(seed=0)
  rewards = []
  for t in range(1000):
    _, reward, terminated, truncated, info = env.step(
        env.action_space.sample())
    assert terminated is False and truncated is False
    assert info['step'] == t + 1
    rewards.append(reward)
  assert set(rewards) == {-1.0, 0.0, 1.0}


def test_step_before_reset_raises():
  with pytest.raises(RuntimeError):
    two_colors.TwoColors().step(0)


def test_invalid_action_raises():
  env = _make()
  with pytest.raises(ValueError):
    env.step(4)


@pytest.mark.parametrize('kwargs, name', [
    ({'size': 1}, 'size'),
    ({'size': 0}, 'size'),
    ({'size': 2.5}, 'size'),
    ({'flip_period': 0}, 'flip_period'),
    ({'flip_period': -3}, 'flip_period'),
    ({'respawn': 'none'}, 'respawn'),
    ({'respawn': None}, 'respawn'),
    ({'step_cost': -0.1}, 'step_cost'),
    ({'step_cost': float('nan')}, 'step_cost'),
    ({'step_cost': float('inf')}, 'step_cost'),
    ({'render_mode': 'human'}, 'render_mode'),
])
def test_bad_arguments(kwargs, name):
  with pytest.raises(ValueError, match=name):
    two_colors.TwoColors(**kwargs)


@pytest.mark.parametrize('state', [
    {'agent': (0, 0), 'objects': [(0, 0), (1, 1)], 'step': 0},
    {'agent': (0, 0), 'objects': [(1, 1), (1, 1)], 'step': 0},
    {'agent': (0, 5), 'objects': [(1, 1), (2, 2)], 'step': 0},
    {'agent': (0, 0), 'objects': [(1, 1), (2, 2)], 'step': -1},
])
def test_set_state_rejects_invalid(state):
  env = _make()
  with pytest.raises(ValueError):
    env.set_state(state)


def test_state_round_trip_and_ansi_render():
  env = two_colors.TwoColors(render_mode='ansi')
  env.reset(seed=5)
  state = env.get_state()
  env.step(0)
  env.set_state(state)
  assert env.get_state() == state
  _set(env, (0, 0), (0, 1), (1, 0))
  assert env.render().splitlines()[:2] == ['AB...', 'R....']
