"""The run directory of an experiment: checkpoints, operative gin config,
summaries, history and a progress line.

`bmg_tf.experiment.run_experiment` (the one run loop) drives it:

    run = training.Run(root_dir, total_steps, learner=..., env=...)
    run.restore()                   # resumes from root_dir if possible
    while ...:
      ...
      run.log(step, metrics)        # TensorBoard + progress line
      run.maybe_save(step)          # CheckpointManager
    run.finish(step)

`Run` writes the operative gin config to `root_dir/operative_config.gin`
beside the checkpoints (`root_dir/checkpoints`) and summaries
(`root_dir/summaries`); `record` appends rows to `root_dir/history.jsonl`
(kept across restarts) and `write_result` writes `root_dir/result.json`.
"""

import glob
import json
import math
import os
import shutil
import sys
import tempfile
import time
from typing import Dict, List, Mapping, Optional

import gin
import tensorflow as tf

__all__ = ['RunDirError', 'prepare_root_dir', 'atomic_write', 'json_safe',
           'Run']


class RunDirError(ValueError):
  """The run directory is unusable."""


def prepare_root_dir(root_dir: str) -> str:
  """Creates `root_dir` if needed and checks it is writable.

  Args:
    root_dir: the run directory.

  Returns:
    The absolute path.

  Raises:
    RunDirError: with a one-line message, if it cannot be used.
  """
  if not root_dir:
    raise RunDirError('root_dir: is required.')
  root_dir = os.path.abspath(os.path.expanduser(root_dir))
  try:
    os.makedirs(root_dir, exist_ok=True)
    probe = os.path.join(root_dir, '.write_probe')
    with open(probe, 'w') as f:
      f.write('ok')
    os.remove(probe)
  except OSError as e:
    raise RunDirError(f'root_dir: cannot write to {root_dir!r}: '
                      f'{e.strerror or e}.') from None
  return root_dir


def atomic_write(path: str, text: str) -> str:
  """Writes `text` to `path` atomically: a temp file, fsync, then rename.

  A crash leaves either the old file or the new one, never a mix.
  """
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=directory,
                             prefix='.' + os.path.basename(path) + '.')
  try:
    with os.fdopen(fd, 'w') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path


def json_safe(value):
  """`value` with every non-finite float replaced by None (valid JSON)."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, Mapping):
    return {k: json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_safe(v) for v in value]
  return value


class Run:
  """Checkpoints, summaries and progress for one training run."""

  def __init__(self,
               root_dir: str,
               total_steps: int,
               step_unit: str = 'steps',
               checkpoint_every: int = 1000,
               log_every: int = 100,
               max_to_keep: int = 3,
               output=None,
               step_fn=None,
               history_key: str = 'step',
               **trackables):
    """Creates the run.

    Args:
      root_dir: run directory (created; must be writable).
      total_steps: the budget, in `step_unit`s, for the ETA.
      step_unit: what a step is ('env steps', 'meta-steps', ...).
      checkpoint_every: save when the step count crosses a multiple of this
        (and at the end); steps may advance in chunks.
      log_every: write summaries and print progress when the step count
        crosses a multiple of this.
      max_to_keep: checkpoints kept by the CheckpointManager.
      output: where the progress line goes (default stdout).
      step_fn: `() -> int`, the current step count; read after a restore so
        that logging and saving continue on the same schedule.
      history_key: the step column of `history.jsonl`; after a restore,
        rows beyond the restored step (logged after the last checkpoint of
        a killed run, and about to be logged again) are dropped.
      **trackables: objects to checkpoint (a learner, an env, a counter...).
    """
    self.root_dir = prepare_root_dir(root_dir)
    self.total_steps = int(total_steps)
    self.step_unit = step_unit
    self.checkpoint_every = max(1, int(checkpoint_every))
    self.log_every = max(1, int(log_every))
    self._stream = output or sys.stdout
    self.history_key = history_key
    self.checkpoint = tf.train.Checkpoint(**trackables)
    directory = os.path.join(self.root_dir, 'checkpoints')
    # A kill during a save leaves `ckpt-N_temp*` directories behind.
    for stale in glob.glob(os.path.join(directory, '*_temp*')):
      if os.path.isdir(stale):
        shutil.rmtree(stale, ignore_errors=True)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, directory, max_to_keep=max_to_keep)
    self._writer = None  # Created on first use: an export leaves no file.
    self._last_time = None
    self._last_step = None
    self._last_saved = None
    self._step_fn = step_fn
    self._schedule_from(0)
    self._config_written = False
    self.restored_from = None  # The checkpoint path `restore` loaded.

  @property
  def writer(self):
    """The `tf.summary` writer of `root_dir/summaries`."""
    if self._writer is None:
      self._writer = tf.summary.create_file_writer(
          os.path.join(self.root_dir, 'summaries'))
    return self._writer

  def _schedule_from(self, step: int):
    self._next_log = (step // self.log_every + 1) * self.log_every
    self._next_save = (step // self.checkpoint_every + 1) * (
        self.checkpoint_every)

  def restore(self) -> bool:
    """Restores the latest checkpoint, if any. Returns True if restored."""
    latest = self.manager.latest_checkpoint
    if latest is None:
      return False
    self.checkpoint.restore(latest).assert_existing_objects_matched()
    self.restored_from = latest
    if self._step_fn is not None:
      step = int(self._step_fn())
      self._schedule_from(step)
      self._truncate_history(step)
    print(f'Restored {latest}', file=self._stream, flush=True)
    return True

  def _truncate_history(self, step: int):
    """Drops `history.jsonl` rows logged after `step` (atomically)."""
    if not os.path.exists(self.history_path):
      return
    with open(self.history_path) as f:
      lines = f.readlines()
    kept = [l for l in lines
            if l.strip() and json.loads(l).get(self.history_key, 0) <= step]
    if len(kept) != len(lines):
      atomic_write(self.history_path, ''.join(kept))

  def write_operative_config(self):
    """Writes the gin config actually used (call after the first step)."""
    path = os.path.join(self.root_dir, 'operative_config.gin')
    atomic_write(path, gin.operative_config_str())
    self._config_written = True
    return path

  def operative_config_text(self) -> str:
    """The run's operative gin config: the file written by training if
    there is one (an export of an existing run), else this process's."""
    path = os.path.join(self.root_dir, 'operative_config.gin')
    if os.path.exists(path):
      with open(path) as f:
        return f.read()
    return gin.operative_config_str()

  def should_log(self, step: int) -> bool:
    """Whether `log(step, ...)` would write (crossed a log multiple)."""
    return step >= self._next_log or step >= self.total_steps

  @property
  def history_path(self) -> str:
    return os.path.join(self.root_dir, 'history.jsonl')

  def record(self, row: Mapping[str, float]):
    """Appends one row (a dict of numbers) to `root_dir/history.jsonl`."""
    with open(self.history_path, 'a') as f:
      f.write(json.dumps(json_safe({k: float(v) for k, v in row.items()}),
                         allow_nan=False) + '\n')

  def history(self, key: str = 'step') -> List[Dict[str, float]]:
    """All recorded rows across restarts, sorted by `key`; for a repeated
    `key` (rows written after the last checkpoint of a killed run), the last
    row wins."""
    rows = {}
    if os.path.exists(self.history_path):
      with open(self.history_path) as f:
        for line in f:
          row = json.loads(line)
          rows[row[key]] = row
    return [rows[k] for k in sorted(rows)]

  def write_result(self, result: Mapping[str, object]) -> str:
    """Writes `root_dir/result.json` atomically; non-finite numbers are
    written as null, so the file is always valid JSON."""
    path = os.path.join(self.root_dir, 'result.json')
    atomic_write(path, json.dumps(json_safe(result), indent=1,
                                  allow_nan=False))
    return path

  def log(self, step: int, metrics: Mapping[str, float],
          extra: Optional[str] = None) -> Optional[Dict[str, float]]:
    """Writes summaries and prints progress every `log_every` steps.

    Args:
      step: the current step count.
      metrics: name -> scalar, written to TensorBoard under its name.
      extra: text appended to the progress line.

    Returns:
      The scalars written, with 'steps_per_sec', or None if not logged.
    """
    if not self._config_written:
      self.write_operative_config()
    now = time.time()
    if self._last_time is None:
      self._last_time, self._last_step = now, step
    if not self.should_log(step):
      return None
    self._next_log = (step // self.log_every + 1) * self.log_every
    values = {k: float(v) for k, v in metrics.items()}
    elapsed = now - self._last_time
    if step > self._last_step and elapsed > 0:
      rate = (step - self._last_step) / elapsed
      values['steps_per_sec'] = rate
    self._last_time, self._last_step = now, step
    with self.writer.as_default():
      for k, v in values.items():
        tf.summary.scalar(k, v, step=step)
    rate = values.get('steps_per_sec')
    eta = ''
    if rate:
      remaining = max(0, self.total_steps - step) / rate
      eta = f' eta {remaining:6.0f}s'
      rate_s = f' {rate:9.1f} {self.step_unit}/s'
    else:
      rate_s = ''
    shown = ' '.join(f'{k}={v:.4g}' for k, v in values.items()
                     if k != 'steps_per_sec')
    line = f'[{step}/{self.total_steps}]{rate_s}{eta} {shown}'
    if extra:
      line += ' ' + extra
    print(line, file=self._stream, flush=True)
    return values

  def save_due(self, step: int) -> bool:
    """Whether `maybe_save(step)` would save."""
    return step >= self._next_save and self._last_saved != step

  def maybe_save(self, step: int, force: bool = False) -> Optional[str]:
    """Saves when `step` crossed a multiple of `checkpoint_every`."""
    if not force and step < self._next_save:
      return None
    self._next_save = (step // self.checkpoint_every + 1) * (
        self.checkpoint_every)
    if self._last_saved == step:
      return None
    self._last_saved = step
    return self.manager.save(checkpoint_number=step)

  def finish(self, step: int):
    """Saves a final checkpoint and flushes the summaries."""
    self.maybe_save(step, force=True)
    if not self._config_written:
      self.write_operative_config()
    if self._writer is not None:
      self._writer.flush()
