r"""Reproduction study: two-colours actor-critic, fixed vs MG vs BMG.

    python benchmarks/two_colors.py                 # default: ~1 h on 2 cores
    python benchmarks/two_colors.py --paper_scale   # 10M steps x 10 seeds
    python benchmarks/two_colors.py --steps=200000 --seeds=1   # quick look

Each (method, seed) is one `bmg-train` run of `gin/two_colors/ac_<method>.gin`
in its own subprocess, `--workers` at a time, under
`<out>/runs/<method>_s<seed>`. A run that is already complete is not re-run,
and an interrupted one resumes from its checkpoint, so the study can be
restarted. Writes to `<out>` (default `results/two_colors`):

* `two_colors.json`: per run and per method, the reward per step over the
  whole run (the paper's "total return" divided by steps), its mean and
  standard deviation across seeds, and the learned entropy weight;
* `two_colors.md`: the table;
* `reward.png`: reward per step over time (mean over seeds), flips marked;
* `entropy_weight.png`: the entropy weight over time, MG and BMG;
* `total_reward.png`: reward per step per method, each seed a dot.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import study  # pylint: disable=g-import-not-at-top

REPO = study.REPO
METHODS = ('fixed', 'mg', 'bmg')


def _run_one(method, seed, args):
  root = os.path.join(args.out, 'runs', f'{method}_s{seed}')
  bindings = [
      f'two_colors.build.num_env_steps = {args.steps}',
      f'two_colors.build.seed = {seed}',
      f'two_colors.build.log_every = {args.log_every}',
      f'two_colors.build.checkpoint_every = {args.checkpoint_every}',
      f'TFTwoColors.flip_period = {args.flip_period}',
      'two_colors.build.export = False',
  ] + list(args.gin_bindings)
  gin_file = os.path.join(REPO, 'gin', 'two_colors', f'ac_{method}.gin')
  result, _ = study.run_cli(gin_file, root, bindings, args.steps)
  return result


def _plots(results, args):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  colours = {'fixed': 'tab:gray', 'mg': 'tab:blue', 'bmg': 'tab:red'}
  flips = np.arange(args.flip_period, args.steps + 1, args.flip_period)

  def curves(method, key):
    return study.curves([r for r in results if r['method'] == method], key)

  fig, ax = plt.subplots(figsize=(10, 4))
  for method in args.methods:
    steps, values = curves(method, 'reward_per_step')
    if steps is None:
      continue
    mean = values.mean(0)
    ax.plot(steps, mean, label=method.upper(), color=colours[method], lw=1)
    if len(values) > 1:
      ax.fill_between(steps, values.min(0), values.max(0), alpha=0.2,
                      color=colours[method])
  for x in flips:
    ax.axvline(x, color='k', lw=0.3, alpha=0.3)
  ax.set_xlabel('env steps')
  ax.set_ylabel(f'reward per step (window {args.log_every})')
  ax.set_title('Two colours: reward per step (mean over seeds, min-max band;'
               ' lines = reward flips)')
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(args.out, 'reward.png'), dpi=120)
  plt.close(fig)

  fig, ax = plt.subplots(figsize=(10, 4))
  for method in ('mg', 'bmg'):
    if method not in args.methods:
      continue
    steps, values = curves(method, 'entropy_weight')
    if steps is None:
      continue
    for i, v in enumerate(values):
      ax.plot(steps, v, color=colours[method], lw=0.8, alpha=0.8,
              label=method.upper() if i == 0 else None)
  for x in flips:
    ax.axvline(x, color='k', lw=0.3, alpha=0.3)
  ax.set_xlabel('env steps')
  ax.set_ylabel('entropy weight')
  ax.set_title('Learned entropy weight (one line per seed; lines = flips)')
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(args.out, 'entropy_weight.png'), dpi=120)
  plt.close(fig)

  fig, ax = plt.subplots(figsize=(5, 4))
  for i, method in enumerate(args.methods):
    vals = [r['reward_per_step'] for r in results if r['method'] == method]
    if not vals:
      continue
    mean, std = study.stats(vals)
    ax.bar(i, mean, yerr=std, color=colours[method], alpha=0.6, capsize=4)
    ax.scatter([i] * len(vals), vals, color='k', s=12, zorder=3)
  ax.set_xticks(range(len(args.methods)))
  ax.set_xticklabels([m.upper() for m in args.methods])
  ax.set_ylabel('reward per step, whole run')
  ax.set_title(f'{args.steps:,} steps, {args.seeds} seeds')
  fig.tight_layout()
  fig.savefig(os.path.join(args.out, 'total_reward.png'), dpi=120)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--methods', default=','.join(METHODS))
  parser.add_argument('--seeds', type=int, default=3)
  parser.add_argument('--steps', type=int, default=2_000_000)
  parser.add_argument('--flip_period', type=int, default=100_000)
  parser.add_argument('--log_every', type=int, default=20_000)
  parser.add_argument('--checkpoint_every', type=int, default=500_000)
  parser.add_argument('--workers', type=int, default=2)
  parser.add_argument('--paper_scale', action='store_true',
                      help='10M steps and 10 seeds, as in the paper.')
  parser.add_argument('--gin_bindings', action='append', default=[])
  parser.add_argument('--out', default=os.path.join(REPO, 'results',
                                                     'two_colors'))
  args = parser.parse_args()
  if args.paper_scale:
    args.steps, args.seeds = 10_000_000, 10
  args.methods = [m for m in args.methods.split(',') if m]
  unknown = set(args.methods) - set(METHODS)
  if unknown:
    parser.error(f'--methods: unknown {sorted(unknown)}')
  os.makedirs(args.out, exist_ok=True)
  jobs = [(m, s) for s in range(args.seeds) for m in args.methods]
  results = study.run_all(
      jobs, lambda m, s: _run_one(m, s, args), args.workers,
      lambda m, s, r: (f'{m} seed {s}: reward/step '
                       f'{r["reward_per_step"]:.4f}, entropy weight '
                       f'{r["entropy_weight"]:.4f}'))
  summary = {'steps': args.steps, 'seeds': args.seeds,
             'flip_period': args.flip_period, 'methods': {}, 'runs': []}
  lines = ['| method | reward/step (mean) | std over seeds | seeds | steps | '
           'final entropy weight (mean) |', '|---|---|---|---|---|---|']
  for method in args.methods:
    rs = [r for r in results if r['method'] == method]
    mean, std = study.stats([r['reward_per_step'] for r in rs])
    ew, _ = study.stats([r['entropy_weight'] for r in rs])
    summary['methods'][method] = {
        'reward_per_step_mean': mean, 'reward_per_step_std': std,
        'per_seed': [r['reward_per_step'] for r in rs],
        'final_entropy_weight_mean': ew}
    lines.append(f'| {method.upper()} | {mean:.4f} | {std:.4f} | {len(rs)} | '
                 f'{args.steps:,} | {ew:.3f} |')
  for r in sorted(results, key=lambda r: (r['method'], r['seed'])):
    summary['runs'].append({k: r[k] for k in ('method', 'seed', 'env_steps',
                                              'reward_per_step',
                                              'entropy_weight')})
  ranked = sorted(args.methods,
                  key=lambda m: -summary['methods'][m]['reward_per_step_mean'])
  summary['ranking'] = ranked
  with open(os.path.join(args.out, 'two_colors.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  table = '\n'.join(lines)
  with open(os.path.join(args.out, 'two_colors.md'), 'w') as f:
    f.write(table + '\n')
  _plots(results, args)
  print(table)
  print('ranking (best first):', ' > '.join(m.upper() for m in ranked))


if __name__ == '__main__':
  main()
