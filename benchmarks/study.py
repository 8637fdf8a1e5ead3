"""Helpers shared by the study scripts: resumable CLI runs and statistics.

`benchmarks/` is not a package; the study scripts put this folder on
`sys.path` and `import study`.
"""

import concurrent.futures
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time

__all__ = ['REPO', 'run_cli', 'run_all', 'snapshot', 'restore', 'stats',
           'curves', 'flip_response', 'PHASES', 'split_by_phase',
           'phase_name', 'phase_means', 'period_means', 'sample_stats']

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))


def run_cli(gin_file, root, bindings, steps, step_key='env_steps'):
  """Runs `bmg-train` on `gin_file` into `root`, resuming or skipping.

  Args:
    gin_file: path of the gin file.
    root: the run directory; its `stdout.log` collects the output.
    bindings: list of gin bindings.
    steps: the budget; a run whose `result.json` already reached it is not
      re-run.
    step_key: the budget's key in `result.json` ('env_steps', 'frames').

  Returns:
    (the run's result.json as a dict, wall seconds or None if skipped).

  Raises:
    RuntimeError: if the run fails.
  """
  result_path = os.path.join(root, 'result.json')
  if os.path.exists(result_path):
    with open(result_path) as f:
      done = json.load(f)
    if done[step_key] >= steps:
      return done, None
  cmd = [sys.executable, '-m', 'pipelines.train', f'--gin_file={gin_file}',
         f'--root_dir={root}'] + [f'--gin_bindings={b}' for b in bindings]
  os.makedirs(root, exist_ok=True)
  start = time.time()
  with open(os.path.join(root, 'stdout.log'), 'a') as log:
    proc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                          env={**os.environ, 'TF_USE_LEGACY_KERAS': '1',
                               'TF_CPP_MIN_LOG_LEVEL': '2'}, check=False)
  if proc.returncode:
    raise RuntimeError(f'{gin_file} into {root} failed; see '
                       f'{root}/stdout.log')
  with open(result_path) as f:
    return json.load(f), time.time() - start


def run_all(jobs, run_one, workers, report):
  """Runs every (variant, seed) job, `workers` at a time.

  Args:
    jobs: list of (variant, seed) pairs.
    run_one: `(variant, seed) -> result dict`.
    workers: how many run at once (each is a subprocess).
    report: `(variant, seed, result) -> str`, printed as each finishes.

  Returns:
    The results, in the order they finished.
  """
  results = []
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    futures = {pool.submit(run_one, v, s): (v, s) for v, s in jobs}
    for future in concurrent.futures.as_completed(futures):
      v, s = futures[future]
      result = future.result()
      results.append(result)
      print(report(v, s, result), flush=True)
  return results


# What a run directory needs to resume: its log, its config, its result
# (if it has finished) and its newest checkpoint. Summaries, stdout and
# exports are left out; a resumed run starts a new events file.
_RUN_FILES = ('history.jsonl', 'operative_config.gin', 'result.json')


class StudyStateError(RuntimeError):
  """A snapshot or restore that would lose or corrupt a run's state."""


def _unlocked(root):
  """Raises StudyStateError if a live process holds `root/.lock`.

  The pipeline's `RunLock` is an `fcntl.flock` that the OS drops when its
  process exits, so a crashed or killed run leaves no stale lock.
  """
  path = os.path.join(root, '.lock')
  if not os.path.exists(path):
    return
  with open(path) as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      raise StudyStateError(
          f'{root} is in use by a running process (lock {path}); stop the '
          'study first') from e
    fcntl.flock(f, fcntl.LOCK_UN)


def _progress(root, step_key):
  """(steps reached by `root`'s newest checkpoint or result, its prefix).

  The prefix is the newest checkpoint's file prefix ('ckpt-100380', whose
  number is the step the pipeline saved at) or None.
  """
  steps, prefix = 0, None
  state = os.path.join(root, 'checkpoints', 'checkpoint')
  if os.path.exists(state):
    with open(state) as f:
      match = re.search(r'^model_checkpoint_path: "(.*?-(\d+))"', f.read(),
                        re.M)
    if match:
      prefix, steps = os.path.basename(match.group(1)), int(match.group(2))
  result = os.path.join(root, 'result.json')
  if os.path.exists(result):
    with open(result) as f:
      steps = max(steps, int(json.load(f)[step_key]))
  return steps, prefix


def _copy_run(src, dst, prefix):
  """Replaces `dst`'s state by `src`'s: `_RUN_FILES` and checkpoint `prefix`.

  Without a prefix no checkpoint is copied and `dst` keeps none.
  """
  os.makedirs(dst, exist_ok=True)
  for name in _RUN_FILES:
    if os.path.exists(os.path.join(src, name)):
      shutil.copy2(os.path.join(src, name), os.path.join(dst, name))
    elif os.path.exists(os.path.join(dst, name)):
      os.remove(os.path.join(dst, name))
  shutil.rmtree(os.path.join(dst, 'checkpoints'), ignore_errors=True)
  if prefix is None:
    return
  os.makedirs(os.path.join(dst, 'checkpoints'))
  src_ckpt = os.path.join(src, 'checkpoints')
  names = [n for n in os.listdir(src_ckpt) if n.startswith(prefix + '.')]
  if not any(n.endswith('.index') for n in names):
    raise StudyStateError(f'{src_ckpt}: checkpoint {prefix} has no index')
  for name in names:
    shutil.copy2(os.path.join(src_ckpt, name),
                 os.path.join(dst, 'checkpoints', name))
  with open(os.path.join(dst, 'checkpoints', 'checkpoint'), 'w') as f:
    f.write(f'model_checkpoint_path: "{prefix}"\n'
            f'all_model_checkpoint_paths: "{prefix}"\n')


def snapshot(out, dest, steps, step_key='env_steps'):
  """Copies the state a stopped study needs to resume into `dest`.

  For a study that spans sessions on machines that keep nothing: `dest` can
  be committed, and `restore` brings it back. Per run under `out/runs`:
  `history.jsonl`, `operative_config.gin`, `result.json` if any, and, while
  the run has not reached `steps`, its newest checkpoint only (a finished
  run keeps none). `dest`'s earlier state of each run is replaced.

  Args:
    out: the study's output directory.
    dest: where the snapshot goes (`dest/runs/<run>/...`).
    steps: the study's budget per run.
    step_key: the budget's key in `result.json`.

  Returns:
    `{run name: (steps reached, 'finished' or 'checkpoint')}`.

  Raises:
    StudyStateError: if a run is still running.
  """
  runs = os.path.join(out, 'runs')
  got = {}
  for name in sorted(os.listdir(runs)) if os.path.isdir(runs) else ():
    root = os.path.join(runs, name)
    _unlocked(root)
    reached, prefix = _progress(root, step_key)
    finished = reached >= steps and os.path.exists(
        os.path.join(root, 'result.json'))
    saved = os.path.join(dest, 'runs', name)
    shutil.rmtree(saved, ignore_errors=True)  # Exactly this snapshot.
    _copy_run(root, saved, None if finished else prefix)
    got[name] = (reached, 'finished' if finished else 'checkpoint')
  return got


def restore(src, out, step_key='env_steps'):
  """Brings runs back from a `snapshot` in `src` into the study in `out`.

  A run that `out` already holds further along (by checkpoint or result) is
  left alone, so restoring twice, or after the study went on, loses nothing.

  Args:
    src: a directory written by `snapshot`.
    out: the study's output directory.
    step_key: the budget's key in `result.json`.

  Returns:
    `{run name: steps restored}` for the runs copied.

  Raises:
    StudyStateError: if a run in `out` is still running, or `src` holds no
      runs.
  """
  runs = os.path.join(src, 'runs')
  if not os.path.isdir(runs) or not os.listdir(runs):
    raise StudyStateError(f'{src}: no snapshot of any run')
  got = {}
  for name in sorted(os.listdir(runs)):
    root = os.path.join(out, 'runs', name)
    if os.path.isdir(root):
      _unlocked(root)
    reached, prefix = _progress(os.path.join(runs, name), step_key)
    if os.path.isdir(root) and _progress(root, step_key)[0] >= reached:
      continue
    _copy_run(os.path.join(runs, name), root, prefix)
    got[name] = reached
  return got


def stats(values):
  """(mean, sample standard deviation) of a list of numbers."""
  n = len(values)
  mean = sum(values) / n
  std = (sum((v - mean)**2 for v in values) / (n - 1))**0.5 if n > 1 else 0.0
  return mean, std


def curves(runs, key, step_key='env_steps'):
  """Steps `[N]` and values `[runs, N]` over the history rows all share.

  Rows without `key` (e.g. a window without finished episodes) give NaN.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  runs = [r for r in runs if r['history']]
  if not runs:
    return None, None
  length = min(len(r['history']) for r in runs)
  steps = np.array([row[step_key] for row in runs[0]['history'][:length]])
  values = np.array([[row.get(key, np.nan) for row in r['history'][:length]]
                     for r in runs], dtype=float)
  return steps, values


def flip_response(steps, values, flip_period, window=10_000):
  """How a learned hyperparameter responds to reward flips.

  Args:
    steps: `[T]` env steps of the logged rows.
    values: `[N, T]` the hyperparameter per seed.
    flip_period: env steps between flips (flips at multiples of it).
    window: env steps before and after each point.

  Returns:
    dict: 'flip_ratio' and 'control_ratio', the medians over (point, seed)
    of (mean value in the `window` after a point) / (mean in the `window`
    before it), at the flips and at control points half-way between flips
    (flips whose after-window is not fully logged are left out), and
    'flips_up', the fraction of (flip, seed) pairs whose value rose. All
    None without a complete flip.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  steps = np.asarray(steps, dtype=float)
  values = np.asarray(values, dtype=float)

  def ratios(points):
    out = []
    for p in points:
      before = (steps > p - window) & (steps <= p)
      after = (steps > p) & (steps <= p + window)
      if before.any() and after.any():
        out.extend(values[:, after].mean(1) / values[:, before].mean(1))
    return np.array(out)

  last = steps.max() if len(steps) else 0
  flips = np.arange(flip_period, last - window + 1, flip_period)
  flip = ratios(flips)
  if not len(flip):
    return {'flip_ratio': None, 'control_ratio': None, 'flips_up': None}
  control = ratios(flips - flip_period // 2)
  return {'flip_ratio': float(np.median(flip)),
          'control_ratio': float(np.median(control)),
          'flips_up': float(np.mean(flip > 1.0))}


# Phases of a 100k-step flip period, in env steps since the last flip: the
# agent first meets the flipped rewards, then must re-explore, then can
# exploit. Scaled to other flip periods.
PHASES = ((0, 20_000), (20_000, 50_000), (50_000, 100_000))


def split_by_phase(rows, flip_period, step_key='env_steps', windows=False,
                   phases=PHASES):
  """One run's logged rows grouped by `PHASES`, after the first flip period.

  Args:
    rows: one run's dicts with `step_key`, the env step at which each was
      logged, in increasing order.
    flip_period: env steps between reward flips.
    step_key: the step's key in each row.
    windows: False: each row is a value at its step (epsilon, the last
      meta-step's loss) and falls in the phase of that step. True: each row
      averages the steps since the previous row (since 0 for the first), as
      reward per step does; it falls in the phase of its window's midpoint,
      and a window with a flip inside it falls in none (it mixes the old
      rewards with the new).
    phases: `((start, end), ...)` in env steps since the last flip, for a
      100k flip period (scaled to `flip_period`).

  Returns:
    `[((start, end), rows), ...]`, one per phase, `start < steps since the
    last flip <= end`; rows of the first period (from an empty replay) are
    left out.
  """
  scale = flip_period / 100_000
  placed = []  # (steps since the last flip, row)
  previous = 0
  for r in rows:
    end = r[step_key]
    if not windows:
      placed.append((end, r))
    elif previous // flip_period == (end - 1) // flip_period:
      # Steps `previous .. end - 1` share one reward sign (a flip at
      # `previous` itself starts the window): the midpoint's phase.
      placed.append(((previous + end) / 2, r))
    previous = end
  out = []
  for start, end in phases:
    start, end = start * scale, end * scale
    out.append(((start, end), [
        r for at, r in placed if at > flip_period and
        start < (at - 1) % flip_period + 1 <= end]))
  return out


def phase_name(start, end):
  """'20k-50k' for a phase `(start, end)` in env steps."""
  return f'{start // 1000:.0f}k-{end // 1000:.0f}k'


def phase_means(runs, flip_period, key, phases=PHASES,
                step_key='env_steps', windows=True):
  """Each run's mean of `key` in each phase since the last flip.

  The per-seed counterpart of averaging `split_by_phase` over seeds: it
  keeps the spread between runs (for a band in a plot).

  Args:
    runs: dicts with a 'history' (rows as `split_by_phase` takes them).
    flip_period: env steps between reward flips.
    key: the rows' value to average (rows without it are left out).
    phases: as in `split_by_phase`.
    step_key: the step's key in each row.
    windows: as in `split_by_phase` (True for windowed values such as
      reward per step, False for values at a step such as epsilon).

  Returns:
    A float `np.ndarray` `[len(runs), len(phases)]`; NaN where a run has no
    row in a phase.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  out = np.full((len(runs), len(phases)), np.nan)
  for i, run in enumerate(runs):
    split = split_by_phase(run['history'], flip_period, step_key=step_key,
                           windows=windows, phases=phases)
    for j, (_, rows) in enumerate(split):
      values = [r[key] for r in rows if r.get(key) is not None]
      if values:
        out[i, j] = sum(values) / len(values)
  return out


def period_means(rows, flip_period, key, step_key='env_steps'):
  """One run's windowed `key` (e.g. reward per step) over each flip period.

  Each logged row averages the steps since the previous row; it counts,
  weighted by its length, towards the period of its window's midpoint.
  Only periods the rows cover to their end are returned.

  Args:
    rows: one run's dicts with `step_key` and `key`, in increasing step.
    flip_period: env steps between reward flips.
    key: the windowed value.
    step_key: the step's key in each row.

  Returns:
    (starts, values): float `np.ndarray`s `[P]`, each whole period's first
    env step and its step-weighted mean of `key`.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  total, weight = {}, {}
  previous = 0
  for r in rows:
    end = r[step_key]
    if r.get(key) is not None and end > previous:
      period = int((previous + end) / 2 // flip_period)
      total[period] = total.get(period, 0.0) + r[key] * (end - previous)
      weight[period] = weight.get(period, 0) + (end - previous)
    previous = end
  whole = sorted(p for p in total if (p + 1) * flip_period <= previous)
  return (np.array([p * flip_period for p in whole], dtype=float),
          np.array([total[p] / weight[p] for p in whole], dtype=float))


def sample_stats(samples, reference=None):
  """Statistics of per-sample estimates of one scalar (a meta-gradient).

  Args:
    samples: `[S]` floats; non-finite entries (a diverged sample) are
      counted in 'finite_fraction' and left out of the rest.
    reference: optional `[S]` paired samples of a reference estimator.

  Returns:
    dict: 'mean', 'std' (sample), 'se', 'snr' (|mean| / std), 'drift'
    (mean / sqrt(mean^2 + std^2): what Adam's normalised step m / sqrt(v)
    tends to for this stream), 'push_up_fraction' (fraction of negative
    samples: a descent step raises the value), 'finite_fraction'; with a
    reference, 'corr_with_reference' and 'sign_agrees_with_reference'.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  g = np.asarray(samples, dtype=float)
  ok = np.isfinite(g)
  if reference is not None:
    ok &= np.isfinite(np.asarray(reference, dtype=float))
  finite = float(np.mean(np.isfinite(g)))
  g = g[ok]
  nan = float('nan')
  if len(g) < 2:
    return {'mean': nan, 'std': nan, 'se': nan, 'snr': nan, 'drift': nan,
            'push_up_fraction': nan, 'finite_fraction': finite}
  mean, std = float(g.mean()), float(g.std(ddof=1))
  out = {
      'finite_fraction': finite,
      'mean': mean, 'std': std, 'se': std / np.sqrt(len(g)),
      'snr': abs(mean) / std if std > 0 else float('inf'),
      'drift': (mean / np.sqrt(mean**2 + std**2) if std > 0 else
                float(np.sign(mean))),
      'push_up_fraction': float(np.mean(g < 0)),
  }
  if reference is not None:
    r = np.asarray(reference, dtype=float)[ok]
    out['corr_with_reference'] = float(np.corrcoef(g, r)[0, 1])
    out['sign_agrees_with_reference'] = bool(np.sign(mean) ==
                                             np.sign(r.mean()))
  return out
