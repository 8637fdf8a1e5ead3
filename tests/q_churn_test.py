"""benchmarks/q_churn.py: the churn inversion against the agent's real loss."""

import os
import sys

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top
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


def test_churn_report_reads_summaries_and_splits_by_phase(tmp_path):
  writer = tf.summary.create_file_writer(str(tmp_path / 'summaries'))
  p_by_phase = {0: 0.1, 1: 0.3, 2: 0.2}  # 0-20k, 20k-50k, 50k-100k.
  with writer.as_default():
    for step in range(10_000, 300_001, 10_000):
      since = (step - 1) % 100_000 + 1
      phase = 0 if since <= 20_000 else 1 if since <= 50_000 else 2
      p, eps = p_by_phase[phase], 0.05 + step / 1e6
      c = 3 / 4
      kl = -(1 - p) * np.log(1 - c * eps) - p * np.log(eps / 4)
      tf.summary.scalar('matching/policy_kl', kl, step=step)
      tf.summary.scalar('epsilon', eps, step=step)
  writer.close()
  summary, rows = q_churn.churn_report(str(tmp_path), flip_period=100_000)
  assert summary['windows'] == len(rows) == 30
  np.testing.assert_allclose(summary['churn_0k-20k'], 0.1, rtol=1e-4)
  np.testing.assert_allclose(summary['churn_20k-50k'], 0.3, rtol=1e-4)
  np.testing.assert_allclose(summary['churn_50k-100k'], 0.2, rtol=1e-4)
  # Phases count the flip periods after the first only.
  first = [r for r in rows if r['env_steps'] <= 100_000]
  assert len(first) == 10 and not any(r['after_first_flip'] for r in first)


def test_churn_report_refuses_a_run_without_a_bmg_target(tmp_path):
  writer = tf.summary.create_file_writer(str(tmp_path / 'summaries'))
  with writer.as_default():
    tf.summary.scalar('epsilon', 0.5, step=1)
  writer.close()
  with pytest.raises(ValueError, match='matching/policy_kl'):
    q_churn.churn_report(str(tmp_path), flip_period=100_000)
