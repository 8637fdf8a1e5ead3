"""Tests for bmg_tf.agents.replay: seeded sampling and chunked adds."""

import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest
import tensorflow as tf
from tf_agents.replay_buffers import tf_uniform_replay_buffer
from tf_agents.specs import tensor_spec

from bmg_tf.agents import replay


_SPEC = {'obs': tensor_spec.TensorSpec([3], tf.float32),
         'n': tensor_spec.TensorSpec([], tf.int64)}


def test_replay_sampling_is_checkpointed_and_uses_valid_windows(tmp_path):
  spec = tensor_spec.TensorSpec([], tf.int64)
  buffer = replay.SeededUniformReplayBuffer(spec, batch_size=1,
                                                 max_length=20, seed=7)
  for i in range(33):  # Wraps around: frames 13..32 remain.
    buffer.add_batch(tf.constant([i], tf.int64))
  assert int(buffer.num_frames()) == 20
  sample = tf.function(
      lambda: buffer.get_next(sample_batch_size=64, num_steps=5)[0])
  ckpt = tf.train.Checkpoint(replay=buffer)
  path = ckpt.save(str(tmp_path / 'ckpt'))
  first = [sample().numpy() for _ in range(3)]
  # Every window is 5 consecutive frames still in the buffer.
  for windows in first:
    assert windows.shape == (64, 5)
    np.testing.assert_array_equal(np.diff(windows, axis=1), 1)
    assert windows.min() >= 13 and windows.max() <= 32
  starts = np.concatenate([w[:, 0] for w in first])
  assert set(starts) == set(range(13, 29))  # All valid starts are drawn.
  # Restoring rewinds the stream: a restarted process draws the same.
  ckpt.restore(path)
  again = [sample().numpy() for _ in range(3)]
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(first[0], first[1])


def test_add_sequence_equals_one_add_batch_per_step():
  spec = _SPEC
  chunked = replay.SeededUniformReplayBuffer(spec, batch_size=2,
                                                  max_length=10, seed=1)
  stepped = replay.SeededUniformReplayBuffer(spec, batch_size=2,
                                                  max_length=10, seed=1)
  rng = np.random.default_rng(0)
  for e in (4, 7, 10, 3):  # Wraps around the capacity twice.
    items = {'obs': rng.normal(size=(e, 2, 3)).astype(np.float32),
             'n': rng.integers(0, 100, size=(e, 2))}
    chunked.add_sequence(tf.nest.map_structure(tf.constant, items))
    for t in range(e):
      stepped.add_batch({k: tf.constant(v[t]) for k, v in items.items()})
  assert int(chunked.num_frames()) == int(stepped.num_frames()) == 20
  for a, b in zip(chunked.variables(), stepped.variables()):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  np.testing.assert_array_equal(
      chunked.get_next(sample_batch_size=8, num_steps=3)[0]['n'],
      stepped.get_next(sample_batch_size=8, num_steps=3)[0]['n'])
  with pytest.raises(ValueError, match='time length'):
    chunked.add_sequence({'obs': tf.zeros([11, 2, 3]),
                          'n': tf.zeros([11, 2], tf.int64)})


def _items(rng, steps, batch):
  return {'obs': rng.normal(size=(steps, batch, 3)).astype(np.float32),
          'n': rng.integers(0, 100, size=(steps, batch))}


def test_in_graph_buffer_stores_what_tf_agents_stores():
  spec = _SPEC
  ours = replay.InGraphUniformReplayBuffer(spec, batch_size=2,
                                           max_length=10, seed=1)
  theirs = tf_uniform_replay_buffer.TFUniformReplayBuffer(
      spec, batch_size=2, max_length=10)
  rng = np.random.default_rng(0)
  add = tf.function(lambda items: ours.add_sequence(items) and None,
                    jit_compile=True, autograph=False)
  for e in (4, 7, 10, 3):  # Wraps around the capacity twice.
    items = _items(rng, e, 2)
    add(tf.nest.map_structure(tf.constant, items))
    for t in range(e):
      theirs.add_batch({k: tf.constant(v[t]) for k, v in items.items()})
  assert int(ours.num_frames()) == int(theirs.num_frames()) == 20
  assert len(ours.variables()) == len(theirs.variables())
  for a, b in zip(ours.variables(), theirs.variables()):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  np.testing.assert_array_equal(ours.gather_all()['n'],
                                theirs.gather_all()['n'])
  # TF-Agents' own sampler draws only windows ours can draw, and vice versa.
  windows = lambda b: {tuple(w) for w in b.get_next(
      sample_batch_size=2000, num_steps=3)[0]['n'].numpy()}
  assert windows(ours) == windows(theirs)
  ours.clear()
  assert int(ours.num_frames()) == 0


def test_in_graph_buffer_compiles_and_samples_as_the_seeded_buffer(tmp_path):
  spec = _SPEC
  ours = replay.InGraphUniformReplayBuffer(spec, batch_size=1,
                                           max_length=12, seed=5)
  seeded = replay.SeededUniformReplayBuffer(spec, batch_size=1,
                                            max_length=12, seed=5)

  def add_then_sample(buffer, items):
    buffer.add_sequence(items)
    return buffer.get_next(sample_batch_size=6, num_steps=4)[0]

  compiled = tf.function(lambda items: add_then_sample(ours, items),
                         jit_compile=True, autograph=False)
  plain = tf.function(lambda items: add_then_sample(seeded, items),
                      autograph=False)
  rng = np.random.default_rng(3)
  for e in (5, 5, 9, 5):
    items = tf.nest.map_structure(tf.constant, _items(rng, e, 1))
    a, b = compiled(items), plain(items)
    for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b)):
      np.testing.assert_array_equal(x.numpy(), y.numpy())
  # The same checkpoint keys: a checkpoint of one restores into the other.
  path = tf.train.Checkpoint(replay=ours).save(str(tmp_path / 'ckpt'))
  fresh = replay.SeededUniformReplayBuffer(spec, batch_size=1,
                                           max_length=12, seed=0)
  tf.train.Checkpoint(replay=fresh).restore(path).assert_consumed()
  np.testing.assert_array_equal(
      fresh.get_next(sample_batch_size=6, num_steps=4)[0]['n'],
      ours.get_next(sample_batch_size=6, num_steps=4)[0]['n'])


@pytest.mark.parametrize('jit_compile', [False, True])
def test_get_next_recent_draws_every_window_in_the_newest_frames(jit_compile):
  spec = tensor_spec.TensorSpec([], tf.int64)
  buffer = replay.InGraphUniformReplayBuffer(spec, batch_size=2,
                                             max_length=20, seed=3)
  for i in range(33):  # Frames 13..32 of both streams remain.
    buffer.add_batch(tf.constant([i, 100 + i], tf.int64))
  sample = tf.function(
      lambda: buffer.get_next_recent(256, 5, recent_frames=8)[0],
      jit_compile=jit_compile)
  windows = np.concatenate([sample().numpy() for _ in range(4)])
  assert windows.shape == (1024, 5)
  np.testing.assert_array_equal(np.diff(windows, axis=1), 1)
  # The newest 8 frames are 25..32: windows of 5 start at 25..28, in
  # either stream, and every one of them is drawn.
  starts = windows[:, 0]
  assert set(starts) == {25, 26, 27, 28, 125, 126, 127, 128}
  # With fewer frames than `recent_frames`, every valid window qualifies.
  small = replay.SeededUniformReplayBuffer(spec, batch_size=1, max_length=20,
                                           seed=3)
  for i in range(6):
    small.add_batch(tf.constant([i], tf.int64))
  got = small.get_next_recent(64, 5, recent_frames=8)[0].numpy()
  assert set(got[:, 0]) == {0, 1}


@pytest.mark.parametrize('recent_frames', [4, 21])
def test_get_next_recent_rejects_a_bad_window(recent_frames):
  buffer = replay.SeededUniformReplayBuffer(
      tensor_spec.TensorSpec([], tf.int64), batch_size=1, max_length=20)
  with pytest.raises(ValueError, match='recent_frames'):
    buffer.get_next_recent(8, 5, recent_frames)
