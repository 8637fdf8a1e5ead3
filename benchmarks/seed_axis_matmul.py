"""Does a seed axis make the Q-learner's dominant matmul faster here?

Issue 17 asks to batch several seeds in one graph, as the actor-critic does
(`two_colors.build.num_seeds`). The epsilon-Q meta-step is bound by its
[512, 256] x [256, 256] hidden-layer matmuls (`benchmarks/bare_q.py`,
docs/results/speed/q_bare.md). N seeds in one graph turn them into batched
[N, 512, 256] x [N, 256, 256] matmuls with the same work per seed. Seed
batching can only pay if those run at more multiply-adds per second than the
single-seed ones. This script measures that, N interleaved with N = 1 in
each round, 64 chained matmuls per call, XLA on.

  python benchmarks/seed_axis_matmul.py --seeds=1,2,4 --rounds=3

Prints a table and writes `seed_axis_matmul.json` under `--out`.
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

import tensorflow as tf  # pylint: disable=g-import-not-at-top

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHAIN = 64

__all__ = ['chained_matmuls', 'gmac_per_call']


def chained_matmuls(num_seeds, jit_compile=True):
  """A compiled call of `CHAIN` chained [N,512,256] x [N,256,256] matmuls.

  Args:
    num_seeds: Int N >= 1, the seed axis.
    jit_compile: Bool, XLA.

  Returns:
    A no-argument callable returning a float32 `[N, 512, 256]` tensor.
  """
  x0 = tf.random.normal([num_seeds, 512, 256], seed=0)
  w = tf.Variable(tf.random.normal([num_seeds, 256, 256], seed=1) * 0.06)
  return tf.function(
      lambda: tf.while_loop(lambda i, x: i < CHAIN,
                            lambda i, x: (i + 1, tf.tanh(tf.matmul(x, w))),
                            (0, x0))[1],
      jit_compile=jit_compile, autograph=False)


def gmac_per_call(num_seeds):
  """Giga multiply-adds of one call of `chained_matmuls(num_seeds)`."""
  return CHAIN * num_seeds * 512 * 256 * 256 / 1e9


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--seeds', default='1,2,4')
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--seconds', type=float, default=3.0,
                      help='per variant per round')
  parser.add_argument('--out', default=os.path.join(REPO, 'results',
                                                     'speed'))
  args = parser.parse_args()
  seeds = sorted({int(n) for n in args.seeds.split(',') if n} | {1})
  if seeds[0] < 1 or args.rounds < 1 or args.seconds <= 0:
    parser.error('--seeds must be positive ints; --rounds, --seconds > 0')
  calls = {n: chained_matmuls(n) for n in seeds}
  for fn in calls.values():
    fn().numpy()  # Compile outside the timing.
  rates = {n: [] for n in seeds}
  for _ in range(args.rounds):
    for n in seeds:
      start, k = time.perf_counter(), 0
      while time.perf_counter() - start < args.seconds:
        calls[n]().numpy()
        k += 1
      rates[n].append(k * gmac_per_call(n) / (time.perf_counter() - start))
  base = statistics.median(rates[1])
  lines = ['| seeds N | GMAC/s (median) | per round | / N=1 |',
           '|---|---|---|---|']
  for n in seeds:
    med = statistics.median(rates[n])
    lines.append(f'| {n} | {med:.1f} | ' +
                 ', '.join(f'{r:.1f}' for r in rates[n]) +
                 f' | {med / base:.2f} |')
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, 'seed_axis_matmul.json'), 'w') as f:
    json.dump({'gmac_per_s': {str(n): r for n, r in rates.items()},
               'ratio_to_one_seed': {
                   str(n): statistics.median(rates[n]) / base
                   for n in seeds}}, f, indent=2)
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
