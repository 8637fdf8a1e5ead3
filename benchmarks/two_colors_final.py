r"""The two-colours paper-scale table: fresh seeds, 10M steps, BMG vs MG vs fixed.

    python benchmarks/two_colors_ablations.py --seed=100 --num_seeds=5 \
      --steps=10000000 --checkpoint_every=250000 --out=results/two_colors_final \
      --plot=all --variants=bmg_noclip_1step,mg_outer0,fixed_0.2
    python benchmarks/two_colors_final.py --out=results/two_colors_final

The first command trains each method's configuration chosen on the tuning
seeds 0-2 (docs/fidelity.md), on seeds that no tuning run used, and writes
`ablations.json` (per seed, mean ± s.e., flip response) and the plots. This
script reads it and the runs' histories and writes `final.json` and
`final.md`: the table with the published numbers beside ours, BMG - MG with
its standard error (unpaired, and paired by seed: seed n of every method
sees the same env stream seed), and reward and entropy weight per 1M-step
window, which shows where in training the methods differ.
"""

import argparse
import json
import math
import os
import statistics

# The published figures (10M steps, 10 seeds; total reward in millions / 10
# = reward per step), BMG_SPEC section 2.1.
PUBLISHED = {'fixed': 0.124, 'mg': 0.158, 'bmg': 0.174}
METHODS = (('bmg', 'bmg_noclip_1step'), ('mg', 'mg_outer0'),
           ('fixed', 'fixed_0.2'))
EXTRA = ('mg_outer0.12_noclip_1step', 'fixed_0.2_noclip_1step')


def _se(values):
  return statistics.stdev(values) / math.sqrt(len(values))


def windows(history, size, key):
  """Means of `key` (mean over seeds) over windows of `size` env steps.

  A run overshoots its budget by less than one meta-step; those last rows
  count in the last window.
  """
  count = max(1, round(history[-1]['env_steps'] / size))
  sums, counts = [0.0] * count, [0] * count
  for r in history:
    if key in r:
      i = min(int((r['env_steps'] - 1) // size), count - 1)
      sums[i] += r[key]
      counts[i] += 1
  return [s / c for s, c in zip(sums, counts) if c]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', required=True,
                      help='the --out of two_colors_ablations.py')
  parser.add_argument('--window', type=int, default=1_000_000)
  args = parser.parse_args()
  with open(os.path.join(args.out, 'ablations.json')) as f:
    rows = {r['variant']: r for r in json.load(f)['rows']}
  table, curves = {}, {}
  for method, variant in METHODS + tuple((v, v) for v in EXTRA):
    if variant not in rows:
      continue
    with open(os.path.join(args.out, 'runs', variant, 'result.json')) as f:
      history = json.load(f)['history']
    row = rows[variant]
    table[method] = {
        'variant': variant, 'env_steps': row['env_steps'],
        'reward_per_seed': row['reward_per_seed'],
        'mean': row['reward_mean'], 'se': row['reward_se'],
        'published': PUBLISHED.get(method),
        'flip_ratio': row.get('flip_ratio'),
        'control_ratio': row.get('control_ratio'),
        'flips_up': row.get('flips_up'),
        'entropy_weight_final': row['entropy_weight_final']}
    curves[method] = {'reward': windows(history, args.window,
                                        'reward_per_step'),
                      'entropy_weight': windows(history, args.window,
                                                'entropy_weight')}
  result = {'table': table, 'windows': curves, 'window': args.window}
  lines = ['| method (variant) | reward/step per seed | mean ± s.e. | '
           'published (10 seeds) | weight after/before flips (control) | '
           'up after flips |', '|---|---|---|---|---|---|']
  for method, t in table.items():
    flip = ('-' if t['flip_ratio'] is None else
            f'{t["flip_ratio"]:.2f} ({t["control_ratio"]:.2f})')
    up = '-' if t['flips_up'] is None else f'{t["flips_up"]:.0%}'
    pub = '-' if t['published'] is None else f'{t["published"]:.3f}'
    lines.append(
        f'| {method} (`{t["variant"]}`) | '
        f'{", ".join(f"{v:.3f}" for v in t["reward_per_seed"])} | '
        f'{t["mean"]:.4f} ± {t["se"]:.4f} | {pub} | {flip} | {up} |')
  if 'bmg' in table and 'mg' in table:
    b, m = table['bmg']['reward_per_seed'], table['mg']['reward_per_seed']
    diff = statistics.mean(b) - statistics.mean(m)
    unpaired = math.sqrt(_se(b)**2 + _se(m)**2)
    paired = [x - y for x, y in zip(b, m)]
    result['bmg_minus_mg'] = {'diff': diff, 'se_unpaired': unpaired,
                              'se_paired': _se(paired), 'per_seed': paired}
    lines += ['', f'BMG - MG = {diff:+.4f}; standard error {unpaired:.4f} '
              f'unpaired ({diff / unpaired:.2f} s.e.), {_se(paired):.4f} '
              f'paired by seed ({diff / _se(paired):.2f} s.e.); per seed '
              f'{", ".join(f"{d:+.3f}" for d in paired)}.']
  lines += ['', f'Reward per step and entropy weight (mean over seeds) per '
            f'{args.window // 1_000_000}M-step window:', '',
            '| method | ' + ' | '.join(
                f'{i + 1}M' for i in range(max(len(c['reward'])
                                               for c in curves.values())))
            + ' |', '|---|' + '---|' * max(len(c['reward'])
                                           for c in curves.values())]
  for method, c in curves.items():
    lines.append(f'| {method} reward | ' +
                 ' | '.join(f'{v:.3f}' for v in c['reward']) + ' |')
    lines.append(f'| {method} weight | ' +
                 ' | '.join(f'{v:.3f}' for v in c['entropy_weight']) + ' |')
  with open(os.path.join(args.out, 'final.json'), 'w') as f:
    json.dump(result, f, indent=1)
  with open(os.path.join(args.out, 'final.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
