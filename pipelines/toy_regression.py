"""Toy demo of the engine: meta-learning the learning rate of a regressor.

A non-stationary regression stream: targets are `y = x @ w_task + noise`,
with `w_task` redrawn every `task_period` meta-steps. The learner is an MLP
trained by SGD whose learning rate is a meta-parameter, `exp(raw)`, started
deliberately small. MG descends the validation MSE after K inner steps; BMG
matches a target built L steps further ahead. Both should raise the learning
rate; the run prints it as it moves.

Each meta-step reads `config.batches_per_step` fresh batches of `batch_size`
samples from an in-graph random generator (checkpointed with the run).
"""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

from typing import Optional, Sequence  # pylint: disable=g-import-not-at-top

import gin
import numpy as np
import tensorflow as tf

from bmg_tf import experiment as experiment_lib
from bmg_tf import export as export_lib
from bmg_tf.core import bootstrap
from bmg_tf.core import meta_learner as meta_learner_lib
from bmg_tf.core import meta_params
from bmg_tf.core import optimizers
from bmg_tf.networks import mlp

__all__ = ['RegressionStream', 'build', 'train_eval']


class RegressionStream(tf.Module):
  """In-graph source of regression batches; its state is checkpointable."""

  def __init__(self, dim: int, batch_size: int, noise: float, seed: int):
    super().__init__(name='regression_stream')
    if dim <= 0 or batch_size <= 0:
      raise ValueError(f'dim/batch_size: must be positive, got {dim}, '
                       f'{batch_size}.')
    self.dim, self.batch_size, self.noise = dim, batch_size, float(noise)
    self.generator = tf.random.Generator.from_seed(seed)
    self.w_task = tf.Variable(tf.zeros([dim, 1]), name='w_task')
    self.new_task()

  def new_task(self):
    """Draws a new task `w_task ~ N(0, I)`."""
    self.w_task.assign(self.generator.normal([self.dim, 1]))

  def batch(self, i=None, params=None):
    """Returns {'x': [batch_size, dim], 'y': [batch_size, 1]} float32."""
    del i, params  # Supervised data does not depend on the learner.
    x = self.generator.normal([self.batch_size, self.dim])
    y = tf.matmul(x, self.w_task) + self.noise * self.generator.normal(
        [self.batch_size, 1])
    return {'x': x, 'y': y}


@gin.configurable
def build(num_meta_steps: int = 300,
          inner_learning_rate: float = 0.01,
          dim: int = 8,
          batch_size: int = 32,
          noise: float = 0.1,
          hidden_sizes: Sequence[int] = (32,),
          task_period: int = 50,
          seed: int = 0,
          log_every: int = 100,
          checkpoint_every: int = 100,
          export: bool = True) -> experiment_lib.Experiment:
  """Builds the toy regressor whose learning rate is meta-learned.

  The objects read their own gin bindings (`gin/toy/*.gin`):
  `BootstrapConfig` (method 'mg' or 'bmg', K, L, matching),
  `target/create_optimizer` (BMG's target step), `MetaOptimizer` and
  `MetaLearner` (jit_compile). The inner optimizer is SGD whose learning
  rate is the meta-parameter.

  Args:
    num_meta_steps: budget in meta-steps.
    inner_learning_rate: the inner SGD learning rate at the start (the
      meta-learned one's initial value).
    dim: input dimension.
    batch_size: samples per batch.
    noise: label noise standard deviation.
    hidden_sizes: hidden widths of the MLP regressor.
    task_period: meta-steps between task changes.
    seed: random seed (initialisation and data).
    log_every: meta-steps between progress lines and history rows.
    checkpoint_every: meta-steps between checkpoints.
    export: write the SavedModel (`predict`, `meta_parameters` with the
      learning rate, `metadata`) to `root_dir/export` at the end.

  Returns:
    An `Experiment`. Its run returns a dict with the learning rate at the
    start of this process and at the end, the last metrics, and 'history'
    (rows: meta_steps, learning_rate, meta_loss, meta_steps_per_sec).

  Raises:
    ValueError: naming the argument, on bad settings.
  """
  config = bootstrap.BootstrapConfig()
  method = config.method
  if method not in ('mg', 'bmg'):
    raise ValueError(f"method: must be 'mg' or 'bmg', got {method!r}.")
  experiment_lib.check_positive_ints(
      num_meta_steps=num_meta_steps, task_period=task_period, dim=dim,
      batch_size=batch_size, log_every=log_every,
      checkpoint_every=checkpoint_every)
  tf.random.set_seed(seed)
  np.random.seed(seed)
  net = mlp.MLP(hidden_sizes, output_size=1, activation='tanh',
                input_dim=dim, seed=seed, name='regressor')
  stream = RegressionStream(dim, batch_size, noise, seed)

  def mse(params, batch):
    return tf.reduce_mean(tf.square(net.apply(params, batch['x']) -
                                    batch['y']))

  objectives = bootstrap.Objectives(
      inner_loss=lambda params, batch, meta: mse(params, batch),
      outer_loss=mse,
      optimizer_hparams=lambda meta: {'learning_rate': meta['learning_rate']})
  meta = meta_params.MetaParameters({
      'learning_rate': meta_params.MetaParameter(
          inner_learning_rate, transform='exp', name='learning_rate')
  })
  target = None
  if method == 'bmg':
    with gin.config_scope('target'):
      target = optimizers.create_optimizer()
  learner = meta_learner_lib.MetaLearner(
      net.params, meta, objectives, config,
      inner_optimizer=optimizers.SGD(learning_rate=inner_learning_rate),
      target_optimizer=target, meta_optimizer=meta_params.MetaOptimizer(),
      batch_fn=stream.batch)

  def export_to(export_dir, gin_config):
    return export_lib.export_regressor(
        export_dir, predict_fn=lambda x: net.apply(net.params, x),
        input_dim=dim, variables=list(net.params) + list(meta.variables),
        meta_fn=lambda: meta(), train_step=int(learner.train_step_counter),
        gin_config=gin_config)

  def describe(result):
    return (f'{method.upper()} K={config.k_steps}'
            f'{f" L={config.l_steps}" if method == "bmg" else ""}: learning_rate '
            f'{result["initial_learning_rate"]:.4g} -> '
            f'{result["final_learning_rate"]:.4g} after '
            f'{int(learner.train_step_counter)} meta-steps')

  return experiment_lib.Experiment(
      learner=learner, trackables=dict(stream=stream), export_fn=export_to,
      train=lambda: _loop(learner, meta, stream, task_period, describe),
      progress=lambda: int(learner.train_step_counter),
      total_steps=num_meta_steps, step_unit='meta-steps',
      step_key='meta_steps', rate_keys={'meta_steps_per_sec': 1},
      log_every=log_every, checkpoint_every=checkpoint_every, export=export,
      info={'method': method, 'seed': seed})


train_eval = experiment_lib.trainer(build)


def _loop(learner, meta, stream, task_period, describe):
  """The loop: a new task every `task_period` meta-steps."""
  state = {'metrics': {}}

  def learning_rate():
    return float(meta()['learning_rate'])

  def begin():
    state['initial'] = learning_rate()

  def iterate():
    if int(learner.train_step_counter) % task_period == 0:
      stream.new_task()
    state['metrics'] = learner.step()
    return state['metrics']

  def window(metrics):
    row = {'learning_rate': learning_rate(),
           'meta_loss': float(metrics['meta_loss'])}
    return {**metrics, 'learning_rate': row['learning_rate']}, row

  def summary():
    return {'initial_learning_rate': state['initial'],
            'final_learning_rate': learning_rate(),
            'metrics': {k: float(v) for k, v in state['metrics'].items()}}

  return experiment_lib.Loop(iterate=iterate, window=window, summary=summary,
                             describe=describe, begin=begin)
