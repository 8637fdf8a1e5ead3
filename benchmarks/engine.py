r"""Benchmark of the compiled meta-step: time and peak memory over K, L, XLA.

    python benchmarks/engine.py                      # the default sweep
    python benchmarks/engine.py --k=1,3 --l=1,32 --xla=on

Each configuration runs in its own subprocess, so its peak RSS is clean. A
worker builds a 2x256 MLP regressor (input 64, batch `--batch`), a BMG
meta-learner with a meta-learned learning rate and parameter matching, runs
the first (tracing/compiling) call, then `--repeats` timed calls.

Memory: `peak_rss_mb` is the process's high-water RSS; `delta_mb` is that
minus the high-water RSS of a reference worker that runs the same set-up with
the 'fixed' method (K=1, no meta-tape) in the same sweep. So `delta_mb` is
what the meta-gradient machinery adds, measured side by side.

Writes `results/engine/engine.json` and `results/engine/engine.md`, and
prints the markdown table.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))


def _worker(args):
  """Runs one configuration; prints one JSON line."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, REPO)
  from bmg_tf.core import bootstrap  # pylint: disable=g-import-not-at-top
  from bmg_tf.core import meta_learner
  from bmg_tf.core import meta_params
  from bmg_tf.core import optimizers
  from bmg_tf.networks import mlp

  tf.random.set_seed(0)
  net = mlp.MLP((256, 256), output_size=1, input_dim=64, seed=0)

  def mse(params, batch):
    return tf.reduce_mean(tf.square(net.apply(params, batch['x']) -
                                    batch['y']))

  objectives = bootstrap.Objectives(
      inner_loss=lambda p, b, m: mse(p, b), outer_loss=mse,
      optimizer_hparams=lambda m: {'learning_rate': m['learning_rate']})
  meta = meta_params.MetaParameters({
      'learning_rate': meta_params.MetaParameter(0.01, 'exp')})
  if args.method == 'fixed':
    config = bootstrap.BootstrapConfig(method='fixed', k_steps=args.k)
  elif args.method == 'mg':
    config = bootstrap.BootstrapConfig(method='mg', k_steps=args.k)
  else:
    config = bootstrap.BootstrapConfig(method='bmg', k_steps=args.k,
                                       l_steps=args.l)
  gen = tf.random.Generator.from_seed(1)
  w_true = gen.normal([64, 1])

  def batch_fn(i, params):
    del i, params
    x = gen.normal([args.batch, 64])
    return {'x': x, 'y': tf.matmul(x, w_true)}

  learner = meta_learner.MetaLearner(
      net.params, meta, objectives, config, optimizers.SGD(learning_rate=0.01),
      batch_fn=batch_fn, jit_compile=args.xla == 'on')
  start = time.perf_counter()
  out = learner.step()
  float(out['meta_loss'])
  compile_s = time.perf_counter() - start
  times = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    out = learner.step()
    float(out['meta_loss'])
    times.append(time.perf_counter() - start)
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
  print(json.dumps({
      'method': args.method, 'k': args.k, 'l': args.l, 'xla': args.xla,
      'first_call_s': compile_s,
      'step_ms': 1000 * statistics.median(times),
      'step_ms_min': 1000 * min(times),
      'ms_per_inner_step': 1000 * statistics.median(times) /
                           max(1, config.batches_per_step),
      'peak_rss_mb': peak,
  }))


def _run_worker(method, k, l, xla, args):
  cmd = [sys.executable, os.path.abspath(__file__), '--worker',
         f'--method={method}', f'--k={k}', f'--l={l}', f'--xla={xla}',
         f'--batch={args.batch}', f'--repeats={args.repeats}']
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if proc.returncode:
    raise RuntimeError(f'worker {cmd} failed:\n{proc.stderr[-3000:]}')
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _table(rows):
  head = ('| method | K | L | XLA | step ms | ms / batch | first call s | '
          'peak RSS MB | delta MB |')
  lines = [head, '|' + '---|' * 9]
  for r in rows:
    l = r['l'] if r['method'] == 'bmg' else '-'
    lines.append(
        f"| {r['method']} | {r['k']} | {l} | {r['xla']} | "
        f"{r['step_ms']:.2f} | {r['ms_per_inner_step']:.2f} | "
        f"{r['first_call_s']:.1f} | {r['peak_rss_mb']:.0f} | "
        f"{r['delta_mb']:+.0f} |")
  return '\n'.join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--k', default='1,3,5')
  parser.add_argument('--l', default='1,4,16,32')
  parser.add_argument('--xla', default='off,on')
  parser.add_argument('--batch', type=int, default=2048)
  parser.add_argument('--repeats', type=int, default=10)
  parser.add_argument('--out', default=os.path.join(REPO, 'results',
                                                     'engine'))
  parser.add_argument('--worker', action='store_true')
  parser.add_argument('--method', default='bmg')
  args = parser.parse_args()
  if args.worker:
    args.k, args.l = int(args.k), int(args.l)
    _worker(args)
    return
  ks = [int(v) for v in args.k.split(',')]
  ls = [int(v) for v in args.l.split(',')]
  modes = args.xla.split(',')
  rows = []
  for xla in modes:
    base = _run_worker('fixed', 1, 1, xla, args)
    base['delta_mb'] = 0.0
    rows.append(base)
    for k in ks:
      mg = _run_worker('mg', k, 1, xla, args)
      mg['delta_mb'] = mg['peak_rss_mb'] - base['peak_rss_mb']
      rows.append(mg)
      for l in ls:
        r = _run_worker('bmg', k, l, xla, args)
        r['delta_mb'] = r['peak_rss_mb'] - base['peak_rss_mb']
        rows.append(r)
        print(f"bmg K={k} L={l} xla={xla}: {r['step_ms']:.2f} ms, "
              f"delta {r['delta_mb']:+.0f} MB", file=sys.stderr, flush=True)
  os.makedirs(args.out, exist_ok=True)
  summary = {'batch': args.batch, 'repeats': args.repeats, 'rows': rows}
  # Ratios measured in this run.
  ratios = {}
  for xla in modes:
    for k in ks:
      sel = {r['l']: r for r in rows if r['method'] == 'bmg' and
             r['k'] == k and r['xla'] == xla}
      if min(ls) in sel and max(ls) in sel:
        ratios[f'k{k}_{xla}_delta_mb_L{max(ls)}_minus_L{min(ls)}'] = (
            sel[max(ls)]['delta_mb'] - sel[min(ls)]['delta_mb'])
  if 'on' in modes and 'off' in modes:
    for r_on in rows:
      if r_on['xla'] != 'on':
        continue
      for r_off in rows:
        if (r_off['xla'] == 'off' and r_off['method'] == r_on['method'] and
            r_off['k'] == r_on['k'] and r_off['l'] == r_on['l']):
          ratios[f"xla_speedup_{r_on['method']}_k{r_on['k']}_l{r_on['l']}"] = (
              r_off['step_ms'] / r_on['step_ms'])
  summary['ratios'] = ratios
  with open(os.path.join(args.out, 'engine.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  table = _table(rows)
  with open(os.path.join(args.out, 'engine.md'), 'w') as f:
    f.write(table + '\n')
  print(table)
  for key, value in ratios.items():
    print(f'{key}: {value:.2f}')


if __name__ == '__main__':
  main()
