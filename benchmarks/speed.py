r"""Speed and memory of the two-colours actor-critic pipeline (issue 5).

    python benchmarks/speed.py                  # both sweeps, ~30 min on 2 cores
    python benchmarks/speed.py --sweeps=speed --repeats=1
    python benchmarks/speed.py --sweeps=memory --k=1,7 --l=1,32

Every measurement is one subprocess running the real pipeline
(`pipelines.two_colors.build`: in-graph TFTwoColors env, TF-Agents
driver, the MetaLearner's compiled step), so its peak RSS is clean.

* `speed`: env steps/s for fixed (8 updates per call), MG K=1, MG K=7, BMG
  K=1 L=4 and BMG K=7 L=9 (continue from K+L-1, KL matching), each with XLA
  on and off, `--steps_per_call` meta-steps per compiled call. 16-step rollouts, 2x256 MLPs, one env stream, as in the
  paper. The rate is the median over the progress windows after the first
  (the first window holds tracing and XLA compilation, reported apart as
  `startup_s`: wall time minus steps / rate). The configurations are run in
  `--repeats` interleaved rounds and the median is kept, so that machine
  noise hits all of them alike. Ratios from this run: BMG/MG time per env
  step at K=1 (BMG K=1 L=4 against MG K=1), and XLA on/off per
  configuration.
* `memory`: peak RSS of a BMG run (XLA on) for K in `--k` and L in `--l`,
  3 meta-steps each, against a 'fixed' reference in the same sweep
  (`delta_mb`).
* `seeds`: BMG K=7 L=9 with N = `--seeds` independent seeds batched in one
  graph (`two_colors.build.num_seeds`), XLA on and off, in interleaved
  rounds. Reports the per-seed rate and the aggregate (N x per seed), and
  the aggregate over the single stream's (N=1) measured in the same sweep.
  Each run does about the same total work: `--seeds_steps / N` env steps per
  seed with XLA (a tenth of that without).

* `q`: the epsilon-Q pipeline (`pipelines.two_colors_q.build`, its
  defaults: replay ratio 0.25, batches of 32 x 9 steps, 2x256 MLP), 'fixed'
  and BMG epsilon, XLA on and off (collection and learner step), in
  interleaved rounds; `--q_steps` env steps with XLA (a third without).

Writes `<out>/speed.json`, `<out>/speed.md` and `<out>/speed.png` (rates and
memory curves) for the speed and memory sweeps, and `<out>/<sweep>.json`,
`.md` and `.png` for the seeds and q sweeps; default `<out>` is
`results/speed`.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
SPEED_CONFIGS = [('fixed', 8, 1), ('mg', 1, 1), ('mg', 7, 1), ('bmg', 1, 4),
                 ('bmg', 7, 9)]
PYTORCH_PORT_STEPS_PER_SEC = 310  # Reported in issue 5; not measured here.


def _worker(args):
  """Runs one pipeline configuration; prints one JSON line."""
  sys.path.insert(0, REPO)
  # pylint: disable=g-import-not-at-top
  from pipelines import two_colors
  from pipelines import two_colors_q
  # pylint: enable=g-import-not-at-top
  import gin  # pylint: disable=g-import-not-at-top
  kwargs = dict(num_env_steps=args.steps, log_every=args.window,
                checkpoint_every=10**12, export=False, seed=0)
  bindings = [f'MetaLearner.jit_compile = {args.xla == "on"}']
  if args.pipeline == 'q':
    train_eval = two_colors_q.train_eval
    gin_file = f'q_{"fixed" if args.method == "fixed" else "bmg"}_eps.gin'
  else:
    train_eval = two_colors.train_eval
    gin_file = {'fixed': 'ac_fixed.gin', 'mg': 'ac_mg.gin',
                'bmg': 'ac_bmg_paper.gin'}[args.method]
    kwargs['num_seeds'] = args.num_seeds
    bindings += [f'MetaLearner.steps_per_call = {args.steps_per_call}',
                 f'BootstrapConfig.k_steps = {args.k}']
    if args.method == 'bmg':
      bindings.append(f'BootstrapConfig.l_steps = {args.l}')
  gin.parse_config_files_and_bindings(
      [os.path.join(REPO, 'gin', 'two_colors', gin_file)], bindings)
  with tempfile.TemporaryDirectory() as root:
    start = time.perf_counter()
    result = train_eval(root_dir=root, **kwargs)
    wall = time.perf_counter() - start
  rates = [row['env_steps_per_sec'] for row in result['history']
           if 'env_steps_per_sec' in row]
  rate = statistics.median(rates) if rates else float('nan')
  print(json.dumps({
      'pipeline': args.pipeline, 'method': args.method, 'k': args.k,
      'l': args.l, 'xla': args.xla, 'num_seeds': args.num_seeds,
      'env_steps': result['env_steps'], 'env_steps_per_sec': rate,
      'window_rates': rates, 'wall_s': wall,
      'startup_s': wall - result['env_steps'] / rate if rates else wall,
      'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss /
                     1024.0,
  }))


def _run_worker(method, k, l, xla, steps, window, steps_per_call=1,
                num_seeds=1, pipeline='ac'):
  cmd = [sys.executable, os.path.abspath(__file__), '--worker',
         f'--method={method}', f'--k={k}', f'--l={l}', f'--xla={xla}',
         f'--steps={steps}', f'--window={window}',
         f'--steps_per_call={steps_per_call}', f'--num_seeds={num_seeds}',
         f'--pipeline={pipeline}']
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                        cwd=REPO)
  if proc.returncode:
    raise RuntimeError(f'worker {cmd} failed:\n{proc.stderr[-3000:]}')
  row = json.loads(proc.stdout.strip().splitlines()[-1])
  seeds = f' x {num_seeds} seeds' if num_seeds > 1 else ''
  what = f'Q {method}' if pipeline == 'q' else f'{method} K={k} L={l}{seeds}'
  print(f"  {what} XLA {xla}: "
        f"{row['env_steps_per_sec']:,.0f} env steps/s"
        f"{' (per seed)' if num_seeds > 1 else ''}, start-up "
        f"{row['startup_s']:.1f} s, peak "
        f"{row['peak_rss_mb']:.0f} MB", flush=True)
  return row


def _rounds(name, repeats, configs, run_one):
  """Runs `run_one(config)` for every config in `repeats` interleaved rounds.

  Interleaving makes machine noise hit all the configurations alike.

  Returns:
    {config: [one worker row per round]}.
  """
  runs = {}
  for round_ in range(repeats):
    print(f'{name} round {round_ + 1}/{repeats}', flush=True)
    for config in configs:
      runs.setdefault(config, []).append(run_one(config))
  return runs


def _summary(rs):
  """Median rate, the rate of every round, start-up and peak RSS."""
  return {'env_steps_per_sec': statistics.median(
              r['env_steps_per_sec'] for r in rs),
          'per_round': [r['env_steps_per_sec'] for r in rs],
          'startup_s': statistics.median(r['startup_s'] for r in rs),
          'peak_rss_mb': max(r['peak_rss_mb'] for r in rs)}


def _name(method, k, l):
  if method == 'fixed':
    return 'fixed'
  return f'MG K={k}' if method == 'mg' else f'BMG K={k} L={l}'


def speed_sweep(args):
  """Interleaved rounds over SPEED_CONFIGS x XLA; medians and ratios."""
  def run_one(config):
    method, k, l, xla = config
    steps = args.xla_steps if xla == 'on' else args.eager_steps
    return _run_worker(method, k, l, xla, steps, steps // 10,
                       args.steps_per_call)

  runs = _rounds('speed', args.repeats,
                 [(m, k, l, xla) for xla in args.xla
                  for m, k, l in SPEED_CONFIGS], run_one)
  rows = [{'config': _name(method, k, l), 'method': method, 'k': k, 'l': l,
           'xla': xla, **_summary(rs)}
          for (method, k, l, xla), rs in runs.items()]
  rate = {(r['method'], r['k'], r['l'], r['xla']): r['env_steps_per_sec']
          for r in rows}
  ratios = {}
  for xla in args.xla:
    if ('mg', 1, 1, xla) in rate and ('bmg', 1, 4, xla) in rate:
      # Time per env step, BMG over MG: rate(MG) / rate(BMG).
      ratios[f'bmg_k1l4_over_mg_k1_time_per_step_xla_{xla}'] = (
          rate[('mg', 1, 1, xla)] / rate[('bmg', 1, 4, xla)])
    if ('mg', 7, 1, xla) in rate and ('bmg', 7, 9, xla) in rate:
      ratios[f'bmg_k7l9_over_mg_k7_time_per_step_xla_{xla}'] = (
          rate[('mg', 7, 1, xla)] / rate[('bmg', 7, 9, xla)])
  if 'on' in args.xla and 'off' in args.xla:
    for method, k, l in SPEED_CONFIGS:
      if (method, k, l, 'on') in rate and (method, k, l, 'off') in rate:
        ratios[f'xla_speedup_{_name(method, k, l)}'] = (
            rate[(method, k, l, 'on')] / rate[(method, k, l, 'off')])
  if ('bmg', 7, 9, 'on') in rate:
    ratios['bmg_k7l9_xla_over_pytorch_port_310'] = (
        rate[('bmg', 7, 9, 'on')] / PYTORCH_PORT_STEPS_PER_SEC)
  return rows, ratios


def memory_sweep(args):
  """Peak RSS of BMG (XLA) over K x L, against a 'fixed' reference."""
  print('memory sweep', flush=True)
  base = _run_worker('fixed', 1, 1, 'on', 3 * 16, 10**9)
  rows = [{'method': 'fixed', 'k': 1, 'l': 1, 'peak_rss_mb':
           base['peak_rss_mb'], 'delta_mb': 0.0,
           'startup_s': base['startup_s']}]
  for k in args.k:
    for l in args.l:
      steps = 3 * (k + l - 1) * 16  # Three meta-steps.
      r = _run_worker('bmg', k, l, 'on', steps, 10**9)
      rows.append({'method': 'bmg', 'k': k, 'l': l,
                   'peak_rss_mb': r['peak_rss_mb'],
                   'delta_mb': r['peak_rss_mb'] - base['peak_rss_mb'],
                   'startup_s': r['startup_s']})
  ratios = {}
  for k in args.k:
    sel = {r['l']: r for r in rows if r['method'] == 'bmg' and r['k'] == k}
    lo, hi = min(args.l), max(args.l)
    if lo in sel and hi in sel:
      ratios[f'k{k}_peak_rss_L{hi}_over_L{lo}'] = (
          sel[hi]['peak_rss_mb'] / sel[lo]['peak_rss_mb'])
  return rows, ratios


def seeds_sweep(args):
  """BMG K7L9 with N seeds in one graph; aggregate rate over N=1's."""
  def run_one(config):
    n, xla = config
    steps = args.seeds_steps // n // (1 if xla == 'on' else 10)
    steps = max(steps, 6 * 240)
    return _run_worker('bmg', 7, 9, xla, steps, steps // 6, num_seeds=n)

  runs = _rounds('seeds', args.repeats,
                 [(n, xla) for xla in args.xla for n in args.seeds], run_one)
  rows = []
  for (n, xla), rs in sorted(runs.items()):
    summary = _summary(rs)
    per_seed = summary.pop('env_steps_per_sec')
    rows.append({'num_seeds': n, 'xla': xla,
                 'per_seed_env_steps_per_sec': per_seed,
                 'aggregate_env_steps_per_sec': n * per_seed, **summary})
  single = {r['xla']: r['aggregate_env_steps_per_sec'] for r in rows
            if r['num_seeds'] == 1}
  ratios = {}
  for r in rows:
    if r['xla'] in single and r['num_seeds'] > 1:
      ratios[f"aggregate_N{r['num_seeds']}_over_N1_xla_{r['xla']}"] = (
          r['aggregate_env_steps_per_sec'] / single[r['xla']])
  return rows, ratios


def q_sweep(args):
  """The epsilon-Q pipeline, fixed and BMG epsilon, XLA on and off."""
  def run_one(config):
    method, xla = config
    steps = args.q_steps if xla == 'on' else args.q_steps // 3
    return _run_worker(method, 0, 16, xla, steps, steps // 6, pipeline='q')

  runs = _rounds('q', args.repeats, [(m, xla) for xla in args.xla
                                     for m in ('fixed', 'bmg')], run_one)
  rows = [{'method': method, 'xla': xla, **_summary(rs)}
          for (method, xla), rs in sorted(runs.items())]
  rate = {(r['method'], r['xla']): r['env_steps_per_sec'] for r in rows}
  ratios = {}
  for method in ('fixed', 'bmg'):
    if (method, 'on') in rate and (method, 'off') in rate:
      ratios[f'q_{method}_xla_speedup'] = (rate[(method, 'on')] /
                                           rate[(method, 'off')])
  for xla in args.xla:
    if ('fixed', xla) in rate and ('bmg', xla) in rate:
      ratios[f'q_bmg_over_fixed_time_per_step_xla_{xla}'] = (
          rate[('fixed', xla)] / rate[('bmg', xla)])
  return rows, ratios


def _q_markdown(rows, ratios):
  lines = ['Epsilon-Q pipeline (replay ratio 0.25, batches of 32 x 9 steps, '
           '2x256 MLP).', '',
           '| epsilon | XLA | env steps/s (median) | per round | '
           'start-up + compile s | peak RSS MB |',
           '|---|---|---|---|---|---|']
  for r in rows:
    rounds = ', '.join(f'{v:,.0f}' for v in r['per_round'])
    lines.append(f"| {r['method']} | {r['xla']} | "
                 f"{r['env_steps_per_sec']:,.0f} | {rounds} | "
                 f"{r['startup_s']:.1f} | {r['peak_rss_mb']:.0f} |")
  lines += ['', '| ratio | value |', '|---|---|']
  lines += [f'| {k} | {v:.3f} |' for k, v in ratios.items()]
  return '\n'.join(lines) + '\n'


def _q_plot(rows, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6, 4))
  for i, method in enumerate(('fixed', 'bmg')):
    for offset, xla, colour in ((-0.2, 'off', 'tab:gray'),
                                (0.2, 'on', 'tab:blue')):
      sel = [r for r in rows if (r['method'], r['xla']) == (method, xla)]
      if sel:
        ax.bar(i + offset, sel[0]['env_steps_per_sec'], width=0.4,
               color=colour, label=f'XLA {xla}' if i == 0 else None)
  ax.set_xticks([0, 1])
  ax.set_xticklabels(['fixed epsilon', 'BMG epsilon'])
  ax.set_ylabel('env steps/s')
  ax.set_title('Two-colours epsilon-Q pipeline')
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _seeds_markdown(rows, ratios):
  lines = ['BMG K=7 L=9, N seeds batched in one graph (2x256 MLPs, 16-step '
           'rollouts, one stream per seed).', '',
           '| N seeds | XLA | per seed env steps/s | aggregate env steps/s | '
           'aggregate / N=1 | start-up + compile s | peak RSS MB |',
           '|---|---|---|---|---|---|---|']
  for r in rows:
    ratio = ratios.get(f"aggregate_N{r['num_seeds']}_over_N1_xla_{r['xla']}",
                       1.0 if r['num_seeds'] == 1 else float('nan'))
    lines.append(f"| {r['num_seeds']} | {r['xla']} | "
                 f"{r['per_seed_env_steps_per_sec']:,.0f} | "
                 f"{r['aggregate_env_steps_per_sec']:,.0f} | {ratio:.2f} | "
                 f"{r['startup_s']:.1f} | {r['peak_rss_mb']:.0f} |")
  return '\n'.join(lines) + '\n'


def _seeds_plot(rows, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6, 4))
  for xla, colour in (('on', 'tab:blue'), ('off', 'tab:gray')):
    sel = sorted((r['num_seeds'], r['aggregate_env_steps_per_sec'])
                 for r in rows if r['xla'] == xla)
    if sel:
      ax.plot([s[0] for s in sel], [s[1] for s in sel], marker='o',
              color=colour, label=f'XLA {xla}')
  ax.set_xscale('log', base=2)
  ax.set_xlabel('seeds batched in one graph (N)')
  ax.set_ylabel('aggregate env steps/s')
  ax.set_title('BMG K=7 L=9: N seeds in one graph')
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _markdown(speed_rows, memory_rows, ratios):
  lines = []
  if speed_rows:
    lines += ['| configuration | XLA | env steps/s (median) | per round | '
              'start-up + compile s | peak RSS MB |', '|---|---|---|---|---|---|']
    for r in speed_rows:
      rounds = ', '.join(f'{v:,.0f}' for v in r['per_round'])
      lines.append(f"| {r['config']} | {r['xla']} | "
                   f"{r['env_steps_per_sec']:,.0f} | {rounds} | "
                   f"{r['startup_s']:.1f} | {r['peak_rss_mb']:.0f} |")
    lines.append('')
  if memory_rows:
    ls = sorted({r['l'] for r in memory_rows if r['method'] == 'bmg'})
    ks = sorted({r['k'] for r in memory_rows if r['method'] == 'bmg'})
    base = memory_rows[0]
    lines += [f"Peak RSS MB of BMG (XLA), 3 meta-steps; 'fixed' reference: "
              f"{base['peak_rss_mb']:.0f} MB. Cells: peak (delta over the "
              f"reference).", '',
              '| K \\ L | ' + ' | '.join(str(l) for l in ls) + ' |',
              '|---|' + '---|' * len(ls)]
    for k in ks:
      cells = []
      for l in ls:
        (r,) = [r for r in memory_rows
                if r['method'] == 'bmg' and r['k'] == k and r['l'] == l]
        cells.append(f"{r['peak_rss_mb']:.0f} ({r['delta_mb']:+.0f})")
      lines.append(f'| {k} | ' + ' | '.join(cells) + ' |')
    lines.append('')
  if ratios:
    lines += ['| ratio | value |', '|---|---|']
    lines += [f'| {k} | {v:.3f} |' for k, v in ratios.items()]
  return '\n'.join(lines) + '\n'


def _plot(speed_rows, memory_rows, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  panels = [rows for rows in (speed_rows, memory_rows) if rows]
  fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4),
                           squeeze=False)
  axes = list(axes[0])
  if speed_rows:
    ax = axes.pop(0)
    names = [_name(m, k, l) for m, k, l in SPEED_CONFIGS]
    for offset, xla, colour in ((-0.2, 'off', 'tab:gray'),
                                (0.2, 'on', 'tab:blue')):
      values = []
      for m, k, l in SPEED_CONFIGS:
        sel = [r for r in speed_rows if (r['method'], r['k'], r['l'],
                                         r['xla']) == (m, k, l, xla)]
        values.append(sel[0]['env_steps_per_sec'] if sel else 0)
      ax.bar([i + offset for i in range(len(names))], values, width=0.4,
             color=colour, label=f'XLA {xla}')
    ax.axhline(PYTORCH_PORT_STEPS_PER_SEC, color='tab:red', ls='--', lw=1,
               label='PyTorch port (reported)')
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=15)
    ax.set_ylabel('env steps/s')
    ax.set_title('Two-colours pipeline throughput')
    ax.legend()
  if memory_rows:
    ax = axes.pop(0)
    for k in sorted({r['k'] for r in memory_rows if r['method'] == 'bmg'}):
      sel = sorted((r['l'], r['peak_rss_mb']) for r in memory_rows
                   if r['method'] == 'bmg' and r['k'] == k)
      ax.plot([s[0] for s in sel], [s[1] for s in sel], marker='o',
              label=f'K={k}')
    ax.axhline(memory_rows[0]['peak_rss_mb'], color='k', ls=':', lw=1,
               label='fixed')
    ax.set_xlabel('L')
    ax.set_ylabel('peak RSS MB')
    ax.set_title('BMG meta-step memory (XLA)')
    ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--sweeps', default='speed,memory')
  parser.add_argument('--xla', default='on,off')
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--xla_steps', type=int, default=240_000)
  parser.add_argument('--eager_steps', type=int, default=24_000)
  parser.add_argument('--k', default='1,3,5,7')
  parser.add_argument('--l', default='1,4,9,16,32')
  parser.add_argument('--out', default=os.path.join(REPO, 'results',
                                                     'speed'))
  parser.add_argument('--steps_per_call', type=int, default=1,
                      help='meta-steps per compiled call (speed sweep)')
  parser.add_argument('--seeds', default='1,2,4,8',
                      help='N values of the seeds sweep')
  parser.add_argument('--seeds_steps', type=int, default=96_000,
                      help='seeds sweep: env steps per run over all seeds')
  parser.add_argument('--q_steps', type=int, default=30_000,
                      help='q sweep: env steps per run with XLA')
  parser.add_argument('--worker', action='store_true')
  parser.add_argument('--pipeline', default='ac', choices=('ac', 'q'))
  parser.add_argument('--num_seeds', type=int, default=1)
  parser.add_argument('--method', default='bmg')
  parser.add_argument('--steps', type=int, default=0)
  parser.add_argument('--window', type=int, default=0)
  args = parser.parse_args()
  if args.worker:
    args.k, args.l = int(args.k), int(args.l)
    _worker(args)
    return
  sweeps = set(args.sweeps.split(','))
  if sweeps - {'speed', 'memory', 'seeds', 'q'} or args.repeats < 1:
    parser.error("--sweeps: any of 'speed', 'memory', 'seeds', 'q'; "
                 '--repeats >= 1')
  args.seeds = [int(v) for v in args.seeds.split(',')]
  args.xla = [v for v in args.xla.split(',') if v]
  if set(args.xla) - {'on', 'off'}:
    parser.error("--xla: 'on' and/or 'off'")
  args.k = [int(v) for v in args.k.split(',')]
  args.l = [int(v) for v in args.l.split(',')]
  speed_rows, memory_rows, ratios = [], [], {}
  if 'speed' in sweeps:
    speed_rows, r = speed_sweep(args)
    ratios.update(r)
  if 'memory' in sweeps:
    memory_rows, r = memory_sweep(args)
    ratios.update(r)
  os.makedirs(args.out, exist_ok=True)
  for name, sweep, markdown, plot in (
      ('seeds', seeds_sweep, _seeds_markdown, _seeds_plot),
      ('q', q_sweep, _q_markdown, _q_plot)):
    if name not in sweeps:
      continue
    rows, sweep_ratios = sweep(args)
    with open(os.path.join(args.out, f'{name}.json'), 'w') as f:
      json.dump({'rows': rows, 'ratios': sweep_ratios}, f, indent=1)
    table = markdown(rows, sweep_ratios)
    with open(os.path.join(args.out, f'{name}.md'), 'w') as f:
      f.write(table)
    plot(rows, os.path.join(args.out, f'{name}.png'))
    print(table)
  if not sweeps & {'speed', 'memory'}:
    return
  with open(os.path.join(args.out, 'speed.json'), 'w') as f:
    json.dump({'steps_per_call': args.steps_per_call, 'speed': speed_rows, 'memory': memory_rows, 'ratios': ratios,
               'pytorch_port_reported_steps_per_sec':
                   PYTORCH_PORT_STEPS_PER_SEC}, f, indent=1)
  table = _markdown(speed_rows, memory_rows, ratios)
  with open(os.path.join(args.out, 'speed.md'), 'w') as f:
    f.write(table)
  _plot(speed_rows, memory_rows, os.path.join(args.out, 'speed.png'))
  print(table)


if __name__ == '__main__':
  main()
