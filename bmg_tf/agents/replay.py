"""A TF-Agents uniform replay buffer with a checkpointed sampling stream.

TF-Agents' `TFUniformReplayBuffer.get_next` draws its indices with the
stateful `tf.random.uniform` op, whose state lives in the op's kernel: it is
not checkpointed, and a restarted process would start that stream afresh.
`SeededUniformReplayBuffer` keeps TF-Agents' storage and valid windows and
draws from a tracked `tf.random.Generator` instead, so a run killed and
resumed samples exactly what an uninterrupted one does.

`InGraphUniformReplayBuffer` is the same buffer without TF-Agents'
`CriticalSection` around its write counter, which XLA cannot compile: with
one writer and one reader in one graph, adds and samples can run inside an
XLA-compiled collect-replay-learn loop.
"""

import tensorflow as tf
from tf_agents.replay_buffers import tf_uniform_replay_buffer

__all__ = ['InGraphUniformReplayBuffer', 'SeededUniformReplayBuffer']


class SeededUniformReplayBuffer(
    tf_uniform_replay_buffer.TFUniformReplayBuffer):
  """A `TFUniformReplayBuffer` whose sampling stream is checkpointed.

  Storage, `add_batch`, `num_frames`, `gather_all` and the set of valid
  windows are TF-Agents'. Only `get_next` differs: its sequence starts and
  batch rows are drawn with `tf.random.stateless_uniform` (Philox, named:
  'auto_select' would pick another algorithm under XLA) from seeds made by
  `self.generator` (a `tf.random.Generator`, tracked, so
  `tf.train.Checkpoint(replay=buffer)` saves the stream with the data).
  Supports `time_stacked=True` only (the default).

  `add_sequence` adds E consecutive steps of every stream in one write,
  exactly as E calls of `add_batch` would: the chunk can then be collected
  in an XLA-compiled call (into a `RolloutBuffer`) and handed over at once.
  """

  def __init__(self, data_spec, batch_size: int, max_length: int,
               seed: int = 0, **kwargs):
    """Creates the buffer.

    Args:
      data_spec: spec of one item (e.g. a policy's `trajectory_spec`).
      batch_size: batch size of `add_batch` (parallel streams).
      max_length: capacity per stream, in frames.
      seed: seed of the sampling generator.
      **kwargs: other `TFUniformReplayBuffer` arguments.
    """
    super().__init__(data_spec, batch_size=batch_size, max_length=max_length,
                     **kwargs)
    self.generator = tf.random.Generator.from_seed(seed)

  def add_sequence(self, items):
    """Adds a time-major chunk: the same as `add_batch(items[t])` for each t.

    Args:
      items: a nest matching the data spec, each leaf `[E, batch_size, ...]`
        with a static E, 1 <= E <= `max_length`.

    Returns:
      The write op (graph mode) or None.

    Raises:
      ValueError: on a bad E.
    """
    tf.nest.assert_same_structure(items, self._data_spec)
    leaves = tf.nest.flatten(items)
    steps = leaves[0].shape[0]
    if steps is None or not 1 <= steps <= self._max_length:
      raise ValueError(f'items: need a static time length in [1, '
                       f'{self._max_length}], got shape {leaves[0].shape}.')
    with tf.device(self._device), tf.name_scope(self._scope):
      with tf.name_scope('add_sequence'):
        last_id = self._increment_last_id(tf.constant(steps, tf.int64))
        ids = last_id - steps + 1 + tf.range(steps, dtype=tf.int64)  # [E]
        rows = (tf.math.mod(ids, self._max_length)[:, None] +
                self._batch_offsets[None, :])  # [E, B]
        flat_rows = tf.reshape(rows, [-1])
        flat_ids = tf.reshape(tf.broadcast_to(ids[:, None], tf.shape(rows)),
                              [-1])
        flat_items = tf.nest.map_structure(
            lambda t: tf.reshape(t, [-1] + t.shape.as_list()[2:]), items)
        return tf.group(self._id_table.write(flat_rows, flat_ids),
                        self._data_table.write(flat_rows, flat_items))

  def _get_next(self, sample_batch_size=None, num_steps=None,
                time_stacked=True):
    """Samples uniformly over valid windows; see `ReplayBuffer.get_next`."""
    if not time_stacked:
      raise ValueError('time_stacked: SeededUniformReplayBuffer supports '
                       'only time_stacked=True.')
    with tf.device(self._device), tf.name_scope(self._scope):
      with tf.name_scope('get_next'):
        return self._sample(sample_batch_size, num_steps, None)

  def get_next_recent(self, sample_batch_size: int, num_steps: int,
                      recent_frames: int):
    """Samples uniformly over the valid windows in the newest frames.

    The same draw as `get_next` (one seed pair from `self.generator`), over
    the window starts whose `num_steps` frames all lie in the newest
    `recent_frames` frames of a stream (all valid windows while the buffer
    holds fewer).

    Args:
      sample_batch_size: B, windows drawn.
      num_steps: T, frames per window.
      recent_frames: W >= T, how far back the windows may start.

    Returns:
      `(items, BufferInfo)`: items `[B, T, ...]`, as `get_next`.

    Raises:
      ValueError: if `recent_frames` < `num_steps` or > `max_length`.
    """
    if not num_steps <= recent_frames <= self._max_length:
      raise ValueError(f'recent_frames: must be in [num_steps, max_length] = '
                       f'[{num_steps}, {self._max_length}], got '
                       f'{recent_frames}.')
    with tf.device(self._device), tf.name_scope(self._scope):
      with tf.name_scope('get_next_recent'):
        return self._sample(sample_batch_size, num_steps, recent_frames)

  def _sample(self, sample_batch_size, num_steps, recent_frames):
    """Draws windows uniformly; `recent_frames` (if set) bounds their age."""
    last_id = self._get_last_id()
    steps = 1 if num_steps is None else int(num_steps)
    # Valid window starts [min_id, max_id): TF-Agents' rule.
    min_id = tf.maximum(last_id + 1 - self._max_length, 0)
    if recent_frames is not None:
      min_id = tf.maximum(min_id, last_id + 1 - recent_frames)
    max_id = tf.maximum(last_id + 2 - steps, 0)
    shape = () if sample_batch_size is None else (sample_batch_size,)
    check = tf.debugging.assert_greater(
        max_id, min_id, message=(
            'SeededUniformReplayBuffer holds too few frames to sample '
            'from; add items before sampling.'))
    with tf.control_dependencies([check]):
      seeds = self.generator.make_seeds(2)
      ids = tf.random.stateless_uniform(
          shape, seeds[:, 0], minval=min_id, maxval=max_id,
          dtype=tf.int64, alg='philox')
    offsets = tf.random.stateless_uniform(
        shape, seeds[:, 1], minval=0, maxval=self._batch_size,
        dtype=tf.int64, alg='philox') * self._max_length
    if num_steps is not None:
      ids = ids[..., None] + tf.range(steps, dtype=tf.int64)
      offsets = offsets[..., None]
    rows = tf.math.mod(ids, self._max_length) + offsets
    probability = 1.0 / tf.cast((max_id - min_id) * self._batch_size,
                                tf.float32)
    info = tf_uniform_replay_buffer.BufferInfo(
        ids=self._id_table.read(rows),
        probabilities=tf.fill(shape, probability))
    return self._data_table.read(rows), info


class InGraphUniformReplayBuffer(SeededUniformReplayBuffer):
  """A `SeededUniformReplayBuffer` that XLA can compile.

  TF-Agents guards the write counter `last_id` with a `tf.CriticalSection`,
  so that several threads may add and sample concurrently. XLA cannot
  compile a critical section. This buffer reads and writes the counter
  directly: its storage is plain variables (TF-Agents' `Table`s and the
  counter), which `tf.function` orders by their automatic control
  dependencies. Same storage, same windows, same sampling stream and same
  checkpoint keys as `SeededUniformReplayBuffer` (a checkpoint of one
  restores into the other).

  The price is the thread safety: use it with one writer and one reader in
  one graph (a training loop), not behind several concurrent datasets. And
  XLA drops `tf.debugging` assertions: compiled, `get_next` on a buffer
  with fewer than `num_steps` frames returns garbage instead of raising, so
  the caller must fill it first (the Q pipeline samples only after
  `min_replay_size >= sequence_length + 1` frames).
  """

  def _increment_last_id(self, increment=1):
    with tf.name_scope('increment_last_id'):
      return self._last_id.assign_add(increment).value()

  def _get_last_id(self):
    return self._last_id.value()

  def _clear(self, clear_all_variables=False):
    assignments = [self._last_id.assign(-1)]
    if clear_all_variables:
      assignments += [v.assign(tf.zeros_like(v)) for v in (
          self._data_table.variables() + self._id_table.variables())]
    return tf.group(*assignments, name='clear')
