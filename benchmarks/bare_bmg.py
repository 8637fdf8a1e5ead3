r"""A bare in-graph BMG loop, timed side by side with the pipeline (issue 5).

    python benchmarks/bare_bmg.py                 # 3 interleaved rounds
    python benchmarks/bare_bmg.py --rounds=1 --steps=48000

Issue 5 cites a bare ~150-line in-graph prototype of the two-colours BMG
loop (single stream, no TF-Agents, no logging) at about 18,000 env steps/s
with XLA on this kind of machine. This script is such a loop, written here
from BMG_SPEC.md without the library's engine, agents, driver or
optimizers, so that the pipeline's rate can be read as a ratio against a
bare loop measured in the same run, not against a figure from another day.

The bare loop does the same work per meta-step as the pipeline's default
BMG configuration (`pipelines/two_colors.py`, K=7, L=9):

* one stream of the in-graph `TFTwoColors` env (the env is shared: its
  cost is small, see `rollout_cost.py`); 16-step rollouts collected by a
  `tf.while_loop` with `TensorArray`s, actions drawn from the softmax
  policy (Gumbel-max on a stateless uniform);
* separate 2x256 ReLU policy and value MLPs; n-step returns bootstrapped
  from V(s_T); inner loss `pg + value - entropy_weight * entropy`, SGD 0.1;
* entropy weight = sigmoid(MLP(mean rewards of the last 10 rollouts)),
  one hidden layer of 32, meta-optimizer Adam (1e-4, eps 1e-4);
* K=7 differentiated inner steps, L-1=8 bootstrap steps in a
  `tf.while_loop`, one SGD target step on the policy-gradient loss, KL
  (target first) summed over the target rollout's 16 states;
* the learner continues from x_{K+L-1}, and the last rollout of a
  meta-step is the first of the next: 240 new env steps per meta-step.

What it leaves out, by design: TF-Agents specs, driver and observers, the
per-rollout run statistics and the entropy diagnostic, checkpoints,
summaries, the gin and validation layers.

Each round runs, in separate subprocesses, the bare loop (XLA on and off)
and the pipeline (`benchmarks/speed.py`'s worker, XLA on and off) for
`--steps` env steps (a tenth without XLA). Rates are medians over windows
after the first (which holds compilation). Writes `<out>/bare.json` and
`<out>/bare.md` (default `results/speed`).
"""

import argparse
import functools
import json
import math
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
K, L, T, GAMMA, LR, WINDOW = 7, 9, 16, 0.99, 0.1, 10


def _bare_worker(xla, steps, window):
  """Runs the bare loop; prints one JSON line with its rate."""
  sys.path.insert(0, REPO)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import bare_nets  # pylint: disable=g-import-not-at-top

  env, rng = bare_nets.env_and_rng()
  mlp, mlp_vars = bare_nets.mlp, functools.partial(bare_nets.mlp_vars, rng)

  x_vars = mlp_vars([30, 256, 256, 4]) + mlp_vars([30, 256, 256, 1])
  meta_vars = mlp_vars([WINDOW, 32, 1])
  meta_vars[-1].assign([math.log(0.3 / 0.7)])  # entropy weight 0.3 at start.
  adam_m = [tf.Variable(tf.zeros_like(v)) for v in meta_vars]
  adam_v = [tf.Variable(tf.zeros_like(v)) for v in meta_vars]
  adam_t = tf.Variable(0.0)
  context = tf.Variable(tf.zeros([WINDOW]))
  counter = tf.Variable(0, dtype=tf.int64)
  cache = {'obs': tf.Variable(tf.zeros([T, 30])),
           'act': tf.Variable(tf.zeros([T], tf.int32)),
           'rew': tf.Variable(tf.zeros([T])),
           'boot': tf.Variable(tf.zeros([1, 30]))}
  cache_valid = tf.Variable(False)

  def collect(policy_params):
    def body(t, obs_ta, act_ta, rew_ta):
      obs = env.current_time_step().observation  # [1, 30]
      counter.assign_add(1)
      uniform = tf.random.stateless_uniform(
          [1, 4], seed=tf.stack([tf.constant(1, tf.int64), counter]),
          minval=1e-20, maxval=1.0)
      # Gumbel-max: a sample of the softmax policy.
      act = tf.argmax(mlp(policy_params, obs) - tf.math.log(
          -tf.math.log(uniform)), axis=-1, output_type=tf.int32)
      reward = env.step(tf.cast(act, tf.int64)).reward
      return (t + 1, obs_ta.write(t, obs[0]), act_ta.write(t, act[0]),
              rew_ta.write(t, reward[0]))
    tas = [tf.TensorArray(d, size=T) for d in (tf.float32, tf.int32,
                                                 tf.float32)]
    _, obs, act, rew = tf.while_loop(lambda t, *_: t < T, body, [0] + tas,
                                     maximum_iterations=T)
    rollout = {'obs': obs.stack(), 'act': act.stack(), 'rew': rew.stack(),
               'boot': env.current_time_step().observation}
    context.assign(tf.concat([context[1:], [tf.reduce_mean(
        rollout['rew'])]], 0))
    return rollout

  def log_policy(params, obs):
    return tf.nn.log_softmax(mlp(params[:6], obs))

  def losses(params, ro):
    logp = log_policy(params, ro['obs'])  # [T, 4]
    values = mlp(params[6:], ro['obs'])[:, 0]
    ret, returns = mlp(params[6:], ro['boot'])[0, 0], []
    for t in reversed(range(T)):
      ret = ro['rew'][t] + GAMMA * ret
      returns.append(ret)
    adv = tf.stop_gradient(tf.stack(returns[::-1])) - values
    logp_a = tf.gather(logp, ro['act'], batch_dims=1)
    pg = -tf.reduce_mean(logp_a * tf.stop_gradient(adv))
    entropy = -tf.reduce_mean(tf.reduce_sum(tf.exp(logp) * logp, -1))
    return pg, 0.5 * tf.reduce_mean(tf.square(adv)), entropy

  def sgd_step(params, ro, weight):
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(params)
      pg, value, entropy = losses(params, ro)
      loss = pg + (0.0 if weight is None else value - weight * entropy)
    grads = tape.gradient(loss, params,
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return [p - LR * g for p, g in zip(params, grads)]

  def meta_step():
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(meta_vars)
      weight = tf.sigmoid(mlp(meta_vars, context[None])[0, 0])
      x = [tf.identity(v) for v in x_vars]
      for k in range(K):
        ro = (tf.cond(cache_valid, lambda: {n: tf.identity(v) for n, v in
                                            cache.items()},
                      lambda: collect(x[:6])) if k == 0 else
              collect([tf.stop_gradient(p) for p in x[:6]]))
        x = sgd_step(x, ro, weight)
      const_weight = tf.stop_gradient(weight)

      def boot_body(i, *xb):
        return (i + 1,) + tuple(sgd_step(list(xb), collect(list(xb[:6])),
                                         const_weight))
      xb = tf.while_loop(lambda i, *_: i < L - 1, boot_body,
                         [0] + [tf.stop_gradient(p) for p in x],
                         maximum_iterations=L - 1)[1:]
      ro = collect(list(xb[:6]))
      target = [tf.stop_gradient(p) for p in sgd_step(list(xb), ro, None)]
      log_t, log_c = log_policy(target, ro['obs']), log_policy(x, ro['obs'])
      kl = tf.reduce_sum(tf.exp(log_t) * (log_t - log_c))
    grads = tape.gradient(kl, meta_vars)
    adam_t.assign_add(1.0)
    for v, g, m, s in zip(meta_vars, grads, adam_m, adam_v):
      m.assign(0.9 * m + 0.1 * g)
      s.assign(0.999 * s + 0.001 * tf.square(g))
      m_hat = m / (1.0 - 0.9 ** adam_t)
      s_hat = s / (1.0 - 0.999 ** adam_t)
      v.assign_sub(1e-4 * m_hat / (tf.sqrt(s_hat) + 1e-4))
    for v, p in zip(x_vars, xb):
      v.assign(p)
    for n, v in cache.items():
      v.assign(ro[n])
    cache_valid.assign(True)
    return kl

  step = tf.function(meta_step, jit_compile=xla, autograph=False)
  per_meta_step = (K + L - 1) * T
  start = time.perf_counter()
  kl = float(step())
  rates, done = [], per_meta_step
  while done < steps:
    window_start, window_done = time.perf_counter(), 0
    while window_done < window and done < steps:
      kl = float(step())
      window_done += per_meta_step
      done += per_meta_step
    rates.append(window_done / (time.perf_counter() - window_start))
  wall = time.perf_counter() - start
  rate = statistics.median(rates[1:] if len(rates) > 1 else rates)
  print(json.dumps({'env_steps_per_sec': rate, 'window_rates': rates,
                    'env_steps': done, 'wall_s': wall,
                    'final_kl': kl, 'finite': math.isfinite(kl)}))


def _window(steps):
  """Env steps per timing window: eight windows per run, at least 2,400."""
  return max(steps // 8, 2400)


def _run(cmd):
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                        cwd=REPO)
  if proc.returncode:
    raise RuntimeError(f'{cmd} failed:\n{proc.stderr[-3000:]}')
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--steps', type=int, default=96_000,
                      help='Env steps per XLA run (a tenth without XLA).')
  parser.add_argument('--xla', default='on,off')
  parser.add_argument('--out', default=os.path.join(REPO, 'results',
                                                     'speed'))
  parser.add_argument('--worker', action='store_true')
  parser.add_argument('--worker_steps', type=int, default=0)
  parser.add_argument('--worker_xla', default='on', choices=('on', 'off'))
  args = parser.parse_args()
  if args.worker:
    steps = args.worker_steps
    _bare_worker(args.worker_xla == 'on', steps, _window(steps))
    return
  if args.rounds < 1 or args.steps < 4 * 2400:  # Windows after compile.
    parser.error(f'--rounds must be >= 1 and --steps >= 9600, got '
                 f'{args.rounds} and {args.steps}.')
  if not set(args.xla.split(',')) <= {'on', 'off'}:
    parser.error(f'--xla: a comma-separated list of on, off; got '
                 f'{args.xla!r}.')
  runs = {}
  for round_ in range(args.rounds):
    print(f'round {round_ + 1}/{args.rounds}', flush=True)
    for xla in args.xla.split(','):
      steps = args.steps if xla == 'on' else args.steps // 10
      window = _window(steps)
      bare = _run([sys.executable, os.path.abspath(__file__), '--worker',
                   f'--worker_xla={xla}', f'--worker_steps={steps}'])
      pipe = _run([sys.executable, os.path.join(REPO, 'benchmarks',
                                                'speed.py'),
                   '--worker', '--method=bmg', '--k=7', '--l=9',
                   f'--xla={xla}', f'--steps={steps}', f'--window={window}'])
      for name, row in (('bare', bare), ('pipeline', pipe)):
        runs.setdefault((name, xla), []).append(row['env_steps_per_sec'])
      print(f'  XLA {xla}: bare {bare["env_steps_per_sec"]:,.0f}, pipeline '
            f'{pipe["env_steps_per_sec"]:,.0f} env steps/s (pipeline / bare '
            f'{pipe["env_steps_per_sec"] / bare["env_steps_per_sec"]:.2f})',
            flush=True)
  rows = []
  for xla in args.xla.split(','):
    bare, pipe = runs['bare', xla], runs['pipeline', xla]
    ratios = [p / b for p, b in zip(pipe, bare)]
    rows.append({'xla': xla, 'bare_per_round': bare,
                 'pipeline_per_round': pipe, 'ratio_per_round': ratios,
                 'bare': statistics.median(bare),
                 'pipeline': statistics.median(pipe),
                 'pipeline_over_bare': statistics.median(ratios)})
  lines = ['| XLA | bare loop, env steps/s | pipeline | pipeline / bare '
           '(median of rounds) |', '|---|---|---|---|']
  for r in rows:
    lines.append(f"| {r['xla']} | {r['bare']:,.0f} | {r['pipeline']:,.0f} | "
                 f"{r['pipeline_over_bare']:.2f} |")
  print('\n'.join(lines))
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, 'bare.json'), 'w') as f:
    json.dump({'rounds': args.rounds, 'steps': args.steps, 'rows': rows}, f,
              indent=1)
  with open(os.path.join(args.out, 'bare.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')


if __name__ == '__main__':
  main()
