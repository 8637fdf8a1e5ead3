"""The meta-learner: owns the variables and runs the compiled step.

`MetaLearner` is a `tf.Module` (checkpointable, no forward pass) that holds

* the learner's parameters (variables, in the functional order of the
  networks that use them) and the inner optimizer's state;
* the meta-parameters (`MetaParameters`) and the meta-optimizer;
* the state of BMG's target-step optimizer;
* a step counter,

so that one `tf.train.Checkpoint(meta_learner=...)` saves everything. Its
`step(batches, context)` is a `tf.function` (with `jit_compile` as a switch)
that calls the engine (`bootstrap.meta_step`), writes the new learner state
and applies the meta-gradient.

With a `batch_fn` (data made in-graph, e.g. rollouts of an in-graph env),
`steps_per_call=N` runs N meta-steps in a `tf.while_loop` inside one compiled
call, reading the context from `context_fn` before each. With a `data_fn`
(`() -> (batches, context)`: e.g. collect env steps, add them to a replay
buffer and sample the meta-step's batches), the same loop calls it at the
start of each meta-step and hands its batches and context to the engine.
The operations and their order are those of N calls, so the result is the
same; only the per-call cost (dispatch, variable hand-over to XLA) is paid
once per N.

Distribution (`strategy`). Under a `tf.distribute.Strategy` (see
`distribute.make_strategy`) the caller creates the learner's and the
meta-parameters' variables (and a `meta_optimizer`, if it passes one) in
`strategy.scope()`; the meta-learner creates its own (optimizer states,
counter, meta-optimizer slots) there too. With the default strategy (or
None) nothing changes: same graph, same results. Otherwise each `step` is
synchronous data parallelism:

1. The global batch is split into equal shards along `batch_axis` (default 2
   for leaves `[step, T(+1), B, ...]`), one per replica.
2. Each replica runs the engine on its shard with
   `grad_reducer = MEAN all-reduce across replicas`: every inner gradient
   (K differentiated steps, L-1 bootstrap steps) and BMG's target-step
   gradient is the global-batch gradient before the optimizer (and its
   global-norm clipping) sees it, so all replicas keep identical learner
   parameters.
3. The meta-gradients are MEAN all-reduced and applied once (identically on
   every replica's copy); the new learner and optimizer states are written
   replica by replica (identical values, no extra communication).
4. The metrics are MEAN-reduced over replicas.

When every loss is a mean over the batch and the shards are equal, this is
the single-device update on the global batch (up to float rounding): the
meta-tape differentiates through the all-reduce, whose gradient (a MEAN
all-reduce of the cotangents, TensorFlow's own `ReplicaContext.all_reduce`
gradient) is exact at first and second order. BMG with `reduction='sum'`
(a sum over each replica's states) is not, so it is rejected.

Under a multi-replica strategy:

* `jit_compile=True` is rejected except under `TPUStrategy` (which always
  compiles with XLA): XLA cannot compile a `strategy.run` whose replicas and
  mirrored variables live on several devices, and MirroredStrategy's
  all-reduce on CPUs needs a `merge_call`, which cannot run inside an
  XLA-compiled replica function.
* `batch_fn` runs on each replica and must return that replica's shard
  (`tf.distribute.get_replica_context()` gives `replica_id_in_sync_group`
  and `num_replicas_in_sync`); under the default strategy that context is
  replica 0 of 1, so the same `batch_fn` serves both. Its state (e.g. an
  in-graph environment) is the caller's concern. `context_fn` is read once
  per meta-step in cross-replica context and given to every replica.
* `steps_per_call > 1` runs `strategy.run` inside the `tf.while_loop`.
* The L-1 bootstrap steps are unrolled (see `bootstrap`), since the
  all-reduce cannot run inside a `tf.while_loop` under MirroredStrategy.
"""

import contextlib
import types
from typing import Any, Callable, Dict, Optional, Sequence

import gin
import tensorflow as tf

from bmg_tf.core import bootstrap
from bmg_tf.core import carry as carry_lib
from bmg_tf.core import distribute as distribute_lib
from bmg_tf.core import meta_params as meta_params_lib
from bmg_tf.core import optimizers as optimizers_lib

__all__ = ['MetaLearner']

def _check_finite_params(params):
  for i, p in enumerate(params):
    if not p.dtype.is_floating:
      raise ValueError(f'learner_params[{i}]: must be a float variable, got '
                       f'{p.dtype.name}.')


@gin.configurable(allowlist=['jit_compile', 'steps_per_call'])
class MetaLearner(tf.Module):
  """Holds learner and meta variables and exposes the compiled meta-step."""

  def __init__(self,
               learner_params: Sequence[tf.Variable],
               meta_parameters: meta_params_lib.MetaParameters,
               objectives: bootstrap.Objectives,
               config: bootstrap.BootstrapConfig,
               inner_optimizer: optimizers_lib.Optimizer,
               target_optimizer: Optional[optimizers_lib.Optimizer] = None,
               meta_optimizer: Optional[meta_params_lib.MetaOptimizer] = None,
               batch_fn: Optional[Callable[[int, Any], Any]] = None,
               jit_compile: bool = False,
               steps_per_call: int = 1,
               context_fn: Optional[Callable[[], tf.Tensor]] = None,
               strategy: Optional[tf.distribute.Strategy] = None,
               batch_axis: int = 2,
               carry_spec: Any = None,
               data_fn: Optional[Callable[[], Any]] = None,
               name: str = 'meta_learner'):
    """Creates the meta-learner.

    Args:
      learner_params: the learner's variables, in the order the objectives'
        functions expect their `params` list.
      meta_parameters: the meta-parameters; `trainable_variables` are learned.
      objectives: the task's losses and heads (`bootstrap.Objectives`).
      config: `bootstrap.BootstrapConfig`.
      inner_optimizer: differentiable inner optimizer.
      target_optimizer: BMG's target-step optimizer (default: SGD with the
        inner optimizer's learning rate if it has one, else 0.1).
      meta_optimizer: a `MetaOptimizer` (default: Adam, epsilon 1e-4).
      batch_fn: optional `batch_fn(i, params) -> batch`; when given, `step`
        ignores its `batches` argument. Runs inside the compiled step, which
        is traced without autograph: like the objectives, it must use
        `tf.cond` / `tf.while_loop` for control flow that depends on tensors
        (a Python `if` on a tensor raises at trace time).
      jit_compile: compile the step with XLA.
      steps_per_call: meta-steps per `step` call (a `tf.while_loop`); > 1
        needs a `batch_fn`.
      context_fn: `() -> context [C]`, read in-graph before each meta-step
        (when set, `step`'s `context` argument must be None).
      strategy: optional `tf.distribute.Strategy`; `learner_params`, the
        meta-parameters and a given `meta_optimizer` must have been created
        in its `scope()`. None or the default strategy: single device, as
        without it. See the module docstring.
      batch_axis: the axis of every `batches` leaf along which a
        multi-replica strategy splits the global batch (2 for
        `[step, T(+1), B, ...]`); >= 1, since axis 0 indexes the steps.
      carry_spec: the spec of one batch (a nest of `tf.TensorSpec`) to turn
        on batch carry-over for MG and BMG (`bmg_tf.core.carry`): the last
        batch of a meta-step is the first of the next. Its storage,
        `carry`, is not tracked by the learner's checkpoint; a pipeline
        whose resumed runs must re-use it checkpoints it itself.
      data_fn: optional `data_fn() -> (batches, context)`, run in-graph at
        the start of each meta-step (after the previous one's updates):
        `batches` a nest with a leading step axis, as `step(batches)` takes,
        or a `batch_fn(i, params)` for this meta-step (e.g. the support
        set for the inner steps and the query set after them), `context` the meta-parameters' context or None. When given, `step`
        takes no arguments. Not with `batch_fn`, `context_fn`, `carry_spec`
        or a multi-replica strategy. Traced like `batch_fn` (no autograph).
      name: module name.

    Raises:
      ValueError: naming the argument, on inconsistent inputs.
    """
    super().__init__(name=name)
    if not isinstance(config, bootstrap.BootstrapConfig):
      raise ValueError(f'config: expected a BootstrapConfig, got '
                       f'{type(config).__name__}.')
    if not isinstance(meta_parameters, meta_params_lib.MetaParameters):
      raise ValueError(f'meta_parameters: expected MetaParameters, got '
                       f'{type(meta_parameters).__name__}.')
    if not isinstance(inner_optimizer, optimizers_lib.Optimizer):
      raise ValueError(f'inner_optimizer: expected an optimizers.Optimizer, '
                       f'got {type(inner_optimizer).__name__}.')
    learner_params = list(learner_params)
    if not learner_params:
      raise ValueError('learner_params: at least one variable is needed.')
    for i, p in enumerate(learner_params):
      if not isinstance(p, tf.Variable):
        raise ValueError(f'learner_params[{i}]: expected a tf.Variable, got '
                         f'{type(p).__name__}.')
    _check_finite_params(learner_params)
    if (isinstance(steps_per_call, bool) or
        not isinstance(steps_per_call, int) or steps_per_call < 1):
      raise ValueError(f'steps_per_call: must be an int >= 1, got '
                       f'{steps_per_call!r}.')
    if steps_per_call > 1 and batch_fn is None and data_fn is None:
      raise ValueError('steps_per_call: > 1 needs a batch_fn or a data_fn '
                       '(the batches of later meta-steps are made in-graph).')
    if data_fn is not None:
      for arg, value in (('batch_fn', batch_fn), ('context_fn', context_fn),
                         ('carry_spec', carry_spec)):
        if value is not None:
          raise ValueError(f'{arg}: not with a data_fn (it makes the '
                           f'batches and the context).')
    if (isinstance(batch_axis, bool) or not isinstance(batch_axis, int) or
        batch_axis < 1):
      raise ValueError(f'batch_axis: must be an int >= 1 (axis 0 indexes '
                       f'the steps), got {batch_axis!r}.')
    if strategy is not None and not isinstance(strategy,
                                               tf.distribute.Strategy):
      raise ValueError(f'strategy: expected a tf.distribute.Strategy or '
                       f'None, got {type(strategy).__name__}.')
    distributed = (strategy is not None and
                   not distribute_lib.is_default_strategy(strategy))
    replicas = strategy.num_replicas_in_sync if distributed else 1
    if distributed and data_fn is not None:
      raise ValueError('data_fn: not under a multi-replica strategy (give '
                       'each replica its shard with a batch_fn).')
    if distributed:
      distribute_lib.check_learner_strategy(
          strategy, config, jit_compile, learner_params, meta_parameters,
          meta_optimizer)
    if config.method == 'bmg' and target_optimizer is None:
      lr = inner_optimizer.default_hparams.get('learning_rate', 0.1)
      target_optimizer = optimizers_lib.SGD(learning_rate=lr)
    self.config = config
    self.learner_params = learner_params
    self.meta_parameters = meta_parameters
    # The meta-learner's own variables live where the caller's do.
    scope = strategy.scope() if distributed else contextlib.nullcontext()
    with scope:
      self._init_variables(inner_optimizer, target_optimizer, meta_optimizer)
    self._py.objectives = objectives
    self._py.carry = (
        carry_lib.BatchCarry(carry_spec, in_graph=batch_fn is not None)
        if carry_spec is not None and config.method != 'fixed' else None)
    if batch_fn is not None and self._py.carry is not None:
      batch_fn = carry_lib.carried_batch_fn(batch_fn, self._py.carry,
                                            config.batches_per_step - 1)
    self._py.batch_fn = batch_fn
    self._py.data_fn = data_fn
    self._py.context_fn = context_fn
    self._py.steps_per_call = steps_per_call
    self._py.jit_compile = bool(jit_compile)
    self._py.strategy = strategy if distributed else None
    self._py.replicas = replicas
    self._py.batch_axis = batch_axis
    # TPUStrategy compiles the replica function with XLA by itself. No
    # autograph: the engine's control flow is explicit (tf.while_loop,
    # tf.cond), and converting every function it reaches took most of the
    # tracing time of a conv-net meta-step.
    self._compiled_step = tf.function(
        self._steps,
        jit_compile=bool(jit_compile) and not (distributed and
                                               distribute_lib.is_tpu(strategy)),
        autograph=False)

  def _init_variables(self, inner_optimizer, target_optimizer,
                      meta_optimizer):
    """Creates the optimizer states, counter and meta-optimizer slots."""
    learner_params = self.learner_params
    self.meta_optimizer = meta_optimizer or meta_params_lib.MetaOptimizer()
    self.train_step_counter = tf.Variable(0, dtype=tf.int64, trainable=False,
                                          name='train_step')
    state = inner_optimizer.init(learner_params)
    target_state = (target_optimizer.init(learner_params)
                    if target_optimizer is not None else ())
    # Untracked holder for Python objects and nest templates.
    self._py = types.SimpleNamespace(
        inner_optimizer=inner_optimizer,
        target_optimizer=target_optimizer,
        state_struct=state,
        target_struct=target_state)
    self.opt_state_vars = [
        tf.Variable(t, trainable=False, name=f'opt_state_{i}')
        for i, t in enumerate(tf.nest.flatten(state))
    ]
    self.target_state_vars = [
        tf.Variable(t, trainable=False, name=f'target_state_{i}')
        for i, t in enumerate(tf.nest.flatten(target_state))
    ]
    meta_vars = list(self.meta_parameters.trainable_variables)
    if meta_vars:
      # Create the meta-optimizer's slots now: not inside an XLA cluster.
      self.meta_optimizer.optimizer.build(meta_vars)

  @property
  def inner_optimizer(self) -> optimizers_lib.Optimizer:
    """The differentiable inner optimizer."""
    return self._py.inner_optimizer

  @property
  def target_optimizer(self) -> Optional[optimizers_lib.Optimizer]:
    """BMG's target-step optimizer (None for 'fixed' and 'mg')."""
    return self._py.target_optimizer

  @property
  def jit_compile(self) -> bool:
    return self._py.jit_compile

  @property
  def meta_variables(self):
    return list(self.meta_parameters.trainable_variables)

  def _read(self, variables, struct):
    return tf.nest.pack_sequence_as(struct,
                                    [v.read_value() for v in variables])

  @property
  def strategy(self) -> Optional[tf.distribute.Strategy]:
    """The non-default strategy the step runs under, else None."""
    return self._py.strategy

  @property
  def batch_axis(self) -> int:
    return self._py.batch_axis

  @property
  def batch_fn(self) -> Optional[Callable[[int, Any], Any]]:
    return self._py.batch_fn

  def compute(self, batches=None, context=None,
              grad_reducer=None) -> bootstrap.MetaStepResult:
    """Runs the engine on the current state without assigning anything.

    On one device, on the whole batch, whatever the strategy (call it in
    cross-replica context): the single-device reference of `step`.

    Args:
      batches: nest of tensors with a leading step axis, or None when a
        `batch_fn` was given.
      context: the meta-parameters' context, if they need one.
      grad_reducer: optional reduction of every inner gradient (the
        replicas' all-reduce of `distribute.distributed_step`).

    Returns:
      `bootstrap.MetaStepResult`.
    """
    py = self._py
    source = py.batch_fn if py.batch_fn is not None else batches
    target_state = (self._read(self.target_state_vars, py.target_struct)
                    if py.target_optimizer is not None else None)
    return bootstrap.meta_step(
        params=[p.read_value() for p in self.learner_params],
        opt_state=self._read(self.opt_state_vars, py.state_struct),
        meta_variables=self.meta_variables,
        meta_values_fn=lambda: self.meta_parameters(context),
        objectives=py.objectives,
        config=self.config,
        inner_optimizer=py.inner_optimizer,
        batches=source,
        target_optimizer=py.target_optimizer,
        target_opt_state=target_state,
        grad_reducer=grad_reducer)

  def _step(self, batches=None, context=None) -> Dict[str, tf.Tensor]:
    if self._py.strategy is not None:
      return distribute_lib.distributed_step(self, batches, context)
    result = self.compute(batches, context)
    for v, t in zip(self.learner_params, result.params):
      v.assign(t)
    for v, t in zip(self.opt_state_vars, tf.nest.flatten(result.opt_state)):
      v.assign(t)
    if result.target_opt_state is not None:
      for v, t in zip(self.target_state_vars,
                      tf.nest.flatten(result.target_opt_state)):
        v.assign(t)
    metrics = {'meta_loss': tf.cast(result.meta_loss, tf.float32)}
    meta_vars = self.meta_variables
    if self.config.method != 'fixed' and meta_vars:
      metrics['meta_grad_norm'] = self.meta_optimizer.apply(
          result.meta_grads, meta_vars)
    self.train_step_counter.assign_add(1)
    for key, value in result.info.items():
      metrics[key] = tf.cast(value, tf.float32)
    return metrics

  def _steps(self, batches=None, context=None) -> Dict[str, tf.Tensor]:
    """`steps_per_call` meta-steps; the metrics of the last."""
    py = self._py
    if py.context_fn is not None or py.data_fn is not None:
      if context is not None:
        raise ValueError('context: must be None when a context_fn or a '
                         'data_fn is set.')
    if py.data_fn is not None and batches is not None:
      raise ValueError('batches: must be None when a data_fn is set.')

    def one_step(batches):
      if py.data_fn is not None:
        batches, made_context = py.data_fn()
        return self._step(batches, made_context)
      return self._step(batches, self._context(context))

    if py.steps_per_call == 1:
      return one_step(batches)
    # The metrics' structure, from a trace that is never run.
    spec = tf.function(lambda: one_step(None), autograph=False
                       ).get_concrete_function().structured_outputs
    zeros = tf.nest.map_structure(lambda t: tf.zeros(t.shape, t.dtype), spec)

    def body(i, metrics):
      del metrics
      return i + 1, one_step(None)

    _, metrics = tf.while_loop(
        lambda i, _: i < py.steps_per_call, body, (tf.constant(0), zeros),
        maximum_iterations=py.steps_per_call)
    return metrics

  def _context(self, context):
    if self._py.context_fn is not None:
      return self._py.context_fn()
    return context

  @property
  def steps_per_call(self) -> int:
    return self._py.steps_per_call

  def step(self, batches=None, context=None) -> Dict[str, tf.Tensor]:
    """The compiled call: `steps_per_call` meta-steps (engine, learner
    update and meta update each).

    Args:
      batches: nest of tensors whose leading axis indexes the steps
        (`config.batches_per_step` of them), or None with a `batch_fn` or
        a `data_fn`.
        Under a multi-replica strategy, the global batch: every leaf is split
        into equal shards along `batch_axis`.
      context: the meta-parameters' context `[C]`, if any (None when a
        `context_fn` or a `data_fn` was given).

    Returns:
      dict of float32 scalar metrics of the last meta-step: 'meta_loss',
      'meta_grad_norm' (MG and BMG), 'inner_loss', and the engine's
      diagnostics (under a strategy, their MEAN over replicas).

    Raises:
      ValueError: under a multi-replica strategy, naming a `batches` leaf
        whose batch axis does not split into equal shards.
    """
    carry = self._py.carry
    if self._py.batch_fn is None and self._py.data_fn is None:
      if carry is not None:
        batches = carry.prepend(batches)
      distribute_lib.check_batches(batches, self._py.replicas,
                                   self._py.batch_axis)
    metrics = self._compiled_step(batches, context)
    if (self._py.batch_fn is None and self._py.data_fn is None and
        carry is not None):
      carry.write(tf.nest.map_structure(lambda b: b[-1], batches))
    return metrics

  @property
  def carry(self) -> Optional[carry_lib.BatchCarry]:
    """The batch carry-over storage (None without `carry_spec`, or for
    'fixed')."""
    return self._py.carry

  @property
  def new_batches_per_step(self) -> int:
    """How many batches the next `step(batches)` needs from the caller:
    `config.batches_per_step`, one fewer while a batch is carried."""
    carried = self._py.carry is not None and self._py.carry.has_batch()
    return self.config.batches_per_step - int(carried)
