"""N seeds as a batch dimension of one graph give N independent learners.

The two-colours actor-critic with `num_seeds=2` (networks, contextual or
scalar meta-parameters and clipping stacked along a seed axis) against two
single-seed learners built with `seed` and `seed + 1`, fed the same rollouts:
after MG and BMG meta-steps, with and without XLA, with inner and meta
global-norm clipping that binds, every variable, optimizer slot and
meta-parameter of seed n equals single learner n's.
"""

import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'

from absl.testing import parameterized  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

from bmg_tf.agents import actor_critic
from bmg_tf.core import bootstrap
from bmg_tf.core import meta_learner as meta_learner_lib
from bmg_tf.core import meta_params
from bmg_tf.core import optimizers

OBS, ACTIONS, T, CTX = 6, 3, 5, 4


def _rollouts(steps, num_streams, seed):
  """`steps` random rollouts, time-major, stacked: `[S, T, B, ...]`."""
  rng = np.random.default_rng(seed)
  return {
      'observation': rng.normal(size=(steps, T, num_streams, OBS)).astype(
          np.float32),
      'action': rng.integers(0, ACTIONS, size=(steps, T, num_streams)),
      'reward': rng.normal(size=(steps, T, num_streams)).astype(np.float32),
      'discount': np.ones((steps, T, num_streams), np.float32),
      'bootstrap_observation': rng.normal(
          size=(steps, num_streams, OBS)).astype(np.float32),
  }


def _stream(batches, n):
  """Stream n of stacked batches, kept as a batch of one stream."""
  out = {}
  for k, v in batches.items():
    axis = 1 if k == 'bootstrap_observation' else 2
    out[k] = tf.constant(np.take(v, [n], axis=axis))
  return out


def _learner(method, contextual, num_seeds, seed, jit_compile):
  agent = actor_critic.ActorCritic(OBS, ACTIONS, hidden_sizes=(8,),
                                   seed=seed, num_seeds=num_seeds,
                                   outer_entropy_weight=0.01)
  if contextual:
    meta = meta_params.MetaParameters({}, contextual=(
        meta_params.ContextualMetaParameters(
            CTX, {'entropy_weight': 0.3}, hidden_sizes=(4,),
            seed=seed + 2000, num_seeds=num_seeds)))
  else:
    meta = meta_params.MetaParameters({
        'entropy_weight': meta_params.MetaParameter(
            0.3, num_seeds=num_seeds, name='entropy_weight')})
  if method == 'mg':
    config = bootstrap.BootstrapConfig(method='mg', k_steps=2)
  else:
    config = bootstrap.BootstrapConfig(
        method='bmg', k_steps=2, l_steps=3, continue_from='K+L-1',
        matching={'policy_kl': 1.0, 'value_l2': 0.5}, reduction='sum')
  dims = 0 if num_seeds is None else 1
  learner = meta_learner_lib.MetaLearner(
      agent.params, meta, agent.objectives(), config,
      inner_optimizer=optimizers.GlobalNormClipped(
          optimizers.SGD(learning_rate=0.5), 0.05, batch_dims=dims),
      target_optimizer=(optimizers.GlobalNormClipped(
          optimizers.RMSProp(learning_rate=0.1), 0.05, batch_dims=dims)
                        if method == 'bmg' else None),
      meta_optimizer=meta_params.MetaOptimizer(
          learning_rate=0.05, clip_global_norm=1e-3, clip_batch_dims=dims),
      jit_compile=jit_compile)
  return learner, meta, config


class SeedBatchTest(parameterized.TestCase, tf.test.TestCase):

  @parameterized.parameters(
      ('mg', True, False), ('bmg', True, False), ('bmg', False, False),
      ('bmg', True, True))
  def test_batched_seeds_equal_single_seed_learners(self, method, contextual,
                                                    jit_compile):
    seed = 11
    batched, batched_meta, config = _learner(method, contextual, 2, seed,
                                             jit_compile)
    singles = [_learner(method, contextual, None, seed + n, jit_compile)
               for n in range(2)]
    ctx = np.random.default_rng(5).normal(size=(2, CTX)).astype(np.float32)
    meta_steps = 2
    for step in range(meta_steps):
      data = _rollouts(config.batches_per_step, 2, seed=100 + step)
      batched.step(tf.nest.map_structure(tf.constant, data),
                   tf.constant(ctx) if contextual else None)
      for n, (single, _, _) in enumerate(singles):
        single.step(_stream(data, n),
                    tf.constant(ctx[n]) if contextual else None)

    def per_seed(variables, n):
      # Scalars (e.g. a step counter) are shared by the seeds.
      return [v.numpy() if v.shape.rank == 0 else v.numpy()[n]
              for v in variables]

    for n, (single, single_meta, _) in enumerate(singles):
      # Learner parameters, inner-optimizer and target-optimizer slots.
      for got, want in zip(per_seed(batched.learner_params, n),
                           single.learner_params):
        self.assertAllClose(got, want, rtol=2e-5, atol=2e-6)
      slots = list(batched.opt_state_vars) + list(batched.target_state_vars)
      want_slots = list(single.opt_state_vars) + list(
          single.target_state_vars)
      self.assertLen(slots, len(want_slots))
      for got, want in zip(per_seed(slots, n), want_slots):
        self.assertAllClose(got, want, rtol=2e-5, atol=2e-6)
      for got, want in zip(per_seed(batched.meta_variables, n),
                           single.meta_variables):
        self.assertAllClose(got, want, rtol=2e-5, atol=1e-6)
      values = batched_meta(tf.constant(ctx) if contextual else None)
      want = single_meta(tf.constant(ctx[n]) if contextual else None)
      self.assertAllClose(values['entropy_weight'][n],
                          want['entropy_weight'], rtol=1e-5)
      # The meta-parameters moved, so the comparison is not vacuous.
      self.assertNotAllClose(want['entropy_weight'], 0.3, rtol=1e-5)
    # The two seeds learned different things from different data.
    self.assertNotAllClose(batched.learner_params[0].numpy()[0],
                           batched.learner_params[0].numpy()[1])

  def test_one_seeds_data_does_not_reach_the_other(self):
    results = []
    for scale in (1.0, 3.0):
      learner, _, config = _learner('bmg', True, 2, 3, False)
      data = _rollouts(config.batches_per_step, 2, seed=7)
      data['reward'][..., 1] *= scale  # Only seed 1's rewards change.
      learner.step(tf.nest.map_structure(tf.constant, data),
                   tf.zeros([2, CTX]))
      results.append([v.numpy() for v in learner.learner_params +
                      list(learner.meta_variables)])
    for a, b in zip(*results):
      self.assertAllEqual(a[0], b[0])
    self.assertFalse(all(np.array_equal(a[1], b[1])
                         for a, b in zip(*results)))


if __name__ == '__main__':
  tf.test.main()
