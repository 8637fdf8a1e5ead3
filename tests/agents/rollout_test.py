"""Tests for bmg_tf.agents.rollout on the in-graph two-colours env.

References are independent of the collection code: the gymnasium version of
the env (`bmg_tf.envs.two_colors.TwoColors`) replays the recorded actions,
observations are decoded into positions with NumPy, and policies are made
deterministic by construction (huge logit gaps) so actions are known.
"""

import os
import tempfile
import unittest

os.environ['TF_USE_LEGACY_KERAS'] = '1'

from absl.testing import parameterized  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

from bmg_tf.agents import actor_critic
from bmg_tf.agents import rollout as rollout_lib
from bmg_tf.envs import tf_two_colors
from bmg_tf.envs import two_colors

SIZE = 5
OBS_DIM = 6 * SIZE
T = 16
B = 2
KEYS = ('observation', 'action', 'reward', 'discount',
        'bootstrap_observation')


def _make(batch_size=B, seed=0, rollout_length=T, policy_seed=1, **env_kwargs):
  env = tf_two_colors.TFTwoColors(batch_size=batch_size, seed=seed,
                                  **env_kwargs)
  agent = actor_critic.ActorCritic(OBS_DIM, 4, hidden_sizes=(16,), seed=0)
  policy = rollout_lib.FunctionalPolicy(
      env.time_step_spec(), env.action_spec(), agent.distribution,
      lambda: agent.params, seed=policy_seed)
  collector = rollout_lib.RolloutCollector(env, policy, rollout_length)
  return env, agent, policy, collector


def _favouring(agent, action, bias=50.0):
  """Explicit param tensors whose policy picks `action` with prob ~1."""
  params = [tf.constant(p.numpy()) for p in agent.params]
  n = len(agent.policy_net.params)
  params[n - 2] = tf.zeros_like(params[n - 2])
  params[n - 1] = tf.constant(np.eye(4)[action] * bias, tf.float32)
  return params


def _decode(obs):
  """float [..., 6 * SIZE] observation -> int [..., 3, 2] positions."""
  obs = np.asarray(obs)
  one_hot = obs.reshape(obs.shape[:-1] + (3, 2, SIZE))
  np.testing.assert_array_equal(one_hot.sum(-1), 1.0)
  return one_hot.argmax(-1)


def _encode(agent, objects):
  """NumPy observation from positions, independent of both envs."""
  obs = np.zeros((3, 2, SIZE), np.float32)
  for e, pos in enumerate([agent] + list(objects)):
    obs[e, 0, pos[0]] = 1.0
    obs[e, 1, pos[1]] = 1.0
  return obs.reshape(-1)


def _numpy(rollout):
  return {k: v.numpy() for k, v in rollout.items()}


class CollectShapesTest(tf.test.TestCase):

  def test_shapes_dtypes_and_spec(self):
    env, agent, _, collector = _make()
    start = _numpy(env.get_state())
    start_obs = env.current_time_step().observation.numpy()
    self.assertEqual(collector.rollout_length, T)
    rollout = collector.collect(agent.params)
    self.assertCountEqual(rollout, KEYS)
    want = {
        'observation': ((T, B, OBS_DIM), tf.float32),
        'action': ((T, B), tf.int64),
        'reward': ((T, B), tf.float32),
        'discount': ((T, B), tf.float32),
        'bootstrap_observation': ((B, OBS_DIM), tf.float32),
    }
    spec = collector.rollout_spec()
    self.assertCountEqual(spec, KEYS)
    for key, (shape, dtype) in want.items():
      self.assertEqual(tuple(rollout[key].shape), shape, key)
      self.assertEqual(rollout[key].dtype, dtype, key)
      self.assertEqual(tuple(spec[key].shape), shape, key)
      self.assertEqual(spec[key].dtype, dtype, key)
    r = _numpy(rollout)
    self.assertTrue(np.all((r['action'] >= 0) & (r['action'] <= 3)))
    self.assertAllEqual(r['discount'], np.ones([T, B]))
    self.assertTrue(np.all(np.isin(r['reward'], [-1.0, 0.0, 1.0])))
    _decode(r['observation'])  # Valid one-hots everywhere.
    # The first recorded observation is the one the env was in; exactly T
    # steps were taken in every stream.
    self.assertAllEqual(r['observation'][0], start_obs)
    self.assertAllEqual(env.step_count, start['step'] + T)
    # A second rollout continues the stream.
    rollout2 = _numpy(collector.collect(agent.params))
    self.assertAllEqual(rollout2['observation'][0],
                        r['bootstrap_observation'])
    self.assertAllEqual(env.step_count, start['step'] + 2 * T)

  def test_bootstrap_observation_is_current_observation(self):
    env, agent, _, collector = _make(seed=5)
    r = _numpy(collector.collect(agent.params))
    state = _numpy(env.get_state())
    want = np.stack([_encode(state['agent'][b], state['objects'][b])
                     for b in range(B)])
    self.assertAllEqual(r['bootstrap_observation'], want)
    self.assertAllEqual(r['bootstrap_observation'],
                        env.current_time_step().observation)

  def test_buffer_round_trip_and_validation(self):
    spec = {'x': tf.TensorSpec([2], tf.float32),
            'n': tf.TensorSpec([], tf.int64)}
    buf = rollout_lib.RolloutBuffer(spec, length=3, batch_size=2)
    xs = np.arange(12, dtype=np.float32).reshape(3, 2, 2)
    ns = np.arange(6, dtype=np.int64).reshape(3, 2) * 10
    for t in range(3):
      buf({'x': tf.constant(xs[t]), 'n': tf.constant(ns[t])})
    got = buf.read()
    self.assertAllEqual(got['x'], xs)
    self.assertAllEqual(got['n'], ns)
    buf.clear()
    buf({'x': tf.constant(-xs[0]), 'n': tf.constant(-ns[0])})
    got = buf.read()
    self.assertAllEqual(got['x'][0], -xs[0])
    self.assertAllEqual(got['x'][1:], xs[1:])  # Not yet overwritten.
    for length, batch in ((0, 2), (3, 0)):
      with self.assertRaisesRegex(ValueError, 'length/batch_size'):
        rollout_lib.RolloutBuffer(spec, length, batch)


class FunctionalPolicyTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(2, 3)
  def test_collect_acts_with_given_params(self, action):
    env, agent, _, collector = _make()
    # The variables favour action 1: only the explicit tensors may count.
    n = len(agent.policy_net.params)
    agent.policy_net.params[n - 2].assign(
        tf.zeros_like(agent.policy_net.params[n - 2]))
    agent.policy_net.params[n - 1].assign([0.0, 50.0, 0.0, 0.0])
    r = _numpy(collector.collect(_favouring(agent, action)))
    self.assertAllEqual(r['action'], np.full([T, B], action))
    del env

  def test_default_params_are_the_agents_variables(self):
    env, agent, policy, _ = _make()
    time_step = env.current_time_step()
    n = len(agent.policy_net.params)
    agent.policy_net.params[n - 2].assign(
        tf.zeros_like(agent.policy_net.params[n - 2]))
    agent.policy_net.params[n - 1].assign([0.0, 50.0, 0.0, 0.0])
    self.assertAllEqual(policy.action(time_step).action, [1, 1])
    with policy.acting_with(_favouring(agent, 3)):
      self.assertAllEqual(policy.action(time_step).action, [3, 3])
      with policy.acting_with(_favouring(agent, 0)):
        self.assertAllEqual(policy.action(time_step).action, [0, 0])
      self.assertAllEqual(policy.action(time_step).action, [3, 3])
    self.assertAllEqual(policy.action(time_step).action, [1, 1])
    # Variables are read at call time, not captured.
    agent.policy_net.params[n - 1].assign([0.0, 0.0, 50.0, 0.0])
    self.assertAllEqual(policy.action(time_step).action, [2, 2])

  def test_distribution_uses_params(self):
    env, agent, policy, _ = _make()
    time_step = env.current_time_step()
    with policy.acting_with(_favouring(agent, 2, bias=1.0)):
      probs = policy.distribution(time_step).action.probs_parameter()
    e = np.exp(1.0)
    self.assertAllClose(probs, np.array([[1, 1, e, 1]] * B) / (3.0 + e))


class ReplayTest(tf.test.TestCase):
  """The recorded rollout replays step by step in the gymnasium env.

  The two envs respawn objects with different RNGs, so after each collection
  the gymnasium env is re-synchronised to the respawned object read from the
  TF observation (after checking the respawn is legal). Until the first
  collection everything is compared without any re-synchronisation.
  """

  def test_replay_in_gymnasium_env(self):
    flip = 5  # The good colour flips inside the rollout.
    env, agent, _, collector = _make(seed=3, flip_period=flip)
    start = {
        'agent': np.array([[2, 2], [0, 0]]),
        'objects': np.array([[[2, 3], [1, 2]], [[0, 1], [1, 0]]]),
        'step': np.array([3, 5]),  # Stream 1 starts with red good.
        'reward': np.zeros([B]),
    }
    env.set_state(start)
    r = _numpy(collector.collect(agent.params))
    next_obs = np.concatenate([r['observation'][1:],
                               r['bootstrap_observation'][None]], axis=0)
    collected = set()  # (colour, reward) pairs seen.
    for b in range(B):
      gym_env = two_colors.TwoColors(size=SIZE, flip_period=flip)
      gym_env.reset(seed=123)
      gym_env.set_state({'agent': start['agent'][b],
                         'objects': start['objects'][b],
                         'step': start['step'][b]})
      for t in range(T):
        self.assertAllEqual(gym_env.observation(), r['observation'][t, b],
                            msg=f'stream {b}, step {t}')
        obs, reward, _, _, info = gym_env.step(int(r['action'][t, b]))
        self.assertEqual(reward, r['reward'][t, b], f'stream {b}, step {t}')
        k = info['collected']
        if k < 0:
          self.assertAllEqual(obs, next_obs[t, b], msg=f'stream {b}, {t}')
          continue
        collected.add((k, reward))
        got = _decode(next_obs[t, b])  # [agent, blue, red]
        want = _decode(obs)
        self.assertAllEqual(got[0], want[0])  # Agent.
        self.assertAllEqual(got[2 - k], want[2 - k])  # Uncollected object.
        self.assertLen({tuple(p) for p in got}, 3)  # Respawn on a free cell.
        gym_env.set_state({'agent': got[0], 'objects': got[1:],
                           'step': gym_env.get_state()['step']})
    # Both colours paid +1 at some point and a collection paid -1, so the
    # good colour and its flip were actually exercised.
    self.assertContainsSubset({(0, 1.0), (1, 1.0)}, collected)
    self.assertTrue(any(reward < 0 for _, reward in collected))

  def test_agent_positions_follow_actions(self):
    env, agent, _, collector = _make(seed=7)
    r = _numpy(collector.collect(agent.params))
    pos = _decode(np.concatenate([r['observation'],
                                  r['bootstrap_observation'][None]]))[:, :, 0]
    deltas = np.array(two_colors.ACTION_DELTAS)
    want = np.clip(pos[:-1] + deltas[r['action']], 0, SIZE - 1)
    self.assertAllEqual(pos[1:], want)
    self.assertGreater(len(np.unique(r['action'])), 1)
    del env


def _xla_collect(collector, params):
  # The driver builds its own tf.while_loop and nothing in the collection
  # branches on tensors in Python, so autograph would only add seconds of
  # tracing; the compiled graph is the same.
  return tf.function(lambda: collector.collect(params), jit_compile=True,
                     autograph=False)


class XlaTest(tf.test.TestCase):

  def _snapshot(self, env, policy):
    return env.get_state(), tf.identity(policy.generator.state)

  def _restore(self, env, policy, snapshot):
    env.set_state(snapshot[0])
    policy.generator.state.assign(snapshot[1])

  def test_collect_under_xla(self):
    env, agent, policy, collector = _make(seed=11)
    collect = _xla_collect(collector, agent.params)
    snapshot = self._snapshot(env, policy)
    a = _numpy(collect())
    end_state = _numpy(env.get_state())
    # Deterministic and restorable under XLA.
    self._restore(env, policy, snapshot)
    b = _numpy(collect())
    for key in KEYS:
      self.assertAllEqual(a[key], b[key], msg=key)
    self.assertAllEqual(end_state['step'], snapshot[0]['step'] + T)
    # The XLA-recorded rollout is consistent with stepping the env eagerly
    # with the recorded actions: observation[t] is the state the action was
    # taken in, reward[t] the reward that followed it.
    env.set_state(snapshot[0])
    for t in range(T):
      self.assertAllEqual(env.current_time_step().observation,
                          a['observation'][t], msg=f'step {t}')
      ts = env.step(tf.constant(a['action'][t]))
      self.assertAllEqual(ts.reward, a['reward'][t], msg=f'step {t}')
      self.assertAllEqual(ts.discount, a['discount'][t])
    self.assertAllEqual(env.current_time_step().observation,
                        a['bootstrap_observation'])
    self.assertAllEqual(_numpy(env.get_state())['rng'], end_state['rng'])

  # Regression test: tf.random.stateless_categorical draws differently on
  # CPU and under XLA; FunctionalPolicy samples with Gumbel-max instead.
  def test_xla_rollout_equals_eager_rollout(self):
    env, agent, policy, collector = _make(seed=11)
    snapshot = self._snapshot(env, policy)
    eager = _numpy(collector.collect(agent.params))
    self._restore(env, policy, snapshot)
    xla = _numpy(_xla_collect(collector, agent.params)())
    for key in ('action',) + KEYS:
      self.assertAllEqual(eager[key], xla[key], msg=key)


class RewardContextTest(tf.test.TestCase):

  def test_keeps_last_window_means_oldest_first(self):
    context = rollout_lib.RewardContext(window=10)
    self.assertAllEqual(context.value(), np.zeros(10))
    rng = np.random.RandomState(0)
    means = []
    for i in range(12):
      rewards = rng.randn(T, B).astype(np.float32)
      means.append(rewards.astype(np.float64).mean())
      context.update({'reward': tf.constant(rewards)})
      if i == 2:
        self.assertAllClose(context.value(),
                            [0.0] * 7 + means, rtol=1e-5, atol=1e-6)
    self.assertAllClose(context.value(), means[-10:], rtol=1e-5, atol=1e-6)

  def test_step_granularity_keeps_the_last_window_step_rewards(self):
    # The reference: a plain list of every step's reward (mean over B).
    context = rollout_lib.RewardContext(window=25, granularity='step')
    rng = np.random.RandomState(1)
    history = []
    for _ in range(4):  # 4 * T steps: more than the window.
      rewards = rng.randn(T, B).astype(np.float32)
      history.extend(rewards.astype(np.float64).mean(axis=1))
      context.update({'reward': tf.constant(rewards)})
    self.assertAllClose(context.value(), history[-25:], rtol=1e-5,
                        atol=1e-6)
    # Per stream: each stream's own step rewards, oldest first.
    streams = rollout_lib.RewardContext(window=5, num_streams=B,
                                        granularity='step')
    rewards = rng.randn(T, B).astype(np.float32)
    streams.update({'reward': tf.constant(rewards)})
    self.assertAllClose(streams.value(), rewards[-5:].T)
    with self.assertRaisesRegex(ValueError, 'granularity'):
      rollout_lib.RewardContext(granularity='step', transform='running_tanh')
    with self.assertRaisesRegex(ValueError, 'granularity'):
      rollout_lib.RewardContext(granularity='episode')

  def test_bad_window(self):
    with self.assertRaisesRegex(ValueError, 'window'):
      rollout_lib.RewardContext(window=0)

  def test_bad_transform_scale_decay(self):
    with self.assertRaisesRegex(ValueError, 'transform'):
      rollout_lib.RewardContext(transform='sigmoid')
    with self.assertRaisesRegex(ValueError, 'scale'):
      rollout_lib.RewardContext(transform='tanh', scale=0.0)
    with self.assertRaisesRegex(ValueError, 'decay'):
      rollout_lib.RewardContext(transform='running_tanh', decay=1.0)

  def test_fixed_tanh(self):
    context = rollout_lib.RewardContext(window=3, transform='tanh', scale=0.2)
    for r in (0.1, -0.3, 0.05):
      context.update({'reward': tf.fill([T, B], r)})
    self.assertAllClose(context.value(), np.tanh(np.array([0.1, -0.3, 0.05])
                                                 / 0.2), rtol=1e-5)
    self.assertAllClose(context.rewards, [0.1, -0.3, 0.05], rtol=1e-6)

  def test_running_tanh_matches_a_numpy_loop(self):
    rng = np.random.RandomState(1)
    window, decay, scale = 4, 0.9, 0.1
    context = rollout_lib.RewardContext(window=window, num_streams=2,
                                        transform='running_tanh',
                                        scale=scale, decay=decay)
    mean, var = np.zeros(2), np.full(2, scale**2)
    kept = np.zeros((2, window))
    for _ in range(9):
      rewards = rng.randn(T, 2).astype(np.float32) * 0.3 + 0.1
      context.update({'reward': tf.constant(rewards)})
      r = rewards.astype(np.float64).mean(0)
      kept = np.concatenate([kept[:, 1:], r[:, None]], axis=1)
      mean = decay * mean + (1 - decay) * r
      var = decay * var + (1 - decay) * (r - mean)**2
    expected = np.tanh((kept - mean[:, None]) / np.sqrt(var[:, None] + 1e-8))
    self.assertAllClose(context.value(), expected, rtol=1e-4, atol=1e-5)
    # A checkpoint carries the running statistics.
    names = {v.name for v in context.variables}
    self.assertTrue(any('running_mean' in n for n in names), names)
    self.assertTrue(any('running_var' in n for n in names), names)


class CheckpointTest(tf.test.TestCase):

  def test_restore_replays_the_same_rollout(self):
    env, agent, policy, collector = _make(seed=2)
    collector.collect(agent.params)  # Move away from the initial state.
    ckpt = tf.train.Checkpoint(env=env, rng=policy.generator)
    path = ckpt.save(os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()),
                                  'ckpt'))
    a = _numpy(collector.collect(agent.params))
    c = _numpy(collector.collect(agent.params))
    self.assertNotAllEqual(a['action'], c['action'])
    ckpt.restore(path).assert_consumed()
    b = _numpy(collector.collect(agent.params))
    for key in KEYS:
      self.assertAllEqual(a[key], b[key], msg=key)



class PerStreamRewardContextTest(tf.test.TestCase):

  def test_each_stream_keeps_its_own_window(self):
    context = rollout_lib.RewardContext(window=3, num_streams=2)
    for i in range(4):
      context.update({'reward': tf.constant([[i, 10.0 * i], [i, 10.0 * i]])})
    self.assertAllClose(context.value(), [[1, 2, 3], [10, 20, 30]])
    with self.assertRaisesRegex(ValueError, 'num_streams'):
      rollout_lib.RewardContext(window=3, num_streams=0)


if __name__ == '__main__':
  tf.test.main()


def test_gumbel_max_matches_numpy_and_softmax():
  logits = np.log(np.array([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]], np.float32))
  u = np.random.RandomState(0).uniform(1e-6, 1.0, (2, 3)).astype(np.float32)
  want = np.argmax(logits - np.log(-np.log(u)), axis=-1)
  np.testing.assert_array_equal(
      rollout_lib.gumbel_max(tf.constant(logits), tf.constant(u)).numpy(), want)
  # The empirical frequencies of 20k draws are softmax(logits) (+-4 s.e.).
  n = 20000
  draws = rollout_lib.gumbel_max(
      tf.tile(tf.constant(logits[:1]), [n, 1]),
      tf.random.stateless_uniform([n, 3], [1, 2], minval=1e-12)).numpy()
  freq = np.bincount(draws, minlength=3) / n
  p = np.array([0.1, 0.2, 0.7])
  assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / n)), freq
