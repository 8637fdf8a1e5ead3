"""Tests for bmg_tf.envs.tf_two_colors (batched in-graph two-colours env)."""

import itertools

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.environments import tf_py_environment
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

from bmg_tf.envs import gym_adapter
from bmg_tf.envs import tf_two_colors
from bmg_tf.envs import two_colors

__all__ = []

DOWN, RIGHT = 1, 3
FIRST, MID = int(ts.StepType.FIRST), int(ts.StepType.MID)


def _decode(obs, size):
  """float32 [..., 6 * size] -> int [..., 3, 2] positions."""
  obs = np.asarray(obs)
  return obs.reshape(obs.shape[:-1] + (3, 2, size)).argmax(axis=-1)


def _random_states(rng, num, size, max_step):
  cells = np.stack([rng.choice(size * size, 3, replace=False)
                    for _ in range(num)])
  pos = np.stack(np.divmod(cells, size), axis=-1)  # [num, 3, 2]
  steps = rng.integers(0, max_step, size=num)
  return pos, steps


def _chi2_pvalue(counts, probs):
  """Pearson chi-square goodness-of-fit p-value (df = len(counts) - 1)."""
  counts = np.asarray(counts, np.float64)
  expected = counts.sum() * np.asarray(probs, np.float64)
  stat = np.sum((counts - expected) ** 2 / expected)
  dof = len(counts) - 1
  return float(tf.math.igammac(dof / 2.0, stat / 2.0))


def test_chi2_pvalue_helper():
  # Reference values: chi2.sf(3.84146, 1) = 0.05, chi2.sf(2 * ln 20, 2) = 0.05.
  assert _chi2_pvalue([60, 40], [0.5, 0.5]) == pytest.approx(0.0455, abs=1e-3)
  assert _chi2_pvalue([100, 100, 100], [1 / 3] * 3) == pytest.approx(1.0)
  assert _chi2_pvalue([150, 100, 50], [1 / 3] * 3) < 1e-9


# ------------------------------------------------------------ specs / basics


def test_specs_and_time_step_shapes():
  env = tf_two_colors.TFTwoColors(batch_size=3, seed=0)
  assert env.batch_size == 3 and env.batched
  assert env.observation_spec().shape == (30,)
  assert env.observation_spec().dtype == tf.float32
  assert env.action_spec().dtype == tf.int64
  assert env.action_spec().minimum == 0 and env.action_spec().maximum == 3
  batched_spec = tensor_spec.add_outer_dims_nest(env.time_step_spec(), (3,))
  for time_step in [env.current_time_step(), env.reset(),
                    env.step(tf.constant([0, 1, 2], tf.int64))]:
    tf.nest.map_structure(
        lambda s, t: (s.shape.assert_is_compatible_with(t.shape),
                      tf.debugging.assert_type(t, s.dtype)),
        batched_spec, time_step)


def test_specs_match_wrapped_gym_version():
  py_env = tf_py_environment.TFPyEnvironment(
      gym_adapter.GymnasiumEnvironment(two_colors.TwoColors(size=4)))
  env = tf_two_colors.TFTwoColors(size=4, batch_size=1, seed=0)
  assert env.observation_spec() == py_env.observation_spec()
  assert env.action_spec() == py_env.action_spec()
  assert env.reward_spec() == py_env.reward_spec()


def test_step_types_and_current_time_step():
  env = tf_two_colors.TFTwoColors(batch_size=2, seed=0, step_cost=0.5)
  np.testing.assert_array_equal(env.current_time_step().step_type,
                                [FIRST, FIRST])
  first = env.reset()
  np.testing.assert_array_equal(first.step_type, [FIRST, FIRST])
  np.testing.assert_array_equal(first.reward, [0.0, 0.0])
  np.testing.assert_array_equal(
      env.current_time_step().observation, first.observation)
  for _ in range(10):
    time_step = env.step(tf.constant([RIGHT, DOWN]))
    np.testing.assert_array_equal(time_step.step_type, [MID, MID])
    np.testing.assert_array_equal(time_step.discount, [1.0, 1.0])
    current = env.current_time_step()
    tf.nest.map_structure(np.testing.assert_array_equal, current, time_step)
  np.testing.assert_array_equal(env.get_state()['step'], [10, 10])
  reset = env.reset()
  np.testing.assert_array_equal(reset.step_type, [FIRST, FIRST])
  np.testing.assert_array_equal(env.get_state()['step'], [0, 0])


def test_observation_matches_state_and_entities_distinct():
  batch = 64
  env = tf_two_colors.TFTwoColors(size=3, respawn='all', batch_size=batch,
                                  seed=4)
  rng = np.random.default_rng(0)
  for _ in range(25):
    obs = env.step(rng.integers(0, 4, size=batch)).observation.numpy()
    assert np.all(obs.reshape(batch, 6, 3).sum(-1) == 1.0)
    state = env.get_state()
    positions = np.concatenate(
        [state['agent'].numpy()[:, None], state['objects'].numpy()], axis=1)
    np.testing.assert_array_equal(_decode(obs, 3), positions)
    cells = positions[..., 0] * 3 + positions[..., 1]
    assert all(len(set(row)) == 3 for row in cells)


@pytest.mark.parametrize('kwargs, name', [
    ({'size': 1}, 'size'),
    ({'flip_period': 0}, 'flip_period'),
    ({'respawn': 'some'}, 'respawn'),
    ({'step_cost': -1.0}, 'step_cost'),
    ({'step_cost': float('nan')}, 'step_cost'),
    ({'batch_size': 0}, 'batch_size'),
])
def test_bad_arguments(kwargs, name):
  with pytest.raises(ValueError, match=name):
    tf_two_colors.TFTwoColors(**kwargs)


def test_set_state_rejects_invalid():
  env = tf_two_colors.TFTwoColors(batch_size=1, seed=0)
  with pytest.raises(ValueError):
    env.set_state({'agent': [[0, 0]], 'objects': [[[0, 0], [1, 1]]]})
  with pytest.raises(ValueError):
    env.set_state({'agent': [[0, 5]]})
  with pytest.raises(ValueError):
    env.set_state({'bogus': 1})


# ------------------------------------------------------------------- parity


@pytest.mark.parametrize('respawn, size', [('collected', 5), ('all', 5),
                                           ('collected', 2), ('all', 3)])
def test_parity_with_gym_version(respawn, size):
  num_states = 150
  flip_period = 3
  params = dict(size=size, flip_period=flip_period, respawn=respawn,
                step_cost=0.1)
  rng = np.random.default_rng(size)
  pos, steps = _random_states(rng, num_states, size, max_step=4 * flip_period)
  # Every state with every action: batch element i = (state i // 4, i % 4).
  pos = np.repeat(pos, 4, axis=0)
  steps = np.repeat(steps, 4)
  actions = np.tile(np.arange(4), num_states)
  batch = 4 * num_states

  tf_env = tf_two_colors.TFTwoColors(batch_size=batch, seed=1, **params)
  tf_env.set_state({'agent': pos[:, 0], 'objects': pos[:, 1:], 'step': steps})
  time_step = tf_env.step(tf.constant(actions, tf.int64))
  tf_obs = time_step.observation.numpy()
  tf_reward = time_step.reward.numpy()
  tf_state = {k: v.numpy() for k, v in tf_env.get_state().items()}
  np.testing.assert_array_equal(tf_state['step'], steps + 1)

  gym_env = two_colors.TwoColors(**params)
  gym_env.reset(seed=2)
  num_collected = 0
  for i in range(batch):
    gym_env.set_state({'agent': pos[i, 0], 'objects': pos[i, 1:],
                       'step': int(steps[i])})
    obs, reward, _, _, info = gym_env.step(int(actions[i]))
    gym_pos = _decode(obs, size)
    tf_pos = _decode(tf_obs[i], size)
    # Agent, reward and (positions decoded from) observations.
    np.testing.assert_array_equal(tf_pos[0], gym_pos[0])
    np.testing.assert_array_equal(tf_state['agent'][i], gym_pos[0])
    assert tf_reward[i] == np.float32(reward), i
    np.testing.assert_array_equal(tf_pos[1:], tf_state['objects'][i])
    collected = info['collected']
    if collected < 0:
      np.testing.assert_array_equal(tf_obs[i], obs)
      np.testing.assert_array_equal(tf_pos[1:], pos[i, 1:])
      assert reward == pytest.approx(-0.1)
      continue
    num_collected += 1
    good = (steps[i] // flip_period) % 2
    assert reward == pytest.approx((1.0 if collected == good else -1.0) - 0.1)
    for positions in (gym_pos, tf_pos):
      assert len({tuple(p) for p in positions}) == 3  # Free cells only.
      if respawn == 'collected':
        np.testing.assert_array_equal(positions[2 - collected],
                                      pos[i, 2 - collected])
  assert num_collected >= 30, num_collected


def test_parity_of_long_trajectories_without_collection():
  """Replays gym trajectories in TF with states reset after collections."""
  size, batch, horizon = 4, 8, 40
  rng = np.random.default_rng(3)
  pos, steps = _random_states(rng, batch, size, max_step=10)
  actions = rng.integers(0, 4, size=(horizon, batch))
  tf_env = tf_two_colors.TFTwoColors(size=size, flip_period=5, batch_size=batch,
                                     seed=0)
  tf_env.set_state({'agent': pos[:, 0], 'objects': pos[:, 1:], 'step': steps})
  gym_envs = [two_colors.TwoColors(size=size, flip_period=5)
              for _ in range(batch)]
  for b, gym_env in enumerate(gym_envs):
    gym_env.reset(seed=b)
    gym_env.set_state({'agent': pos[b, 0], 'objects': pos[b, 1:],
                       'step': int(steps[b])})
  for t in range(horizon):
    time_step = tf_env.step(actions[t])
    for b, gym_env in enumerate(gym_envs):
      obs, reward, _, _, info = gym_env.step(int(actions[t, b]))
      assert time_step.reward.numpy()[b] == np.float32(reward)
      if info['collected'] >= 0:
        # Respawns differ: copy the gym positions into the TF stream.
        state = gym_env.get_state()
        tf_state = tf_env.get_state()
        objects = tf_state['objects'].numpy()
        objects[b] = state['objects']
        tf_env.set_state({'objects': objects})
      else:
        np.testing.assert_array_equal(time_step.observation.numpy()[b], obs)


# --------------------------------------------------------- respawn uniformity


def _collect_once_state(size):
  """Agent left of blue; red in the corner; RIGHT collects blue (good)."""
  mid = size // 2
  return (mid, mid - 1), (mid, mid), (0, 0)


def _categories(respawn, size):
  """Expected support of the respawn outcome and its uniform probabilities."""
  agent, _, red = _collect_once_state(size)
  agent = (agent[0], agent[1] + 1)  # After moving right.
  cells = list(itertools.product(range(size), range(size)))
  if respawn == 'collected':
    support = [c for c in cells if c not in (agent, red)]
  else:
    free = [c for c in cells if c != agent]
    support = [(b, r) for b in free for r in free if b != r]
  return support


def _check_uniform(outcomes, support):
  counts = {k: 0 for k in support}
  for outcome in outcomes:
    assert outcome in counts, f'respawned onto an occupied cell: {outcome}'
    counts[outcome] += 1
  counts = np.array([counts[k] for k in support])
  assert counts.min() > 0
  p_value = _chi2_pvalue(counts, np.full(len(support), 1.0 / len(support)))
  assert p_value > 1e-3, (p_value, counts)


@pytest.mark.parametrize('respawn, size, per_cell', [('collected', 5, 200),
                                                     ('all', 3, 100)])
def test_respawn_is_uniform_tf(respawn, size, per_cell):
  support = _categories(respawn, size)
  batch = per_cell * len(support)
  agent, blue, red = _collect_once_state(size)
  env = tf_two_colors.TFTwoColors(size=size, respawn=respawn,
                                  batch_size=batch, seed=123)
  env.set_state({'agent': np.tile(agent, (batch, 1)),
                 'objects': np.tile([blue, red], (batch, 1, 1)),
                 'step': np.zeros(batch, np.int64)})
  time_step = env.step(tf.fill([batch], RIGHT))
  np.testing.assert_array_equal(time_step.reward, np.ones(batch))
  objects = env.get_state()['objects'].numpy()
  if respawn == 'collected':
    np.testing.assert_array_equal(objects[:, 1], np.tile(red, (batch, 1)))
    outcomes = [tuple(o) for o in objects[:, 0]]
  else:
    outcomes = [(tuple(o[0]), tuple(o[1])) for o in objects]
  _check_uniform(outcomes, support)


@pytest.mark.parametrize('respawn, size, per_cell', [('collected', 5, 100),
                                                     ('all', 3, 60)])
def test_respawn_is_uniform_gym(respawn, size, per_cell):
  support = _categories(respawn, size)
  agent, blue, red = _collect_once_state(size)
  env = two_colors.TwoColors(size=size, respawn=respawn)
  env.reset(seed=123)
  outcomes = []
  for _ in range(per_cell * len(support)):
    env.set_state({'agent': agent, 'objects': [blue, red], 'step': 0})
    _, reward, _, _, _ = env.step(RIGHT)
    assert reward == 1.0
    objects = env.get_state()['objects']
    if respawn == 'collected':
      assert objects[1] == red
      outcomes.append(objects[0])
    else:
      outcomes.append(tuple(objects))
  _check_uniform(outcomes, support)


# -------------------------------------------------------- batch independence


def _run(env, actions):
  """Steps eagerly; returns observations [T, B, 6N] and rewards [T, B]."""
  observations, rewards = [], []
  for action in actions:
    time_step = env.step(action)
    observations.append(time_step.observation.numpy())
    rewards.append(time_step.reward.numpy())
  return np.stack(observations), np.stack(rewards)


def _rollout(env, actions):
  """Like `_run`, but in one `tf.function` (explicit loop, no autograph)."""

  def loop(actions):
    horizon = tf.shape(actions)[0]

    def body(t, observations, rewards):
      time_step = env.step(actions[t])
      return (t + 1, observations.write(t, time_step.observation),
              rewards.write(t, time_step.reward))

    _, observations, rewards = tf.while_loop(
        lambda t, *_: t < horizon, body,
        (tf.constant(0), tf.TensorArray(tf.float32, size=horizon),
         tf.TensorArray(tf.float32, size=horizon)))
    return observations.stack(), rewards.stack()

  observations, rewards = tf.function(loop, autograph=False)(
      tf.constant(actions, tf.int64))
  return observations.numpy(), rewards.numpy()


@pytest.mark.parametrize('respawn', ['collected', 'all'])
def test_batch_streams_are_independent(respawn):
  batch, horizon = 6, 150
  rng = np.random.default_rng(0)
  actions = rng.integers(0, 4, size=(horizon, batch))
  other_actions = actions.copy()
  other_actions[:, 1:] = rng.integers(0, 4, size=(horizon, batch - 1))

  env_a = tf_two_colors.TFTwoColors(size=3, respawn=respawn,
                                    batch_size=batch, seed=5)
  env_b = tf_two_colors.TFTwoColors(size=3, respawn=respawn,
                                    batch_size=batch, seed=5)
  obs_a, rew_a = _rollout(env_a, actions)
  obs_b, rew_b = _rollout(env_b, other_actions)
  # Stream 0 sees the same actions, so it is unaffected by the others.
  np.testing.assert_array_equal(obs_a[:, 0], obs_b[:, 0])
  np.testing.assert_array_equal(rew_a[:, 0], rew_b[:, 0])
  assert np.any(rew_a[:, 0] != 0.0)
  assert not np.array_equal(obs_a[:, 1:], obs_b[:, 1:])

  # Identical states and actions in every stream still diverge through
  # independent respawns.
  env_c = tf_two_colors.TFTwoColors(size=3, respawn=respawn,
                                    batch_size=batch, seed=6)
  state = env_c.get_state()
  env_c.set_state({k: tf.repeat(state[k][:1], batch, axis=0)
                   for k in ('agent', 'objects', 'step')})
  obs_c, _ = _rollout(env_c, np.tile(actions[:, :1], (1, batch)))
  assert len({obs_c[:, b].tobytes() for b in range(batch)}) == batch


# ------------------------------------------------------- tf.function and XLA


@pytest.mark.parametrize('respawn', ['collected', 'all'])
def test_jit_compiled_loop_matches_eager(respawn):
  batch, horizon = 4, 40
  actions = np.random.default_rng(1).integers(0, 4, size=(horizon, batch))
  params = dict(size=3, respawn=respawn, flip_period=7, step_cost=0.1,
                batch_size=batch, seed=9)
  eager_env = tf_two_colors.TFTwoColors(**params)
  eager_first = eager_env.reset().observation.numpy()
  eager_obs, eager_rew = _run(eager_env, actions)
  assert np.any(eager_rew > 0) and np.any(eager_rew < -0.5)

  jit_env = tf_two_colors.TFTwoColors(**params)

  @tf.function(jit_compile=True)
  def reset_and_run(actions):
    first = jit_env.reset()
    observations = tf.TensorArray(tf.float32, size=horizon)
    rewards = tf.TensorArray(tf.float32, size=horizon)
    for t in tf.range(horizon):
      time_step = jit_env.step(actions[t])
      observations = observations.write(t, time_step.observation)
      rewards = rewards.write(t, time_step.reward)
    return (first, observations.stack(), rewards.stack(),
            jit_env.current_time_step())

  first, jit_obs, jit_rew, current = reset_and_run(
      tf.constant(actions, tf.int64))
  np.testing.assert_array_equal(first.step_type, np.zeros(batch))
  np.testing.assert_array_equal(first.observation, eager_first)
  np.testing.assert_array_equal(jit_obs, eager_obs)
  np.testing.assert_array_equal(jit_rew, eager_rew)
  np.testing.assert_array_equal(current.observation, eager_obs[-1])
  np.testing.assert_array_equal(current.step_type, np.ones(batch))
  np.testing.assert_array_equal(jit_env.get_state()['step'],
                                np.full(batch, horizon))
  # Calling the compiled function again continues the RNG stream: a reset
  # makes 3 draws and each step 1 ('collected') or 2 ('all').
  rng_before = jit_env.get_state()['rng'].numpy()
  _, obs_again, _, _ = reset_and_run(tf.constant(actions, tf.int64))
  draws = 3 + horizon * (1 if respawn == 'collected' else 2)
  np.testing.assert_array_equal(
      jit_env.get_state()['rng'].numpy() - rng_before, [0, draws])
  assert not np.array_equal(obs_again, jit_obs)


# --------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_restores_stream(tmp_path):
  batch, warmup, horizon = 4, 15, 60
  rng = np.random.default_rng(2)
  actions = rng.integers(0, 4, size=(warmup + horizon, batch))
  env = tf_two_colors.TFTwoColors(size=3, respawn='all', batch_size=batch,
                                  seed=11)
  _rollout(env, actions[:warmup])
  assert set(v.name.split('/')[-1] for v in env.variables) == {
      'agent:0', 'objects:0', 'step:0', 'reward:0', 'rng:0'}
  saved_obs = env.current_time_step().observation.numpy()
  path = tf.train.Checkpoint(env=env).save(str(tmp_path / 'env'))
  expected_obs, expected_rew = _rollout(env, actions[warmup:])
  assert np.any(expected_rew != 0.0)  # Respawns (RNG use) happened.

  tf.train.Checkpoint(env=env).restore(path).assert_consumed()
  obs, rew = _run(env, actions[warmup:])
  np.testing.assert_array_equal(obs, expected_obs)
  np.testing.assert_array_equal(rew, expected_rew)

  fresh = tf_two_colors.TFTwoColors(size=3, respawn='all', batch_size=batch,
                                    seed=999)
  tf.train.Checkpoint(env=fresh).restore(path).assert_consumed()
  np.testing.assert_array_equal(fresh.current_time_step().observation,
                                saved_obs)
  obs, rew = _run(fresh, actions[warmup:])
  np.testing.assert_array_equal(obs, expected_obs)
  np.testing.assert_array_equal(rew, expected_rew)
