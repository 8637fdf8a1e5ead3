"""Tests for bmg_tf.agents.q_learning (epsilon-greedy Q(lambda), BMG epsilon).

References are independent of the code under test: a NumPy MLP forward pass,
Peng's Q(lambda) in its forward view (a weighted sum of n-step returns) or a
plain NumPy backward loop, closed forms for pi_eps and its derivative,
central finite differences of a NumPy meta-loss, and the raw trajectories a
driver observer recorded.
"""

import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'

from absl.testing import parameterized  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tf_agents.drivers import dynamic_step_driver
from tf_agents.replay_buffers import tf_uniform_replay_buffer
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory as trajectory_lib

from bmg_tf.core import bootstrap
from bmg_tf.core import matching
from bmg_tf.core import meta_params
from bmg_tf.core import optimizers
from bmg_tf.agents import q_learning
from bmg_tf.envs import tf_two_colors

tfd = tfp.distributions

OBS, ACT = 6, 3


def _np_q(params, obs):
  """NumPy forward pass of a ReLU MLP `[w0, b0, w1, b1, ...]`."""
  h = np.asarray(obs, np.float64)
  params = [np.asarray(p, np.float64) for p in params]
  n = len(params) // 2
  for i in range(n):
    h = h @ params[2 * i] + params[2 * i + 1]
    if i < n - 1:
      h = np.maximum(h, 0.0)
  return h


def _random_batch(rng, b=3, t=5, obs=OBS, act=ACT, zero_discounts=True):
  discount = np.ones([b, t + 1], np.float32)
  if zero_discounts:
    discount[rng.rand(b, t + 1) < 0.3] = 0.0
  return {
      'observation': tf.constant(rng.randn(b, t + 1, obs), tf.float32),
      'action': tf.constant(rng.randint(act, size=(b, t + 1)), tf.int64),
      'reward': tf.constant(rng.randn(b, t + 1), tf.float32),
      'discount': tf.constant(discount),
  }


def _np_inputs(learner, params, batch):
  """(rewards, discounts, v_next, q_next, actions) as float64 NumPy."""
  obs = batch['observation'].numpy()
  q_next = _np_q([p.numpy() for p in params], obs[:, 1:])
  return (batch['reward'].numpy()[:, :-1].astype(np.float64),
          batch['discount'].numpy()[:, :-1].astype(np.float64),
          q_next.max(-1), q_next, batch['action'].numpy())


def _peng_forward_view(rewards, discounts, v_next, gamma, lam):
  """Peng's Q(lambda) as (1-lam)-weighted n-step returns (forward view).

  G_t = (1-lam) sum_{n=1}^{N-1} lam^{n-1} G_t^(n) + lam^{N-1} G_t^(N),
  N = T - t, G_t^(n) = sum_{k<n} c_k r_{t+k} + c_n v_{t+n},
  c_k = prod_{j<k} gamma d_{t+j}.
  """
  b, t_len = rewards.shape
  out = np.zeros([b, t_len])
  for b_i in range(b):
    for t in range(t_len):
      horizon = t_len - t
      n_step = []
      for n in range(1, horizon + 1):
        c, g = 1.0, 0.0
        for k in range(n):
          g += c * rewards[b_i, t + k]
          c *= gamma * discounts[b_i, t + k]
        n_step.append(g + c * v_next[b_i, t + n - 1])
      total = lam**(horizon - 1) * n_step[-1]
      for n in range(1, horizon):
        total += (1 - lam) * lam**(n - 1) * n_step[n - 1]
      out[b_i, t] = total
  return out


def _backward_loop(rewards, discounts, v_next, lambdas, gamma):
  """G_t = r + gamma d ((1 - lam_t) v_{t+1} + lam_t G_{t+1}), G_T = v_T."""
  b, t_len = rewards.shape
  out = np.zeros([b, t_len])
  for b_i in range(b):
    g = v_next[b_i, -1]
    for t in reversed(range(t_len)):
      lam = lambdas[b_i, t]
      g = rewards[b_i, t] + gamma * discounts[b_i, t] * (
          (1 - lam) * v_next[b_i, t] + lam * g)
      out[b_i, t] = g
  return out


def _learner(**kwargs):
  kwargs.setdefault('hidden_sizes', (8,))
  return q_learning.QLearner(OBS, ACT, **kwargs)


class QLambdaTargetsTest(parameterized.TestCase, tf.test.TestCase):

  @parameterized.parameters(0.0, 0.5, 0.9, 1.0)
  def test_peng_targets_match_forward_view(self, lam):
    rng = np.random.RandomState(0)
    learner = _learner(gamma=0.9, lambda_=lam)
    batch = _random_batch(rng)
    rewards, discounts, v_next, _, _ = _np_inputs(learner, learner.params,
                                                  batch)
    self.assertIn(0.0, discounts)  # The test covers terminal transitions.
    want = _peng_forward_view(rewards, discounts, v_next, 0.9, lam)
    got = learner.td_targets(learner.params, batch)
    self.assertEqual(got.shape, (3, 5))
    self.assertAllClose(got, want, rtol=1e-5, atol=1e-5)

  def test_lambda_zero_is_one_step_q_learning(self):
    rng = np.random.RandomState(1)
    learner = _learner(gamma=0.95, lambda_=0.0)
    batch = _random_batch(rng)
    rewards, discounts, v_next, _, _ = _np_inputs(learner, learner.params,
                                                  batch)
    self.assertAllClose(learner.td_targets(learner.params, batch),
                        rewards + 0.95 * discounts * v_next, rtol=1e-5,
                        atol=1e-5)

  def test_lambda_one_is_n_step_return(self):
    rng = np.random.RandomState(2)
    learner = _learner(gamma=0.8, lambda_=1.0)
    batch = _random_batch(rng, zero_discounts=False)
    rewards, _, v_next, _, _ = _np_inputs(learner, learner.params, batch)
    t_len = rewards.shape[1]
    want = np.zeros_like(rewards)
    for t in range(t_len):
      powers = 0.8**np.arange(t_len - t)
      want[:, t] = rewards[:, t:] @ powers + 0.8**(t_len - t) * v_next[:, -1]
    self.assertAllClose(learner.td_targets(learner.params, batch), want,
                        rtol=1e-5, atol=1e-5)

  @parameterized.parameters(0.5, 1.0)
  def test_watkins_cuts_trace_after_non_greedy_actions(self, lam):
    rng = np.random.RandomState(3)
    learner = _learner(gamma=0.9, lambda_=lam, trace='watkins')
    batch = _random_batch(rng, b=4, t=6)
    rewards, discounts, v_next, q_next, actions = _np_inputs(
        learner, learner.params, batch)
    greedy = (np.argmax(q_next, -1) == actions[:, 1:]).astype(np.float64)
    self.assertTrue(0 < greedy.mean() < 1)  # Both cases occur.
    want = _backward_loop(rewards, discounts, v_next, lam * greedy, 0.9)
    self.assertAllClose(learner.td_targets(learner.params, batch), want,
                        rtol=1e-5, atol=1e-5)
    # And Peng's differs on this batch, so the test can tell them apart.
    peng = _learner(gamma=0.9, lambda_=lam)
    self.assertNotAllClose(peng.td_targets(learner.params, batch), want)

  def test_mask_cuts_trace_before_boundary_and_drops_its_loss(self):
    rng = np.random.RandomState(4)
    learner = _learner(gamma=0.9, lambda_=0.7)
    batch = _random_batch(rng, b=2, t=5, zero_discounts=False)
    mask = np.ones([2, 6], np.float32)
    mask[0, 2] = 0.0  # s_2 -> s_3 of stream 0 crosses an episode boundary.
    batch['mask'] = tf.constant(mask)
    rewards, discounts, v_next, _, _ = _np_inputs(learner, learner.params,
                                                  batch)
    want = _backward_loop(rewards, discounts, v_next, 0.7 * mask[:, 1:], 0.9)
    got = learner.td_targets(learner.params, batch)
    self.assertAllClose(got, want, rtol=1e-5, atol=1e-5)
    # The loss averages the 9 real transitions only.
    q = _np_q([p.numpy() for p in learner.params],
              batch['observation'].numpy()[:, :-1])
    q_taken = np.take_along_axis(q, batch['action'].numpy()[:, :-1, None],
                                 -1)[..., 0]
    sq = 0.5 * (want - q_taken)**2 * mask[:, :-1]
    self.assertAllClose(learner.td_loss(learner.params, batch),
                        sq.sum() / 9.0, rtol=1e-5)

  def test_separate_target_params(self):
    rng = np.random.RandomState(5)
    learner = _learner(gamma=0.9, lambda_=0.5)
    other = _learner(gamma=0.9, lambda_=0.5, seed=7)
    batch = _random_batch(rng)
    rewards, discounts, v_next, _, _ = _np_inputs(learner, other.params,
                                                  batch)
    want = _peng_forward_view(rewards, discounts, v_next, 0.9, 0.5)
    got = learner.td_targets(learner.params, batch,
                             target_params=other.params)
    self.assertAllClose(got, want, rtol=1e-5, atol=1e-5)
    self.assertNotAllClose(learner.td_targets(learner.params, batch), want)


class TDLossTest(parameterized.TestCase, tf.test.TestCase):

  @parameterized.parameters(0.0, 0.9)
  def test_loss_value_matches_numpy(self, lam):
    rng = np.random.RandomState(10)
    learner = _learner(gamma=0.99, lambda_=lam)
    batch = _random_batch(rng, b=4, t=3)
    rewards, discounts, v_next, _, _ = _np_inputs(learner, learner.params,
                                                  batch)
    g = _peng_forward_view(rewards, discounts, v_next, 0.99, lam)
    q = _np_q([p.numpy() for p in learner.params],
              batch['observation'].numpy()[:, :-1])
    q_taken = np.take_along_axis(q, batch['action'].numpy()[:, :-1, None],
                                 -1)[..., 0]
    want = 0.5 * np.mean((g - q_taken)**2)
    loss = learner.td_loss(learner.params, batch)
    self.assertEqual(loss.shape, ())
    self.assertEqual(loss.dtype, tf.float32)
    self.assertAllClose(loss, want, rtol=1e-5)

  def test_gradient_flows_only_through_q_of_taken_action(self):
    rng = np.random.RandomState(11)
    learner = _learner(gamma=0.99, lambda_=0.9)
    batch = _random_batch(rng, b=4, t=4)
    params = [tf.convert_to_tensor(p) for p in learner.params]
    rewards, discounts, v_next, _, _ = _np_inputs(learner, params, batch)
    g_const = tf.constant(
        _peng_forward_view(rewards, discounts, v_next, 0.99, 0.9), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(params)
      loss = learner.td_loss(params, batch)
      q = learner.q_values(params, batch['observation'][:, :-1])
      q_taken = tf.gather(q, tf.cast(batch['action'][:, :-1], tf.int32),
                          axis=-1, batch_dims=2)
      ref = 0.5 * tf.reduce_mean(tf.square(g_const - q_taken))
      targets = learner.td_targets(params, batch)
    got = tape.gradient(loss, params)
    want = tape.gradient(ref, params)
    for g, w in zip(got, want):
      self.assertAllClose(g, w, rtol=1e-4, atol=1e-6)
    self.assertGreater(max(float(tf.reduce_max(tf.abs(w))) for w in want),
                       1e-4)
    for g in tape.gradient(targets, params,
                           unconnected_gradients='zero'):
      self.assertAllEqual(g, tf.zeros_like(g))


class EpsilonGreedyTest(parameterized.TestCase, tf.test.TestCase):

  @parameterized.parameters((0.1, 2), (0.3, 4), (0.9, 7), (1.0, 3))
  def test_closed_form(self, eps, num_actions):
    rng = np.random.RandomState(20)
    q = rng.randn(5, 3, num_actions).astype(np.float32)
    probs = q_learning.epsilon_greedy_probs(q, eps).numpy()
    greedy = q.argmax(-1)
    want = np.full(q.shape, eps / num_actions)
    np.put_along_axis(want, greedy[..., None],
                      1 - eps + eps / num_actions, -1)
    self.assertAllClose(probs, want, rtol=1e-6, atol=1e-7)
    self.assertAllClose(probs.sum(-1), np.ones([5, 3]), rtol=1e-6)
    self.assertAllClose(np.exp(q_learning.epsilon_greedy_log_probs(q, eps)),
                        want, rtol=1e-6, atol=1e-7)

  def test_ties_go_to_first_max(self):
    q = tf.constant([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    self.assertAllEqual(q_learning.greedy_one_hot(q),
                        [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    probs = q_learning.epsilon_greedy_probs(q, 0.3)
    self.assertAllClose(probs, [[0.1, 0.8, 0.1], [0.8, 0.1, 0.1]])

  def test_per_state_epsilon(self):
    q = tf.constant([[0.0, 1.0], [2.0, 0.0]])
    probs = q_learning.epsilon_greedy_probs(q, tf.constant([0.2, 0.6]))
    self.assertAllClose(probs, [[0.1, 0.9], [0.7, 0.3]])

  @parameterized.parameters((0.05, 2), (0.3, 4), (0.8, 6))
  def test_derivative_in_epsilon(self, eps, num_actions):
    rng = np.random.RandomState(21)
    q = tf.constant(rng.randn(4, num_actions), tf.float64)
    eps_t = tf.constant(eps, tf.float64)
    greedy = tf.argmax(q, -1)
    other = (greedy + 1) % num_actions
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(eps_t)
      log_pi = q_learning.epsilon_greedy_log_probs(q, eps_t)
      nll_greedy = -tf.gather(log_pi, greedy, batch_dims=1)[0]
      nll_other = -tf.gather(log_pi, other, batch_dims=1)[0]
    a = num_actions
    self.assertAllClose(tape.gradient(nll_greedy, eps_t),
                        (1 - 1 / a) / (1 - eps + eps / a), rtol=1e-10)
    self.assertAllClose(tape.gradient(nll_other, eps_t), -1 / eps,
                        rtol=1e-10)

  def test_kl_to_greedy_target_is_nll_without_nan(self):
    rng = np.random.RandomState(22)
    q_target = rng.randn(6, 4).astype(np.float32)
    q_current = rng.randn(6, 4).astype(np.float32)
    eps = tf.Variable(0.25)
    with tf.GradientTape() as tape:
      kl = matching.policy_kl(
          tfd.Categorical(probs=q_learning.greedy_one_hot(q_target)),
          q_learning.epsilon_greedy_log_probs(q_current, eps))
    grad = tape.gradient(kl, eps)
    probs = q_learning.epsilon_greedy_probs(q_current, 0.25).numpy()
    want = -np.mean(np.log(probs[np.arange(6), q_target.argmax(-1)]))
    self.assertAllClose(kl, want, rtol=1e-6)
    self.assertTrue(np.isfinite(grad.numpy()))


def _meta(eps=0.3):
  return meta_params.MetaParameters(
      {'epsilon': meta_params.MetaParameter(eps, 'sigmoid', name='epsilon')})


def _steps_of_batches(rng, n, b=4, t=5):
  batches = [_random_batch(rng, b=b, t=t, obs=OBS, act=ACT)
             for _ in range(n)]
  return tf.nest.map_structure(lambda *xs: tf.stack(xs), *batches)


class MetaGradientTest(tf.test.TestCase):

  def test_mg_has_no_gradient_for_epsilon(self):
    # Epsilon only enters the behaviour policy, not the Q-learning update:
    # x_K does not depend on it, so MG's meta-gradient is exactly zero.
    rng = np.random.RandomState(30)
    learner = _learner(lambda_=0.9)
    meta = _meta()
    inner = optimizers.Adam(learning_rate=1e-2)
    params = [tf.convert_to_tensor(p) for p in learner.params]
    result = bootstrap.meta_step(
        params=params, opt_state=inner.init(params),
        meta_variables=meta.trainable_variables, meta_values_fn=meta,
        objectives=learner.objectives(),
        config=bootstrap.BootstrapConfig(method='mg', k_steps=1),
        inner_optimizer=inner, batches=_steps_of_batches(rng, 2))
    self.assertLen(result.meta_grads, 1)
    self.assertTrue(np.isfinite(result.meta_loss.numpy()))
    self.assertAllEqual(result.meta_grads[0], 0.0)
    # The inner step did move the learner.
    self.assertNotAllClose(result.params[0], params[0])

  def test_bmg_k0_gradient_matches_finite_differences(self):
    rng = np.random.RandomState(31)
    learner = _learner(lambda_=0.9)
    # Not 0.3: the meta-loss is stationary where eps = A/(A-1) * (fraction
    # of states whose greedy action disagrees with the target's), which is
    # 0.3 on this batch.
    meta = _meta(0.1)
    raw = meta.trainable_variables[0]
    inner = optimizers.Adam(learning_rate=1e-2)
    params = [tf.convert_to_tensor(p) for p in learner.params]
    batches = _steps_of_batches(rng, 4)
    config = bootstrap.BootstrapConfig(
        method='bmg', k_steps=0, l_steps=4, matching={'policy_kl': 1.0},
        continue_from='K+L-1')
    result = bootstrap.meta_step(
        params=params, opt_state=inner.init(params),
        meta_variables=meta.trainable_variables, meta_values_fn=meta,
        objectives=learner.objectives(), config=config,
        inner_optimizer=inner, batches=batches,
        target_optimizer=optimizers.Adam(learning_rate=1e-2))
    grad = float(result.meta_grads[0])
    self.assertTrue(np.isfinite(grad))
    # The learner continues from x_3 and the target x~ = x_4 moved.
    self.assertNotAllClose(result.params[0], params[0])
    self.assertNotAllClose(result.target[0], result.params[0])

    # NumPy meta-loss on the target step's batch (index K+L-1 = 3), with the
    # target held fixed: -mean log pi_eps(a*|s), a* = greedy of q_{x~}.
    states = batches['observation'][3].numpy()[:, :-1]
    a_star = _np_q([t.numpy() for t in result.target], states).argmax(-1)
    greedy = _np_q([p.numpy() for p in params], states).argmax(-1)
    is_greedy = a_star == greedy
    self.assertTrue(0 < is_greedy.mean() < 1)  # Both cases occur.

    def loss(raw_value):
      eps = 1.0 / (1.0 + np.exp(-raw_value))
      log_pi = np.where(is_greedy, np.log(1 - eps + eps / ACT),
                        np.log(eps / ACT))
      return -np.mean(log_pi)

    raw0 = float(raw.numpy())
    self.assertAllClose(result.meta_loss, loss(raw0), rtol=1e-5)
    h = 1e-4
    fd = (loss(raw0 + h) - loss(raw0 - h)) / (2 * h)
    self.assertGreater(abs(fd), 1e-3)
    self.assertAllClose(grad, fd, rtol=1e-4)


class ReplayBufferTest(tf.test.TestCase):

  def test_buffer_sees_driver_transitions(self):
    env = tf_two_colors.TFTwoColors(batch_size=1, seed=3)
    obs_dim = env.observation_spec().shape[0]
    learner = q_learning.QLearner(obs_dim, 4, hidden_sizes=(16,), seed=1)
    policy = learner.make_policy(env.time_step_spec(), env.action_spec(),
                                 epsilon_fn=lambda: tf.constant(0.5), seed=2)
    buffer = tf_uniform_replay_buffer.TFUniformReplayBuffer(
        policy.trajectory_spec, batch_size=1, max_length=1000)
    recorded = []
    driver = dynamic_step_driver.DynamicStepDriver(
        env, policy, observers=[buffer.add_batch, recorded.append],
        num_steps=50)
    driver.run()
    self.assertLen(recorded, 50)
    stored = buffer.gather_all()
    want = tf.nest.map_structure(lambda *xs: np.stack(xs, axis=1), *recorded)
    for got, w in zip(tf.nest.flatten(stored), tf.nest.flatten(want)):
      self.assertEqual(got.shape[:2], (1, 50))
      self.assertAllEqual(got, w)
    # The reward of step t follows action t: it is the next time step's.
    self.assertAllEqual(stored.step_type[0, 1:], stored.next_step_type[0, :-1])

    traj, _ = buffer.get_next(sample_batch_size=4, num_steps=6)
    batch = q_learning.batch_from_trajectory(traj)
    self.assertEqual(batch['observation'].shape, (4, 6, obs_dim))
    self.assertEqual(batch['observation'].dtype, tf.float32)
    for key in ('action', 'reward', 'discount', 'mask'):
      self.assertEqual(batch[key].shape, (4, 6))
    self.assertEqual(batch['action'].dtype, tf.int64)
    self.assertAllEqual(batch['mask'], np.ones([4, 6]))
    # Each sampled sequence is a contiguous window of the collected stream.
    all_obs = stored.observation[0].numpy()
    all_act = stored.action[0].numpy()
    for seq_obs, seq_act in zip(batch['observation'].numpy(),
                                batch['action'].numpy()):
      starts = [i for i in range(45)
                if np.array_equal(all_obs[i:i + 6], seq_obs) and
                np.array_equal(all_act[i:i + 6], seq_act)]
      self.assertNotEmpty(starts)
    loss = learner.td_loss(learner.params, batch)
    self.assertTrue(np.isfinite(loss.numpy()))

  def test_policy_probabilities_and_greedy_actions(self):
    env = tf_two_colors.TFTwoColors(batch_size=3, seed=4)
    learner = q_learning.QLearner(30, 4, hidden_sizes=(16,), seed=1)
    eps = tf.Variable(0.2)
    policy = learner.make_policy(env.time_step_spec(), env.action_spec(),
                                 epsilon_fn=lambda: eps.read_value())
    time_step = env.current_time_step()
    q = _np_q([p.numpy() for p in learner.params],
              time_step.observation.numpy())
    want = np.full([3, 4], 0.05)
    want[np.arange(3), q.argmax(-1)] = 0.85
    dist = policy.distribution(time_step).action
    self.assertAllClose(dist.probs_parameter(), want, rtol=1e-6)
    eps.assign(0.0)
    action = policy.action(time_step).action
    self.assertEqual(action.dtype, tf.int64)
    self.assertAllEqual(action, q.argmax(-1))
    # acting_with: explicit parameters replace the variables.
    other = q_learning.QLearner(30, 4, hidden_sizes=(16,), seed=9)
    q_other = _np_q([p.numpy() for p in other.params],
                    time_step.observation.numpy())
    self.assertNotAllEqual(q_other.argmax(-1), q.argmax(-1))
    with policy.acting_with([tf.convert_to_tensor(p) for p in other.params]):
      self.assertAllEqual(policy.action(time_step).action,
                          q_other.argmax(-1))

  def test_boundary_steps_are_masked(self):
    step_type = tf.constant([[0, 1, 2, 0]])
    next_step_type = tf.constant([[1, 2, 0, 1]])
    traj = trajectory_lib.Trajectory(
        step_type=step_type, observation=tf.zeros([1, 4, 2]),
        action=tf.constant([[0, 1, 0, 1]], tf.int32), policy_info=(),
        next_step_type=next_step_type, reward=tf.ones([1, 4]),
        discount=tf.constant([[1.0, 0.0, 1.0, 1.0]]))
    batch = q_learning.batch_from_trajectory(traj)
    self.assertAllEqual(batch['mask'], [[1.0, 1.0, 0.0, 1.0]])
    self.assertEqual(batch['action'].dtype, tf.int64)
    self.assertAllEqual(traj.is_boundary(), [[False, False, True, False]])


class BadInputsTest(parameterized.TestCase, tf.test.TestCase):

  @parameterized.parameters(
      (dict(observation_dim=0), 'observation_dim'),
      (dict(observation_dim=2.5), 'observation_dim'),
      (dict(num_actions=1), 'num_actions'),
      (dict(gamma=1.5), 'gamma'),
      (dict(lambda_=-0.1), 'lambda_'),
      (dict(trace='tree'), 'trace'),
      (dict(hidden_sizes=(0,)), 'hidden_sizes'),
  )
  def test_constructor(self, override, name):
    kwargs = dict(observation_dim=OBS, num_actions=ACT, hidden_sizes=(4,))
    kwargs.update(override)
    with self.assertRaisesRegex(ValueError, name):
      q_learning.QLearner(**kwargs)

  def test_batch(self):
    learner = _learner()
    batch = _random_batch(np.random.RandomState(40))
    bad = dict(batch)
    del bad['reward']
    with self.assertRaisesRegex(ValueError, 'batch'):
      learner.td_loss(learner.params, bad)
    bad = dict(batch, observation=batch['observation'][:, 0])
    with self.assertRaisesRegex(ValueError, 'observation'):
      learner.td_loss(learner.params, bad)
    bad = dict(batch, action=batch['action'][:, :-1])
    with self.assertRaisesRegex(ValueError, 'action'):
      learner.td_loss(learner.params, bad)
    bad = dict(batch, observation=batch['observation'][:, :1])
    with self.assertRaisesRegex(ValueError, 'observation'):
      learner.td_loss(learner.params, bad)
    with self.assertRaisesRegex(ValueError, 'observation'):
      learner.q_values(learner.params, tf.zeros([2, OBS + 1]))
    with self.assertRaisesRegex(ValueError, 'meta_values'):
      learner.policy_log_probs(learner.params, batch, {})

  def test_epsilon_greedy(self):
    with self.assertRaisesRegex(ValueError, 'q_values'):
      q_learning.epsilon_greedy_log_probs(tf.constant([[1, 2]]), 0.1)
    with self.assertRaisesRegex(ValueError, 'q_values'):
      q_learning.epsilon_greedy_log_probs(tf.constant(1.0), 0.1)
    with self.assertRaisesRegex(ValueError, 'epsilon'):
      q_learning.epsilon_greedy_log_probs(tf.zeros([4, 3]), tf.zeros([5]))
    with self.assertRaisesRegex(ValueError, 'epsilon'):
      q_learning.epsilon_greedy_log_probs(tf.zeros([4, 3]), tf.zeros([4, 1]))
    with self.assertRaisesRegex(ValueError, 'epsilon'):
      q_learning.epsilon_greedy_log_probs(tf.zeros([4, 3]), 1)

  def test_policy_and_trajectory(self):
    learner = _learner()
    time_step_spec = ts.time_step_spec(tensor_spec.TensorSpec([OBS],
                                                              tf.float32))
    wrong = tensor_spec.BoundedTensorSpec([], tf.int64, 0, ACT)
    with self.assertRaisesRegex(ValueError, 'action_spec'):
      learner.make_policy(time_step_spec, wrong, lambda: tf.constant(0.1))
    right = tensor_spec.BoundedTensorSpec([], tf.int64, 0, ACT - 1)
    with self.assertRaisesRegex(ValueError, 'epsilon_fn'):
      learner.make_policy(time_step_spec, right, 0.1)
    with self.assertRaisesRegex(ValueError, 'traj'):
      q_learning.batch_from_trajectory({'observation': tf.zeros([1, 2, 3])})


if __name__ == '__main__':
  tf.test.main()
