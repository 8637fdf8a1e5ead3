"""Tests for bmg_tf.core.carry and the MetaLearner's batch carry-over."""

import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf

from bmg_tf.core import bootstrap
from bmg_tf.core import carry as carry_lib
from bmg_tf.core import meta_learner as meta_learner_lib
from bmg_tf.core import meta_params
from bmg_tf.core import optimizers

SPEC = {'x': tf.TensorSpec([3, 2], tf.float32),
        'a': tf.TensorSpec([3], tf.int32)}


def _batch(value):
  return {'x': tf.fill([3, 2], float(value)), 'a': tf.fill([3], int(value))}


class BatchCarryTest(tf.test.TestCase):

  def test_round_trip_valid_flag_and_tuples(self):
    carry = carry_lib.BatchCarry(SPEC)
    self.assertFalse(carry.valid.numpy())
    carry.write(_batch(1))
    self.assertTrue(carry.valid.numpy())
    got = carry.read()
    self.assertEqual(got['a'].dtype, tf.int32)
    self.assertAllEqual(got['x'], np.ones([3, 2]))
    carry.write((_batch(2), _batch(3)))  # A tuple carries its last element.
    self.assertAllEqual(carry.read()['a'], [3, 3, 3])

  def test_prepend_only_when_valid(self):
    carry = carry_lib.BatchCarry(SPEC, in_graph=False)
    new = {'x': np.zeros([2, 3, 2], np.float32),
           'a': np.zeros([2, 3], np.int32)}
    self.assertIs(carry.prepend(new), new)
    self.assertFalse(carry.has_batch())
    carry.write(_batch(7))
    self.assertTrue(carry.has_batch())
    got = carry.prepend(new)
    self.assertAllEqual(got['a'][:, 0], [7, 0, 0])
    self.assertEqual(got['x'].shape, (3, 3, 2))

  def test_carried_batch_fn_reads_first_and_stores_last(self):
    carry = carry_lib.BatchCarry(SPEC)
    calls = []

    def batch_fn(i, params):
      del params
      calls.append(i)
      return _batch(len(calls) * 10)

    fn = carry_lib.carried_batch_fn(batch_fn, carry, last_index=2)
    # First meta-step: nothing carried, three fresh batches, the last kept.
    firsts = [fn(i, None)['a'][0].numpy() for i in range(3)]
    self.assertEqual(firsts, [10, 20, 30])
    self.assertAllEqual(carry.read()['a'], [30, 30, 30])
    # Second: batch 0 is the carried one (batch_fn is only traced in the
    # untaken branch of the cond, which eager mode does not run).
    self.assertEqual(fn(0, None)['a'][0].numpy(), 30)
    self.assertEqual(fn(tf.constant(0), None)['a'][0].numpy(), 30)
    self.assertEqual(fn(tf.constant(1), None)['a'][0].numpy(), 40)


def _learner(carry_spec, method='mg'):
  w = tf.Variable([1.0])
  meta = meta_params.MetaParameters({'lr': meta_params.MetaParameter(
      0.1, 'exp', name='lr')})

  def loss(params, batch, meta_values=None):
    del meta_values
    return tf.reduce_mean(tf.square(params[0] - batch['x']))

  objectives = bootstrap.Objectives(
      inner_loss=loss, outer_loss=loss,
      optimizer_hparams=lambda m: {'learning_rate': m['lr']})
  config = (bootstrap.BootstrapConfig(method='mg', k_steps=2) if method == 'mg'
            else bootstrap.BootstrapConfig(method='fixed', k_steps=2))
  return meta_learner_lib.MetaLearner(
      [w], meta, objectives, config,
      inner_optimizer=optimizers.SGD(learning_rate=0.1),
      carry_spec=carry_spec)


class MetaLearnerCarryTest(tf.test.TestCase):

  def test_stacked_batches_take_the_carried_one_first(self):
    spec = {'x': tf.TensorSpec([4], tf.float32)}
    learner = _learner(spec)
    self.assertEqual(learner.new_batches_per_step, 3)  # K=2 + outer.
    batches = {'x': np.arange(12, dtype=np.float32).reshape(3, 4)}
    learner.step(batches)
    self.assertEqual(learner.new_batches_per_step, 2)
    self.assertAllEqual(learner.carry.read()['x'], [8, 9, 10, 11])
    # The next step with two new batches equals a step on all three.
    twin = _learner(spec)
    twin.learner_params[0].assign(learner.learner_params[0])
    for v, w in zip(twin.variables, learner.variables):
      v.assign(w)
    new = {'x': np.full([2, 4], 5.0, np.float32)}
    learner.step(new)
    whole = {'x': np.concatenate([batches['x'][-1:], new['x']])}
    twin.step(whole)  # Nothing carried yet: all three are used.
    self.assertAllClose(learner.learner_params[0], twin.learner_params[0])

  def test_fixed_carries_nothing(self):
    learner = _learner({'x': tf.TensorSpec([4], tf.float32)}, 'fixed')
    self.assertIsNone(learner.carry)
    self.assertEqual(learner.new_batches_per_step, 2)


if __name__ == '__main__':
  tf.test.main()
