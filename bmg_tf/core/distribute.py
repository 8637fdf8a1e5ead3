"""The `tf.distribute` strategy the meta-learner runs under, chosen by gin.

    MetaLearner.strategy = @make_strategy()
    make_strategy.name = 'mirrored'

`make_strategy(name)` returns:

* 'default': `tf.distribute.get_strategy()`, the default (no-op) strategy
  outside any scope: one replica, the step runs exactly as without a
  strategy.
* 'mirrored': a `MirroredStrategy` over all GPUs or, without GPUs, over the
  logical CPU devices. `num_cpu_replicas=N` first splits the (first)
  physical CPU into N logical devices, so that data parallelism can be run
  and tested on one machine. TensorFlow fixes its devices when it first
  initialises its runtime (the first op, variable or device listing), so
  this must be the first thing the process does with TensorFlow; later it
  raises a `RuntimeError` (unless the split is already the one asked for).
* 'multi_worker_mirrored': a `MultiWorkerMirroredStrategy` (synchronous
  all-reduce across the workers of `TF_CONFIG`; one worker without it).
  Make it early too: once TensorFlow has initialised, it still works but
  warns that collective ops were not configured at program startup.
* 'tpu': a `TPUStrategy` on the TPU system found by
  `TPUClusterResolver(tpu)`; a `RuntimeError` when none is reachable.

How the meta-learner uses a strategy (data parallelism with identical
learner parameters on every replica, the inner gradients all-reduced) is
described in `meta_learner.MetaLearner`.
"""

from typing import Optional

import gin
import tensorflow as tf

__all__ = ['STRATEGY_NAMES', 'make_strategy', 'is_default_strategy']

STRATEGY_NAMES = ('default', 'mirrored', 'multi_worker_mirrored', 'tpu')


def is_default_strategy(strategy: tf.distribute.Strategy) -> bool:
  """Whether `strategy` is TensorFlow's default (no-op) strategy.

  Args:
    strategy: a `tf.distribute.Strategy`.

  Returns:
    True for the strategy `tf.distribute.get_strategy()` returns outside any
    `strategy.scope()`.
  """
  with strategy.scope():
    return not tf.distribute.has_strategy()


def _split_cpu(num_cpu_replicas: int):
  """Splits the first physical CPU into `num_cpu_replicas` logical devices."""
  cpu = tf.config.list_physical_devices('CPU')[0]
  wanted = [tf.config.LogicalDeviceConfiguration()
            for _ in range(num_cpu_replicas)]
  current = tf.config.get_logical_device_configuration(cpu)
  if current is not None and len(current) == num_cpu_replicas:
    return  # Already split as asked (e.g. by an earlier call).
  try:
    tf.config.set_logical_device_configuration(cpu, wanted)
  except RuntimeError as e:
    have = len(tf.config.list_logical_devices('CPU'))
    raise RuntimeError(
        f'num_cpu_replicas: cannot split the CPU into {num_cpu_replicas} '
        f'logical devices: TensorFlow has already initialised its devices '
        f'({have} logical CPU device(s)). Call make_strategy before any '
        f'other TensorFlow op, variable or device query in this process '
        f'(e.g. run it in a fresh process).') from e


def _mirrored(num_cpu_replicas: Optional[int]) -> tf.distribute.Strategy:
  gpus = tf.config.list_physical_devices('GPU')
  if gpus:
    # num_cpu_replicas is for machines without accelerators.
    devices = [d.name for d in tf.config.list_logical_devices('GPU')]
  else:
    if num_cpu_replicas is not None:
      _split_cpu(num_cpu_replicas)
    devices = [d.name for d in tf.config.list_logical_devices('CPU')]
  return tf.distribute.MirroredStrategy(devices)


def _tpu(tpu: Optional[str]) -> tf.distribute.Strategy:
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
  except Exception as e:  # pylint: disable=broad-except
    raise RuntimeError(
        f'tpu: no TPU reachable (tpu={tpu!r}): {type(e).__name__}: '
        f'{e}') from e
  return tf.distribute.TPUStrategy(resolver)


@gin.configurable
def make_strategy(name: str = 'default',
                  num_cpu_replicas: Optional[int] = None,
                  tpu: Optional[str] = None) -> tf.distribute.Strategy:
  """Builds a `tf.distribute.Strategy` by name.

  Args:
    name: one of `STRATEGY_NAMES`: 'default', 'mirrored',
      'multi_worker_mirrored' or 'tpu'.
    num_cpu_replicas: 'mirrored' only, on a machine without GPUs: split the
      CPU into this many logical devices (one replica each). Must be called
      before TensorFlow initialises its devices. Ignored when there are GPUs
      (all of them are used). None: use the logical CPUs as they are
      (normally one).
    tpu: 'tpu' only: the TPU name or address given to `TPUClusterResolver`
      (None: from the environment, e.g. on a Cloud TPU VM).

  Returns:
    The strategy. Under it, create variables in `strategy.scope()`.

  Raises:
    ValueError: on an unknown `name`, a bad `num_cpu_replicas`, or an
      argument given to a strategy that does not use it.
    RuntimeError: if the CPU can no longer be split (TensorFlow has
      initialised its devices), or no TPU is reachable.
  """
  if name not in STRATEGY_NAMES:
    raise ValueError(f'name: unknown strategy {name!r}; valid: '
                     f'{STRATEGY_NAMES}.')
  if num_cpu_replicas is not None:
    if (isinstance(num_cpu_replicas, bool) or
        not isinstance(num_cpu_replicas, int) or num_cpu_replicas < 1):
      raise ValueError(f'num_cpu_replicas: must be None or an int >= 1, got '
                       f'{num_cpu_replicas!r}.')
    if name != 'mirrored':
      raise ValueError(f"num_cpu_replicas: only for name='mirrored', got "
                       f'name={name!r}.')
  if tpu is not None and name != 'tpu':
    raise ValueError(f"tpu: only for name='tpu', got name={name!r}.")
  if name == 'default':
    return tf.distribute.get_strategy()
  if name == 'mirrored':
    return _mirrored(num_cpu_replicas)
  if name == 'multi_worker_mirrored':
    return tf.distribute.MultiWorkerMirroredStrategy()
  return _tpu(tpu)
