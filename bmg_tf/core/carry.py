"""Batch carry-over: the last batch of a meta-step is the first of the next.

MG's outer batch and BMG's last batch (the target batch, or the fresh
matching batch) are collected with the parameters the learner continues
from, so they are on-policy for the next meta-step's first inner update.
Re-using them means every sample feeds exactly one learner update. The
`MetaLearner` applies the rule when given a batch spec (`carry_spec`):

* with a `batch_fn` (data made in-graph), batch 0 is the carried batch
  when there is one (`tf.cond` on the `valid` flag), and the batch of the
  last index is stored;
* with stacked `batches` (data made in Python, e.g. by actors), `step`
  prepends the carried batch, so the caller collects one batch fewer
  (`MetaLearner.new_batches_per_step`), and stores the last one.

A batch that is a tuple (several rollouts forming one batch, e.g. BMG's
multi-rollout target) carries its last element.
"""

import types
from typing import Any, Callable

import numpy as np
import tensorflow as tf

__all__ = ['BatchCarry', 'carried_batch_fn']


class BatchCarry(tf.Module):
  """Storage for one batch of a fixed spec, and whether it holds one.

  In graph mode (for a `batch_fn`) the batch lives in variables, read and
  written inside the compiled step. Otherwise (stacked batches collected in
  Python, `in_graph=False`) it is kept as the NumPy arrays it came as, so
  that `prepend` hands the step what the caller would have: no variable,
  nothing for a `tf.distribute` strategy to mirror.
  """

  def __init__(self, spec: Any, in_graph: bool = True,
               name: str = 'batch_carry'):
    """Creates the storage.

    Args:
      spec: a nest of `tf.TensorSpec` (fully defined shapes): one batch.
      in_graph: variables (zero-filled) if True, else a Python value.
      name: module name.
    """
    super().__init__(name=name)
    self._spec = spec
    self._in_graph = in_graph
    # Not an attribute of its own: tf.Module would wrap a dict in a tracked
    # structure.
    self._held = types.SimpleNamespace(value=None)
    if in_graph:
      self.storage = [
          tf.Variable(tf.zeros(s.shape, s.dtype), trainable=False,
                      name=s.name or f'batch_{i}')
          for i, s in enumerate(tf.nest.flatten(spec))]
      self.valid = tf.Variable(False, trainable=False, name='valid')

  def write(self, batch: Any):
    """Stores `batch` (a tuple stores its last element)."""
    if isinstance(batch, tuple):
      batch = batch[-1]
    if not self._in_graph:
      self._held.value = tf.nest.map_structure(np.asarray, batch)
      return
    with tf.name_scope('carry_write'):
      for var, value in zip(self.storage, tf.nest.flatten(batch)):
        var.assign(value)
      self.valid.assign(True)

  def read(self) -> Any:
    """The stored batch, in the structure of the spec."""
    if not self._in_graph:
      return self._held.value
    return tf.nest.pack_sequence_as(
        self._spec, [v.read_value() for v in self.storage])

  def has_batch(self) -> bool:
    """Whether a batch is stored (eager)."""
    if not self._in_graph:
      return self._held.value is not None
    return bool(self.valid.numpy())

  def prepend(self, batches: Any) -> Any:
    """`batches` (leading step axis) with the stored batch first, if any.

    Eager: for data collected in Python.
    """
    if not self.has_batch():
      return batches
    return tf.nest.map_structure(
        lambda c, b: np.concatenate([np.asarray(c)[None], np.asarray(b)]),
        self.read(), batches)


def carried_batch_fn(batch_fn: Callable[[Any, Any], Any], carry: BatchCarry,
                     last_index: int) -> Callable[[Any, Any], Any]:
  """`batch_fn(i, params)` with the carry-over rule.

  Args:
    batch_fn: the data source; `i` is a Python int or an int32 tensor
      (inside the engine's loops).
    carry: the storage.
    last_index: the last batch index of a meta-step
      (`BootstrapConfig.batches_per_step - 1`).

  Returns:
    The wrapped `batch_fn`: batch 0 comes from `carry` when it is valid,
    the batch of `last_index` is stored.
  """

  def carried(i, params):
    if isinstance(i, int) and i != 0:
      batch = batch_fn(i, params)
    else:
      first = tf.equal(i, 0) if tf.is_tensor(i) else tf.constant(True)
      batch = tf.cond(tf.logical_and(carry.valid, first), carry.read,
                      lambda: batch_fn(i, params))
    if isinstance(i, int) and i == last_index:
      carry.write(batch)
    return batch

  return carried
