r"""The epsilon-Q pipeline against a bare in-graph loop, and where its time goes.

    python benchmarks/bare_q.py                      # 3 interleaved rounds
    python benchmarks/bare_q.py --rounds=1 --steps=48000

Issue 17 asks for the BMG-epsilon pipeline at >= 0.9x a bare engine-free
in-graph Q loop measured in the same run, and, if a speed goal is missed,
for the time of each piece. Each round runs, in separate subprocesses:

* `bare`: this file's loop, written from BMG_SPEC section 2.2 without the
  library's engine, agents, driver, replay buffer or optimizers. It does
  the work of one iteration of `gin/two_colors/q_bmg_eps.gin` (K=0, L=16):
  collect E = 60 env steps of the in-graph `TFTwoColors` with the
  epsilon-greedy policy of a 2x256 Q-MLP; write them to a ring buffer of
  20,000 frames (plain variables); sample 16 batches of 32 windows of 9
  steps; 15 Adam (1e-3) updates on Peng's Q(lambda) (lambda 0.9, gamma
  0.99) targets; one more Adam step with its own state (the target); the
  meta-loss `mean_s -log pi_eps(argmax q_target(s) | s)` on the 16th
  batch's states under the Q-values at the start of the iteration; its
  gradient for epsilon = sigmoid(MLP(mean reward of the last 10 chunks)),
  one hidden layer of 32, applied with Adam (1e-3, eps 1e-4). Eight
  iterations per compiled call, as the shipped gin file's
  `MetaLearner.steps_per_call = 8`.
* `pipeline`: `pipelines.two_colors_q` with the shipped BMG gin file and
  the bare loop's meta-network and context, `steps_per_call` 8 and 1 (the latter is the old three-calls-per-
  iteration pipeline's data flow in one call per iteration).
* `pieces`: the pipeline's parts compiled and timed on their own, per
  iteration: collection of E steps plus the replay write, the replay
  sample of 16 x 32 windows, and the engine's meta-step on fixed batches.

Rates are medians over timing windows after the first (which holds the
compilation). Writes `<out>/q_bare.json` and `<out>/q_bare.md` (default
`results/speed`).
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
E, N, B, T = 60, 16, 32, 8  # Env steps, batches, sequences, steps per it.
CAPACITY, GAMMA, LAMBDA, WINDOW, CALL = 20_000, 0.99, 0.9, 10, 8


def _timed(step, steps_per_call, steps, window):
  """Calls `step` until `steps` env steps; median rate after the first
  window."""
  step()  # Compiles.
  rates, done = [], 0
  while done < steps:
    start, window_done = time.perf_counter(), 0
    while window_done < window and done < steps:
      step()
      window_done += steps_per_call
      done += steps_per_call
    rates.append(window_done / (time.perf_counter() - start))
  return statistics.median(rates[1:] if len(rates) > 1 else rates), rates


def _bare_worker(xla, steps, window):
  """Runs the bare loop; prints one JSON line with its rate."""
  sys.path.insert(0, REPO)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import bare_nets  # pylint: disable=g-import-not-at-top

  env, rng = bare_nets.env_and_rng()
  mlp, mlp_vars = bare_nets.mlp, functools.partial(bare_nets.mlp_vars, rng)

  def adam_state(variables):
    return ([tf.Variable(tf.zeros_like(v)) for v in variables],
            [tf.Variable(tf.zeros_like(v)) for v in variables],
            tf.Variable(0.0))

  def adam(params, grads, state, lr, eps):
    """Functional Adam: new params; assigns the state."""
    m_vars, v_vars, t_var = state
    t = t_var + 1.0
    new = []
    for p, g, m_var, v_var in zip(params, grads, m_vars, v_vars):
      m = 0.9 * m_var + 0.1 * g
      v = 0.999 * v_var + 0.001 * tf.square(g)
      m_var.assign(m)
      v_var.assign(v)
      new.append(p - lr * (m / (1.0 - 0.9 ** t)) /
                 (tf.sqrt(v / (1.0 - 0.999 ** t)) + eps))
    t_var.assign(t)
    return new

  q_vars = mlp_vars([30, 256, 256, 4])
  inner_state, target_state = adam_state(q_vars), adam_state(q_vars)
  meta_vars = mlp_vars([WINDOW, 32, 1])
  meta_vars[-2].assign(tf.zeros_like(meta_vars[-2]))
  meta_vars[-1].assign([math.log(0.1 / 0.9)])  # epsilon 0.1 at start.
  meta_state = adam_state(meta_vars)
  context = tf.Variable(tf.zeros([WINDOW]))
  counter = tf.Variable(0, dtype=tf.int64)
  buffer = {'obs': tf.Variable(tf.zeros([CAPACITY, 30])),
            'act': tf.Variable(tf.zeros([CAPACITY], tf.int32)),
            'rew': tf.Variable(tf.zeros([CAPACITY]))}
  frames = tf.Variable(0, dtype=tf.int64)

  def epsilon():
    return tf.sigmoid(mlp(meta_vars, context[None])[0, 0])

  def collect():
    eps = epsilon()

    def body(t, obs_ta, act_ta, rew_ta):
      obs = env.current_time_step().observation  # [1, 30]
      counter.assign_add(1)
      u = tf.random.stateless_uniform(
          [2], seed=tf.stack([tf.constant(1, tf.int64), counter]))
      greedy = tf.argmax(mlp(q_vars, obs)[0], output_type=tf.int32)
      act = tf.where(u[0] < eps, tf.cast(u[1] * 4, tf.int32), greedy)
      reward = env.step(tf.cast(act[None], tf.int64)).reward
      return (t + 1, obs_ta.write(t, obs[0]), act_ta.write(t, act),
              rew_ta.write(t, reward[0]))
    tas = [tf.TensorArray(d, size=E) for d in (tf.float32, tf.int32,
                                                 tf.float32)]
    _, obs, act, rew = tf.while_loop(lambda t, *_: t < E, body, [0] + tas,
                                     maximum_iterations=E)
    rows = tf.math.mod(frames + tf.range(E, dtype=tf.int64), CAPACITY)
    for name, ta in (('obs', obs), ('act', act), ('rew', rew)):
      buffer[name].scatter_nd_update(rows[:, None], ta.stack())
    frames.assign_add(E)
    context.assign(tf.concat([context[1:], [tf.reduce_mean(rew.stack())]],
                             0))

  def sample():
    """[N, B, T+1] windows of consecutive frames still in the buffer."""
    low = tf.maximum(frames - CAPACITY, 0)
    counter.assign_add(1)
    starts = tf.random.stateless_uniform(
        [N * B], seed=tf.stack([tf.constant(2, tf.int64), counter]),
        minval=low, maxval=frames - T, dtype=tf.int64)
    rows = tf.math.mod(starts[:, None] + tf.range(T + 1, dtype=tf.int64),
                       CAPACITY)
    return {k: tf.reshape(tf.gather(v, rows),
                          [N, B, T + 1] + v.shape.as_list()[1:])
            for k, v in buffer.items()}

  def td_grads(params, batch):
    """One forward pass on `[B, T+1]`: targets from its stopped values."""
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(params)
      q_all = mlp(params, batch['obs'])  # [B, T+1, 4]
      q_next = tf.reduce_max(tf.stop_gradient(q_all), -1)  # [B, T+1]
      ret, returns = q_next[:, T], []
      for t in reversed(range(T)):
        ret = batch['rew'][:, t] + GAMMA * (
            (1 - LAMBDA) * q_next[:, t + 1] + LAMBDA * ret)
        returns.append(ret)
      targets = tf.stack(returns[::-1], 1)  # [B, T]
      q = tf.gather(q_all[:, :T], batch['act'][:, :T], batch_dims=2)
      loss = 0.5 * tf.reduce_mean(tf.square(targets - q))
    return tape.gradient(loss, params)

  def iteration():
    x0 = [tf.identity(v) for v in q_vars]
    collect()
    batches = sample()

    def inner(i, *x):
      batch = {k: v[i] for k, v in batches.items()}
      return (i + 1,) + tuple(adam(list(x), td_grads(list(x), batch),
                                   inner_state, 1e-3, 1e-7))
    x = list(tf.while_loop(lambda i, *_: i < N - 1, inner, [0] + x0,
                           maximum_iterations=N - 1)[1:])
    last = {k: v[N - 1] for k, v in batches.items()}
    target = adam(x, td_grads(x, last), target_state, 1e-3, 1e-7)
    obs = last['obs'][:, :T]
    greedy = tf.argmax(mlp(target, obs), -1)  # [B, T]
    q_now = mlp(x0, obs)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(meta_vars)
      eps = epsilon()
      probs = (1 - eps) * tf.one_hot(tf.argmax(q_now, -1), 4) + eps / 4
      loss = -tf.reduce_mean(tf.math.log(tf.gather(probs, greedy,
                                                   batch_dims=2)))
    meta_grads = tape.gradient(loss, meta_vars)
    for v, p in zip(meta_vars, adam(meta_vars, meta_grads, meta_state,
                                     1e-3, 1e-4)):
      v.assign(p)
    for v, p in zip(q_vars, x):
      v.assign(p)
    return loss

  def warm_up():
    collect()

  def call():
    return tf.while_loop(lambda i, _: i < CALL,
                         lambda i, _: (i + 1, iteration()),
                         (0, tf.constant(0.0)), maximum_iterations=CALL)[1]

  warm = tf.function(warm_up, jit_compile=xla, autograph=False)
  while int(frames) < 1000:
    warm()
  step = tf.function(call, jit_compile=xla, autograph=False)
  rate, rates = _timed(step, E * CALL, steps, window)
  loss = float(step())
  print(json.dumps({'env_steps_per_sec': rate, 'window_rates': rates,
                    'final_meta_loss': loss, 'finite': math.isfinite(loss),
                    'epsilon': float(epsilon())}))


def _pipeline_worker(xla, steps, window, steps_per_call, pieces):
  """The pipeline (one JSON line): its rate, or the time of its pieces."""
  sys.path.insert(0, REPO)
  # pylint: disable=g-import-not-at-top
  import gin
  import tensorflow as tf
  from bmg_tf.core import meta_learner as meta_learner_lib
  from pipelines import two_colors_q
  # pylint: enable=g-import-not-at-top
  gin.parse_config_files_and_bindings(
      [os.path.join(REPO, 'gin', 'two_colors', 'q_bmg_eps.gin')],
      [f'MetaLearner.jit_compile = {xla}',
       f'MetaLearner.steps_per_call = {steps_per_call}',
       # The bare loop's meta-network and context (the gin file's before
       # tuning; it now ships a 2x128 net on the last 100 step rewards),
       # so that both loops do the same work.
       "RewardContext.granularity = 'rollout'", 'RewardContext.window = 10',
       'ContextualMetaParameters.hidden_sizes = (32,)',
       # The bare loop draws all L batches from the whole replay.
       'two_colors_q.build.target_recent_frames = None'])
  exp = two_colors_q.build(export=False, seed=0)
  loop = exp.train()
  stats = exp.trackables['stats']
  while int(stats.env_steps) < 1000:  # Warm-up, then one learner call.
    loop.iterate()
  loop.iterate()
  if not pieces:
    rate, rates = _timed(loop.iterate, E * steps_per_call, steps, window)
    print(json.dumps({'env_steps_per_sec': rate, 'window_rates': rates}))
    return
  learner = exp.learner
  data_fn = learner._py.data_fn  # pylint: disable=protected-access
  replay = exp.trackables['replay']
  # The warm-up function of the pipeline is the collection plus the write.
  collect_and_add = loop.iterate.collect_only
  sample = tf.function(lambda: replay.get_next(
      sample_batch_size=N * B, num_steps=T + 1)[0], jit_compile=xla,
                       autograph=False)
  batches, context = tf.function(data_fn, autograph=False)()
  engine = meta_learner_lib.MetaLearner(
      learner.learner_params, learner.meta_parameters,
      learner._py.objectives, learner.config,  # pylint: disable=protected-access
      inner_optimizer=learner.inner_optimizer,
      target_optimizer=learner.target_optimizer, jit_compile=xla,
      steps_per_call=1)
  # The machine's rate on the learner's dominant op: [512,256] x [256,256]
  # matmuls (an update's hidden layer on B*T*2 rows), 64 per call.
  a = tf.random.normal([512, 256])
  w = tf.Variable(tf.random.normal([256, 256]) * 0.06)
  matmuls = tf.function(lambda: tf.while_loop(
      lambda i, x: i < 64, lambda i, x: (i + 1, tf.tanh(x @ w)), (0, a))[1],
                        jit_compile=xla, autograph=False)
  rate, _ = _timed(lambda: matmuls(), 1, 200, 25)
  gmacs = rate * 64 * 512 * 256 * 256 / 1e9
  timings = {}
  for name, fn in (('collect_and_replay_write', collect_and_add),
                   ('replay_sample', sample),
                   ('meta_step', lambda: engine.step(batches, context))):
    rate, _ = _timed(fn, 1, max(steps // (E * 4), 40), 20)
    timings[name] = 1e3 / rate  # ms per iteration.
  print(json.dumps({'ms_per_iteration': timings,
                    'matmul_gmac_per_s': gmacs,
                    'learner_gmac_per_iteration': _learner_macs() / 1e9}))


def _learner_macs():
  """Multiply-adds of one BMG iteration's learner work (2x256 Q-MLP).

  Per Q-learning update (L-1 = 15 kept, 1 target step): a forward pass on
  the B*T next states (targets), one on the B*T states, and a backward
  pass worth two forward passes: 4 * B * T rows. The meta-loss adds two
  forward passes on the target batch's B*T states.
  """
  per_row = 30 * 256 + 256 * 256 + 256 * 4
  return per_row * B * T * (4 * N + 2)


def _run(args):
  proc = subprocess.run([sys.executable, os.path.abspath(__file__)] + args,
                        capture_output=True, text=True, check=False, cwd=REPO)
  if proc.returncode:
    raise RuntimeError(f'{args} failed:\n{proc.stderr[-3000:]}')
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--steps', type=int, default=48_000,
                      help='Env steps per timed run, after the warm-up.')
  parser.add_argument('--xla', default='on', choices=('on', 'off'))
  parser.add_argument('--out', default=os.path.join(REPO, 'results',
                                                     'speed'))
  parser.add_argument('--worker', default='',
                      choices=('', 'bare', 'pipeline', 'pieces'))
  parser.add_argument('--steps_per_call', type=int, default=CALL)
  args = parser.parse_args()
  xla = args.xla == 'on'
  window = max(args.steps // 8, E * CALL)
  if args.worker == 'bare':
    _bare_worker(xla, args.steps, window)
    return
  if args.worker:
    _pipeline_worker(xla, args.steps, window, args.steps_per_call,
                     args.worker == 'pieces')
    return
  if args.rounds < 1 or args.steps < 4 * E * CALL:
    parser.error(f'--rounds must be >= 1 and --steps >= {4 * E * CALL}.')
  common = [f'--xla={args.xla}', f'--steps={args.steps}']
  runs = {'bare': [], 'pipeline': [], 'pipeline_1': [], 'pieces': []}
  for round_ in range(args.rounds):
    bare = _run(['--worker=bare'] + common)
    pipe = _run(['--worker=pipeline'] + common)
    pipe_1 = _run(['--worker=pipeline', '--steps_per_call=1'] + common)
    pieces = _run(['--worker=pieces'] + common)
    for name, row in (('bare', bare), ('pipeline', pipe),
                      ('pipeline_1', pipe_1), ('pieces', pieces)):
      runs[name].append(row)
    print(f'round {round_ + 1}/{args.rounds}: bare '
          f'{bare["env_steps_per_sec"]:,.0f}, pipeline (8 per call) '
          f'{pipe["env_steps_per_sec"]:,.0f}, (1 per call) '
          f'{pipe_1["env_steps_per_sec"]:,.0f} env steps/s; pieces (ms per '
          f'iteration) {pieces["ms_per_iteration"]}', flush=True)
  rate = {k: [r['env_steps_per_sec'] for r in runs[k]]
          for k in ('bare', 'pipeline', 'pipeline_1')}
  ratio = [p / b for p, b in zip(rate['pipeline'], rate['bare'])]
  ratio_1 = [p / b for p, b in zip(rate['pipeline_1'], rate['bare'])]
  pieces = {k: statistics.median(r['ms_per_iteration'][k]
                                 for r in runs['pieces'])
            for k in runs['pieces'][0]['ms_per_iteration']}
  total = sum(pieces.values())
  gmacs = statistics.median(r['matmul_gmac_per_s'] for r in runs['pieces'])
  learner_gmac = runs['pieces'][0]['learner_gmac_per_iteration']
  summary = {
      'xla': args.xla, 'rounds': args.rounds, 'steps': args.steps,
      'rates': rate, 'pipeline_over_bare_per_round': ratio,
      'pipeline_over_bare': statistics.median(ratio),
      'pipeline_1_over_bare': statistics.median(ratio_1),
      'pieces_ms_per_iteration': pieces,
      'pieces_bound_env_steps_per_sec': E * 1e3 / total,
      'matmul_gmac_per_s': gmacs,
      'learner_gmac_per_iteration': learner_gmac,
      'meta_step_gmac_per_s': learner_gmac / pieces['meta_step'] * 1e3,
      'matmul_bound_env_steps_per_sec': E * gmacs / learner_gmac,
      'bare_finite': all(r['finite'] for r in runs['bare']),
  }
  lines = [
      f'Epsilon-Q, BMG (gin/two_colors/q_bmg_eps.gin), XLA {args.xla}, '
      f'{args.rounds} rounds of {args.steps:,} env steps; E = {E} env '
      f'steps and {N - 1} learner updates of {B} x {T + 1} steps per '
      'iteration.', '',
      '| loop | env steps/s (median) | per round | / bare (median) |',
      '|---|---|---|---|']
  for key, label, r in (
      ('bare', 'bare in-graph loop, 8 iterations per call', None),
      ('pipeline', 'pipeline, 8 iterations per call', ratio),
      ('pipeline_1', 'pipeline, 1 iteration per call', ratio_1)):
    per_round = ', '.join(f'{v:,.0f}' for v in rate[key])
    rel = f'{statistics.median(r):.2f}' if r else '1'
    lines.append(f'| {label} | {statistics.median(rate[key]):,.0f} | '
                 f'{per_round} | {rel} |')
  lines += ['', '| piece (compiled alone) | ms per iteration | share |',
            '|---|---|---|']
  for name, ms in pieces.items():
    lines.append(f'| {name} | {ms:.2f} | {ms / total:.0%} |')
  lines.append(f'| sum | {total:.2f} | {E * 1e3 / total:,.0f} env steps/s '
               'if nothing else cost anything |')
  lines += [
      '', f'The learner does {learner_gmac:.2f} G multiply-adds per iteration '
      f'({learner_gmac / E * 1e3:.1f} M per env step); the meta-step runs '
      f'them at {summary["meta_step_gmac_per_s"]:.0f} GMAC/s. Chained '
      f'[512,256] x [256,256] matmuls alone run at {gmacs:.0f} GMAC/s here, '
      f'which bounds this configuration at '
      f'{summary["matmul_bound_env_steps_per_sec"]:,.0f} env steps/s even '
      'if everything else were free.']
  text = '\n'.join(lines)
  print(text)
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, 'q_bare.json'), 'w') as f:
    json.dump({**summary, 'runs': runs}, f, indent=1)
  with open(os.path.join(args.out, 'q_bare.md'), 'w') as f:
    f.write(text + '\n')


if __name__ == '__main__':
  main()
