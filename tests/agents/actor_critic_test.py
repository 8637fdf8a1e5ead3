"""Tests for bmg_tf.agents.actor_critic against NumPy references.

Every expected value is recomputed independently: returns with a plain
backward loop, losses from the network outputs with NumPy softmax algebra,
meta-gradients from a closed form of one SGD inner step.
"""

import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'

from absl.testing import parameterized  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

from bmg_tf.agents import actor_critic
from bmg_tf.core import bootstrap
from bmg_tf.core import meta_params
from bmg_tf.core import optimizers

OBS_DIM = 7
NUM_ACTIONS = 4
T, B = 5, 3


def _np_returns(rewards, discounts, bootstrap_value, gamma):
  """Reference: G_t = r_t + gamma d_t G_{t+1}, G_T = bootstrap_value."""
  returns = np.zeros_like(rewards, dtype=np.float64)
  carry = np.asarray(bootstrap_value, np.float64)
  for t in reversed(range(rewards.shape[0])):
    carry = rewards[t] + gamma * discounts[t] * carry
    returns[t] = carry
  return returns


def _np_log_softmax(logits):
  logits = np.asarray(logits, np.float64)
  z = logits - logits.max(axis=-1, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _fake_rollout(seed, t=T, b=B, obs_dim=OBS_DIM, zero_discounts=True):
  """A random rollout dict with the shapes/dtypes of RolloutCollector."""
  rng = np.random.RandomState(seed)
  discounts = np.ones([t, b], np.float32)
  if zero_discounts:
    discounts[rng.rand(t, b) < 0.3] = 0.0
  return {
      'observation': tf.constant(rng.rand(t, b, obs_dim), tf.float32),
      'action': tf.constant(rng.randint(0, NUM_ACTIONS, [t, b]), tf.int64),
      'reward': tf.constant(rng.randn(t, b), tf.float32),
      'discount': tf.constant(discounts),
      'bootstrap_observation': tf.constant(rng.rand(b, obs_dim), tf.float32),
  }


def _agent(**kwargs):
  kwargs.setdefault('hidden_sizes', (8,))
  return actor_critic.ActorCritic(OBS_DIM, NUM_ACTIONS, **kwargs)


def _stack(rollouts):
  return tf.nest.map_structure(lambda *xs: tf.stack(xs), *rollouts)


class NStepReturnsTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(0, 1, 2)
  def test_matches_numpy_backward_loop(self, seed):
    rng = np.random.RandomState(seed)
    rewards = rng.randn(T, B).astype(np.float32)
    discounts = rng.rand(T, B).astype(np.float32)
    discounts[rng.rand(T, B) < 0.3] = 0.0
    discounts[1, 0] = 0.0  # At least one zero in every case.
    boot = rng.randn(B).astype(np.float32)
    got = actor_critic.n_step_returns(
        tf.constant(rewards), tf.constant(discounts), tf.constant(boot), 0.9)
    want = _np_returns(rewards, discounts, boot, 0.9)
    self.assertEqual(got.shape, (T, B))
    self.assertEqual(got.dtype, tf.float32)
    self.assertAllClose(got, want, rtol=1e-6, atol=1e-6)

  def test_zero_discount_cuts_the_return(self):
    rewards = np.arange(1.0, T + 1.0, dtype=np.float32)[:, None]
    discounts = np.ones([T, 1], np.float32)
    discounts[2, 0] = 0.0
    got = actor_critic.n_step_returns(
        tf.constant(rewards), tf.constant(discounts),
        tf.constant([100.0]), 0.9).numpy()
    # G_2 = r_2 exactly: neither later rewards nor the bootstrap leak back.
    self.assertAllClose(got[2, 0], 3.0)
    self.assertAllClose(got[1, 0], 2.0 + 0.9 * 3.0)
    self.assertAllClose(got[4, 0], 5.0 + 0.9 * 100.0)


class LossTermsTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(('n_step', 'n_step'), ('1_step', '1_step'))
  def test_matches_numpy(self, return_steps):
    agent = _agent(gamma=0.9, return_steps=return_steps, seed=3)
    rollout = _fake_rollout(seed=4)
    params = agent.params
    logits = agent.logits(params, rollout['observation']).numpy()
    values = agent.values(params, rollout['observation']).numpy()
    boot = agent.values(params, rollout['bootstrap_observation']).numpy()
    self.assertEqual(logits.shape, (T, B, NUM_ACTIONS))
    self.assertEqual(values.shape, (T, B))
    self.assertEqual(boot.shape, (B,))

    rewards = rollout['reward'].numpy().astype(np.float64)
    discounts = rollout['discount'].numpy().astype(np.float64)
    actions = rollout['action'].numpy()
    if return_steps == 'n_step':
      returns = _np_returns(rewards, discounts, boot, 0.9)
    else:
      next_values = np.concatenate([values[1:], boot[None]], axis=0)
      returns = rewards + 0.9 * discounts * next_values
    adv = returns - values
    log_pi = _np_log_softmax(logits)
    log_pi_a = np.take_along_axis(log_pi, actions[..., None], axis=-1)[..., 0]
    entropy = -(np.exp(log_pi) * log_pi).sum(axis=-1)

    terms = agent.loss_terms(params, rollout)
    self.assertCountEqual(terms, ['pg', 'value', 'entropy', 'mean_reward'])
    for v in terms.values():
      self.assertEqual(v.shape, ())
      self.assertEqual(v.dtype, tf.float32)
    self.assertAllClose(terms['pg'], -np.mean(log_pi_a * adv), rtol=1e-5,
                        atol=1e-6)
    self.assertAllClose(terms['value'], 0.5 * np.mean(adv**2), rtol=1e-5,
                        atol=1e-6)
    self.assertAllClose(terms['entropy'], np.mean(entropy), rtol=1e-5)
    self.assertAllClose(terms['mean_reward'], np.mean(rewards), rtol=1e-5)

  def test_n_step_and_1_step_differ(self):
    # Guards the parameterized test above against both branches being equal.
    rollout = _fake_rollout(seed=5, zero_discounts=False)
    n = _agent(return_steps='n_step', seed=1).loss_terms(
        _agent(seed=1).params, rollout)
    one = _agent(return_steps='1_step', seed=1).loss_terms(
        _agent(seed=1).params, rollout)
    self.assertNotAllClose(n['value'], one['value'])
    self.assertAllClose(n['entropy'], one['entropy'])

  def test_inner_and_outer_loss_combine_terms(self):
    agent = _agent(value_coef=0.7, outer_entropy_weight=0.05, seed=2)
    rollout = _fake_rollout(seed=6)
    terms = {k: v.numpy() for k, v in
             agent.loss_terms(agent.params, rollout).items()}
    inner = agent.inner_loss(agent.params, rollout,
                             {'entropy_weight': tf.constant(0.3)})
    outer = agent.outer_loss(agent.params, rollout)
    self.assertAllClose(
        inner, terms['pg'] + 0.7 * terms['value'] - 0.3 * terms['entropy'],
        rtol=1e-5)
    self.assertAllClose(outer, terms['pg'] - 0.05 * terms['entropy'],
                        rtol=1e-5)


class GradientTest(tf.test.TestCase):

  def _grads(self, agent, rollout, term):
    params = [tf.identity(p) for p in agent.params]
    with tf.GradientTape() as tape:
      tape.watch(params)
      loss = agent.loss_terms(params, rollout)[term]
    grads = tape.gradient(loss, params)
    n = len(agent.policy_net.params)
    return grads[:n], grads[n:]

  def _assert_all_zero(self, grads):
    for g in grads:
      if g is not None:
        self.assertAllEqual(g, tf.zeros_like(g))

  def _assert_some_nonzero(self, grads):
    self.assertTrue(any(g is not None and np.any(g.numpy() != 0.0)
                        for g in grads))

  def test_pg_does_not_reach_value_net(self):
    agent = _agent(seed=0)
    policy_grads, value_grads = self._grads(agent, _fake_rollout(1), 'pg')
    self._assert_all_zero(value_grads)
    self._assert_some_nonzero(policy_grads)

  def test_value_loss_does_not_reach_policy_net(self):
    agent = _agent(seed=0)
    policy_grads, value_grads = self._grads(agent, _fake_rollout(1), 'value')
    self._assert_all_zero(policy_grads)
    self._assert_some_nonzero(value_grads)

  def test_entropy_does_not_reach_value_net(self):
    agent = _agent(seed=0)
    policy_grads, value_grads = self._grads(agent, _fake_rollout(1),
                                            'entropy')
    self._assert_all_zero(value_grads)
    self._assert_some_nonzero(policy_grads)

  def test_value_gradient_matches_closed_form(self):
    # d value / d V_t = -(G_t - V_t) / (T B) with G constant: check it on the
    # value net's output bias, whose gradient is the sum over states.
    agent = _agent(seed=0, gamma=0.9)
    rollout = _fake_rollout(7)
    _, value_grads = self._grads(agent, rollout, 'value')
    values = agent.values(agent.params, rollout['observation']).numpy()
    boot = agent.values(agent.params,
                        rollout['bootstrap_observation']).numpy()
    returns = _np_returns(rollout['reward'].numpy(),
                          rollout['discount'].numpy(), boot, 0.9)
    want = -np.mean(returns - values)
    self.assertAllClose(value_grads[-1], [want], rtol=1e-4, atol=1e-6)

  def test_entropy_weight_derivative_is_minus_entropy(self):
    agent = _agent(seed=0)
    rollout = _fake_rollout(2)
    weight = tf.Variable(0.2)
    with tf.GradientTape() as tape:
      loss = agent.inner_loss(agent.params, rollout,
                              {'entropy_weight': weight})
    d_weight = tape.gradient(loss, weight)
    logits = agent.logits(agent.params, rollout['observation']).numpy()
    log_pi = _np_log_softmax(logits)
    entropy = np.mean(-(np.exp(log_pi) * log_pi).sum(axis=-1))
    self.assertAllClose(d_weight, -entropy, rtol=1e-5)

  def test_larger_entropy_weight_increases_entropy_after_sgd_step(self):
    agent = _agent(seed=0)
    rollout = _fake_rollout(3)
    sgd = optimizers.SGD(learning_rate=0.05)

    def entropy_after_step(weight):
      params = [tf.identity(p) for p in agent.params]
      with tf.GradientTape() as tape:
        tape.watch(params)
        loss = agent.inner_loss(params, rollout,
                                {'entropy_weight': tf.constant(weight)})
      new, _ = sgd.update(tape.gradient(loss, params), sgd.init(params),
                          params)
      log_pi = _np_log_softmax(
          agent.logits(new, rollout['observation']).numpy())
      return np.mean(-(np.exp(log_pi) * log_pi).sum(axis=-1))

    low, high = entropy_after_step(0.0), entropy_after_step(1.0)
    self.assertGreater(high, low)


class ObjectivesWithEngineTest(tf.test.TestCase, parameterized.TestCase):
  """BMG with policy-KL matching on ActorCritic.objectives().

  With K = 1 SGD step, x_1 = x_0 - lr (g_rest - w g_H) where g_H is the
  entropy gradient at x_0, so d meta_loss / d w = lr <dKL/dx_1, g_H>; this is
  recomputed here from scratch and compared to the engine's meta-gradient.
  """

  LR = 0.5

  def _setup(self):
    agent = _agent(seed=0, gamma=0.9)
    rollouts = [_fake_rollout(s) for s in (10, 11, 12)]
    x0 = [tf.identity(p) for p in agent.params]
    config = bootstrap.BootstrapConfig(method='bmg', k_steps=1, l_steps=2,
                                       matching={'policy_kl': 1.0})
    self.assertEqual(config.batches_per_step, 3)
    return agent, rollouts, x0, config

  def _run(self, agent, rollouts, x0, config, meta_variables, meta_fn):
    sgd = optimizers.SGD(learning_rate=self.LR)
    return bootstrap.meta_step(
        x0, sgd.init(x0), meta_variables, meta_fn, agent.objectives(), config,
        sgd, _stack(rollouts), target_optimizer=optimizers.SGD(0.1))

  def _reference(self, agent, rollouts, x0, result, weight):
    """(meta_loss, d meta_loss / d entropy_weight) recomputed."""
    params = [tf.identity(p) for p in x0]
    with tf.GradientTape() as tape:
      tape.watch(params)
      entropy = agent.loss_terms(params, rollouts[0])['entropy']
    g_h = tape.gradient(entropy, params)
    with tf.GradientTape() as tape:
      tape.watch(params)
      loss = agent.inner_loss(params, rollouts[0],
                              {'entropy_weight': tf.constant(weight)})
    x1 = [p - self.LR * g for p, g in zip(params, tape.gradient(loss, params))]
    # x_K is what the learner continues from with continue_from='K'.
    self.assertAllClose(x1, result.params, rtol=1e-5, atol=1e-6)
    obs = rollouts[2]['observation']  # The target step's batch (K+L-1).
    target_logp = tf.constant(_np_log_softmax(
        agent.logits(result.target, obs).numpy()), tf.float32)
    with tf.GradientTape() as tape:
      tape.watch(x1)
      current_logp = tf.nn.log_softmax(agent.logits(x1, obs))
      kl = tf.reduce_mean(tf.reduce_sum(
          tf.exp(target_logp) * (target_logp - current_logp), axis=-1))
    d_x1 = tape.gradient(kl, x1)
    d_weight = sum(self.LR * tf.reduce_sum(a * g).numpy()
                   for a, g in zip(d_x1, g_h) if a is not None)
    return kl.numpy(), d_weight

  def test_scalar_sigmoid_meta_parameter(self):
    agent, rollouts, x0, config = self._setup()
    meta = meta_params.MetaParameters({
        'entropy_weight': meta_params.MetaParameter(
            0.1, 'sigmoid', name='entropy_weight')})
    result = self._run(agent, rollouts, x0, config,
                       meta.trainable_variables, meta)
    self.assertLen(result.meta_grads, 1)
    grad = result.meta_grads[0].numpy()
    self.assertTrue(np.isfinite(grad))
    self.assertTrue(np.isfinite(result.meta_loss.numpy()))
    kl, d_weight = self._reference(agent, rollouts, x0, result, 0.1)
    self.assertGreater(kl, 0.0)
    self.assertAllClose(result.meta_loss, kl, rtol=1e-4, atol=1e-7)
    # d sigmoid(raw) / d raw = s (1 - s), s = 0.1.
    self.assertNotEqual(d_weight, 0.0)
    self.assertAllClose(grad, d_weight * 0.1 * 0.9, rtol=2e-3, atol=1e-9)

  def test_contextual_meta_parameter(self):
    agent, rollouts, x0, config = self._setup()
    contextual = meta_params.ContextualMetaParameters(
        10, {'entropy_weight': 0.1}, hidden_sizes=(6,))
    meta = meta_params.MetaParameters({}, contextual=contextual)
    context = tf.constant(np.random.RandomState(0).rand(10), tf.float32)
    variables = meta.trainable_variables
    result = self._run(agent, rollouts, x0, config, variables,
                       lambda: meta(context))
    self.assertLen(result.meta_grads, len(variables))
    for g in result.meta_grads:
      self.assertTrue(np.all(np.isfinite(g.numpy())))
    # The output kernel starts at 0, so the output is sigmoid(bias) = 0.1 and
    # d/d bias is the scalar case's d/d raw; d/d kernel = hidden * d/d bias;
    # nothing reaches the hidden layer yet.
    _, d_weight = self._reference(agent, rollouts, x0, result, 0.1)
    d_raw = d_weight * 0.1 * 0.9
    w0, b0, w1, b1 = variables
    grads = dict(zip([v.ref() for v in variables], result.meta_grads))
    self.assertAllClose(grads[b1.ref()], [d_raw], rtol=2e-3, atol=1e-9)
    hidden = tf.nn.relu(tf.linalg.matvec(w0, context, transpose_a=True) +
                        b0).numpy()
    self.assertTrue(np.any(hidden > 0))
    self.assertAllClose(grads[w1.ref()], hidden[:, None] * d_raw, rtol=2e-3,
                        atol=1e-9)
    self.assertAllEqual(grads[w0.ref()], tf.zeros_like(w0))
    self.assertAllEqual(grads[b0.ref()], tf.zeros_like(b0))


class ArgumentValidationTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ('gamma', dict(gamma=1.5), 'gamma'),
      ('negative_gamma', dict(gamma=-0.1), 'gamma'),
      ('return_steps', dict(return_steps='x'), 'return_steps'),
      ('num_actions', dict(num_actions=1), 'num_actions'),
      ('observation_dim', dict(observation_dim=0), 'observation_dim'),
  )
  def test_bad_arguments_raise(self, overrides, name):
    kwargs = dict(observation_dim=OBS_DIM, num_actions=NUM_ACTIONS,
                  hidden_sizes=(4,))
    kwargs.update(overrides)
    with self.assertRaisesRegex(ValueError, name):
      actor_critic.ActorCritic(**kwargs)

  def test_gamma_bounds_are_accepted(self):
    for gamma in (0.0, 1.0):
      agent = actor_critic.ActorCritic(OBS_DIM, NUM_ACTIONS, hidden_sizes=(4,),
                                       gamma=gamma)
      self.assertEqual(agent.gamma, gamma)


if __name__ == '__main__':
  tf.test.main()
