"""One runner for every experiment: a pipeline builds, the runner runs.

A pipeline's `build(...)` (gin-configurable) wires its objects and returns
an `Experiment`; it neither loops nor writes files. Then

    result = run_experiment(experiment, root_dir)     # train (or resume)
    export_experiment(experiment, root_dir, out_dir)  # no training

`run_experiment` owns what every experiment shares, once: the run directory
(`training.Run`), restore, the loop, the logging windows, `history.jsonl`,
checkpoints, the finite check, `result.json`, the final export and the last
line. `export_experiment` restores the latest checkpoint of a run into what
`build` made and writes the SavedModel; it never calls `Experiment.train`,
so it creates nothing that only training needs (actors, vector envs).

The split inside an `Experiment`:
  * `learner`, `trackables`, `export_fn`: what exists without training and
    what a SavedModel needs;
  * `train()`: returns a `Loop` and may create training-only objects (Python
    env workers, actors), whose state it adds to the checkpoint through
    `Loop.trackables`.
"""

import dataclasses
import math
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import gin
import numpy as np
import tensorflow as tf

from bmg_tf import training

__all__ = ['Loop', 'Experiment', 'run_experiment', 'export_experiment',
           'check_positive_ints', 'finite_check', 'nonfinite_state',
           'trainer']

Scalars = Dict[str, float]


@dataclasses.dataclass
class Loop:
  """The training-only part of an experiment, made by `Experiment.train`.

  Attributes:
    iterate: `() -> metrics`: one iteration (collect and learn); returns the
      learner's metrics, a mapping name -> scalar tensor or number (may be
      empty, e.g. during a replay warm-up).
    window: `(metrics) -> (scalars, row)`, called when a log is due, with
      the last iteration's metrics: `scalars` go to TensorBoard and the
      progress line, `row` (numbers; None drops a key) to
      `history.jsonl` and the returned history. It may reset window
      counters.
    summary: `() -> dict`, the final figures (without 'history').
    describe: `(result) -> str`, the last line printed.
    trackables: training-only objects to checkpoint besides the
      `Experiment`'s (env state, action generators, caches).
    begin: optional, called once after the restore and before the first
      iteration (to start the first logging window from the restored
      counters).
    close: optional, called when the run ends (also on error).
  """
  iterate: Callable[[], Mapping[str, Any]]
  window: Callable[[Mapping[str, Any]], Tuple[Scalars, Dict[str, Any]]]
  summary: Callable[[], Dict[str, Any]]
  describe: Callable[[Dict[str, Any]], str]
  trackables: Dict[str, Any] = dataclasses.field(default_factory=dict)
  begin: Optional[Callable[[], None]] = None
  close: Optional[Callable[[], None]] = None


@dataclasses.dataclass
class Experiment:
  """What a pipeline's `build` returns.

  Attributes:
    learner: the `MetaLearner` (checkpointed as 'learner').
    trackables: other objects to checkpoint that exist without training
      (context, counters); names are checkpoint keys.
    export_fn: `(export_dir, gin_config) -> Any`, writes the SavedModel.
    train: `() -> Loop`, builds what only training needs.
    progress: `() -> int`, the step count the budget counts (env steps,
      frames, meta-steps); read after a restore.
    total_steps: the budget, in `step_unit`s.
    step_unit: 'env steps', 'frames', 'meta-steps'.
    step_key: the history rows' step column ('env_steps', 'frames', ...);
      `history.jsonl` rows carry it.
    rate_keys: the rows' rate columns (from the second log on): name ->
      factor times the measured `step_unit`s per second.
    log_every: steps between logs (a log is due when the count crosses a
      multiple, and at the end).
    checkpoint_every: steps between checkpoints.
    export: write the SavedModel to `root_dir/export` at the end.
    info: extra entries of `result.json` (method, seed, ...).
    final_check: `(result) -> Optional[str]`: a divergence message if the
      final figures are not finite (the run then raises ValueError after
      saving its result).
  """
  learner: Any
  trackables: Dict[str, Any]
  export_fn: Callable[[str, str], Any]
  train: Callable[[], Loop]
  progress: Callable[[], int]
  total_steps: int
  step_unit: str = 'steps'
  step_key: str = 'step'
  rate_keys: Mapping[str, float] = dataclasses.field(
      default_factory=lambda: {'steps_per_sec': 1.0})
  log_every: int = 1000
  checkpoint_every: int = 1000
  export: bool = True
  info: Dict[str, Any] = dataclasses.field(default_factory=dict)
  final_check: Optional[Callable[[Dict[str, Any]], Optional[str]]] = None

  def checkpoint_objects(self, loop: Optional[Loop] = None) -> Dict[str, Any]:
    """The checkpoint's objects: learner, trackables, then the loop's."""
    objects = {'learner': self.learner, **self.trackables}
    if loop is not None:
      clash = set(objects) & set(loop.trackables)
      if clash:
        raise ValueError(f'trackables: names used twice: {sorted(clash)}.')
      objects.update(loop.trackables)
    return objects


def check_positive_ints(**values: Any) -> None:
  """Raises a ValueError naming the first value that is not an int > 0.

  For a pipeline's budget and schedule settings, which may arrive from a gin
  binding of any type (`num_env_steps = 'abc'`).
  """
  for name, value in values.items():
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
      raise ValueError(f'{name}: must be a positive int, got {value!r}.')


def finite_check(values: Mapping[str, Any], what: str) -> Optional[str]:
  """A one-line divergence message naming the non-finite `values`, or None.

  Args:
    values: name -> number or scalar tensor.
    what: where they were seen ('at env step 512').
  """
  bad = sorted(k for k, v in values.items()
               if not math.isfinite(float(v)))
  if bad:
    return f'training diverged {what}: non-finite {bad}.'
  return None


def nonfinite_state(objects: Mapping[str, Any]) -> List[str]:
  """Names of the float variables of `objects` holding NaN or inf.

  Args:
    objects: checkpoint name -> trackable (`tf.Module`s are searched; other
      trackables, such as a `tf.random.Generator`, hold no floats).

  Returns:
    '<name>/<variable name>' strings, in the objects' order.
  """
  bad = []
  for name, obj in objects.items():
    variables = getattr(obj, 'variables', ())
    if callable(variables):  # TF-Agents replay buffers: a method.
      variables = variables()
    for v in variables:
      if v.dtype.is_floating and not np.all(np.isfinite(v.numpy())):
        bad.append(f'{name}/{v.name}')
  return bad


def run_experiment(experiment: Experiment, root_dir: str, output=None,
                   on_setup: Optional[Callable[[], None]] = None,
                   from_scratch: bool = False) -> Dict[str, Any]:
  """Trains `experiment` in `root_dir`, resuming from it if possible.

  Args:
    experiment: what a pipeline's `build` returned.
    root_dir: the run directory: `checkpoints/`, `summaries/`,
      `operative_config.gin`, `history.jsonl`, `result.json`, `export/`.
    output: stream of the progress lines (default stdout).
    on_setup: optional check called once the training loop is built and
      before the run directory is touched (the gin binding check of
      `pipelines/experiment.run`); its exceptions propagate.
    from_scratch: start from step 0 if the run directory holds checkpoints
      but none is readable (`training.Run.restore`); else that is an error.

  Returns:
    `Loop.summary()` plus 'history': the rows logged by this process
    (`result.json` holds every row across restarts).

  Raises:
    ValueError: if the learner's metrics at a log, or the final figures,
      are not finite (nothing more is saved or exported after a bad log).
  """
  loop = experiment.train()
  try:
    if on_setup is not None:
      on_setup()
    return _run(experiment, loop, root_dir, output, from_scratch)
  finally:
    if loop.close is not None:
      loop.close()


def _run(experiment: Experiment, loop: Loop, root_dir: str, output,
         from_scratch: bool) -> Dict[str, Any]:
  """The loop of `run_experiment`, once `loop` exists."""
  objects = experiment.checkpoint_objects(loop)
  run = training.Run(root_dir, experiment.total_steps,
                     step_unit=experiment.step_unit,
                     log_every=experiment.log_every,
                     checkpoint_every=experiment.checkpoint_every,
                     output=output, step_fn=experiment.progress,
                     history_key=experiment.step_key, **objects)
  try:
    return _train(experiment, loop, run, objects, output, from_scratch)
  finally:
    run.close()


def _train(experiment, loop, run, objects, output, from_scratch):
  """Restore, the loop, the final save, result and export (locked)."""
  run.restore(from_scratch=from_scratch)
  if loop.begin is not None:
    loop.begin()
  history: List[Dict[str, Any]] = []
  unit = experiment.step_unit[:-1] if experiment.step_unit.endswith(
      's') else experiment.step_unit

  def check_state(step):
    """Raises on non-finite state: a checkpoint must never hold it."""
    bad = nonfinite_state(objects)
    if bad:
      raise ValueError(
          f'training diverged by {unit} {step}: non-finite {bad[:5]}'
          f'{" ..." if len(bad) > 5 else ""}{kept()}')

  def kept():
    return (f'; nothing saved or exported, the last good checkpoint is '
            f'{run.last_checkpoint or "none"}.')

  step = int(experiment.progress())
  while step < experiment.total_steps:
    before = step
    metrics = loop.iterate()
    step = int(experiment.progress())
    if step <= before:
      raise ValueError(
          f'an iteration advanced no {experiment.step_unit} (stuck at '
          f'{step}): the settings give the learner no new data to take '
          f'(e.g. k_steps=0 with a re-used batch); training would never end.')
    # Every iteration: the learner's scalar metrics (losses, meta-gradient
    # norm) turn non-finite with its state; a few scalars to read.
    bad = finite_check(metrics, f'at {unit} {step}')
    if bad:
      raise ValueError(bad[:-1] + kept())
    if run.should_log(step):
      scalars, row = loop.window(metrics)
      values = run.log(step, scalars)
      if values is not None:
        row = {experiment.step_key: step, **row}
        if 'steps_per_sec' in values:
          row.update({k: values['steps_per_sec'] * f
                      for k, f in experiment.rate_keys.items()})
        history.append(row)
        run.record({k: v for k, v in row.items() if v is not None})
    if run.save_due(step):
      check_state(step)
    run.maybe_save(step)
  check_state(step)
  run.finish(step)
  result = {**loop.summary(), 'history': history}
  run.write_result({**result, 'history': run.history(experiment.step_key),
                    **experiment.info})
  bad = (experiment.final_check(result) if experiment.final_check else None)
  if experiment.export and not bad:
    gin_config = run.operative_config_text()
    training.atomic_directory(
        os.path.join(run.root_dir, 'export'),
        lambda tmp: experiment.export_fn(tmp, gin_config), overwrite=True)
  print(loop.describe(result), file=output, flush=True)
  if bad:
    raise ValueError(bad)
  return result


def export_experiment(experiment: Experiment, root_dir: str,
                      export_dir: str, output=None,
                      overwrite: bool = False) -> Dict[str, Any]:
  """Restores the newest readable checkpoint of `root_dir` and exports it.

  Writes nothing to `root_dir` and never calls `experiment.train`. The
  SavedModel is written to a temp directory beside `export_dir` and renamed
  into place, so an interrupted export leaves no partial model.

  Args:
    experiment: what the run's `build` made (same configuration).
    root_dir: a run directory written by `run_experiment`.
    export_dir: where the SavedModel goes; must not exist, or be empty,
      unless `overwrite`.
    output: stream of the confirmation line (default stdout).
    overwrite: replace an existing non-empty `export_dir`.

  Returns:
    {'export_dir': absolute path, 'checkpoint': the checkpoint restored,
    'train_step': the learner's step counter, step_key: the progress}.

  Raises:
    training.RunDirError: if `root_dir` holds no readable checkpoint, or
      `export_dir` is a file, not empty (without `overwrite`) or not
      writable.
  """
  root_dir = os.path.abspath(os.path.expanduser(root_dir))
  directory = os.path.join(root_dir, 'checkpoints')
  if not training.checkpoint_files(directory):
    raise training.RunDirError(
        f'root_dir: no checkpoint to export in {directory}.')
  export_dir = training.check_output_dir(export_dir, overwrite)
  # Training-only objects (env state, caches) are in the file but not here.
  restored, skipped = training.restore_newest_readable(
      tf.train.Checkpoint(**experiment.checkpoint_objects()), directory,
      partial=True)
  if restored is None:
    raise training.RunDirError(
        f'root_dir: none of the checkpoints in {directory} is readable: '
        f'{"; ".join(skipped)}.')
  for reason in skipped:
    print(f'Skipped unreadable checkpoint {reason}', file=output, flush=True)
  config_path = os.path.join(root_dir, 'operative_config.gin')
  if os.path.exists(config_path):
    with open(config_path) as f:
      gin_config = f.read()
  else:
    gin_config = gin.operative_config_str()
  training.atomic_directory(
      export_dir, lambda tmp: experiment.export_fn(tmp, gin_config),
      overwrite=overwrite)
  print(f'Exported {restored} to {export_dir}', file=output, flush=True)
  return {'export_dir': export_dir, 'checkpoint': restored,
          'train_step': int(experiment.learner.train_step_counter),
          experiment.step_key: int(experiment.progress())}


def trainer(build: Callable[..., Experiment]) -> Callable[..., Dict[str, Any]]:
  """`train_eval(root_dir, **kwargs)`: runs `build(**kwargs)` in `root_dir`.

  The Python entry point of a pipeline (`two_colors.train_eval = trainer(
  build)`), for notebooks and tests; gin runs go through
  `pipelines/experiment.run`.
  """

  def train_eval(root_dir: str, **kwargs) -> Dict[str, Any]:
    return run_experiment(build(**kwargs), root_dir)

  train_eval.__doc__ = (f'Trains `{build.__module__}.build(**kwargs)` in '
                        '`root_dir` (`experiment.run_experiment`).')
  return train_eval
