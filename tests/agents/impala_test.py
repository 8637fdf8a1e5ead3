"""Tests of the self-tuning IMPALA agent: heads, losses, meta-gradients.

The losses are checked against a NumPy reference that recomputes the heads
from the variables and V-trace by its backward recursion, with masking,
reward clipping and each head's own hyperparameters.
"""

import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'

from absl.testing import parameterized  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf
from tf_agents.trajectories import time_step as ts_lib

from bmg_tf.agents import impala
from bmg_tf.core import bootstrap
from bmg_tf.core import optimizers

T, B, A = 6, 3, 4
SHAPE = (5, 5, 2)


def _batch(seed=0):
  rng = np.random.RandomState(seed)
  mask = np.ones((T, B), np.float32)
  mask[3, 1] = 0.0  # State 3 of stream 1 was LAST...
  discount = np.ones((T, B), np.float32)
  discount[2, 1] = 0.0  # ...so the episode ended after step 2.
  discount[4, 2] = 0.0
  return {
      'observation': rng.randint(0, 2, (T + 1, B) + SHAPE).astype(np.uint8),
      'action': rng.randint(0, A, (T, B)).astype(np.int32),
      'reward': (3.0 * rng.randn(T, B)).astype(np.float32),
      'discount': discount,
      'mask': mask,
      'behaviour_logits': rng.randn(T, B, A).astype(np.float32),
  }


def _np_heads(agent, batch):
  """Logits [heads, T+1, B, A] and values [heads, T+1, B] in NumPy."""
  n = len(agent.torso.params)
  emb = agent.torso(tf.cast(batch['observation'], tf.float32)).numpy()
  pk, pb, vk, vb = [p.numpy() for p in agent.params[n:]]
  logits = (emb @ pk + pb).reshape(T + 1, B, agent.num_heads, A)
  values = emb @ vk + vb
  return np.moveaxis(logits, 2, 0), np.moveaxis(values, 2, 0)


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _np_head_terms(logits, values, batch, hp, reward_clip=1.0):
  """One head's pg, value and entropy terms, V-trace by recursion."""
  act = batch['action']
  logp = _log_softmax(logits[:-1])
  log_pi = np.take_along_axis(logp, act[..., None], -1)[..., 0]
  log_mu = np.take_along_axis(_log_softmax(batch['behaviour_logits']),
                              act[..., None], -1)[..., 0]
  rho = np.exp(log_pi - log_mu)
  rho_bar = np.minimum(1.0, rho)
  c = hp['lambda'] * np.minimum(1.0, rho)
  r = np.clip(batch['reward'], -reward_clip, reward_clip)
  disc = hp['discount'] * batch['discount']
  v = values[:-1]
  vs = np.zeros_like(v)
  acc = np.zeros(B)
  for t in reversed(range(T)):
    v_next = values[t + 1]
    delta = rho_bar[t] * (r[t] + disc[t] * v_next - v[t])
    acc = delta + disc[t] * c[t] * acc
    vs[t] = v[t] + acc
  vs_next = np.concatenate([vs[1:], values[-1:]], 0)
  adv = rho_bar * (r + disc * vs_next - v)
  m, n = batch['mask'], T * B
  ent = -(np.exp(logp) * logp).sum(-1)
  return {'pg': -(m * adv * log_pi).sum() / n,
          'value': 0.5 * (m * (vs - v) ** 2).sum() / n,
          'entropy': (m * ent).sum() / n}


class ImpalaAgentTest(parameterized.TestCase, tf.test.TestCase):

  def _agent(self, aux=2, **kwargs):
    return impala.ImpalaAgent(SHAPE, A, torso='minatar', num_aux_heads=aux,
                              observation_scale=1.0, seed=1, **kwargs)

  def test_heads_shapes(self):
    agent = self._agent()
    batch = _batch()
    logits, values = agent.heads(agent.params, batch['observation'])
    self.assertEqual(logits.shape, (3, T + 1, B, A))
    self.assertEqual(values.shape, (3, T + 1, B))
    self.assertEqual(agent.policy(agent.params, batch).shape, (T, B, A))
    self.assertEqual(agent.values(agent.params, batch).shape, (T, B))
    self.assertAllClose(agent.logits(agent.params, batch['observation'][0]),
                        logits[0, 0])

  def test_losses_match_numpy_reference(self):
    agent = self._agent()
    batch = _batch()
    init = {'discount': 0.9, 'lambda': 0.8, 'policy_coef': 1.2,
            'value_coef': 0.4, 'entropy_coef': 0.02}
    aux = {'discount': 0.5, 'lambda': 0.6, 'policy_coef': 0.7,
           'value_coef': 0.3, 'entropy_coef': 0.03}
    meta = impala.make_meta_parameters(2, init=init, aux_init=aux,
                                       learn=('discount',))
    values_ = meta()
    terms = agent.loss_terms(agent.params, batch, values_)
    logits, values = _np_heads(agent, batch)
    want_total = 0.0
    for head, hp in ((0, init), (1, aux), (2, aux)):
      want = _np_head_terms(logits[head], values[head], batch, hp)
      prefix = impala.head_prefix(head)
      for k in ('pg', 'value', 'entropy'):
        self.assertAllClose(terms[prefix + k], want[k], rtol=1e-4,
                            atol=1e-6, msg=f'{prefix}{k}')
      want_total += (hp['policy_coef'] * want['pg'] + hp['value_coef'] *
                     want['value'] - hp['entropy_coef'] * want['entropy'])
    self.assertAllClose(agent.inner_loss(agent.params, batch, values_),
                        want_total, rtol=1e-4, atol=1e-6)
    outer = agent.outer_hparams
    want = _np_head_terms(logits[0], values[0], batch, outer)
    self.assertAllClose(
        agent.outer_loss(agent.params, batch),
        outer['policy_coef'] * want['pg'] + outer['value_coef'] *
        want['value'] - outer['entropy_coef'] * want['entropy'],
        rtol=1e-4, atol=1e-6)

  def test_masked_state_does_not_reach_the_loss(self):
    agent = self._agent(aux=0)
    meta = impala.make_meta_parameters(0)
    batch = _batch()
    changed = dict(batch, action=batch['action'].copy(),
                   reward=batch['reward'].copy())
    # The action and reward after the masked LAST state (3, 1) are what
    # the env ignored; the episode ended after step 2, so nothing before
    # bootstraps through them either.
    changed['action'][3, 1] = (changed['action'][3, 1] + 1) % A
    changed['reward'][3, 1] += 100.0
    self.assertAllClose(agent.inner_loss(agent.params, batch, meta()),
                        agent.inner_loss(agent.params, changed, meta()))

  def test_gradients_reach_every_variable_and_outer_ignores_aux_heads(self):
    agent = self._agent(aux=1)
    meta = impala.make_meta_parameters(1)
    batch = _batch()
    with tf.GradientTape(persistent=True) as tape:
      inner = agent.inner_loss(agent.params, batch, meta())
      outer = agent.outer_loss(agent.params, batch)
    inner_g = tape.gradient(inner, agent.params)
    outer_g = tape.gradient(outer, agent.params)
    for g in inner_g:
      self.assertGreater(float(tf.norm(g)), 0.0)
      self.assertTrue(np.all(np.isfinite(g.numpy())))
    policy_kernel_g = outer_g[-4].numpy().reshape(-1, 2, A)
    self.assertGreater(np.abs(policy_kernel_g[:, 0]).max(), 0.0)
    self.assertEqual(np.abs(policy_kernel_g[:, 1]).max(), 0.0)
    self.assertEqual(np.abs(outer_g[-2].numpy()[:, 1]).max(), 0.0)

  @parameterized.parameters('discount', 'lambda', 'entropy_coef',
                            'value_coef')
  def test_mg_meta_gradient_matches_finite_differences(self, name):
    # MG with K=1 and SGD: x1 = x0 - lr * g(x0; w), g the inner gradient,
    # so d f(x1)/dw = -lr * grad f(x1) . dg/dw, where grad f is the
    # semi-gradient the agent defines (V-trace targets and ratios are
    # constants). dg/dw is checked by central differences in w. (A finite
    # difference of f(x1(w)) itself would also move the stopped targets.)
    agent = self._agent(aux=1)
    meta = impala.make_meta_parameters(1, learn=(name,))
    batch = _batch()
    batches = tf.nest.map_structure(lambda t: tf.stack([t, t]), batch)
    config = bootstrap.BootstrapConfig(method='mg', k_steps=1)
    lr = 0.05
    opt = optimizers.SGD(learning_rate=lr)
    params = [tf.constant(p.numpy()) for p in agent.params]
    result = bootstrap.meta_step(params, opt.init(params),
                                 meta.trainable_variables, meta,
                                 agent.objectives(), config, opt, batches)
    raw = meta.scalars[name].raw  # The main head's.
    index = [v is raw for v in meta.trainable_variables].index(True)
    analytic = float(result.meta_grads[index])
    x1 = result.params
    with tf.GradientTape() as tape:
      tape.watch(x1)
      outer = agent.outer_loss(x1, batch)
    direction = tape.gradient(outer, x1)

    def projected_inner_gradient():
      with tf.GradientTape() as tape:
        tape.watch(params)
        loss = agent.inner_loss(params, batch, meta())
      grads = tape.gradient(loss, params)
      return float(tf.add_n([tf.reduce_sum(tf.cast(a, tf.float64) *
                                           tf.cast(b, tf.float64))
                             for a, b in zip(direction, grads)]))

    eps = 0.01
    values = []
    for sign in (1, -1):
      raw.assign_add(sign * eps)
      values.append(projected_inner_gradient())
      raw.assign_add(-sign * eps)
    numeric = -lr * (values[0] - values[1]) / (2 * eps)
    self.assertNotEqual(analytic, 0.0)
    self.assertAllClose(analytic, numeric, rtol=2e-2, atol=1e-7)

  def test_bmg_meta_gradient_is_finite_and_nonzero(self):
    agent = self._agent(aux=2)
    meta = impala.make_meta_parameters(2)
    batch = _batch()
    config = bootstrap.BootstrapConfig(
        method='bmg', k_steps=1, l_steps=3,
        matching={'policy_kl': 1.0, 'value_l2': 0.5},
        continue_from='K+L-1')
    batches = tf.nest.map_structure(
        lambda t: tf.stack([t] * config.batches_per_step), batch)
    opt = optimizers.RMSProp(learning_rate=0.01, rho=0.99, epsilon=0.01)
    params = [p.read_value() for p in agent.params]
    result = bootstrap.meta_step(
        params, opt.init(params), meta.trainable_variables, meta,
        agent.objectives(), config, opt, batches, target_optimizer=opt)
    self.assertLen(result.meta_grads, 15)
    norms = [float(tf.norm(g)) for g in result.meta_grads]
    self.assertTrue(all(np.isfinite(norms)))
    self.assertGreater(sum(n > 0 for n in norms), 10)
    self.assertIn('matching/value_l2', result.info)

  def test_make_meta_parameters(self):
    meta = impala.make_meta_parameters(
        1, learn=('discount', 'entropy_coef'))
    values = meta()
    self.assertLen(values, 10)
    self.assertEqual(
        sorted(meta.learned_names),
        ['aux1/discount', 'aux1/entropy_coef', 'discount', 'entropy_coef'])
    self.assertAllClose(values['discount'], 0.995, rtol=1e-5)
    self.assertAllClose(values['aux1/policy_coef'] *
                        impala.COEF_SCALES['policy_coef'], 1.0, rtol=1e-5)
    self.assertAllClose(values['lambda'], 1.0)
    self.assertEmpty(impala.make_meta_parameters(0, learn=()).
                     trainable_variables)
    with self.assertRaisesRegex(ValueError, 'learn: unknown'):
      impala.make_meta_parameters(0, learn=('gamma',))
    with self.assertRaisesRegex(ValueError, r"init\['entropy_coef'\]"):
      impala.make_meta_parameters(0, init={'entropy_coef': 0.5})
    with self.assertRaisesRegex(ValueError, 'num_aux_heads'):
      impala.make_meta_parameters(-1)

  def test_agent_errors(self):
    with self.assertRaisesRegex(ValueError, 'num_actions'):
      impala.ImpalaAgent(SHAPE, 1, torso='minatar')
    with self.assertRaisesRegex(ValueError, 'torso: unknown'):
      impala.ImpalaAgent(SHAPE, A, torso='vgg')
    with self.assertRaisesRegex(ValueError, 'outer_hparams: unknown'):
      impala.ImpalaAgent(SHAPE, A, torso='minatar',
                         outer_hparams={'gamma': 0.9})
    agent = self._agent(aux=1)
    with self.assertRaisesRegex(ValueError, 'meta_values: missing'):
      agent.inner_loss(agent.params, _batch(),
                       impala.make_meta_parameters(0)())

  def test_batch_from_time_steps_marks_boundaries(self):
    def step(step_type, reward, discount):
      return ts_lib.TimeStep(
          step_type=np.array(step_type, np.int32),
          reward=np.array(reward, np.float32),
          discount=np.array(discount, np.float32),
          observation=np.zeros((2, 1, 1, 1), np.uint8))
    f, m, l = (int(ts_lib.StepType.FIRST), int(ts_lib.StepType.MID),
               int(ts_lib.StepType.LAST))
    steps = [step([f, m], [0, 0], [1, 1]),
             step([m, l], [1, 2], [1, 1]),    # Stream 1 truncated.
             step([l, f], [3, 0], [0, 1]),    # Stream 0 terminated.
             step([f, m], [0, 4], [1, 1])]
    actions = [np.array([0, 1]), np.array([1, 0]), np.array([2, 2])]
    logits = [np.zeros((2, 3))] * 3
    batch = impala.batch_from_time_steps(steps, actions, logits)
    self.assertEqual(batch['observation'].shape, (4, 2, 1, 1, 1))
    np.testing.assert_array_equal(batch['reward'], [[1, 2], [3, 0], [0, 4]])
    np.testing.assert_array_equal(batch['discount'],
                                  [[1, 0], [0, 1], [1, 1]])
    np.testing.assert_array_equal(batch['mask'], [[1, 1], [1, 0], [0, 1]])
    self.assertEqual(batch['action'].dtype, np.int32)
    with self.assertRaisesRegex(ValueError, 'T\\+1'):
      impala.batch_from_time_steps(steps[:2], actions, logits)


if __name__ == '__main__':
  tf.test.main()
