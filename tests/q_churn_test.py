"""benchmarks/q_churn.py: the churn inversion against the agent's real loss."""

import os
import sys

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tensorflow_probability as tfp  # pylint: disable=g-import-not-at-top

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..',
                                'benchmarks'))
import q_churn  # pylint: disable=g-import-not-at-top,wrong-import-position
from bmg_tf.agents import q_learning  # pylint: disable=g-import-not-at-top
from bmg_tf.core import matching  # pylint: disable=g-import-not-at-top


def _kl(q_current, q_target, epsilon):
  """The pipeline's matching loss on `[N, A]` Q-values."""
  log_probs = q_learning.epsilon_greedy_log_probs(
      tf.constant(q_current), tf.constant(epsilon, tf.float32))
  target = tfp.distributions.Categorical(
      probs=q_learning.greedy_one_hot(tf.constant(q_target)))
  return float(matching.policy_kl(target, log_probs))


def test_implied_churn_recovers_the_fraction_of_changed_greedy_actions():
  rng = np.random.default_rng(0)
  n = 400
  q_current = rng.normal(size=(n, 4)).astype(np.float32)
  q_target = q_current.copy()
  changed = rng.random(n) < 0.23
  # Change the greedy action of those states: raise another action above it.
  other = (np.argmax(q_current, -1) + rng.integers(1, 4, n)) % 4
  q_target[changed, other[changed]] = q_current[changed].max(-1) + 1.0
  p = np.mean(np.argmax(q_current, -1) != np.argmax(q_target, -1))
  for epsilon in (0.02, 0.1, 0.37, 0.8):
    kl = _kl(q_current, q_target, epsilon)
    np.testing.assert_allclose(q_churn.implied_churn(kl, epsilon), p,
                               rtol=1e-4)


def test_optimal_epsilon_minimises_the_matching_loss():
  rng = np.random.default_rng(1)
  q_current = rng.normal(size=(300, 4)).astype(np.float32)
  q_target = q_current + rng.normal(scale=0.7, size=(300, 4)).astype(
      np.float32)
  p = np.mean(np.argmax(q_current, -1) != np.argmax(q_target, -1))
  grid = np.linspace(0.005, 0.995, 199)
  losses = [_kl(q_current, q_target, e) for e in grid]
  best = grid[int(np.argmin(losses))]
  assert 0.05 < p < 0.7
  assert abs(q_churn.optimal_epsilon(p) - best) <= 0.006
  assert q_churn.optimal_epsilon(0.9) == 1.0
