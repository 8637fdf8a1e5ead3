"""Few-shot meta-learning: MAML (MG) or BMG meta-learns an initialisation.

BMG_SPEC section 2.4. `build` (gin-configurable) wires:

  task sampler (in-graph: `SinusoidTasks`, or `ClassEpisodes` over a
  `datasets` split) -> `FewShotLearner` (the meta-learned initial weights,
  one adapted copy per task) -> `MetaLearner` with a `data_fn`: one compiled
  call samples a meta-batch of T tasks and takes one meta-step on it.

`BootstrapConfig.method = 'mg'` is MAML: K inner SGD steps on each task's
support set from the initialisation, meta-loss = the query loss at x_K,
differentiated through the K steps (second order). `'bmg'` takes the same K
differentiated steps, L-1 more on the support set and a target step on
`target_data`, and matches x_K to the target (KL of the query predictions
for classification, L2 of the query outputs for regression, with
`BootstrapConfig.match_batch = 'fresh'`). First-order MAML:
`BootstrapConfig.first_order = True` (the inner gradients are constants).

Evaluation: `eval_tasks` held-out tasks (the data set's `eval_split`, whose
classes no training task uses; fresh sinusoids drawn from `eval_seed`), the
same tasks at every evaluation and for every method and seed; each is
adapted from the current initialisation with `eval_adapt_steps` inner steps
on its support set and scored on its query set (accuracy, or mean squared
error). The history rows carry `train_seconds`, the time spent in
meta-steps only (not in evaluation, and not in each process's first call,
which traces and compiles the step: `compile_seconds` in the result), for
wall-clock comparisons.
"""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

import math  # pylint: disable=g-import-not-at-top
import time
from typing import Optional, Sequence

import gin
import numpy as np
import tensorflow as tf

from bmg_tf import experiment as experiment_lib
from bmg_tf import export as export_lib
from bmg_tf.core import bootstrap
from bmg_tf.core import meta_learner as meta_learner_lib
from bmg_tf.core import meta_params
from bmg_tf.core import optimizers
from bmg_tf.few_shot import datasets
from bmg_tf.few_shot import episodes
from bmg_tf.few_shot import learner as learner_lib
from bmg_tf.few_shot import networks

__all__ = ['DATASETS', 'build', 'train_eval']

DATASETS = ('sinusoid', 'digits', 'omniglot', 'miniimagenet')


@gin.configurable
def build(dataset: str = 'sinusoid',
          data_dir: Optional[str] = None,
          n_way: int = 5,
          k_shot: int = 1,
          query_per_class: int = 15,
          meta_batch_size: int = 4,
          num_meta_steps: int = 10_000,
          hidden_sizes: Sequence[int] = (40, 40),
          filters: int = 64,
          conv_blocks: int = 4,
          pooling: str = 'max',
          learn_inner_lr: bool = False,
          target_data: str = 'query',
          eval_split: str = 'test',
          eval_tasks: int = 600,
          eval_batch_size: int = 25,
          eval_adapt_steps: Optional[int] = None,
          eval_every: int = 1000,
          eval_seed: int = 12345,
          seed: int = 0,
          log_every: int = 100,
          checkpoint_every: int = 1000,
          export: bool = True) -> experiment_lib.Experiment:
  """Builds a few-shot meta-learning experiment.

  The objects read their own gin bindings (`gin/few_shot/*.gin`):
  `BootstrapConfig` (method 'mg' or 'bmg', K, L, matching, match_batch),
  `create_optimizer` in the scopes `inner` (the adaptation, SGD in MAML)
  and `target` (BMG's target step), `MetaOptimizer` (the initialisation's
  optimizer, Adam) and `MetaLearner` (jit_compile).

  Args:
    dataset: one of `DATASETS`. 'digits' is scikit-learn's bundled 8x8
      digits (`datasets.load_digits`); 'omniglot' and 'miniimagenet' read
      `data_dir` (`datasets.load_omniglot`, `datasets.load_miniimagenet`).
    data_dir: the data set's directory (omniglot, miniimagenet).
    n_way: N, classes per task (classification).
    k_shot: K-shot: support examples per class (classification) or support
      points per task (sinusoid).
    query_per_class: query examples per class (classification) or query
      points per task (sinusoid).
    meta_batch_size: T, tasks per meta-step.
    num_meta_steps: budget in meta-steps.
    hidden_sizes: the MLP's hidden widths (sinusoid).
    filters: channels of the conv net's convolutions (images).
    conv_blocks: conv blocks (images).
    pooling: 'max' or 'stride' (`networks.TaskConvNet`).
    learn_inner_lr: also meta-learn the inner learning rate.
    target_data: BMG's target-step data, one of `learner.TARGET_DATA`.
    eval_split: the data set split of the held-out tasks ('test', or 'val'
      for MiniImagenet).
    eval_tasks: held-out tasks per evaluation (a multiple of
      `eval_batch_size`).
    eval_batch_size: tasks adapted at once during evaluation.
    eval_adapt_steps: inner steps at evaluation (default: K).
    eval_every: meta-steps between evaluations (also at the end).
    eval_seed: seed of the held-out tasks.
    seed: seed of the initialisation and of the training tasks.
    log_every: meta-steps between progress lines and history rows.
    checkpoint_every: meta-steps between checkpoints.
    export: write the SavedModel (`adapt_and_predict`, `meta_parameters`,
      `metadata`) to `root_dir/export` at the end.

  Returns:
    An `Experiment`. Its run returns a dict: 'meta_steps', 'eval' (the
    final evaluation: 'metric' ('accuracy' or 'mse'), 'mean', 'ci95' (1.96
    standard errors over tasks), 'tasks'), 'train_seconds',
    'compile_seconds' (this process's first meta-step), the last
    metrics, and 'history' (rows: meta_steps, meta_loss, inner_loss,
    train_seconds, meta_steps_per_sec, and eval_<metric> / eval_ci95 when
    an evaluation ran).

  Raises:
    ValueError: naming the argument, on bad settings.
  """
  config = bootstrap.BootstrapConfig()
  _check_settings(config, dataset, num_meta_steps, meta_batch_size,
                  eval_tasks, eval_batch_size, eval_adapt_steps, eval_every,
                  log_every, checkpoint_every)
  eval_steps = eval_adapt_steps or config.k_steps
  tf.random.set_seed(seed)
  sampler, eval_sampler, network, loss = _tasks(
      dataset, data_dir, eval_split, n_way, k_shot, query_per_class,
      meta_batch_size, eval_batch_size, hidden_sizes, filters, conv_blocks,
      pooling, seed, eval_seed)
  with gin.config_scope('inner'):
    inner = optimizers.create_optimizer(batch_dims=1)
  target = None
  if config.method == 'bmg':
    with gin.config_scope('target'):
      target = optimizers.create_optimizer(batch_dims=1)
  few_shot = learner_lib.FewShotLearner(
      network, meta_batch_size, loss, inner, seed=seed,
      learn_inner_lr=learn_inner_lr, target_data=target_data)
  learner = meta_learner_lib.MetaLearner(
      few_shot.adapted, few_shot.meta_parameters, few_shot.objectives,
      config, inner_optimizer=inner, target_optimizer=target,
      meta_optimizer=meta_params.MetaOptimizer(),
      data_fn=lambda: (few_shot.batch_fn(sampler.sample(), config), None))
  evaluate = tf.function(
      lambda: few_shot.evaluate(eval_sampler.sample(), eval_steps),
      jit_compile=learner.jit_compile, autograph=False)

  def run_evaluation():
    eval_sampler.generator.reset_from_seed(eval_seed)
    key = 'accuracy' if loss == 'classification' else 'loss'
    values = np.concatenate([
        evaluate()[key].numpy() for _ in range(eval_tasks // eval_batch_size)])
    return {'metric': 'accuracy' if key == 'accuracy' else 'mse',
            'mean': float(values.mean()),
            'ci95': float(1.96 * values.std(ddof=1) / math.sqrt(len(values))),
            'tasks': int(len(values))}

  return experiment_lib.Experiment(
      learner=learner, trackables=dict(sampler=sampler),
      export_fn=_export_fn(few_shot, learner, network, sampler, loss,
                           eval_steps),
      train=lambda: _loop(learner, run_evaluation, eval_every, config),
      progress=lambda: int(learner.train_step_counter),
      total_steps=num_meta_steps, step_unit='meta-steps',
      step_key='meta_steps', rate_keys={'meta_steps_per_sec': 1},
      log_every=log_every, checkpoint_every=checkpoint_every, export=export,
      info={'method': config.method, 'seed': seed, 'dataset': dataset,
            'k_steps': config.k_steps,
            'l_steps': config.l_steps if config.method == 'bmg' else None},
      final_check=lambda result: (
          None if math.isfinite(result['eval']['mean']) else
          'training diverged: non-finite evaluation metric.'))


train_eval = experiment_lib.trainer(build)


def _check_settings(config, dataset, num_meta_steps, meta_batch_size,
                    eval_tasks, eval_batch_size, eval_adapt_steps, eval_every,
                    log_every, checkpoint_every):
  """Raises a ValueError naming the argument on bad settings."""
  if config.method not in ('mg', 'bmg'):
    raise ValueError(f"method: must be 'mg' (MAML) or 'bmg', got "
                     f'{config.method!r}.')
  if config.method == 'mg' and config.k_steps < 1:
    raise ValueError('k_steps: MAML needs k_steps >= 1.')
  if config.continue_from != 'K':
    raise ValueError("continue_from: must be 'K' (every meta-step starts "
                     'again from the initialisation).')
  if dataset not in DATASETS:
    raise ValueError(f'dataset: must be one of {DATASETS}, got '
                     f'{dataset!r}.')
  experiment_lib.check_positive_ints(
      num_meta_steps=num_meta_steps, meta_batch_size=meta_batch_size,
      eval_tasks=eval_tasks, eval_batch_size=eval_batch_size,
      eval_every=eval_every, log_every=log_every,
      checkpoint_every=checkpoint_every)
  if eval_adapt_steps is not None:
    experiment_lib.check_positive_ints(eval_adapt_steps=eval_adapt_steps)
  if eval_tasks % eval_batch_size:
    raise ValueError(f'eval_tasks: must be a multiple of eval_batch_size '
                     f'({eval_batch_size}), got {eval_tasks}.')


def _tasks(dataset, data_dir, eval_split, n_way, k_shot, query_per_class,
           meta_batch_size, eval_batch_size, hidden_sizes, filters,
           conv_blocks, pooling, seed, eval_seed):
  """The training and held-out samplers, the network and the loss type."""
  if data_dir is not None and dataset in ('sinusoid', 'digits'):
    raise ValueError(f"data_dir: dataset '{dataset}' reads no directory, got "
                     f'{data_dir!r}.')
  if dataset == 'sinusoid':
    make = lambda tasks, s: episodes.SinusoidTasks(
        tasks, k_shot, query_per_class, seed=s)
    return (make(meta_batch_size, seed), make(eval_batch_size, eval_seed),
            networks.TaskMLP(1, hidden_sizes, 1), 'regression')
  if data_dir is None and dataset != 'digits':
    raise ValueError(f"data_dir: required for dataset '{dataset}' (the "
                     f"directory holding it; see gin/few_shot/*_{dataset}.gin"
                     f').')
  # MiniImagenet stays uint8 in memory (3.3 GB as float32).
  dtype = np.uint8 if dataset == 'miniimagenet' else np.float32
  train = datasets.load(dataset, data_dir, 'train', dtype=dtype)
  held_out = datasets.load(dataset, data_dir, eval_split, dtype=dtype)
  make = lambda data, tasks, s: episodes.ClassEpisodes(
      data.images, tasks, n_way, k_shot, query_per_class, seed=s)
  network = networks.TaskConvNet(train.images.shape[2:], n_way, filters,
                                 conv_blocks, pooling)
  return (make(train, meta_batch_size, seed),
          make(held_out, eval_batch_size, eval_seed), network,
          'classification')


def _export_fn(few_shot, learner, network, sampler, loss, eval_steps):
  """Writes `adapt_and_predict`: one task, `eval_steps` inner steps."""
  if loss == 'classification':
    input_shape = sampler.image_shape
    label_spec = tf.TensorSpec([None], tf.int32)
  else:
    input_shape = (1,)
    label_spec = tf.TensorSpec([None, 1], tf.float32)

  def adapt_and_predict(support_x, support_y, query_x):
    episode = episodes.Episode(support_x[None], support_y[None],
                               query_x[None], tf.zeros([1, 0]))
    params = few_shot.adapt(episode, eval_steps)
    return network.apply(params, query_x[None])[0]

  def export_to(export_dir, gin_config):
    return export_lib.export_few_shot(
        export_dir, adapt_and_predict, input_shape, label_spec,
        variables=list(few_shot.meta_parameters.variables),
        meta_fn=few_shot.meta_parameters,
        train_step=int(learner.train_step_counter), gin_config=gin_config)

  return export_to


def _loop(learner, run_evaluation, eval_every, config):
  """The loop: one meta-step per iteration, evaluations every
  `eval_every` meta-steps and at the end."""
  state = {'metrics': {}, 'last_eval': None, 'eval': None, 'evals_due': 0,
           'compile_seconds': None}

  def begin():
    state['evals_due'] = int(learner.train_step_counter) // eval_every
  train_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False,
                              name='train_seconds')

  def iterate():
    start = time.perf_counter()
    state['metrics'] = learner.step()
    state['metrics']['meta_loss'].numpy()  # Wait for the step.
    seconds = time.perf_counter() - start
    if state['compile_seconds'] is None:  # Tracing and XLA compilation.
      state['compile_seconds'] = seconds
    else:
      train_seconds.assign_add(seconds)
    return state['metrics']

  def evaluation():
    steps = int(learner.train_step_counter)
    if state['last_eval'] != steps:
      state['eval'] = run_evaluation()
      state['last_eval'] = steps
    return state['eval']

  def window(metrics):
    scalars = dict(metrics)
    row = {'meta_loss': float(metrics['meta_loss']),
           'inner_loss': float(metrics['inner_loss']),
           'train_seconds': float(train_seconds.numpy())}
    steps = int(learner.train_step_counter)
    if steps // eval_every > state['evals_due']:
      state['evals_due'] = steps // eval_every
      result = evaluation()
      row[f'eval_{result["metric"]}'] = result['mean']
      row['eval_ci95'] = result['ci95']
      scalars[f'eval_{result["metric"]}'] = result['mean']
    return scalars, row

  def summary():
    return {'meta_steps': int(learner.train_step_counter),
            'eval': evaluation(),
            'train_seconds': float(train_seconds.numpy()),
            'compile_seconds': state['compile_seconds'],
            'metrics': {k: float(v) for k, v in state['metrics'].items()}}

  def describe(result):
    ev = result['eval']
    method = ('MAML' if config.method == 'mg' else
              f'BMG L={config.l_steps}')
    return (f'{method} K={config.k_steps}: held-out {ev["metric"]} '
            f'{ev["mean"]:.4g} +- {ev["ci95"]:.2g} over {ev["tasks"]} tasks '
            f'after {int(learner.train_step_counter)} meta-steps')

  return experiment_lib.Loop(
      iterate=iterate, window=window, summary=summary, describe=describe,
      begin=begin, trackables={'train_seconds': train_seconds})
