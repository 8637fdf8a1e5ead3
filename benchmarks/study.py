"""Helpers shared by the study scripts: resumable CLI runs and statistics.

`benchmarks/` is not a package; the study scripts put this folder on
`sys.path` and `import study`.
"""

import concurrent.futures
import json
import os
import subprocess
import sys
import time

__all__ = ['REPO', 'run_cli', 'run_all', 'stats', 'curves', 'flip_response',
           'PHASES', 'split_by_phase', 'phase_name', 'sample_stats']

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
