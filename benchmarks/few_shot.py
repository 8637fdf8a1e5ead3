r"""Few-shot study: MAML (K=1, 5) against BMG (K=1, L=5, 10) on CPU tasks.

    python benchmarks/few_shot.py                    # both tasks, 3 seeds
    python benchmarks/few_shot.py --tasks=sinusoid --seeds=1 --steps=500 \
      --out=/tmp/few_shot                            # smoke run

BMG_SPEC section 2.4; the paper's claim: BMG with a short differentiated
unroll (K=1) and a longer bootstrapped target matches or beats MAML with a
long differentiated unroll, at lower cost. Tasks (`gin/few_shot/`):

* `sinusoid`: MAML's 10-shot sinusoid regression, 40-40 MLP, inner SGD
  0.01, 25 tasks per meta-step; score: held-out MSE (lower is better);
* `digits`: 5-way 1-shot classification on scikit-learn's 8x8 digits
  (meta-train digits 0-4, held-out tasks from digits 5-9, rotations as
  extra classes), a 4-block conv net, inner SGD 0.4, 16 tasks per
  meta-step; score: held-out accuracy.

Variants: `maml_K1`, `maml_K5` (MG through K steps), `fomaml_K5`
(first-order MAML: the inner gradients as constants), `bmg_K1_L5`,
`bmg_K1_L10` (one differentiated step, L-1 bootstrap steps on the support
set, a target step on the query set, matching on the query set),
`bmg_K1_L5_sq` (the target step on the support and query sets together). Every run
adapts held-out tasks with its own K steps; the same `--eval_tasks` tasks
for every run (a fixed evaluation seed).

Each (task, variant, seed) is one `bmg-train` run in its own subprocess,
`--workers` at a time (1 by default, so that the timings of the variants are
taken under the same load, interleaved seed by seed), under
`<out>/runs/<task>_<variant>_s<seed>`; runs resume and finished runs are
skipped. Writes to `<out>` (default `results/few_shot`):

* `few_shot.json`: per run its final score (mean and 95% interval over the
  held-out tasks), seconds per meta-step (meta-steps only, not
  evaluation), the training seconds to reach the target score, and its
  history; per variant the means over seeds;
* `few_shot.md`: the tables;
* `<task>.png`: held-out score against training seconds and against
  meta-steps, mean over seeds.

Cost is measured side by side, not taken from the training runs (which ran
at different times, under different machine load): for each task every
variant is built in this process, compiled, and timed for
`--timing_steps` meta-steps (each waited for, as the pipeline does), the
variants interleaved, `--timing_rounds` times; the median is its ms per
meta-step. The time to reach the target score is the meta-steps a run
needed (its first evaluation at or beyond the target) times that cost.

Then, so that methods trained with different K are also compared at equal
test-time adaptation, every final checkpoint is evaluated again on the same
held-out tasks after each of `--adapt_steps` (default 1, 5, 10) inner steps
(`adaptation` in the JSON, a second table in the markdown).

The target score of a task is the worst run's final score (so that every
run reaches it, and the time to reach it compares them), unless
`--target_<task>` sets it.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import study  # pylint: disable=g-import-not-at-top

REPO = study.REPO
GIN_DIR = os.path.join(REPO, 'gin', 'few_shot')
TASKS = {
    # task -> (metric, higher is better, default meta-steps, eval_every)
    'sinusoid': ('mse', False, 10_000, 500),
    'digits': ('accuracy', True, 3_000, 250),
}
VARIANTS = {
    'maml_K1': ('maml', ['BootstrapConfig.k_steps = 1']),
    'maml_K5': ('maml', ['BootstrapConfig.k_steps = 5']),
    'fomaml_K5': ('maml', ['BootstrapConfig.k_steps = 5',
                           'BootstrapConfig.first_order = True']),
    'bmg_K1_L5': ('bmg', ['BootstrapConfig.k_steps = 1',
                          'BootstrapConfig.l_steps = 5']),
    'bmg_K1_L10': ('bmg', ['BootstrapConfig.k_steps = 1',
                           'BootstrapConfig.l_steps = 10']),
    # The target step on the support and query sets together.
    'bmg_K1_L5_sq': ('bmg', ['BootstrapConfig.k_steps = 1',
                             'BootstrapConfig.l_steps = 5',
                             "few_shot.build.target_data = 'support_query'"]),
}
COLOURS = {'maml_K1': 'tab:gray', 'maml_K5': 'tab:blue',
           'fomaml_K5': 'tab:cyan',
           'bmg_K1_L5': 'tab:orange', 'bmg_K1_L10': 'tab:red',
           'bmg_K1_L5_sq': 'tab:brown'}


def _run_one(task, variant, seed, args):
  """Runs (or resumes, or skips) one run; returns its result.json."""
  root = os.path.join(args.out, 'runs', f'{task}_{variant}_s{seed}')
  method, extra = VARIANTS[variant]
  steps = args.steps or TASKS[task][2]
  eval_every = args.eval_every or TASKS[task][3]
  bindings = [
      f'few_shot.build.num_meta_steps = {steps}',
      f'few_shot.build.seed = {seed}',
      f'few_shot.build.eval_tasks = {args.eval_tasks}',
      f'few_shot.build.eval_every = {eval_every}',
      f'few_shot.build.log_every = {eval_every}',
      f'few_shot.build.checkpoint_every = {eval_every * 4}',
      'few_shot.build.export = False',
  ] + extra + list(args.gin_bindings)
  info = {'task': task, 'variant': variant, 'seed': seed}
  try:
    result, wall = study.run_cli(
        os.path.join(GIN_DIR, f'{method}_{task}.gin'), root, bindings, steps,
        step_key='meta_steps')
  except RuntimeError:
    # The run stopped with an error (e.g. its finite-state check): the last
    # line of its log says why.
    with open(os.path.join(root, 'stdout.log')) as f:
      reason = f.read().strip().splitlines()[-1]
    return {**info, 'failed': reason}
  return {**result, **info, 'wall_seconds': wall}


def _adaptation(results, args):
  """Held-out score of each run's final initialisation after n steps."""
  sys.path.insert(0, REPO)
  # pylint: disable=g-import-not-at-top
  os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
  import gin
  import tensorflow as tf
  from pipelines import experiment  # pylint: disable=unused-import
  from pipelines import few_shot
  # pylint: enable=g-import-not-at-top
  out = {}
  for r in results:
    root = os.path.join(args.out, 'runs',
                        f'{r["task"]}_{r["variant"]}_s{r["seed"]}')
    scores = {}
    for n in args.adapt_steps:
      gin.clear_config()
      gin.parse_config_files_and_bindings(
          [os.path.join(root, 'operative_config.gin')],
          ['few_shot.build.export = False',
           f'few_shot.build.eval_adapt_steps = {n}'])
      exp = few_shot.build()
      path = tf.train.latest_checkpoint(os.path.join(root, 'checkpoints'))
      tf.train.Checkpoint(**exp.checkpoint_objects()).restore(
          path).expect_partial()
      scores[n] = exp.train().summary()['eval']['mean']
    gin.clear_config()
    out[(r['task'], r['variant'], r['seed'])] = scores
    print(f'{r["task"]} {r["variant"]} seed {r["seed"]}: after '
          + ', '.join(f'{n} steps {v:.4f}' for n, v in scores.items()),
          flush=True)
  return out


def _adaptation_lines(task, adaptation, args):
  metric = TASKS[task][0]
  lines = [f'{task}: held-out {metric} of the final initialisation after n '
           f'inner steps at test time (mean over seeds)', '',
           '| variant | ' + ' | '.join(f'n={n}' for n in args.adapt_steps)
           + ' |', '|---|' + '---|' * len(args.adapt_steps)]
  summary = {}
  for v in args.variants:
    runs = [s for (t, var, _), s in adaptation.items()
            if t == task and var == v]
    if not runs:
      continue
    means = {n: study.stats([s[n] for s in runs])[0]
             for n in args.adapt_steps}
    summary[v] = means
    lines.append(f'| {v} | ' + ' | '.join(f'{means[n]:.4f}'
                                          for n in args.adapt_steps) + ' |')
  return summary, lines


def _timing(args):
  """{task: {variant: median ms per meta-step}}, measured side by side."""
  sys.path.insert(0, REPO)
  # pylint: disable=g-import-not-at-top
  os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
  import time
  import gin
  from pipelines import experiment  # pylint: disable=unused-import
  from pipelines import few_shot
  # pylint: enable=g-import-not-at-top
  out = {}
  for task in args.tasks:
    learners = {}
    for v in args.variants:
      method, extra = VARIANTS[v]
      gin.clear_config()
      gin.parse_config_files_and_bindings(
          [os.path.join(GIN_DIR, f'{method}_{task}.gin')],
          extra + ['few_shot.build.export = False'] + args.gin_bindings)
      learners[v] = few_shot.build().learner
      learners[v].step()['meta_loss'].numpy()  # Trace and compile.
    gin.clear_config()
    times = {v: [] for v in learners}
    for _ in range(args.timing_rounds):
      for v, learner in learners.items():
        start = time.perf_counter()
        for _ in range(args.timing_steps):
          learner.step()['meta_loss'].numpy()
        times[v].append(1e3 * (time.perf_counter() - start) /
                        args.timing_steps)
    out[task] = {v: sorted(t)[len(t) // 2] for v, t in times.items()}
    print(f'{task} ms per meta-step, side by side: ' + ', '.join(
        f'{v} {ms:.2f}' for v, ms in out[task].items()), flush=True)
  return out


def _steps_to(history, metric, higher, target):
  """Meta-steps at the first evaluation that reaches `target`."""
  for row in history:
    value = row.get(f'eval_{metric}')
    if value is not None and (value >= target if higher else
                              value <= target):
      return row['meta_steps']
  return None


def _summarise(task, results, args, cost):
  metric, higher, _, _ = TASKS[task]
  failed = [r for r in results if r['task'] == task and 'failed' in r]
  runs = {v: sorted((r for r in results if r['task'] == task and
                     r['variant'] == v and 'failed' not in r),
                    key=lambda r: r['seed'])
          for v in args.variants}
  runs = {v: rs for v, rs in runs.items() if rs}
  finals = [r['eval']['mean'] for rs in runs.values() for r in rs]
  target = getattr(args, f'target_{task}')
  if target is None:  # The worst run's final score: every run reaches it.
    target = min(finals) if higher else max(finals)
  out = {'metric': metric, 'higher_is_better': higher, 'target': target,
         'variants': {},
         'failed': [{k: r[k] for k in ('variant', 'seed', 'failed')}
                    for r in failed]}
  lines = [f'### {task}: held-out {metric} '
           f'({"higher" if higher else "lower"} is better)', '',
           f'| variant | {metric} (mean over seeds) | s.e. over seeds | '
           f'95% interval over tasks (mean) | seeds | ms per meta-step '
           f'(side by side) | meta-steps to reach {target:.4g} | seconds to '
           f'reach it | per seed |',
           '|---|---|---|---|---|---|---|---|---|']
  for v, rs in runs.items():
    scores = [r['eval']['mean'] for r in rs]
    mean, std = study.stats(scores)
    ms = cost[v]
    reach = [_steps_to(r['history'], metric, higher, target) for r in rs]
    reached = [t for t in reach if t is not None]
    out['variants'][v] = {
        'score_mean': mean, 'score_se': std / len(rs)**0.5,
        'per_seed': scores,
        'task_ci95_mean': study.stats([r['eval']['ci95'] for r in rs])[0],
        'eval_tasks': rs[0]['eval']['tasks'],
        'ms_per_meta_step': ms,
        'training_ms_per_meta_step': study.stats(
            [1e3 * r['train_seconds'] / r['meta_steps'] for r in rs])[0],
        'meta_steps_to_target': reach,
        'meta_steps_to_target_mean': (study.stats(reached)[0]
                                      if len(reached) == len(rs) else None)}
    s = out['variants'][v]
    steps_mean = s['meta_steps_to_target_mean']
    s['seconds_to_target_mean'] = (None if steps_mean is None else
                                   steps_mean * ms / 1e3)
    reach_text = (f'{steps_mean:.0f} | {s["seconds_to_target_mean"]:.1f}'
                  if steps_mean is not None else
                  f'{len(reached)}/{len(rs)} seeds reach it | -')
    lines.append(
        f'| {v} | {mean:.4f} | {s["score_se"]:.4f} | '
        f'+-{s["task_ci95_mean"]:.4f} ({s["eval_tasks"]} tasks) | '
        f'{len(rs)} | {ms:.2f} | {reach_text} | '
        f'{", ".join(f"{x:.3f}" for x in scores)} |')
  if failed:
    lines += ['', 'Runs that stopped (not in the means):', '']
    lines += [f'- {r["variant"]} seed {r["seed"]}: {r["failed"]}'
              for r in failed]
  return out, lines


def _plot(task, results, args, cost):
  """Held-out score against seconds (meta-steps times the side-by-side
  cost) and against meta-steps."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  metric = TASKS[task][0]
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for v in args.variants:
    rs = [r for r in results if r['task'] == task and r['variant'] == v]
    rows = [[h for h in r['history'] if f'eval_{metric}' in h] for r in rs]
    if not rows or not all(rows):
      continue
    n = min(len(r) for r in rows)
    score = np.array([[h[f'eval_{metric}'] for h in r[:n]] for r in rows])
    steps = [h['meta_steps'] for h in rows[0][:n]]
    secs = np.array(steps) * cost[v] / 1e3
    axes[0].plot(secs, score.mean(0), 'o-', color=COLOURS[v],
                 label=v)
    axes[1].plot(steps, score.mean(0), 'o-', color=COLOURS[v], label=v)
    axes[1].fill_between(steps, score.min(0), score.max(0),
                         color=COLOURS[v], alpha=0.15)
  axes[0].set_xlabel('seconds: meta-steps x ms per meta-step (side by side)')
  axes[1].set_xlabel('meta-steps')
  for ax in axes:
    ax.set_ylabel(f'held-out {metric}')
    ax.grid(alpha=0.3)
  axes[1].legend()
  fig.suptitle(f'{task}: mean over seeds (band: min-max)')
  fig.tight_layout()
  fig.savefig(os.path.join(args.out, f'{task}.png'), dpi=100)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--tasks', default=','.join(TASKS))
  parser.add_argument('--variants', default=','.join(VARIANTS))
  parser.add_argument('--seeds', type=int, default=3)
  parser.add_argument('--first_seed', type=int, default=100,
                      help='seeds first_seed .. first_seed + seeds - 1')
  parser.add_argument('--steps', type=int, default=None,
                      help='meta-steps per run (default: per task)')
  parser.add_argument('--eval_every', type=int, default=None)
  parser.add_argument('--eval_tasks', type=int, default=600)
  parser.add_argument('--workers', type=int, default=1)
  parser.add_argument('--target_sinusoid', type=float, default=None)
  parser.add_argument('--target_digits', type=float, default=None)
  parser.add_argument('--timing_steps', type=int, default=50)
  parser.add_argument('--timing_rounds', type=int, default=3)
  parser.add_argument('--adapt_steps', default='1,5,10',
                      help='test-time inner steps of the second evaluation')
  parser.add_argument('--gin_bindings', action='append', default=[],
                      help='extra bindings for every run')
  parser.add_argument('--out', default=os.path.join(REPO, 'results',
                                                     'few_shot'))
  args = parser.parse_args()
  args.tasks = [t for t in args.tasks.split(',') if t]
  args.variants = [v for v in args.variants.split(',') if v]
  for arg, known in (('tasks', TASKS), ('variants', VARIANTS)):
    unknown = set(getattr(args, arg)) - set(known)
    if unknown:
      parser.error(f'--{arg}: unknown {sorted(unknown)}; known: '
                   f'{sorted(known)}')
  if args.seeds < 1:
    parser.error('--seeds: must be positive')
  args.adapt_steps = [int(n) for n in args.adapt_steps.split(',') if n]
  args.out = os.path.abspath(args.out)
  os.makedirs(args.out, exist_ok=True)
  seeds = range(args.first_seed, args.first_seed + args.seeds)
  jobs = [((t, v), s) for t in args.tasks for s in seeds
          for v in args.variants]

  def report(tv, s, r):
    if 'failed' in r:
      return f'{tv[0]} {tv[1]} seed {s}: FAILED: {r["failed"]}'
    ev = r['eval']
    return (f'{tv[0]} {tv[1]} seed {s}: held-out {ev["metric"]} '
            f'{ev["mean"]:.4f} +- {ev["ci95"]:.4f}, '
            f'{1e3 * r["train_seconds"] / r["meta_steps"]:.2f} ms per '
            f'meta-step')

  results = study.run_all(
      jobs, lambda tv, s: _run_one(tv[0], tv[1], s, args), args.workers,
      report)
  summary = {'seeds': list(seeds), 'eval_tasks': args.eval_tasks,
             'tasks': {}, 'runs': []}
  lines = ['# Few-shot: MAML against BMG', '']
  finished = [r for r in results if 'failed' not in r]
  cost = _timing(args)
  adaptation = _adaptation(finished, args) if args.adapt_steps else {}
  for task in args.tasks:
    summary['tasks'][task], task_lines = _summarise(task, results, args,
                                                    cost[task])
    lines += task_lines + ['']
    if adaptation:
      curve, curve_lines = _adaptation_lines(task, adaptation, args)
      summary['tasks'][task]['adaptation'] = curve
      lines += curve_lines + ['']
    _plot(task, finished, args, cost[task])
  for r in sorted(finished, key=lambda r: (r['task'], r['variant'],
                                           r['seed'])):
    summary['runs'].append({k: r[k] for k in (
        'task', 'variant', 'seed', 'meta_steps', 'eval', 'train_seconds',
        'wall_seconds', 'history')})
  with open(os.path.join(args.out, 'few_shot.json'), 'w') as f:
    json.dump(summary, f, indent=1)
  with open(os.path.join(args.out, 'few_shot.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
