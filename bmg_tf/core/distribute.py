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
described in `meta_learner`; its distributed step (`distributed_step`,
with the checks, sharding and all-reduce it needs) lives here, apart from
the single-device path.
"""

from typing import Any, Iterator, Mapping, Optional, Tuple

import gin
import tensorflow as tf

__all__ = ['STRATEGY_NAMES', 'make_strategy', 'is_default_strategy',
           'is_tpu', 'all_reduce_mean', 'check_learner_strategy',
           'check_batches', 'shard', 'distributed_step']

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


# The meta-learner's distributed step (`meta_learner.MetaLearner` with a
# non-default strategy): synchronous data parallelism, described in the
# module docstring of `meta_learner`.

_MEAN = tf.distribute.ReduceOp.MEAN


def is_tpu(strategy: tf.distribute.Strategy) -> bool:
  """Whether `strategy` is a `TPUStrategy` (which compiles with XLA)."""
  return isinstance(strategy, (tf.distribute.TPUStrategy,
                               tf.distribute.experimental.TPUStrategy))


def all_reduce_mean(ctx, tensors):
  """MEAN all-reduce across replicas of a list of tensors (replica context).

  The tensors are packed into one flat vector per dtype, so that one
  collective (and far fewer ops) serves all of them. Differentiable at any
  order: the gradient of TensorFlow's all-reduce is again an all-reduce, and
  packing is reshapes, concatenation and slicing.

  Args:
    ctx: the `tf.distribute.ReplicaContext`.
    tensors: list of float tensors with static shapes.

  Returns:
    The reduced tensors: a list aligned with `tensors`, same shapes/dtypes.
  """
  tensors = [tf.convert_to_tensor(t) for t in tensors]
  out = [None] * len(tensors)
  by_dtype = {}
  for i, t in enumerate(tensors):
    by_dtype.setdefault(t.dtype, []).append(i)
  for indices in by_dtype.values():
    flat = tf.concat([tf.reshape(tensors[i], [-1]) for i in indices], 0)
    reduced = ctx.all_reduce(_MEAN, flat)
    sizes = [tensors[i].shape.num_elements() for i in indices]
    for i, part in zip(indices, tf.split(reduced, sizes)):
      out[i] = tf.reshape(part, tensors[i].shape)
  return out


def check_learner_strategy(strategy, config, jit_compile, learner_params,
                           meta_parameters, meta_optimizer):
  """Raises ValueError on what a non-default strategy cannot run.

  Args:
    strategy: the non-default `tf.distribute.Strategy`.
    config: the `bootstrap.BootstrapConfig`.
    jit_compile: whether the step is to be compiled with XLA.
    learner_params: the learner's variables.
    meta_parameters: the `MetaParameters`.
    meta_optimizer: the caller's `MetaOptimizer`, or None.
  """
  replicas = strategy.num_replicas_in_sync
  if jit_compile and not is_tpu(strategy):
    raise ValueError(
        f'jit_compile: not supported under {type(strategy).__name__} (use '
        f'jit_compile=False; TPUStrategy compiles with XLA by itself): '
        f'XLA cannot compile a strategy.run whose replicas and mirrored '
        f'variables live on several devices, and the all-reduce of the '
        f'inner gradients needs a merge_call, which cannot run inside an '
        f'XLA-compiled replica function.')
  if (replicas > 1 and config.method == 'bmg' and
      config.reduction == 'sum'):
    raise ValueError(
        f"config: BMG with reduction='sum' under {replicas} replicas is "
        f"not the single-device update (each replica sums over its own "
        f"shard, and the shards' meta-gradients are averaged); use "
        f"reduction='mean'.")
  for i, p in enumerate(learner_params):
    if not strategy.extended.variable_created_in_scope(p):
      raise ValueError(f'learner_params[{i}]: {p.name} was not created in '
                       f'strategy.scope().')
  for v in meta_parameters.trainable_variables:
    if not strategy.extended.variable_created_in_scope(v):
      raise ValueError(f'meta_parameters: {v.name} was not created in '
                       f'strategy.scope().')
  if meta_optimizer is not None:
    with strategy.scope():
      iterations = meta_optimizer.optimizer.iterations
    if not strategy.extended.variable_created_in_scope(iterations):
      raise ValueError('meta_optimizer: its Keras optimizer was not '
                       'created in strategy.scope().')


def _leaves_with_paths(nest, path='batches') -> Iterator[Tuple[str, Any]]:
  """(path, leaf) pairs of a nest of dicts, lists and tuples, for messages."""
  if isinstance(nest, Mapping):
    for key in sorted(nest):
      yield from _leaves_with_paths(nest[key], f'{path}[{key!r}]')
  elif isinstance(nest, (list, tuple)):
    fields = getattr(nest, '_fields', None)
    for i, item in enumerate(nest):
      yield from _leaves_with_paths(
          item, f'{path}.{fields[i]}' if fields else f'{path}[{i}]')
  elif nest is not None:
    yield path, nest


def check_batches(batches, replicas: int, axis: int):
  """Raises ValueError unless every leaf splits into `replicas` equal shards.

  Args:
    batches: a nest of tensors (or None, or a `batch_fn`: not checked).
    replicas: the number of replicas.
    axis: the batch axis of every leaf.
  """
  if batches is None or replicas == 1 or callable(batches):
    return
  for path, leaf in _leaves_with_paths(batches):
    shape = tf.TensorShape(getattr(leaf, 'shape', None))
    if shape.rank is None or shape.rank <= axis:
      raise ValueError(f'batches: leaf {path} has shape {shape}, without '
                       f'the batch axis {axis} to split across {replicas} '
                       f'replicas.')
    if shape[axis] is None or shape[axis] % replicas:
      raise ValueError(f'batches: leaf {path} has batch size {shape[axis]} '
                       f'(axis {axis} of {shape}), not divisible by the '
                       f'{replicas} replicas.')


def shard(batches, replica_id, num_replicas: int, axis: int):
  """Replica `replica_id`'s equal slice of every leaf along `axis`."""
  if num_replicas == 1:
    return batches

  def one(t):
    t = tf.convert_to_tensor(t)
    size = t.shape[axis] // num_replicas
    begin = [replica_id * size if a == axis else 0
             for a in range(t.shape.rank)]
    sizes = [size if a == axis else -1 for a in range(t.shape.rank)]
    return tf.slice(t, begin, sizes)

  return tf.nest.map_structure(one, batches)


def _assign(variable, value):
  return variable.assign(value)


def _replica_step(learner, shards, context):
  """The engine and the meta update on one replica (replica context)."""
  ctx = tf.distribute.get_replica_context()
  reducer = None
  if ctx.num_replicas_in_sync > 1:
    # TensorFlow's all-reduce has a gradient (again an all-reduce), exact
    # at every order, so the meta-tape can differentiate through it.
    reducer = lambda grads: all_reduce_mean(ctx, grads)
  result = learner.compute(shards, context, grad_reducer=reducer)
  metrics = {'meta_loss': tf.cast(result.meta_loss, tf.float32)}
  meta_vars = learner.meta_variables
  if learner.config.method != 'fixed' and meta_vars:
    grads = [tf.zeros_like(v) if g is None else g
             for g, v in zip(result.meta_grads, meta_vars)]
    if reducer is not None:
      grads = reducer(grads)
    # Reduced already (the same on every replica): Keras must not sum
    # them again across replicas.
    metrics['meta_grad_norm'] = learner.meta_optimizer.apply(
        grads, meta_vars, aggregate=False)
  for key, value in result.info.items():
    metrics[key] = tf.cast(value, tf.float32)
  target_state = (tf.nest.flatten(result.target_opt_state)
                  if result.target_opt_state is not None else [])
  return (list(result.params), tf.nest.flatten(result.opt_state),
          target_state, metrics)


def distributed_step(learner, batches, context):
  """One meta-step of `learner` under its strategy (cross-replica context).

  Args:
    learner: a `meta_learner.MetaLearner` with a non-default `strategy`.
    batches: the global batch (a nest), or None with a `batch_fn`.
    context: the meta-parameters' context, or None.

  Returns:
    The metrics, MEAN-reduced over replicas.
  """
  strategy = learner.strategy
  with strategy.scope(), tf.name_scope('distributed_meta_step'):
    shards = None
    if learner.batch_fn is None:
      check_batches(batches, strategy.num_replicas_in_sync,
                    learner.batch_axis)
      shards = strategy.experimental_distribute_values_from_function(
          lambda value_context: shard(
              batches, value_context.replica_id_in_sync_group,
              value_context.num_replicas_in_sync, learner.batch_axis))
    params, opt_state, target_state, metrics = strategy.run(
        _replica_step, args=(learner, shards, context))
    # Every replica holds the same values: each keeps its own copy.
    for variables, values in ((learner.learner_params, params),
                              (learner.opt_state_vars, opt_state),
                              (learner.target_state_vars, target_state)):
      for v, t in zip(variables, values):
        strategy.extended.update(v, _assign, args=(t,), group=False)
    learner.train_step_counter.assign_add(1)
    return {key: strategy.reduce(_MEAN, value, axis=None)
            for key, value in metrics.items()}
