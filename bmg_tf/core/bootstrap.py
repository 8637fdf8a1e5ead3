"""The BMG / MG engine: one implementation of the meta-gradient.

Notation (BMG_SPEC.md): learner parameters `x`, meta-parameters `w`. One inner
step is `x_{k+1} = x_k + phi(x_k, batch_k; w)`, a differentiable optimizer
step on the inner loss `l(x, batch; w)`.

* **MG**: unroll K inner steps from `x_0` (a constant: truncated backprop),
  then `meta_loss = f(x_K(w), batch_K)`, the outer objective.
* **BMG**: unroll K steps with a graph (`x_K(w)`), then, without recording
  anything on the meta-tape, take L-1 more inner steps and one final step on
  the outer objective `f` with the target optimizer. The result `x~` is a
  constant (`tf.stop_gradient`). `meta_loss = mu(x~, x_K(w))`, a weighted sum
  of matching terms (parameter L2, policy KL target-first, value L2).
* **fixed**: K plain inner steps, no meta-gradient (the baseline with fixed
  hyperparameters), so that all variants share this code.

Batches. `batch_fn(i, params)` returns the batch of step `i`, given the
(stop-gradient) parameters the learner has when it takes that step, so online
RL can collect a rollout with the current policy. Indices:

| step                              | MG    | BMG                 |
|-----------------------------------|-------|---------------------|
| differentiated inner steps        | 0..K-1| 0..K-1              |
| outer objective / target step     | K     | K+L-1               |
| bootstrap inner steps (no graph)  | -     | K..K+L-2            |
| matching states (`match_batch`)   | -     | K+L-1 ('target') or K+L ('fresh') |

So an MG meta-step reads K+1 batches and a BMG meta-step K+L (K+L+1 with a
fresh matching batch). The L-1 bootstrap steps run in a `tf.while_loop`, where
`batch_fn` receives `i` as an int32 scalar tensor (a Python int elsewhere). Each is one sample of data per index; a pipeline that
wants to reuse data caches it in `batch_fn`.

Continuation (`continue_from`). The learner continues from `x_K` ('K') or,
for BMG, from `x_{K+L-1}` ('K+L-1'), re-using the L-1 bootstrap steps as real
learning steps at no extra sample cost: K+L batches then move the learner
K+L-1 steps instead of K. With K=0, 'K' would never move the learner, so it
is rejected.

Meta-learned initialisation (`Objectives.initial_params`). MAML-style
multi-task learning meta-learns where the inner loop starts: each meta-step
starts from `x_0 = initial_params(params, w)` (e.g. one copy of the learned
initial weights per task of a meta-batch) with a fresh inner-optimizer
state, under the meta-tape. MG is then MAML (the outer loss at `x_K(w)`);
BMG matches `x_K(w)` to a target bootstrapped L steps beyond it. Nothing
else changes.

Memory: only the K differentiated steps are recorded on the meta-tape, so
second-order memory grows with K and not with L.

Data parallelism (`grad_reducer`). Under a `tf.distribute` strategy each
replica runs `meta_step` on its shard of the batch, and `grad_reducer` (e.g.
a MEAN all-reduce across replicas) maps the gradients of every inner step
(the K differentiated ones and the L-1 bootstrap ones) and of BMG's target
step to the global gradients before the optimizer sees them, so every
replica takes the same update (and global-norm clipping in the optimizer
sees the global norm). The meta-tape differentiates through the reducer: it
must have a correct gradient (a MEAN all-reduce's gradient is again a MEAN
all-reduce). A synchronising reducer cannot run inside a `tf.while_loop`
(MirroredStrategy's all-reduce needs a `merge_call`), so with a
`grad_reducer` the L-1 bootstrap steps are unrolled in Python (the graph
grows with L) and `batch_fn` receives Python ints there too. The
meta-gradients are returned per replica; reducing them is the caller's job.
"""

import dataclasses
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Union

import gin
import tensorflow as tf

from bmg_tf.core import matching as matching_lib
from bmg_tf.core import optimizers as optimizers_lib

__all__ = [
    'METHODS',
    'CONTINUATIONS',
    'BootstrapConfig',
    'Objectives',
    'MetaStepResult',
    'meta_step',
]

METHODS = ('fixed', 'mg', 'bmg')
CONTINUATIONS = ('K', 'K+L-1')
MATCH_BATCHES = ('target', 'fresh')

Params = List[tf.Tensor]
Batch = Any
MetaValues = Mapping[str, tf.Tensor]
GradReducer = Callable[[List[tf.Tensor]], Sequence[tf.Tensor]]


@gin.configurable
@dataclasses.dataclass(frozen=True)
class BootstrapConfig:
  """What the engine computes.

  Attributes:
    method: 'fixed', 'mg' or 'bmg'.
    k_steps: K >= 0, inner steps differentiated through.
    l_steps: L >= 1 (BMG only): L-1 bootstrap inner steps plus one target
      step on the outer objective.
    matching: name -> weight, names from `matching.MATCHING_NAMES`
      ('param_l2', 'policy_kl', 'value_l2'). BMG only.
    reduction: 'mean' or 'sum' over states for the policy and value terms;
      'sum' multiplies the meta-gradient by the number of states.
    continue_from: 'K' or 'K+L-1' (BMG only), see the module docstring.
    match_batch: 'target' matches on the states of the target step's batch
      (no extra samples); 'fresh' asks `batch_fn` for one more batch.
    first_order: MG and BMG: treat the gradients of the K differentiated
      inner steps as constants (first-order MAML): the meta-gradient keeps
      the paths through the optimizer's hyperparameters and through the
      parameters' own carry-over, and drops the second-order terms
      (Hessian-vector products).
  """
  method: str = 'bmg'
  k_steps: int = 1
  l_steps: int = 1
  matching: Mapping[str, float] = dataclasses.field(
      default_factory=lambda: {'param_l2': 1.0})
  reduction: str = 'mean'
  continue_from: str = 'K'
  match_batch: str = 'target'
  first_order: bool = False

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f'method: unknown method {self.method!r}; valid: '
                       f'{METHODS}.')
    for arg in ('k_steps', 'l_steps'):
      v = getattr(self, arg)
      if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f'{arg}: must be an int, got {v!r}.')
    if self.k_steps < 0:
      raise ValueError(f'k_steps: must be >= 0, got {self.k_steps}.')
    if self.k_steps == 0 and self.method != 'bmg':
      # 'fixed' would take no update; MG would differentiate through none
      # (and a pipeline that re-uses its last batch would collect nothing).
      raise ValueError(f"k_steps: method={self.method!r} needs k_steps >= "
                       f'1, got 0.')
    if self.method == 'bmg' and self.l_steps < 1:
      raise ValueError(f'l_steps: BMG needs l_steps >= 1, got '
                       f'{self.l_steps}.')
    if self.continue_from not in CONTINUATIONS:
      raise ValueError(f'continue_from: must be one of {CONTINUATIONS}, got '
                       f'{self.continue_from!r}.')
    if not isinstance(self.first_order, bool):
      raise ValueError(f'first_order: must be a bool, got '
                       f'{self.first_order!r}.')
    if self.match_batch not in MATCH_BATCHES:
      raise ValueError(f'match_batch: must be one of {MATCH_BATCHES}, got '
                       f'{self.match_batch!r}.')
    if self.method != 'bmg' and self.continue_from != 'K':
      raise ValueError(f'continue_from: {self.continue_from!r} needs '
                       f"method='bmg', got {self.method!r}.")
    if self.k_steps == 0 and self.continue_from == 'K' and (
        self.method == 'bmg'):
      raise ValueError("continue_from: with k_steps=0, 'K' never moves the "
                       "learner; use 'K+L-1' with l_steps >= 2.")
    # Validates names, weights and the reduction (raises ValueError).
    object.__setattr__(self, 'matching', dict(self.matching))
    self.matching_spec  # pylint: disable=pointless-statement

  @property
  def matching_spec(self) -> matching_lib.MatchingSpec:
    return matching_lib.MatchingSpec(self.matching, reduction=self.reduction)

  @property
  def batches_per_step(self) -> int:
    """How many times `batch_fn` is called per meta-step."""
    if self.method == 'fixed':
      return self.k_steps
    if self.method == 'mg':
      return self.k_steps + 1
    return self.k_steps + self.l_steps + (self.match_batch == 'fresh')

  @property
  def learner_steps(self) -> int:
    """How many inner updates the learner keeps per meta-step."""
    if self.continue_from == 'K+L-1':
      return self.k_steps + self.l_steps - 1
    return self.k_steps


class Objectives(NamedTuple):
  """What an agent or task provides to the engine.

  Attributes:
    inner_loss: `(params, batch, meta_values) -> scalar`, the loss the inner
      optimizer descends; may depend on the meta-values.
    outer_loss: `(params, batch) -> scalar`, the outer objective `f`: MG's
      meta-loss and the objective of BMG's target step. No meta terms.
    policy: `(params, batch, meta_values) -> logits [..., A] or a TFP
      distribution`, the current policy for 'policy_kl' matching.
    target_policy: `(params, batch) -> logits or distribution`, the target
      policy; defaults to `policy` with constant meta-values.
    value: `(params, batch) -> values [...]` for 'value_l2' matching.
    optimizer_hparams: `meta_values -> {hparam: tensor}` for the inner
      optimizer (e.g. a meta-learned learning rate); None for its defaults.
    bootstrap_loss: `(params, batch) -> scalar`, BMG only: if set, the L-1
      bootstrap steps descend this loss (a fixed update rule, with no
      meta-learned terms) instead of `inner_loss` at the current
      meta-values (the paper's choice, the default). The bootstrap then
      no longer contains the meta-parameters' own effect, so the target
      cannot reward the meta-parameters for amplifying it (see
      docs/fidelity.md). The optimizer's hyperparameters stay those of
      `optimizer_hparams` at the (constant) meta-values.
    initial_params: `(params, meta_values) -> params`: if set, every
      meta-step starts from these parameters instead of the learner's
      current ones, and the inner optimizer from a fresh state
      (`inner_optimizer.init`). They are computed under the meta-tape, so
      the meta-gradient flows into them: a meta-learned initialisation
      (MAML-style multi-task learning, `bmg_tf.few_shot`), where the
      meta-values hold the initial weights and this broadcasts them to one
      copy per task. Same structure, shapes and dtypes as `params`.
  """
  inner_loss: Callable[[Params, Batch, MetaValues], tf.Tensor]
  outer_loss: Optional[Callable[[Params, Batch], tf.Tensor]] = None
  policy: Optional[Callable[..., Any]] = None
  target_policy: Optional[Callable[..., Any]] = None
  value: Optional[Callable[[Params, Batch], tf.Tensor]] = None
  optimizer_hparams: Optional[Callable[[MetaValues],
                                       Mapping[str, tf.Tensor]]] = None
  bootstrap_loss: Optional[Callable[[Params, Batch], tf.Tensor]] = None
  initial_params: Optional[Callable[[Params, MetaValues], Params]] = None


class MetaStepResult(NamedTuple):
  """What `meta_step` returns.

  Attributes:
    meta_loss: scalar, MG's outer loss or BMG's matching loss (0 for fixed).
    meta_grads: list aligned with `meta_variables`; zeros where unconnected.
    params: the learner parameters to continue from (no gradient).
    opt_state: the inner optimizer state to continue from.
    target_opt_state: the target optimizer state after the target step.
    target: BMG's target parameters `x~` (constants), else None.
    info: dict of scalar diagnostics (mean inner loss, matching terms, ...).
  """
  meta_loss: tf.Tensor
  meta_grads: List[tf.Tensor]
  params: Params
  opt_state: Any
  target_opt_state: Any
  target: Optional[Params]
  info: Dict[str, tf.Tensor]


def _as_batch_fn(batches) -> Callable[[int, Params], Batch]:
  """Turns a nest of tensors with a leading step axis into a batch_fn."""
  if callable(batches):
    return batches
  if batches is None:
    raise ValueError('batches: a batch_fn or a nest of tensors with a '
                     'leading step axis is required.')
  return lambda i, params: tf.nest.map_structure(lambda t: t[i], batches)


def _stop(nest):
  return tf.nest.map_structure(tf.stop_gradient, nest)


def _check_objectives(objectives: Objectives, config: BootstrapConfig):
  if not callable(objectives.inner_loss):
    raise ValueError('objectives.inner_loss: must be callable.')
  if objectives.bootstrap_loss is not None and not callable(
      objectives.bootstrap_loss):
    raise ValueError('objectives.bootstrap_loss: must be callable or None.')
  if objectives.initial_params is not None and not callable(
      objectives.initial_params):
    raise ValueError('objectives.initial_params: must be callable or None.')
  if config.method == 'mg' or (config.method == 'bmg'):
    if objectives.outer_loss is None:
      raise ValueError(f'objectives.outer_loss: required for method '
                       f'{config.method!r}.')
  if config.method == 'bmg':
    names = config.matching_spec.names
    if 'policy_kl' in names and objectives.policy is None:
      raise ValueError("objectives.policy: required by 'policy_kl' matching.")
    if 'value_l2' in names and objectives.value is None:
      raise ValueError("objectives.value: required by 'value_l2' matching.")


def _reduce_grads(grad_reducer, grads, params):
  """Applies `grad_reducer` (None gradients become zeros first)."""
  if grad_reducer is None:
    return grads
  grads = [tf.zeros_like(p) if g is None else tf.convert_to_tensor(g)
           for g, p in zip(grads, params)]
  reduced = list(grad_reducer(grads))
  if len(reduced) != len(grads):
    raise ValueError(f'grad_reducer: returned {len(reduced)} gradients for '
                     f'{len(grads)} parameters.')
  return reduced


def _inner_step(objectives, optimizer, params, opt_state, batch,
                meta_values, grad_reducer=None, bootstrap=False,
                first_order=False):
  """One differentiable inner update; returns (params, opt_state, loss).

  With `bootstrap=True` (BMG's L-1 bootstrap steps) the loss is
  `objectives.bootstrap_loss` when the task gives one. With
  `first_order=True` the gradients are constants for the meta-tape.
  """
  with tf.GradientTape(watch_accessed_variables=False) as tape:
    tape.watch(params)
    if bootstrap and objectives.bootstrap_loss is not None:
      loss = objectives.bootstrap_loss(params, batch)
    else:
      loss = objectives.inner_loss(params, batch, meta_values)
  grads = _reduce_grads(grad_reducer, tape.gradient(loss, params), params)
  if first_order:
    grads = [None if g is None else tf.stop_gradient(g) for g in grads]
  hparams = (objectives.optimizer_hparams(meta_values)
             if objectives.optimizer_hparams is not None else None)
  new_params, new_state = optimizer.update(grads, opt_state, params, hparams)
  return list(new_params), new_state, loss


def _bootstrap_steps(objectives, optimizer, params, opt_state, batch_fn,
                     meta_values, first, count, grad_reducer=None):
  """`count` inner steps in a `tf.while_loop`, for steps first..first+count-1.

  A loop, not an unrolled sequence, so that the graph (and XLA's compile
  time) does not grow with L and only one step's buffers are live at a time.
  `batch_fn` receives the step index as an int32 scalar tensor here. With a
  `grad_reducer` (which may synchronise replicas, impossible inside a
  `tf.while_loop` under MirroredStrategy) the steps are unrolled instead and
  `batch_fn` receives Python ints.

  Returns:
    (params, opt_state, mean inner loss or None if count == 0).
  """
  if count == 0:
    return params, opt_state, None
  dtype = params[0].dtype if params else tf.float32
  if grad_reducer is not None:
    loss_sum = tf.zeros([], dtype)
    for i in range(first, first + count):
      params, opt_state, loss = _inner_step(
          objectives, optimizer, params, opt_state, batch_fn(i, params),
          meta_values, grad_reducer, bootstrap=True)
      loss_sum += tf.cast(loss, dtype)
    return list(params), opt_state, loss_sum / count

  def body(i, x, state, loss_sum):
    x, state, loss = _inner_step(objectives, optimizer, x, state,
                                 batch_fn(i, x), meta_values,
                                 bootstrap=True)
    return i + 1, x, state, loss_sum + tf.cast(loss, dtype)

  _, params, opt_state, loss_sum = tf.while_loop(
      lambda i, *_: i < first + count, body,
      (tf.constant(first, tf.int32), list(params), opt_state,
       tf.zeros([], dtype)),
      maximum_iterations=count)
  return list(params), opt_state, loss_sum / count


def _outer_step(objectives, optimizer, params, opt_state, batch,
                grad_reducer=None):
  """One step on the outer objective (the target step), no meta terms."""
  with tf.GradientTape(watch_accessed_variables=False) as tape:
    tape.watch(params)
    loss = objectives.outer_loss(params, batch)
  grads = _reduce_grads(grad_reducer, tape.gradient(loss, params), params)
  new_params, new_state = optimizer.update(grads, opt_state, params)
  return list(new_params), new_state, loss


def _initial_params(objectives, params, meta_values):
  """`objectives.initial_params`, checked against the learner's params."""
  start = list(objectives.initial_params(params, meta_values))
  if len(start) != len(params):
    raise ValueError(f'objectives.initial_params: returned {len(start)} '
                     f'tensors for {len(params)} parameters.')
  for i, (s, p) in enumerate(zip(start, params)):
    s = tf.convert_to_tensor(s)
    if s.dtype != p.dtype or not s.shape.is_compatible_with(p.shape):
      raise ValueError(f'objectives.initial_params: tensor {i} is '
                       f'{s.dtype.name}{s.shape}, the parameter '
                       f'{p.dtype.name}{p.shape}.')
    start[i] = s
  return start


def _matching_terms(config, objectives, target, current, batch, meta_values):
  """Unweighted matching terms between target and current parameters."""
  terms = {}
  names = config.matching_spec.names
  if 'param_l2' in names:
    terms['param_l2'] = matching_lib.param_l2(target, current)
  if 'policy_kl' in names:
    const_meta = _stop(dict(meta_values))
    if objectives.target_policy is not None:
      target_pi = objectives.target_policy(target, batch)
    else:
      target_pi = objectives.policy(target, batch, const_meta)
    current_pi = objectives.policy(current, batch, meta_values)
    terms['policy_kl'] = matching_lib.policy_kl(
        target_pi, current_pi, reduction=config.reduction)
  if 'value_l2' in names:
    terms['value_l2'] = matching_lib.value_l2(
        objectives.value(target, batch), objectives.value(current, batch),
        reduction=config.reduction)
  return terms


def meta_step(params: Sequence[tf.Tensor],
              opt_state: Any,
              meta_variables: Sequence[tf.Variable],
              meta_values_fn: Callable[[], MetaValues],
              objectives: Objectives,
              config: BootstrapConfig,
              inner_optimizer: optimizers_lib.Optimizer,
              batches: Union[Callable[[int, Params], Batch], Any],
              target_optimizer: Optional[optimizers_lib.Optimizer] = None,
              target_opt_state: Any = None,
              grad_reducer: Optional[GradReducer] = None) -> MetaStepResult:
  """Computes one MG, BMG or fixed meta-step. Pure: assigns nothing.

  Args:
    params: the learner parameters `x_0`, a list of float tensors (or
      variables, which are read). Treated as constants.
    opt_state: the inner optimizer's state for `params`.
    meta_variables: the variables `w` to differentiate w.r.t.
    meta_values_fn: `() -> {name: tensor}`, called under the meta-tape; the
      meta-values must be computed from `meta_variables` inside it.
    objectives: the task's losses and heads, see `Objectives`.
    config: a `BootstrapConfig`.
    inner_optimizer: the differentiable inner optimizer `phi`.
    batches: `batch_fn(i, params) -> batch`, or a nest of tensors whose
      leading axis indexes the steps (length >= `config.batches_per_step`).
    target_optimizer: BMG's target-step optimizer (e.g. SGD, or RMSProp for a
      preconditioned step). Required for BMG.
    target_opt_state: its state; carried across meta-steps by the caller.
    grad_reducer: optional `grads -> grads` (lists aligned with `params`,
      float tensors of their shapes; None gradients are given as zeros),
      applied to the gradients of every inner step and of BMG's target step
      before the optimizer update, e.g. a MEAN all-reduce across replicas
      (see the module docstring). Must be differentiable. None: the
      gradients are used as they are (and the graph is unchanged).

  Returns:
    A `MetaStepResult`.

  Raises:
    ValueError: naming the argument, on inconsistent inputs.
  """
  if not isinstance(config, BootstrapConfig):
    raise ValueError(f'config: expected a BootstrapConfig, got '
                     f'{type(config).__name__}.')
  _check_objectives(objectives, config)
  if config.method == 'bmg' and target_optimizer is None:
    raise ValueError('target_optimizer: required for BMG.')
  if grad_reducer is not None and not callable(grad_reducer):
    raise ValueError(f'grad_reducer: must be callable or None, got '
                     f'{type(grad_reducer).__name__}.')
  params = [tf.convert_to_tensor(p) for p in params]
  meta_variables = list(meta_variables)
  batch_fn = _as_batch_fn(batches)
  k, l = config.k_steps, config.l_steps
  info = {}

  with tf.name_scope(f'{config.method}_meta_step'):
    with tf.GradientTape(watch_accessed_variables=False) as meta_tape:
      meta_tape.watch(meta_variables)
      meta_values = dict(meta_values_fn())
      x = _stop(params)
      state = _stop(opt_state)
      if objectives.initial_params is not None:
        # A meta-learned starting point: differentiated (except for
        # 'fixed', whose meta-gradient is zero anyway).
        x = _initial_params(objectives, x, meta_values)
        state = _stop(inner_optimizer.init(_stop(x)))
      inner_losses = []
      # 1. K inner steps. Differentiated through, except for 'fixed'.
      for i in range(k):
        batch = batch_fn(i, _stop(x))
        if config.method == 'fixed':
          with meta_tape.stop_recording():
            x, state, loss = _inner_step(objectives, inner_optimizer, x,
                                         state, batch, _stop(meta_values),
                                         grad_reducer)
        else:
          x, state, loss = _inner_step(objectives, inner_optimizer, x, state,
                                       batch, meta_values, grad_reducer,
                                       first_order=config.first_order)
        inner_losses.append(loss)
      x_k, state_k = x, state
      next_params, next_state = x_k, state_k
      new_target_state = target_opt_state
      target = None

      if config.method == 'fixed':
        meta_loss = tf.zeros([], params[0].dtype if params else tf.float32)
      elif config.method == 'mg':
        meta_loss = objectives.outer_loss(x_k, batch_fn(k, _stop(x_k)))
      else:
        # 2. Target bootstrap: nothing here is recorded on the meta-tape, so
        # memory does not grow with L, and no gradient can reach the target.
        with meta_tape.stop_recording():
          const_meta = _stop(meta_values)
          x_kl, state_kl, boot_loss = _bootstrap_steps(
              objectives, inner_optimizer, _stop(x_k), _stop(state_k),
              batch_fn, const_meta, first=k, count=l - 1,
              grad_reducer=grad_reducer)
          if boot_loss is not None:
            inner_losses.extend([boot_loss] * (l - 1))
          target_batch = batch_fn(k + l - 1, x_kl)
          if target_opt_state is None:
            target_opt_state = target_optimizer.init(x_kl)
          target, new_target_state, target_loss = _outer_step(
              objectives, target_optimizer, x_kl, target_opt_state,
              target_batch, grad_reducer)
          target = _stop(target)
          match_batch = (target_batch if config.match_batch == 'target' else
                         batch_fn(k + l, target))
        info['target_outer_loss'] = target_loss
        if config.continue_from == 'K+L-1':
          next_params, next_state = x_kl, state_kl
        # 3. Matching.
        terms = _matching_terms(config, objectives, target, x_k, match_batch,
                                meta_values)
        meta_loss, _ = matching_lib.combine(config.matching_spec, terms)
        for name, value in terms.items():
          info[f'matching/{name}'] = value

    if config.method == 'fixed' or not meta_variables:
      meta_grads = [tf.zeros_like(v) for v in meta_variables]
    else:
      meta_grads = meta_tape.gradient(
          meta_loss, meta_variables,
          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    if inner_losses:
      info['inner_loss'] = tf.add_n(
          [tf.cast(v, tf.float32) for v in inner_losses]) / len(inner_losses)
    return MetaStepResult(
        meta_loss=meta_loss,
        meta_grads=list(meta_grads),
        params=[tf.stop_gradient(p) for p in next_params],
        opt_state=_stop(next_state),
        target_opt_state=(None if new_target_state is None else
                          _stop(new_target_state)),
        target=target,
        info=info)
