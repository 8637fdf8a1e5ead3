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

import errno
import fcntl
import glob
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from typing import Dict, List, Mapping, Optional

import gin
import tensorflow as tf

__all__ = ['RunDirError', 'prepare_root_dir', 'check_root_dir',
           'atomic_write', 'check_output_dir', 'atomic_directory',
           'json_safe', 'RunLock',
           'checkpoint_files', 'read_checkpoint', 'restore_newest_readable',
           'Run']


class RunDirError(ValueError):
  """The run directory is unusable."""


def prepare_root_dir(root_dir: str) -> str:
  """Creates `root_dir` if needed and checks it is writable (a probe file).

  Returns the absolute path; raises RunDirError (one line) as
  `check_root_dir`, or if the probe cannot be written.
  """
  root_dir = check_root_dir(root_dir)
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


def check_root_dir(root_dir: str) -> str:
  """Checks that `root_dir` could be used, without creating anything.

  An existing directory must be writable; a missing one must be creatable
  (its nearest existing ancestor a writable directory).

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
  probe = root_dir
  while not os.path.exists(probe):
    probe = os.path.dirname(probe)
  if not os.path.isdir(probe):
    raise RunDirError(f'root_dir: {probe!r} is a file, not a directory.')
  if not os.access(probe, os.W_OK | os.X_OK):
    raise RunDirError(f'root_dir: cannot write to {probe!r}: permission '
                      f'denied.')
  return root_dir


class RunLock:
  """An exclusive OS lock on a run directory (`root_dir/.lock`).

  Held while a process trains in the directory; the OS releases it when the
  process exits, also on a crash or SIGKILL (`fcntl.flock`). The file holds
  the owner's pid, for the refusal message.
  """

  def __init__(self, root_dir: str):
    self.path = os.path.join(root_dir, '.lock')
    self._fd = None

  def acquire(self) -> 'RunLock':
    """Takes the lock, or raises RunDirError naming the process holding it."""
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        os.close(fd)
        raise
      owner = os.pread(fd, 64, 0).decode(errors='replace').strip() or '?'
      os.close(fd)
      raise RunDirError(
          f'root_dir: {os.path.dirname(self.path)!r} is in use by process '
          f'{owner} (lock {self.path}); wait for it to finish or stop it.'
      ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
    self._fd = fd
    return self

  def release(self):
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()


def checkpoint_files(directory: str) -> List[str]:
  """The checkpoint prefixes in `directory`, newest (highest number) first.

  Read from the `ckpt-N.index` files themselves, not from the `checkpoint`
  index file, which may be missing or stale.
  """
  found = []
  for path in glob.glob(os.path.join(directory, 'ckpt-*.index')):
    match = re.fullmatch(r'ckpt-(\d+)\.index', os.path.basename(path))
    if match:
      found.append((int(match.group(1)), path[:-len('.index')]))
  return [prefix for _, prefix in sorted(found, reverse=True)]


def check_output_dir(path: str, overwrite: bool = False) -> str:
  """Checks that a directory may be written (`atomic_directory`'s rules).

  Args:
    path: the directory.
    overwrite: whether an existing non-empty directory may be replaced.

  Returns:
    The absolute path.

  Raises:
    RunDirError: if `path` is a file, or a non-empty directory without
      `overwrite`.
  """
  path = os.path.abspath(os.path.expanduser(path))
  if os.path.exists(path) and not os.path.isdir(path):
    raise RunDirError(f'export_dir: {path!r} is a file, not a directory.')
  if os.path.isdir(path) and os.listdir(path) and not overwrite:
    raise RunDirError(f'export_dir: {path!r} exists and is not empty; '
                      f'choose another or pass --overwrite.')
  return path


def read_checkpoint(path: str) -> Dict[str, object]:
  """Every tensor of checkpoint `path` (checksums verified).

  Raises:
    tf.errors.OpError: e.g. `DataLossError` for a truncated or corrupt file.
  """
  reader = tf.train.load_checkpoint(path)
  return {name: reader.get_tensor(name)
          for name in reader.get_variable_to_shape_map()}


def restore_newest_readable(checkpoint: tf.train.Checkpoint, directory: str,
                            partial: bool = False):
  """Restores the newest readable `ckpt-N` of `directory` into `checkpoint`.

  The candidates are the checkpoint files themselves, newest first (the
  `checkpoint` index file may be missing or stale). Each is read whole
  first (checksums), so that a corrupt file fails before a restore could
  leave values pending on the objects; one that is unreadable or does not
  match the objects is skipped.

  Args:
    checkpoint: what to restore into.
    directory: the checkpoint directory.
    partial: allow values in the file that `checkpoint` has no object for
      (an export restores no training-only objects).

  Returns:
    (the path restored or None, [one 'ckpt-N (Error: reason)' per skipped
    file]).
  """
  skipped = []
  for path in checkpoint_files(directory):
    try:
      read_checkpoint(path)
      status = checkpoint.restore(path)
      if partial:
        status = status.expect_partial()
      status.assert_existing_objects_matched()
    except (tf.errors.OpError, ValueError, AssertionError) as e:
      reason = ' '.join(str(e).split())[:160]
      skipped.append(f'{os.path.basename(path)} ({type(e).__name__}: '
                     f'{reason})')
      continue
    return path, skipped
  return None, skipped


def atomic_directory(path: str, write, overwrite: bool = False) -> str:
  """Writes a directory atomically: `write(tmp)`, then a rename to `path`.

  A crash leaves the old directory (or none), never a partial one.

  Args:
    path: the directory to create.
    write: `(tmp_dir) -> Any`, fills the temp directory.
    overwrite: replace an existing non-empty `path` (else refuse).

  Returns:
    The absolute `path`.

  Raises:
    RunDirError: if `path` is a file, a non-empty directory (without
      `overwrite`), or its parent is not writable.
  """
  path = check_output_dir(path, overwrite)
  parent = os.path.dirname(path)
  try:
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(path) + '.tmp-',
                           dir=parent)
  except OSError as e:
    raise RunDirError(f'export_dir: cannot write to {parent!r}: '
                      f'{e.strerror or e}.') from None
  try:
    write(tmp)
    old = None
    if os.path.exists(path):
      old = tempfile.mkdtemp(prefix=os.path.basename(path) + '.old-',
                             dir=parent)
      os.rmdir(old)
      os.rename(path, old)
    os.rename(tmp, path)
    if old is not None:
      shutil.rmtree(old, ignore_errors=True)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return path


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

    Raises:
      RunDirError: if the directory is unusable or another process holds
        its lock (`RunLock`; released by `close`, or by the OS when the
        process ends).
    """
    self.root_dir = prepare_root_dir(root_dir)
    # Before anything in the directory is touched: one process at a time.
    self._lock = RunLock(self.root_dir).acquire()
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
    self._last_saved_path = None
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

  def restore(self, from_scratch: bool = False) -> bool:
    """Restores the newest readable checkpoint, if any.

    The candidates are the `ckpt-N` files themselves, newest first (the
    `checkpoint` index file may be missing or stale); an unreadable one
    (truncated, corrupt, or not matching the objects) is skipped with a
    line saying why, and the next older one is tried.

    Args:
      from_scratch: if no checkpoint is readable although some exist, start
        from step 0 (their files are kept until the new run's saves rotate
        them out) instead of refusing.

    Returns:
      True if a checkpoint was restored.

    Raises:
      RunDirError: if checkpoints exist but none is readable (and not
        `from_scratch`).
    """
    path, skipped = restore_newest_readable(self.checkpoint,
                                            self.manager.directory)
    if path is not None:
      self._restored(path, skipped)
      return True
    if skipped and not from_scratch:
      raise RunDirError(
          f'root_dir: none of the {len(skipped)} checkpoints in '
          f'{self.manager.directory} is readable: {"; ".join(skipped)}. '
          f'Refusing to start from step 0 over them; pass --from_scratch '
          f'to do so.')
    for reason in skipped:
      print(f'Skipped unreadable checkpoint {reason}; starting from step 0 '
            f'(from_scratch).', file=self._stream, flush=True)
    return False

  def _restored(self, path: str, skipped: List[str]):
    self.restored_from = path
    if self._step_fn is not None:
      step = int(self._step_fn())
      self._schedule_from(step)
      self._truncate_history(step)
    for reason in skipped:
      print(f'Skipped unreadable checkpoint {reason}', file=self._stream,
            flush=True)
    index = os.path.join(self.manager.directory, 'checkpoint')
    note = '' if os.path.exists(index) else ' (no checkpoint index file)'
    print(f'Restored {path}{note}', file=self._stream, flush=True)

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
    self._last_saved_path = self.manager.save(checkpoint_number=step)
    return self._last_saved_path

  @property
  def last_checkpoint(self) -> Optional[str]:
    """The newest checkpoint saved or restored by this run, if any."""
    if self._last_saved_path is not None:
      return self._last_saved_path
    return self.restored_from

  def close(self):
    """Releases the run directory's lock (idempotent)."""
    self._lock.release()

  def finish(self, step: int):
    """Saves a final checkpoint and flushes the summaries."""
    self.maybe_save(step, force=True)
    if not self._config_written:
      self.write_operative_config()
    if self._writer is not None:
      self._writer.flush()
