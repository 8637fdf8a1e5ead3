"""V-trace against an independent NumPy reference of the IMPALA definition.

The reference computes each target from the paper's sum (equation 1),

    v_s = V(x_s) + sum_{t=s}^{T-1} gamma_s..gamma_{t-1} (c_s..c_{t-1})
                   rho_bar_t (r_t + gamma_t V(x_{t+1}) - V(x_t)),

with explicit loops, not from the backward recursion the library uses.
"""

import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'

from absl.testing import parameterized  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

from bmg_tf.agents import vtrace


def _reference(log_rhos, discounts, rewards, values, bootstrap, lambda_,
               rho_clip, pg_clip, c_clip):
  t_len, batch = rewards.shape
  rhos = np.exp(log_rhos)
  clip = lambda r, th: r if th is None else np.minimum(th, r)
  vs = np.zeros_like(values)
  for b in range(batch):
    v_next = np.append(values[:, b], bootstrap[b])
    for s in range(t_len):
      total = values[s, b]
      weight = 1.0
      for t in range(s, t_len):
        delta = clip(rhos[t, b], rho_clip) * (
            rewards[t, b] + discounts[t, b] * v_next[t + 1] - values[t, b])
        total += weight * delta
        weight *= discounts[t, b] * lambda_ * clip(rhos[t, b], c_clip)
      vs[s, b] = total
  next_vs = np.concatenate([vs[1:], bootstrap[None]], axis=0)
  pg = clip(rhos, pg_clip) * (rewards + discounts * next_vs - values)
  return vs, pg


def _inputs(seed, t_len=7, batch=3):
  rng = np.random.RandomState(seed)
  done = rng.uniform(size=[t_len, batch]) < 0.2
  return dict(
      log_rhos=rng.normal(scale=0.8, size=[t_len, batch]),
      discounts=0.95 * (1.0 - done),
      rewards=rng.normal(size=[t_len, batch]),
      values=rng.normal(size=[t_len, batch]),
      bootstrap=rng.normal(size=[batch]))


class VTraceTest(parameterized.TestCase, tf.test.TestCase):

  @parameterized.product(lambda_=[1.0, 0.9, 0.0],
                         clipping=[(1.0, 1.0, 1.0), (None, None, None),
                                   (2.0, 0.5, 1.5)],
                         seed=[0, 1])
  def test_matches_numpy_reference(self, lambda_, clipping, seed):
    x = _inputs(seed)
    rho_clip, pg_clip, c_clip = clipping
    want_vs, want_pg = _reference(x['log_rhos'], x['discounts'],
                                  x['rewards'], x['values'], x['bootstrap'],
                                  lambda_, rho_clip, pg_clip, c_clip)
    got = vtrace.vtrace(x['log_rhos'], x['discounts'], x['rewards'],
                        tf.constant(x['values']), x['bootstrap'],
                        lambda_=lambda_, clip_rho_threshold=rho_clip,
                        clip_pg_rho_threshold=pg_clip,
                        clip_c_threshold=c_clip)
    self.assertAllClose(got.vs, want_vs, rtol=1e-10, atol=1e-10)
    self.assertAllClose(got.pg_advantages, want_pg, rtol=1e-10, atol=1e-10)

  def test_on_policy_lambda_one_is_the_n_step_return(self):
    # rho = 1, lambda = 1: v_s is the discounted return bootstrapped at T.
    x = _inputs(3)
    got = vtrace.vtrace(np.zeros_like(x['rewards']), x['discounts'],
                        x['rewards'], tf.constant(x['values']),
                        x['bootstrap'])
    ret = x['bootstrap'].copy()
    want = np.zeros_like(x['rewards'])
    for t in reversed(range(len(x['rewards']))):
      ret = x['rewards'][t] + x['discounts'][t] * ret
      want[t] = ret
    self.assertAllClose(got.vs, want, rtol=1e-10)

  def test_clipping_changes_the_result(self):
    # The reference test can tell clipping on from off on these inputs.
    x = _inputs(0)
    on = vtrace.vtrace(x['log_rhos'], x['discounts'], x['rewards'],
                       tf.constant(x['values']), x['bootstrap'])
    off = vtrace.vtrace(x['log_rhos'], x['discounts'], x['rewards'],
                        tf.constant(x['values']), x['bootstrap'],
                        clip_rho_threshold=None, clip_pg_rho_threshold=None,
                        clip_c_threshold=None)
    self.assertNotAllClose(on.vs, off.vs)

  def test_gradients_reach_discount_and_lambda(self):
    # Finite differences in float64 on a scalar of the targets.
    x = _inputs(2)

    def scalar(gamma, lam):
      out = vtrace.vtrace(x['log_rhos'], gamma * (x['discounts'] > 0),
                          x['rewards'], tf.constant(x['values']),
                          x['bootstrap'], lambda_=lam)
      return tf.reduce_sum(out.vs * 0.3 + out.pg_advantages)

    gamma = tf.constant(0.9, tf.float64)
    lam = tf.constant(0.8, tf.float64)
    with tf.GradientTape() as tape:
      tape.watch([gamma, lam])
      value = scalar(gamma, lam)
    grads = tape.gradient(value, [gamma, lam])
    eps = 1e-6
    fd = [(scalar(gamma + eps, lam) - scalar(gamma - eps, lam)) / (2 * eps),
          (scalar(gamma, lam + eps) - scalar(gamma, lam - eps)) / (2 * eps)]
    for g, f in zip(grads, fd):
      self.assertNotEqual(float(g), 0.0)
      self.assertAllClose(g, f, rtol=1e-6)

  def test_compiles_with_xla(self):
    x = _inputs(4)
    args = [tf.constant(x[k], tf.float32) for k in
            ('log_rhos', 'discounts', 'rewards', 'values', 'bootstrap')]
    eager = vtrace.vtrace(*args, lambda_=0.9)
    compiled = tf.function(lambda *a: vtrace.vtrace(*a, lambda_=0.9),
                           jit_compile=True)(*args)
    self.assertAllClose(compiled.vs, eager.vs, rtol=1e-5)
    self.assertAllClose(compiled.pg_advantages, eager.pg_advantages,
                        rtol=1e-5)

  def test_bad_input(self):
    x = _inputs(0)
    with self.assertRaisesRegex(ValueError, 'bootstrap_value'):
      vtrace.vtrace(x['log_rhos'], x['discounts'], x['rewards'],
                    tf.constant(x['values']), x['values'])
    with self.assertRaisesRegex(ValueError, 'clip_rho_threshold'):
      vtrace.vtrace(x['log_rhos'], x['discounts'], x['rewards'],
                    tf.constant(x['values']), x['bootstrap'],
                    clip_rho_threshold=0.0)


if __name__ == '__main__':
  tf.test.main()
