"""Tests for bmg_tf.envs.gym_adapter (gymnasium -> TF-Agents PyEnvironment)."""

import gymnasium
from gymnasium import spaces
from gymnasium import wrappers
import numpy as np
import pytest
from tf_agents.environments import utils as env_utils
from tf_agents.trajectories import time_step as ts

from bmg_tf.envs import gym_adapter
from bmg_tf.envs import two_colors

__all__ = []


class _ToyEnv(gymnasium.Env):
  """Discrete(5, start=1) observations, Box actions, terminates after 3."""

  metadata = {'render_modes': ['ansi']}

  def __init__(self, obs_space=None, act_space=None):
    self.observation_space = obs_space or spaces.Discrete(5, start=1)
    self.action_space = act_space or spaces.Box(-1.0, 1.0, (2,), np.float32)
    self.render_mode = 'ansi'
    self.closed = False
    self.actions = []
    self._t = 0

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    self._t = 0
    return 1, {'t': 0}

  def step(self, action):
    self.actions.append(action)
    self._t += 1
    return 1 + self._t, 0.5, self._t >= 3, False, {'t': self._t}

  def render(self):
    return f't={self._t}'

  def close(self):
    self.closed = True


def _two_colors(max_steps=20, seed=0):
  return gym_adapter.GymnasiumEnvironment(
      wrappers.TimeLimit(two_colors.TwoColors(), max_episode_steps=max_steps),
      seed=seed)


def test_validate_two_colors_with_time_limit():
  env_utils.validate_py_environment(_two_colors(), episodes=3)


def test_validate_cartpole():
  env_utils.validate_py_environment(
      gym_adapter.GymnasiumEnvironment(gymnasium.make('CartPole-v1'), seed=0),
      episodes=3)


def test_validate_toy_discrete_obs_box_action():
  env_utils.validate_py_environment(
      gym_adapter.GymnasiumEnvironment(_ToyEnv(), seed=0), episodes=3)


def test_two_colors_specs():
  env = _two_colors()
  obs_spec = env.observation_spec()
  assert obs_spec.shape == (30,) and obs_spec.dtype == np.float32
  np.testing.assert_array_equal(obs_spec.minimum, np.zeros(30))
  np.testing.assert_array_equal(obs_spec.maximum, np.ones(30))
  act_spec = env.action_spec()
  assert act_spec.shape == () and act_spec.dtype == np.int64
  assert act_spec.minimum == 0 and act_spec.maximum == 3
  assert env.reward_spec().dtype == np.float32
  assert env.discount_spec().dtype == np.float32
  assert env.time_step_spec().observation == obs_spec


def test_cartpole_specs():
  gym_env = gymnasium.make('CartPole-v1')
  env = gym_adapter.GymnasiumEnvironment(gym_env)
  obs_spec = env.observation_spec()
  space = gym_env.observation_space
  assert obs_spec.shape == space.shape and obs_spec.dtype == space.dtype
  # BoundedArraySpec replaces infinite bounds by the dtype's finite extremes.
  big = np.finfo(np.float32).max
  np.testing.assert_array_equal(obs_spec.minimum, np.maximum(space.low, -big))
  np.testing.assert_array_equal(obs_spec.maximum, np.minimum(space.high, big))
  assert obs_spec.minimum[0] == space.low[0] == np.float32(-4.8)
  assert env.action_spec().maximum == 1 and env.action_spec().minimum == 0


def test_discrete_start_and_box_action_specs():
  env = gym_adapter.GymnasiumEnvironment(_ToyEnv())
  obs_spec = env.observation_spec()
  assert obs_spec.dtype == np.int64 and obs_spec.shape == ()
  assert obs_spec.minimum == 1 and obs_spec.maximum == 5
  act_spec = env.action_spec()
  assert act_spec.shape == (2,) and act_spec.dtype == np.float32
  np.testing.assert_array_equal(act_spec.minimum, [-1.0, -1.0])
  time_step = env.reset()
  assert time_step.observation.dtype == np.int64
  env.step(np.array([0.25, -0.5], np.float32))
  np.testing.assert_array_equal(env.gym_env.actions[-1], [0.25, -0.5])


@pytest.mark.parametrize('which', ['observation', 'action'])
@pytest.mark.parametrize('space', [
    spaces.MultiBinary(3),
    spaces.MultiDiscrete([2, 3]),
    spaces.Dict({'a': spaces.Discrete(2)}),
])
def test_unsupported_space_raises(which, space):
  kwargs = {'obs_space': space} if which == 'observation' else {
      'act_space': space}
  pattern = f'{which} space .*{type(space).__name__}'
  with pytest.raises(ValueError, match=pattern):
    gym_adapter.GymnasiumEnvironment(_ToyEnv(**kwargs))


def test_truncation_is_last_with_discount_one_then_auto_reset():
  env = _two_colors(max_steps=5)
  time_step = env.reset()
  assert time_step.step_type == ts.StepType.FIRST
  for t in range(5):
    time_step = env.step(np.int64(t % 4))
    assert time_step.reward.dtype == np.float32
    if t < 4:
      assert time_step.step_type == ts.StepType.MID
      assert time_step.discount == 1.0
  assert time_step.step_type == ts.StepType.LAST
  assert time_step.discount == 1.0
  assert time_step.discount.dtype == np.float32
  assert env.get_info()['step'] == 5
  time_step = env.step(np.int64(0))  # Auto-reset: action ignored.
  assert time_step.step_type == ts.StepType.FIRST
  assert env.get_info()['step'] == 0
  assert env.step(np.int64(0)).step_type == ts.StepType.MID


def test_cartpole_termination_has_discount_zero():
  env = gym_adapter.GymnasiumEnvironment(gymnasium.make('CartPole-v1'), seed=1)
  env.reset()
  for _ in range(500):
    time_step = env.step(np.int64(1))  # Always push right: falls quickly.
    if time_step.is_last():
      break
  assert time_step.step_type == ts.StepType.LAST
  assert time_step.discount == 0.0
  assert env.step(np.int64(1)).step_type == ts.StepType.FIRST


def test_toy_termination_discount_zero_and_observations():
  env = gym_adapter.GymnasiumEnvironment(_ToyEnv())
  steps = [env.reset()] + [env.step(np.zeros(2, np.float32))
                           for _ in range(4)]
  assert [int(s.step_type) for s in steps] == [0, 1, 1, 2, 0]
  assert [float(s.discount) for s in steps] == [1.0, 1.0, 1.0, 0.0, 1.0]
  assert [int(s.observation) for s in steps] == [1, 2, 3, 4, 1]


def _first_observations(seed, n=4):
  env = _two_colors(max_steps=2, seed=seed)
  return np.stack([env.step(np.int64(0)).observation for _ in range(n)])


def test_seed_is_used_for_first_reset():
  np.testing.assert_array_equal(_first_observations(7), _first_observations(7))
  assert not np.array_equal(_first_observations(7), _first_observations(8))


def test_render_and_close_passthrough():
  toy = _ToyEnv()
  env = gym_adapter.GymnasiumEnvironment(toy)
  env.reset()
  assert env.render() == 't=0'
  env.close()
  assert toy.closed
  two = gym_adapter.GymnasiumEnvironment(
      two_colors.TwoColors(render_mode='ansi'), seed=0)
  two.reset()
  text = two.render()
  assert sorted(text.replace('.', '').replace('\n', '')) == ['A', 'B', 'R']


class _CounterEnv(gymnasium.Env):
  """Observation: steps since reset; reward: the action; ends after `n`."""

  def __init__(self, n):
    self.observation_space = spaces.Discrete(100)
    self.action_space = spaces.Discrete(5)
    self.n = n
    self.actions = []
    self.reset_seeds = []
    self._t = 0

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    self.reset_seeds.append(seed)
    self._t = 0
    return 0, {}

  def step(self, action):
    self.actions.append(int(action))
    self._t += 1
    return self._t, float(action), self._t >= self.n, False, {}


def _counter_fns():
  """Sub-env 0 terminates after 3 steps; sub-env 1 is truncated after 2."""
  return [
      lambda: wrappers.RecordEpisodeStatistics(_CounterEnv(3)),
      lambda: wrappers.RecordEpisodeStatistics(
          wrappers.TimeLimit(_CounterEnv(100), max_episode_steps=2)),
  ]


# Worked out by hand from _CounterEnv and gymnasium's NEXT_STEP autoreset,
# with actions (k % 5, (k + 2) % 5) at step k = 1..7. Rows: step types
# (F/M/L = FIRST/MID/LAST), rewards, discounts, observations.
_ACTIONS = [(k % 5, (k + 2) % 5) for k in range(1, 8)]
_EXPECTED = [
    ('FF', (0, 0), (1, 1), (0, 0)),  # reset()
    ('MM', (1, 3), (1, 1), (1, 1)),  # k=1
    ('ML', (2, 4), (1, 1), (2, 2)),  # k=2: sub-env 1 truncated, discount 1
    ('LF', (3, 0), (0, 1), (3, 0)),  # k=3: 0 terminated; 1 reset (action 0)
    ('FM', (0, 1), (1, 1), (0, 1)),  # k=4: 0 reset, its action 4 ignored
    ('ML', (0, 2), (1, 1), (1, 2)),  # k=5: sub-env 1 truncated again
    ('MF', (1, 0), (1, 1), (2, 0)),  # k=6: 1 reset, its action 3 ignored
    ('LM', (2, 4), (0, 1), (3, 1)),  # k=7: sub-env 0 terminated again
]
_CODES = {'F': ts.StepType.FIRST, 'M': ts.StepType.MID, 'L': ts.StepType.LAST}


def _run_counters(asynchronous):
  env = gym_adapter.GymnasiumVectorEnvironment(
      _counter_fns(), asynchronous=asynchronous, seed=10)
  steps = [env.reset()]
  stats = []
  for k, action in enumerate(_ACTIONS, start=1):
    steps.append(env.step(np.array(action, np.int64)))
    if k in (3, 7):
      stats.append(env.pop_episode_stats())
  return env, steps, stats


@pytest.mark.parametrize('asynchronous', [False, True])
def test_vector_step_types_rewards_discounts_and_stats(asynchronous):
  env, steps, stats = _run_counters(asynchronous)
  assert len(steps) == len(_EXPECTED)
  for k, (time_step, expected) in enumerate(zip(steps, _EXPECTED)):
    types, rewards, discounts, obs = expected
    assert time_step.step_type.dtype == np.int32
    assert time_step.reward.dtype == np.float32
    assert time_step.discount.dtype == np.float32
    assert time_step.observation.dtype == np.int64
    np.testing.assert_array_equal(
        time_step.step_type, [_CODES[c] for c in types], err_msg=f'k={k}')
    np.testing.assert_array_equal(time_step.reward, rewards, f'k={k}')
    np.testing.assert_array_equal(time_step.discount, discounts, f'k={k}')
    np.testing.assert_array_equal(time_step.observation, obs, f'k={k}')
  # Returns are sums of the actions applied; lengths count agent steps.
  assert stats == [[(7.0, 2), (6.0, 3)], [(3.0, 2), (3.0, 3)]]
  assert env.pop_episode_stats() == []
  env.close()


def test_vector_ignores_action_after_last_and_seeds_first_reset():
  env, _, _ = _run_counters(asynchronous=False)
  counters = [e.unwrapped for e in env.vector_env.envs]
  assert counters[0].actions == [1, 2, 3, 0, 1, 2]
  assert counters[1].actions == [3, 4, 1, 2, 4]
  assert counters[0].reset_seeds == [10, None]
  assert counters[1].reset_seeds == [11, None, None]
  info = env.get_info()  # Of k=7: sub-env 0 finished an episode.
  np.testing.assert_array_equal(info['_episode'], [True, False])
  assert info['episode']['r'][0] == 3.0


def test_vector_specs_and_batching():
  env = gym_adapter.GymnasiumVectorEnvironment(_counter_fns())
  assert env.batched and env.batch_size == 2
  assert env.observation_spec() == gym_adapter.spec_from_space(
      spaces.Discrete(100), 'observation')
  act_spec = env.action_spec()
  assert act_spec.shape == () and act_spec.dtype == np.int64
  assert act_spec.minimum == 0 and act_spec.maximum == 4
  assert env.reward_spec().shape == () and env.discount_spec().shape == ()
  assert env.get_info() is None
  time_step = env.step(np.zeros(2, np.int64))  # First call: resets.
  np.testing.assert_array_equal(time_step.step_type, [0, 0])
  assert env.get_info() == {}
  env.close()
  assert env.vector_env.closed


def test_vector_validate_py_environment():
  env = gym_adapter.GymnasiumVectorEnvironment(_counter_fns(), seed=0)
  env_utils.validate_py_environment(env, episodes=6)
  env.close()


def test_vector_box_actions_and_two_colors():
  fns = [lambda: wrappers.TimeLimit(two_colors.TwoColors(), 4)] * 3
  env = gym_adapter.GymnasiumVectorEnvironment(fns, seed=0)
  assert env.observation_spec().shape == (30,)
  env_utils.validate_py_environment(env, episodes=4)
  env.close()
  toy = gym_adapter.GymnasiumVectorEnvironment([_ToyEnv, _ToyEnv])
  toy.reset()
  toy.step(np.array([[0.25, -0.5], [1.0, 0.0]], np.float32))
  np.testing.assert_array_equal(toy.vector_env.envs[1].actions[-1], [1, 0])
  assert toy.pop_episode_stats() == []  # No RecordEpisodeStatistics.


@pytest.mark.parametrize('env_fns', [[], (), None, [1, 2]])
def test_vector_bad_env_fns_raise(env_fns):
  with pytest.raises(ValueError, match='env_fns'):
    gym_adapter.GymnasiumVectorEnvironment(env_fns)


def test_vector_bad_seed_and_space_raise():
  with pytest.raises(ValueError, match='seed'):
    gym_adapter.GymnasiumVectorEnvironment(_counter_fns(), seed='0')
  with pytest.raises(ValueError, match='action space .*MultiBinary'):
    gym_adapter.GymnasiumVectorEnvironment(
        [lambda: _ToyEnv(act_space=spaces.MultiBinary(2))])
