r"""MinAtar study: STACX meta-learned by MG against BMG (BMG_SPEC 2.3, CPU).

    python benchmarks/minatar_study.py               # default: ~1 h, 2 cores
    python benchmarks/minatar_study.py --game=SpaceInvaders --seeds=2
    python benchmarks/minatar_study.py --frames=20000 --seeds=1 --out=/tmp/m

(Not `minatar.py`: a script of that name would shadow the `minatar` package
for everything it imports.)

Each (method, seed) is one `bmg-train` run of `gin/minatar/stacx_<method>.gin`
in its own subprocess, `--workers` at a time, under
`<out>/runs/<method>_s<seed>`. A complete run is not re-run and an
interrupted one resumes from its checkpoint. Before the runs, the bare
environment (the same batched MinAtar env, random actions, no learning) is
timed in this process, so the pipeline's frames/s is reported against it
from the same invocation.

Writes to `<out>` (default `results/minatar`):

* `minatar.json`: per run the mean episode return over the last 20% of the
  frames and over the whole run, the final learned hyperparameters and the
  pipeline's frames/s; per method their means and standard deviations
  across seeds; the bare env rate and the ratios;
* `minatar.md`: the table;
* `returns.png`: episode return over frames (mean over seeds, min-max band);
* `hparams.png`: the main head's learned discount, lambda and loss
  coefficients over frames, one line per run.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import study  # pylint: disable=g-import-not-at-top

REPO = study.REPO
sys.path.insert(0, REPO)  # This checkout's bmg_tf, for the bare-env timing.
GIN_DIR = os.path.join(REPO, 'gin', 'minatar')
METHODS = ('mg', 'bmg')
COLOURS = {'mg': 'tab:blue', 'bmg': 'tab:red'}
HPARAMS = ('discount', 'lambda', 'policy_coef', 'value_coef', 'entropy_coef')
FINAL_FRACTION = 0.2


def _bare_env_rate(game, num_envs, seconds):
  """Frames/s of the batched env alone, random actions, in this process."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
  from bmg_tf.envs import atari  # pylint: disable=g-import-not-at-top
  env = atari.make_batched_env('minatar', game, num_envs=num_envs, seed=0,
                               asynchronous=False)
  n = int(env.action_spec().maximum) + 1
  rng = np.random.RandomState(0)
  env.reset()
  steps, start = 0, time.time()
  while time.time() - start < seconds:
    env.step(rng.randint(0, n, size=num_envs))
    steps += 1
  rate = steps * num_envs / (time.time() - start)
  env.close()
  return rate


def _run_one(method, seed, args):
  """Runs (or resumes, or skips) one run; returns its result.json."""
  root = os.path.join(args.out, 'runs', f'{method}_s{seed}')
  bindings = [
      f"stacx.build.game = '{args.game}'",
      f'stacx.build.num_frames = {args.frames}',
      f'stacx.build.num_envs = {args.num_envs}',
      f'stacx.build.seed = {seed}',
      f'stacx.build.log_every = {args.log_every}',
      f'stacx.build.checkpoint_every = {args.checkpoint_every}',
      'stacx.build.export = False',
  ] + list(args.gin_bindings)
  result, wall = study.run_cli(
      os.path.join(GIN_DIR, f'stacx_{method}.gin'), root, bindings,
      args.frames, step_key='frames')
  return {**result, 'wall_seconds': wall}


def _mean(values):
  values = [v for v in values if v is not None]
  return sum(values) / len(values) if values else None


def _summarise_run(r, frames):
  history = r['history']
  final = [h.get('episode_return') for h in history
           if h['frames'] > (1.0 - FINAL_FRACTION) * frames]
  rates = sorted(h['frames_per_sec'] for h in history
                 if 'frames_per_sec' in h)
  return {
      'method': r['method'], 'seed': r['seed'], 'frames': r['frames'],
      'episodes': r['episodes'],
      'return_final': _mean(final),
      'return_whole_run': r['episode_return'],
      'hparams': r['hparams'],
      'frames_per_sec_median': rates[len(rates) // 2] if rates else None,
      'wall_seconds': r['wall_seconds'],
  }


def _plots(results, args):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(9, 4))
  for method in args.methods:
    runs = [r for r in results if r['method'] == method]
    frames, values = study.curves(runs, 'episode_return', step_key='frames')
    if frames is None:
      continue
    ax.plot(frames, np.nanmean(values, 0), color=COLOURS[method],
            label=method.upper(), lw=1.2)
    if len(values) > 1:
      ax.fill_between(frames, np.nanmin(values, 0), np.nanmax(values, 0),
                      color=COLOURS[method], alpha=0.2)
  ax.set_xlabel('frames')
  ax.set_ylabel(f'episode return (window {args.log_every:,} frames)')
  ax.set_title(f'MinAtar {args.game}: STACX, MG vs BMG ({args.seeds} seeds; '
               'mean, min-max band)')
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(args.out, 'returns.png'), dpi=120)
  plt.close(fig)

  fig, axes = plt.subplots(1, len(HPARAMS), figsize=(4 * len(HPARAMS), 3.4))
  for ax, name in zip(axes, HPARAMS):
    for method in args.methods:
      for r in [r for r in results if r['method'] == method]:
        frames, values = study.curves([r], name, step_key='frames')
        if frames is not None:
          ax.plot(frames, values[0], color=COLOURS[method], lw=0.8,
                  alpha=0.8, label=method.upper() if r['seed'] == 0 else None)
    ax.set_title(name)
    ax.set_xlabel('frames')
  axes[0].legend()
  fig.suptitle('Main head: learned hyperparameters (one line per seed)')
  fig.tight_layout()
  fig.savefig(os.path.join(args.out, 'hparams.png'), dpi=120)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--game', default='Breakout')
  parser.add_argument('--methods', default=','.join(METHODS))
  parser.add_argument('--seeds', type=int, default=2)
  parser.add_argument('--frames', type=int, default=2_000_000)
  parser.add_argument('--num_envs', type=int, default=32)
  parser.add_argument('--log_every', type=int, default=50_000)
  parser.add_argument('--checkpoint_every', type=int, default=500_000)
  parser.add_argument('--workers', type=int, default=2)
  parser.add_argument('--bare_env_seconds', type=float, default=20.0)
  parser.add_argument('--gin_bindings', action='append', default=[],
                      help='extra bindings for every run')
  parser.add_argument('--out', default=os.path.join(REPO, 'results',
                                                     'minatar'))
  args = parser.parse_args()
  args.methods = [m for m in args.methods.split(',') if m]
  unknown = set(args.methods) - set(METHODS)
  if unknown:
    parser.error(f'--methods: unknown {sorted(unknown)}; known: {METHODS}')
  if args.seeds < 1 or args.frames < 1 or args.num_envs < 1:
    parser.error('--seeds/--frames/--num_envs: must be positive')
  args.out = os.path.abspath(args.out)
  os.makedirs(args.out, exist_ok=True)

  bare = _bare_env_rate(args.game, args.num_envs, args.bare_env_seconds)
  print(f'bare env: {bare:,.0f} frames/s ({args.num_envs} envs, random '
        'actions, one process)', flush=True)
  jobs = [(m, s) for s in range(args.seeds) for m in args.methods]
  results = study.run_all(
      jobs, lambda m, s: _run_one(m, s, args), args.workers,
      lambda m, s, r: (f'{m} seed {s}: {r["frames"]:,} frames, mean return '
                       f'{r["episode_return"]}'))

  runs = [_summarise_run(r, args.frames)
          for r in sorted(results, key=lambda r: (r['method'], r['seed']))]
  summary = {'game': args.game, 'frames': args.frames, 'seeds': args.seeds,
             'num_envs': args.num_envs, 'workers': args.workers,
             'bare_env_frames_per_sec': bare, 'methods': {}, 'runs': runs}
  lines = [f'MinAtar {args.game}, {args.frames:,} frames per run, '
           f'{args.seeds} seeds, {args.num_envs} actors, {args.workers} runs '
           'at a time on this machine.', '',
           '| method | return, last 20% (mean) | std | per seed | return, '
           'whole run | pipeline frames/s | / bare env | final discount | '
           'final lambda | final entropy coef |',
           '|---|---|---|---|---|---|---|---|---|---|']
  for method in args.methods:
    rs = [r for r in runs if r['method'] == method]
    finals = [r['return_final'] for r in rs if r['return_final'] is not None]
    mean, std = study.stats(finals) if finals else (float('nan'), 0.0)
    whole = _mean([r['return_whole_run'] for r in rs])
    rate = _mean([r['frames_per_sec_median'] for r in rs])
    hp = {n: _mean([r['hparams'][n] for r in rs]) for n in HPARAMS}
    summary['methods'][method] = {
        'return_final_mean': mean, 'return_final_std': std,
        'return_final_per_seed': finals, 'return_whole_run_mean': whole,
        'frames_per_sec': rate,
        'frames_per_sec_over_bare_env': rate / bare if rate else None,
        'final_hparams_mean': hp}
    per_seed = ', '.join(f'{v:.2f}' for v in finals)
    ratio = f'{rate / bare:.3f}' if rate else 'n/a'
    lines.append(
        f'| {method.upper()} | {mean:.2f} | {std:.2f} | {per_seed} | '
        f'{whole if whole is None else round(whole, 2)} | '
        f'{rate or float("nan"):,.0f} | {ratio} | {hp["discount"]:.4f} | '
        f'{hp["lambda"]:.4f} | {hp["entropy_coef"]:.4f} |')
  lines.append(f'\nBare env: {bare:,.0f} frames/s ({args.num_envs} envs in '
               'one process, random actions, measured alone before the '
               'runs; the runs share the machine two at a time).')
  if set(METHODS) <= set(summary['methods']):
    mg, bmg = summary['methods']['mg'], summary['methods']['bmg']
    if mg['frames_per_sec'] and bmg['frames_per_sec']:
      summary['bmg_over_mg_time_per_frame'] = (mg['frames_per_sec'] /
                                               bmg['frames_per_sec'])
      lines.append(f"BMG / MG time per frame: "
                   f"{summary['bmg_over_mg_time_per_frame']:.2f}.")
  with open(os.path.join(args.out, 'minatar.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  table = '\n'.join(lines)
  with open(os.path.join(args.out, 'minatar.md'), 'w') as f:
    f.write(table + '\n')
  print(table)
  _plots(results, args)
  print(f'wrote {args.out}/minatar.json, minatar.md, returns.png, '
        'hparams.png')


if __name__ == '__main__':
  main()
