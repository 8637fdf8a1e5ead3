"""In-graph few-shot task samplers: a meta-batch of T tasks per call.

An `Episode` holds T tasks, each a support set (the data the learner adapts
on) and a disjoint query set (the data it is evaluated on):

* `SinusoidTasks`: MAML's regression benchmark (Finn et al., 2017): task
  `y = A sin(x - phi)`, A ~ U[0.1, 5], phi ~ U[0, pi], x ~ U[-5, 5].
* `ClassEpisodes`: N-way K-shot classification from a class array
  `[num_classes, examples_per_class, H, W, C]` (`datasets.ClassDataset`):
  each task draws N distinct classes, labels them 0..N-1 in the order
  drawn, and draws K support and Q query examples of each, all distinct.

Both sample with a `tf.random.Generator` that is tracked by `tf.Module`, so a
checkpoint of the sampler resumes its stream. `sample()` runs in-graph (and
under XLA). The class array itself is not checkpointed (it is data).
"""

import math
import types
from typing import NamedTuple, Optional, Tuple

import numpy as np
import tensorflow as tf

__all__ = ['Episode', 'SinusoidTasks', 'ClassEpisodes']


class Episode(NamedTuple):
  """A meta-batch of T tasks.

  Attributes:
    support_x: float32 `[T, S, ...]`: S support inputs per task.
    support_y: `[T, S]` int32 labels (classification) or `[T, S, 1]`
      float32 targets (regression).
    query_x: float32 `[T, Q, ...]`.
    query_y: like `support_y`, `[T, Q]` or `[T, Q, 1]`.
  """
  support_x: tf.Tensor
  support_y: tf.Tensor
  query_x: tf.Tensor
  query_y: tf.Tensor


def _check_positive(**values):
  for name, value in values.items():
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f'{name}: must be an int >= 1, got {value!r}.')


class SinusoidTasks(tf.Module):
  """Sinusoid regression tasks (MAML's set-up), sampled in-graph."""

  def __init__(self, num_tasks: int, support_size: int = 10,
               query_size: int = 10,
               amplitude: Tuple[float, float] = (0.1, 5.0),
               phase: Tuple[float, float] = (0.0, math.pi),
               x_range: Tuple[float, float] = (-5.0, 5.0),
               seed: int = 0, name: str = 'sinusoid_tasks'):
    """Creates the sampler.

    Args:
      num_tasks: T, tasks per meta-batch.
      support_size: K, support points per task (MAML: 10 for 10-shot).
      query_size: query points per task.
      amplitude: range of A.
      phase: range of phi.
      x_range: range of x.
      seed: seed of the sampler's generator.
      name: module name.

    Raises:
      ValueError: naming the argument, on a bad size or range.
    """
    super().__init__(name=name)
    _check_positive(num_tasks=num_tasks, support_size=support_size,
                    query_size=query_size)
    for arg, (low, high) in (('amplitude', amplitude), ('phase', phase),
                             ('x_range', x_range)):
      if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f'{arg}: must be a finite (low, high) with low < '
                         f'high, got {(low, high)}.')
    self.num_tasks = num_tasks
    self.support_size, self.query_size = support_size, query_size
    self._ranges = (tuple(amplitude), tuple(phase), tuple(x_range))
    self.generator = tf.random.Generator.from_seed(seed)

  def sample(self, generator: Optional[tf.random.Generator] = None
             ) -> Episode:
    """Draws T tasks.

    Args:
      generator: the generator to draw with (default: the sampler's own).

    Returns:
      An `Episode` of float32 inputs and targets `[T, S or Q, 1]`.
    """
    with tf.name_scope(self.name):
      (a_lo, a_hi), (p_lo, p_hi), (x_lo, x_hi) = self._ranges
      t = self.num_tasks
      gen = generator or self.generator
      amplitude = gen.uniform([t, 1, 1], a_lo, a_hi)
      phase = gen.uniform([t, 1, 1], p_lo, p_hi)
      x = gen.uniform([t, self.support_size + self.query_size, 1], x_lo, x_hi)
      y = amplitude * tf.sin(x - phase)
      s = self.support_size
      return Episode(x[:, :s], y[:, :s], x[:, s:], y[:, s:])


class ClassEpisodes(tf.Module):
  """N-way K-shot episodes from a class array, sampled in-graph."""

  def __init__(self, images: np.ndarray, num_tasks: int, n_way: int,
               k_shot: int, query_per_class: int, seed: int = 0,
               name: str = 'class_episodes'):
    """Creates the sampler.

    Args:
      images: `[num_classes, examples_per_class, H, W, C]`, float32 in
        [0, 1] or uint8 in 0..255 (converted per episode, so that large
        data sets stay uint8 in memory).
      num_tasks: T, tasks per meta-batch.
      n_way: N, classes per task (<= num_classes).
      k_shot: K, support examples per class.
      query_per_class: Q, query examples per class (K + Q <=
        examples_per_class).
      seed: seed of the sampler's generator.
      name: module name.

    Raises:
      ValueError: naming the argument, on a bad shape, dtype or size.
    """
    super().__init__(name=name)
    _check_positive(num_tasks=num_tasks, n_way=n_way, k_shot=k_shot,
                    query_per_class=query_per_class)
    shape = np.shape(images)
    if len(shape) != 5:
      raise ValueError(f'images: must be [classes, examples, H, W, C], got '
                       f'shape {shape}.')
    dtype = np.asarray(images[:0]).dtype
    if dtype not in (np.float32, np.uint8):
      raise ValueError(f'images: must be float32 or uint8, got {dtype}.')
    if n_way > shape[0]:
      raise ValueError(f'n_way: {n_way} classes per task, but the data set '
                       f'has {shape[0]}.')
    if k_shot + query_per_class > shape[1]:
      raise ValueError(f'k_shot/query_per_class: {k_shot} + '
                       f'{query_per_class} examples per class, but the data '
                       f'set has {shape[1]}.')
    self.num_tasks, self.n_way = num_tasks, n_way
    self.k_shot, self.query_per_class = k_shot, query_per_class
    self.image_shape = tuple(int(s) for s in shape[2:])
    self.num_classes, self.examples_per_class = int(shape[0]), int(shape[1])
    # Data, not state: held outside tf.Module's tracking (no checkpoint).
    self._data = types.SimpleNamespace(images=tf.constant(images))
    self.generator = tf.random.Generator.from_seed(seed)

  def sample(self, generator: Optional[tf.random.Generator] = None
             ) -> Episode:
    """Draws T episodes.

    Args:
      generator: the generator to draw with (default: the sampler's own).

    Returns:
      An `Episode`: inputs float32 `[T, N*K or N*Q, H, W, C]` in [0, 1],
      labels int32 `[T, N*K or N*Q]`, class-major (examples of label 0
      first).
    """
    with tf.name_scope(self.name):
      gen = generator or self.generator
      t, n = self.num_tasks, self.n_way
      k, q = self.k_shot, self.query_per_class
      # N distinct classes and K+Q distinct examples of each: the top of a
      # uniform score is a uniform draw without replacement.
      classes = tf.math.top_k(gen.uniform([t, self.num_classes]), n).indices
      examples = tf.math.top_k(
          gen.uniform([t, n, self.examples_per_class]), k + q).indices
      index = tf.stack([tf.broadcast_to(classes[:, :, None], [t, n, k + q]),
                        examples], axis=-1)
      x = tf.gather_nd(self._data.images, index)  # [T, N, K+Q, H, W, C]
      if x.dtype == tf.uint8:
        x = tf.cast(x, tf.float32) / 255.0
      labels = tf.broadcast_to(tf.range(n, dtype=tf.int32)[None, :, None],
                               [t, n, k + q])
      image = list(self.image_shape)

      def part(values, start, size, inner):
        return tf.reshape(values[:, :, start:start + size], [t, n * size] +
                          inner)

      return Episode(part(x, 0, k, image), part(labels, 0, k, []),
                     part(x, k, q, image), part(labels, k, q, []))
