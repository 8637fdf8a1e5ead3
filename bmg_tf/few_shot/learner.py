"""A meta-learned initialisation: what few-shot learning gives the engine.

`FewShotLearner` turns a task-batched network (`networks`) into the pieces
`bmg_tf.core` needs; the engine does the rest (BMG_SPEC section 2.4):

* meta-parameters: the initial weights (one `MetaParameter` per weight
  array) and, optionally, a learned inner learning rate;
* learner parameters: one adapted copy of the weights per task of a
  meta-batch, `[T, ...]` (the engine writes the last meta-batch's adapted
  weights there; every meta-step starts again from the initialisation);
* `Objectives`: the inner loss is the support-set loss summed over the
  tasks (each task's weights get its own loss's gradient), the outer loss
  the query-set loss summed over the tasks, `initial_params` broadcasts
  the initial weights to the T tasks, and `policy` (classification logits,
  for 'policy_kl' matching) or `value` (regression outputs, 'value_l2')
  gives BMG's matching heads;
* `batch_fn(episode, config)`: which data each engine step sees. The K
  differentiated steps and the L-1 bootstrap steps adapt on the support
  set. MG's outer loss (MAML's meta-loss) is the query loss at `x_K`. BMG's
  target step descends the outer loss on `target_data` ('query', 'support'
  or 'support_query'), and with `match_batch='fresh'` the matching is on
  the query set.

MAML is MG with this learner; the meta-loss is the sum over tasks of the
per-task query losses (MAML's mean times T; with Adam the two differ only
through Adam's epsilon).
"""

from typing import Callable, Dict, List, Optional, Sequence

import tensorflow as tf

from bmg_tf.core import bootstrap
from bmg_tf.core import meta_params as meta_params_lib
from bmg_tf.core import optimizers as optimizers_lib
from bmg_tf.few_shot import episodes as episodes_lib

__all__ = ['LOSSES', 'TARGET_DATA', 'FewShotLearner']

LOSSES = ('classification', 'regression')
TARGET_DATA = ('query', 'support', 'support_query')
_LR = 'inner_learning_rate'


def _init_name(i):
  return f'init_{i}'


class FewShotLearner:
  """A meta-learned initialisation of a task-batched network."""

  def __init__(self, network, num_tasks: int, loss: str,
               inner_optimizer: optimizers_lib.Optimizer, seed: int = 0,
               learn_inner_lr: bool = False, target_data: str = 'query',
               dtype: tf.DType = tf.float32):
    """Creates the meta-parameters and the per-task weights.

    Args:
      network: a `networks.TaskMLP` or `networks.TaskConvNet` (anything
        with `param_shapes`, `initial_params(seed)` and `apply(params, x)`).
      num_tasks: T, tasks per training meta-batch.
      loss: 'classification' (softmax cross-entropy, labels int32 `[T, M]`,
        logits `[T, M, N]`) or 'regression' (squared error, targets and
        outputs `[T, M, 1]`).
      inner_optimizer: the adaptation's differentiable optimizer (SGD in
        MAML).
      seed: seed of the initial weights.
      learn_inner_lr: also meta-learn the inner learning rate (one scalar,
        'exp' transform, starting at the optimizer's learning rate).
      target_data: the data of BMG's target step, one of `TARGET_DATA`.
      dtype: float dtype of the weights (float64 for exact gradient
        checks).

    Raises:
      ValueError: naming the argument, on a bad value.
    """
    if loss not in LOSSES:
      raise ValueError(f'loss: must be one of {LOSSES}, got {loss!r}.')
    if target_data not in TARGET_DATA:
      raise ValueError(f'target_data: must be one of {TARGET_DATA}, got '
                       f'{target_data!r}.')
    if isinstance(num_tasks, bool) or not isinstance(num_tasks,
                                                     int) or num_tasks < 1:
      raise ValueError(f'num_tasks: must be an int >= 1, got {num_tasks!r}.')
    self.network = network
    self.loss = loss
    self.target_data = target_data
    self.inner_optimizer = inner_optimizer
    parameters = {
        _init_name(i): meta_params_lib.MetaParameter(
            value, transform='identity', dtype=dtype, name=_init_name(i))
        for i, value in enumerate(network.initial_params(seed))}
    if learn_inner_lr:
      lr = inner_optimizer.default_hparams.get('learning_rate')
      if not lr:
        raise ValueError('learn_inner_lr: the inner optimizer has no '
                         'positive learning_rate to start from.')
      parameters[_LR] = meta_params_lib.MetaParameter(
          lr, transform='exp', dtype=dtype, name=_LR)
    self.learn_inner_lr = bool(learn_inner_lr)
    self.meta_parameters = meta_params_lib.MetaParameters(parameters)
    self.num_params = len(network.param_shapes)
    self.adapted = [
        tf.Variable(tf.zeros((num_tasks,) + tuple(shape), dtype),
                    trainable=False,
                    name=f'adapted_{i}')
        for i, shape in enumerate(network.param_shapes)]

  # The pieces the engine calls.

  def task_losses(self, params: Sequence[tf.Tensor], x: tf.Tensor,
                  y: tf.Tensor) -> tf.Tensor:
    """Each task's mean loss on `(x, y)`, `[T]` of the weights' dtype."""
    out = self.network.apply(params, x)
    if self.loss == 'regression':
      y = tf.cast(y, out.dtype)
    if self.loss == 'classification':
      per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels=y, logits=out)
    else:
      per_example = tf.reduce_sum(tf.square(out - y), axis=-1)
    return tf.reduce_mean(per_example, axis=1)

  def _loss(self, params, batch):
    return tf.reduce_sum(self.task_losses(params, batch['x'], batch['y']))

  def _initial(self, params, meta_values):
    return [tf.broadcast_to(meta_values[_init_name(i)][None],
                            tf.shape(p)) for i, p in enumerate(params)]

  @property
  def objectives(self) -> bootstrap.Objectives:
    """The engine's `Objectives` (see the module docstring)."""
    out = lambda params, batch, *_: self.network.apply(params, batch['x'])
    classify = self.loss == 'classification'
    return bootstrap.Objectives(
        inner_loss=lambda params, batch, meta: self._loss(params, batch),
        outer_loss=self._loss,
        policy=out if classify else None,
        value=None if classify else (
            lambda params, batch: out(params, batch)[..., 0]),
        optimizer_hparams=((lambda meta: {'learning_rate': meta[_LR]})
                           if self.learn_inner_lr else None),
        initial_params=self._initial)

  def batch_fn(self, episode: episodes_lib.Episode,
               config: bootstrap.BootstrapConfig
               ) -> Callable[[int, List[tf.Tensor]], Dict[str, tf.Tensor]]:
    """The data of each engine step of one meta-step on `episode`.

    Args:
      episode: the meta-batch.
      config: the engine's configuration ('fixed', 'mg' or 'bmg').

    Returns:
      `batch_fn(i, params) -> {'x': [T, M, ...], 'y': [T, M(, 1)]}`: the
      support set for the K inner steps and BMG's L-1 bootstrap steps (the
      only calls with a tensor `i`), the query set for MG's outer loss and
      BMG's fresh matching batch, `target_data` for BMG's target step.
    """
    support = {'x': episode.support_x, 'y': episode.support_y}
    query = {'x': episode.query_x, 'y': episode.query_y}
    target = {'query': query, 'support': support}.get(self.target_data)
    if target is None:
      target = tf.nest.map_structure(lambda a, b: tf.concat([a, b], 1),
                                     support, query)
    k, l = config.k_steps, config.l_steps

    def batch_fn(i, params):
      del params  # Supervised data does not depend on the learner.
      if not isinstance(i, int) or config.method == 'fixed' or i < k:
        return support
      if config.method == 'mg':
        return query
      if i < k + l - 1:
        return support
      return target if i == k + l - 1 else query

    return batch_fn

  # Adaptation outside training (evaluation, export).

  def adapt(self, episode: episodes_lib.Episode,
            steps: int) -> List[tf.Tensor]:
    """Adapts the current initialisation to each task's support set.

    The engine's 'fixed' meta-step: `steps` inner updates from the
    initialisation, on the support set.

    Args:
      episode: T tasks (any T).
      steps: inner updates (>= 1).

    Returns:
      The adapted weights, tensors `[T, ...]`.
    """
    config = bootstrap.BootstrapConfig(method='fixed', k_steps=steps)
    tasks = episode.support_x.shape[0]
    if tasks is None:
      raise ValueError('episode: the number of tasks must be static.')
    start = [tf.zeros((tasks,) + tuple(shape), self.adapted[0].dtype)
             for shape in self.network.param_shapes]
    result = bootstrap.meta_step(
        params=start, opt_state=self.inner_optimizer.init(start),
        meta_variables=[], meta_values_fn=self.meta_parameters,
        objectives=self.objectives, config=config,
        inner_optimizer=self.inner_optimizer,
        batches=self.batch_fn(episode, config))
    return result.params

  def evaluate(self, episode: episodes_lib.Episode,
               steps: int) -> Dict[str, tf.Tensor]:
    """Each task's query loss (and accuracy) after `steps` of adaptation.

    Args:
      episode: T tasks.
      steps: inner updates.

    Returns:
      {'loss': float32 `[T]`} plus {'accuracy': float32 `[T]`} for
      classification.
    """
    params = self.adapt(episode, steps)
    out = {'loss': self.task_losses(params, episode.query_x,
                                    episode.query_y)}
    if self.loss == 'classification':
      logits = self.network.apply(params, episode.query_x)
      hits = tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                      episode.query_y)
      out['accuracy'] = tf.reduce_mean(tf.cast(hits, tf.float32), axis=1)
    return out

  def initial_weights(self) -> List[tf.Tensor]:
    """The meta-learned initialisation, one tensor per weight array."""
    values = self.meta_parameters()
    return [values[_init_name(i)] for i in range(self.num_params)]

  @property
  def inner_learning_rate(self) -> Optional[tf.Tensor]:
    """The meta-learned inner learning rate (None when it is not learned)."""
    return self.meta_parameters()[_LR] if self.learn_inner_lr else None
