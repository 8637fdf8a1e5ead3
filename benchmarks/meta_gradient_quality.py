r"""Meta-gradient quality on two-colours: MG(K), BMG(K, L) vs MG(K+L).

    python benchmarks/meta_gradient_quality.py            # ~20 min on 2 cores
    python benchmarks/meta_gradient_quality.py --samples=16 --repeats=1 \
        --moments=60000 --estimators=mg1,bmg7_4,mg11   # quick look

The paper's thesis is that BMG's meta-gradient points closer to a long-horizon
meta-gradient than the myopic MG(K) one. This script tests that on our task.

1. Moments. It trains the paper-form BMG agent
   (`gin/two_colors/ac_bmg_paper.gin`, one seed) with `bmg-train`,
   stopping (and resuming) at each of `--moments` env steps, and reads the learner, the meta-network, the reward
   context and the env state from the checkpoint there. With flips every
   100k steps, the defaults are mid-phase (150k, 1.05M), just after a flip
   (201k, 1.001M: the context already holds the new rewards, the policy still
   chases the old colour) and long after one (290k).
2. Estimators. At each moment, with the entropy weight as a single sigmoid
   logit fixed at the value the meta-network gives in that moment's context,
   it computes `d meta-loss / d logit` for every estimator over
   `--samples x --repeats` independent rollout streams. The samples are N
   copies of the checkpoint's learner and env stream batched as N seeds of
   one graph (`num_seeds`): each copy's inner updates and meta-gradient are
   its own, its env and action draws differ. Within a repeat all estimators
   see the same random draws (paired samples), so per-sample correlations
   are meaningful. The estimators run through the engine
   (`bootstrap.meta_step`) with the pipeline's losses (n-step returns,
   value coefficient 1, inner SGD 0.1, SGD 0.1 target step, KL matching
   summed over the 16 target states):
   * `mgK`: MG with K differentiated steps; the outer objective is the
     policy-gradient loss of the next rollout (no entropy bonus, the same
     objective as BMG's target step);
   * `bmgK_L`: BMG, K differentiated steps, L-1 bootstrap steps, one SGD
     step on the outer objective, KL(target || x_K);
   * `bmgK_Lf`: the same, but the L-1 bootstrap steps use the inner loss
     with a fixed entropy weight 0 (`Objectives.bootstrap_loss`), so the
     target holds no trace of the meta-learned weight;
   * the long-horizon reference is `mg{K+L}` (differentiating through all
     K+L steps; feasible only at this size).
   Every estimator is run with the inner (and target) gradients clipped to
   global norm 5 (as shipped) and without clipping; with clipping it also
   counts how often the clip was active.
   Since the context is fixed within a meta-step, the meta-gradient on the
   contextual network's parameters is this scalar times a fixed vector
   (d logit / d theta), so the scalar carries all of it: its sign is the
   direction, its spread the noise.

Per (moment, clipping, estimator) it reports the mean, standard deviation and
standard error of the derivative, the per-sample signal-to-noise ratio
|mean| / std, the drift ratio mean / sqrt(mean^2 + std^2) (what Adam's
normalised step m / sqrt(v) tends to with this gradient stream: the fraction
of the meta learning rate by which the logit moves per meta-step), the
fraction of samples that push the weight up, the per-sample correlation with
the reference, and whether the mean agrees in sign with the reference's mean.
Across moments it gives the cosine between each estimator's vector of means
and the reference's (each moment's entries divided by the reference's std
there, so that no moment dominates by scale).

Writes `<out>/meta_gradient_quality.json`, `.md` and `.png` (default
`results/meta_gradient_quality`); findings are discussed in
`docs/fidelity.md`.
"""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

import argparse  # pylint: disable=g-import-not-at-top,g-bad-import-order
import json
import re
import sys
import time

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import study  # pylint: disable=g-import-not-at-top

from bmg_tf.agents import actor_critic  # pylint: disable=g-import-not-at-top
from bmg_tf.agents import rollout as rollout_lib
from bmg_tf.core import bootstrap
from bmg_tf.core import meta_params
from bmg_tf.core import optimizers
from bmg_tf.envs import tf_two_colors

REPO = study.REPO
DEFAULT_MOMENTS = (150_000, 201_000, 290_000, 1_001_000, 1_050_000)
DEFAULT_ESTIMATORS = ('mg1', 'mg7', 'bmg7_1', 'bmg7_4', 'bmg7_9', 'bmg7_16',
                      'bmg7_4f', 'bmg7_9f', 'bmg7_16f', 'mg8', 'mg11', 'mg16',
                      'mg23')


def parse_estimator(name):
  """'mgK' -> ('mg', K, None); 'bmgK_L' -> ('bmg', K, L); 'bmgK_Lf' ->
  ('bmgf', K, L), BMG whose bootstrap steps use a fixed entropy weight 0."""
  m = re.fullmatch(r'mg(\d+)', name)
  if m and int(m.group(1)) >= 1:
    return 'mg', int(m.group(1)), None
  m = re.fullmatch(r'bmg(\d+)_(\d+)(f?)', name)
  if m and int(m.group(1)) >= 1 and int(m.group(2)) >= 1:
    return 'bmg' + m.group(3), int(m.group(1)), int(m.group(2))
  raise ValueError(f"estimator: expected 'mgK', 'bmgK_L' or 'bmgK_Lf' with "
                   f'K, L >= 1, got {name!r}.')


def reference_of(name):
  """The long-horizon reference of an estimator: MG over the same horizon."""
  method, k, l = parse_estimator(name)
  return f'mg{k + (l or 0)}' if method != 'mg' else None


# ------------------------------------------------------------------ moments


def _load_moment(root):
  """Reads the learner, meta-network, context and env state of a checkpoint."""
  path = tf.train.latest_checkpoint(os.path.join(root, 'checkpoints'))
  reader = tf.train.load_checkpoint(path)
  get = lambda k: reader.get_tensor(f'{k}/.ATTRIBUTES/VARIABLE_VALUE')
  names = [n for n, _ in tf.train.list_variables(path)]
  n_params = len([n for n in names if n.startswith('learner/learner_params/')])
  state = {
      'params': [get(f'learner/learner_params/{i}') for i in range(n_params)],
      'context': get('context/rewards'),
      'env': {'agent': get('env/agent'), 'objects': get('env/objects'),
              'step': get('env/step_count'), 'reward': get('env/last_reward')},
      'env_steps': int(get('stats/env_steps')),
  }
  net = 'learner/meta_parameters/contextual/net'
  k0, b0 = get(f'{net}/kernel_0'), get(f'{net}/bias_0')
  k1, b1 = get(f'{net}/kernel_1'), get(f'{net}/bias_1')
  h = np.maximum(state['context'] @ k0 + b0, 0.0)
  logit = float(h @ k1[:, 0] + b1[0])
  # d logit / d theta of the meta-network at this context: its norm turns
  # the scalar derivative into the network's meta-gradient norm.
  active = (state['context'] @ k0 + b0 > 0).astype(np.float64)
  d_hidden = k1[:, 0] * active
  dnorm = np.sqrt(1.0 + np.sum(h**2) + np.sum(d_hidden**2) *
                  (1.0 + np.sum(state['context']**2)))
  state.update(logit=logit, entropy_weight=float(1 / (1 + np.exp(-logit))),
               dlogit_dtheta_norm=float(dnorm))
  return state


def train_moments(args):
  """Trains the BMG agent to each moment; returns {step: state}."""
  root = os.path.join(args.out, 'train')
  moments = {}
  for step in sorted(args.moments):
    cache = os.path.join(args.out, 'moments', f'{step}.npz')
    if os.path.exists(cache):
      with np.load(cache, allow_pickle=True) as f:
        moments[step] = f['state'].item()
      continue
    bindings = [
        f'two_colors.build.num_env_steps = {step}',
        f'two_colors.build.seed = {args.seed}',
        'two_colors.build.log_every = 50000',
        'two_colors.build.checkpoint_every = 100000000',
        'two_colors.build.export = False',
    ] + list(args.gin_bindings)
    start = time.time()
    study.run_cli(os.path.join(REPO, args.gin_file), root, bindings, step)
    state = _load_moment(root)
    print(f'moment {step}: trained to {state["env_steps"]} env steps in '
          f'{time.time() - start:.0f} s; entropy weight '
          f'{state["entropy_weight"]:.4f}, context mean '
          f'{state["context"].mean():+.3f}', flush=True)
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    np.savez(cache, state=np.array(state, dtype=object))
    moments[step] = state
  return moments


# --------------------------------------------------------------- estimators


class ClipCounter:
  """An engine optimizer that delegates and counts active clips per sample.

  Duck-types `optimizers.Optimizer` for the engine (`init`, `update`). The
  norm is the per-sample global norm of the gradient the wrapped (clipping)
  optimizer receives.
  """

  def __init__(self, optimizer, clip_norm, num_samples):
    self._optimizer = optimizer
    self._clip = clip_norm
    self.steps = tf.Variable(0.0, trainable=False)
    self.active = tf.Variable(tf.zeros([num_samples]), trainable=False)
    self.norm_sum = tf.Variable(tf.zeros([num_samples]), trainable=False)

  def reset(self):
    self.steps.assign(0.0)
    self.active.assign(tf.zeros_like(self.active))
    self.norm_sum.assign(tf.zeros_like(self.norm_sum))

  def init(self, params):
    return self._optimizer.init(params)

  def update(self, grads, state, params, hparams=None):
    grads = [tf.zeros_like(p) if g is None else g
             for g, p in zip(grads, params)]
    sq = tf.add_n([
        tf.reduce_sum(tf.reshape(tf.square(tf.stop_gradient(g)),
                                 [tf.shape(g)[0], -1]), axis=1)
        for g in grads])
    norm = tf.sqrt(sq)
    self.steps.assign_add(1.0)
    self.norm_sum.assign_add(norm)
    if self._clip is not None:
      self.active.assign_add(tf.cast(norm > self._clip, tf.float32))
    return self._optimizer.update(grads, state, params, hparams)


class Estimators:
  """N batched copies of a checkpoint's learner and env; one graph per estimator."""

  def __init__(self, num_samples, clip_norm, jit_compile):
    self.n = num_samples
    self.env = tf_two_colors.TFTwoColors(batch_size=num_samples, seed=0)
    obs_dim = self.env.observation_spec().shape[-1]
    self.agent = actor_critic.ActorCritic(
        obs_dim, 4, num_seeds=num_samples, outer_entropy_weight=0.0)
    self.policy = rollout_lib.FunctionalPolicy(
        self.env.time_step_spec(), self.env.action_spec(),
        self.agent.distribution, lambda: self.agent.params, seed=0)
    self.collector = rollout_lib.RolloutCollector(self.env, self.policy, 16)
    self.logit = meta_params.MetaParameter(0.5, 'sigmoid',
                                           num_seeds=num_samples)
    self.clip_norm = clip_norm

    def make(opt):
      if clip_norm is not None:
        opt = optimizers.GlobalNormClipped(opt, clip_norm, batch_dims=1)
      return ClipCounter(opt, clip_norm, num_samples)

    self.inner = make(optimizers.SGD(learning_rate=0.1))
    self.target = make(optimizers.SGD(learning_rate=0.1))
    self._jit = jit_compile
    self._fns = {}

  def set_moment(self, state, key):
    """Copies the checkpoint into every sample; `key` seeds the draws."""
    tile = lambda a: np.repeat(np.asarray(a)[None], self.n, axis=0)
    for var, value in zip(self.agent.params, state['params']):
      var.assign(tile(value))
    env = state['env']
    self.env.set_state({
        'agent': np.repeat(env['agent'], self.n, axis=0),
        'objects': np.repeat(env['objects'], self.n, axis=0),
        'step': np.repeat(env['step'], self.n, axis=0),
        'reward': np.repeat(env['reward'], self.n, axis=0),
        'rng': np.array([key, 0], np.int64)})
    self.policy.generator.reset_from_seed(key)
    self.logit.raw.assign(tf.fill([self.n], state['logit']))
    self.inner.reset()
    self.target.reset()

  def _fn(self, name):
    if name not in self._fns:
      method, k, l = parse_estimator(name)
      if method == 'mg':
        config = bootstrap.BootstrapConfig(method='mg', k_steps=k)
      else:
        config = bootstrap.BootstrapConfig(
            method='bmg', k_steps=k, l_steps=l,
            matching={'policy_kl': 1.0}, reduction='sum')

      objectives = self.agent.objectives()
      if method == 'bmgf':
        zero = {'entropy_weight': tf.constant(0.0)}
        objectives = objectives._replace(
            bootstrap_loss=lambda p, b: self.agent.inner_loss(p, b, zero))

      def estimate():
        params = [tf.convert_to_tensor(p) for p in self.agent.params]
        result = bootstrap.meta_step(
            params, self.inner.init(params), [self.logit.raw],
            lambda: {'entropy_weight': self.logit()},
            objectives, config, self.inner,
            lambda i, p: self.collector.collect(p),
            target_optimizer=self.target if method != 'mg' else None)
        return result.meta_grads[0], result.meta_loss

      self._fns[name] = tf.function(estimate, jit_compile=self._jit,
                                    autograph=False)
    return self._fns[name]

  def run(self, name, state, key):
    """Per-sample `d meta-loss / d logit` `[N]` and clip statistics."""
    self.set_moment(state, key)
    grads, loss = self._fn(name)()
    stats = {'meta_loss': float(loss)}
    if self.clip_norm is not None:
      steps = max(1.0, float(self.inner.steps) + float(self.target.steps))
      active = self.inner.active.numpy() + self.target.active.numpy()
      stats['clip_active'] = float(active.mean() / steps)
    inner_steps = max(1.0, float(self.inner.steps))
    stats['inner_grad_norm'] = float(np.nanmean(self.inner.norm_sum.numpy()) /
                                     inner_steps)
    return grads.numpy().astype(np.float64), stats


# --------------------------------------------------------------- statistics


def cosines_over_moments(table, estimators, reference):
  """Cosine between estimator and reference means across moments.

  Each moment's entries are divided by the estimator's (resp. reference's)
  std at that moment, so the comparison is of signal-to-noise vectors.
  """
  out = {}
  ref = np.array([m[reference]['mean'] / m[reference]['std'] for m in table])
  for name in estimators:
    vec = np.array([m[name]['mean'] / m[name]['std'] for m in table])
    ok = np.isfinite(vec) & np.isfinite(ref)
    denom = np.linalg.norm(vec[ok]) * np.linalg.norm(ref[ok])
    out[name] = float(vec[ok] @ ref[ok] / denom) if denom > 0 else None
  return out


def _plot(summary, path):
  """Left: each estimator's push on the weight per moment. Right: cosine of
  its SNR vector over moments with the long-horizon MG (bars: MG(23) or the
  longest listed; dots: its own MG(K+L))."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  clips = list(summary['results'])
  moments = summary['moments']
  names = summary['estimators']
  fig, axes = plt.subplots(len(clips), 2, figsize=(15, 4.2 * len(clips)),
                           squeeze=False,
                           gridspec_kw={'width_ratios': [3, 2]})
  width = 0.8 / len(moments)
  for row, clip in enumerate(clips):
    res = summary['results'][clip]
    for j, step in enumerate(moments):
      m = res['per_moment'][str(step)]
      drift = [-m['estimators'][n]['drift'] for n in names]
      x = np.arange(len(names)) + (j - len(moments) / 2 + 0.5) * width
      axes[row, 0].bar(x, drift, width, label=f'{step:,}')
    ax = axes[row, 0]
    ax.axhline(0, color='k', lw=0.5)
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels(names, rotation=45, fontsize=8)
    ax.set_title('push on the entropy weight, -mean/sqrt(mean²+std²) '
                 f'(+ = up); inner clip {clip}', fontsize=9)
    ax.legend(fontsize=7, title='moment (env steps)')
    cos = res['cosines']
    if cos:
      longest = max(cos, key=lambda r: parse_estimator(r)[1])
      ax = axes[row, 1]
      ax.bar(np.arange(len(names)), [cos[longest].get(n) or 0.0
                                     for n in names], color='tab:gray',
             label=f'vs {longest}')
      own = [(i, cos[reference_of(n)][n]) for i, n in enumerate(names)
             if reference_of(n) in cos]
      if own:
        ax.scatter(*zip(*own), color='tab:red', zorder=3,
                   label='vs its own MG(K+L)')
      ax.axhline(0, color='k', lw=0.5)
      ax.set_ylim(-1.05, 1.05)
      ax.set_xticks(np.arange(len(names)))
      ax.set_xticklabels(names, rotation=45, fontsize=8)
      ax.set_title(f'cosine with the long-horizon MG over moments; inner '
                   f'clip {clip}', fontsize=9)
      ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _fmt_pct(v):
  return '-' if v is None else f'{v:.0%}'


def _markdown(summary):
  lines = []
  for clip, res in summary['results'].items():
    lines.append(f'### inner clip {clip}\n')
    lines.append('| moment | weight | estimator | mean | std | SNR | push up '
                 '(drift) | samples up | corr. with MG(K+L) | sign agrees | '
                 'inner grad norm | clip active | finite |')
    lines.append('|---|---|---|---|---|---|---|---|---|---|---|---|---|')
    for step in summary['moments']:
      m = res['per_moment'][str(step)]
      for name in summary['estimators']:
        e = m['estimators'][name]
        corr = e.get('corr_with_reference')
        agree = e.get('sign_agrees_with_reference')
        lines.append(
            f'| {step:,} | {m["entropy_weight"]:.3f} | {name} | '
            f'{e["mean"]:+.2e} | {e["std"]:.2e} | {e["snr"]:.3f} | '
            f'{-e["drift"]:+.3f} | {e["push_up_fraction"]:.0%} | '
            f'{"-" if corr is None else f"{corr:+.2f}"} | '
            f'{"-" if agree is None else ("yes" if agree else "no")} | '
            f'{e["stats"]["inner_grad_norm"]:.2f} | '
            f'{_fmt_pct(e["stats"].get("clip_active"))} | '
            f'{e["finite_fraction"]:.0%} |')
    lines.append('')
    lines.append('Cosine with the long-horizon reference across moments '
                 '(SNR vectors):\n')
    for ref, cos in res['cosines'].items():
      lines.append(f'- vs {ref}: ' + ', '.join(
          f'{n} {c:+.2f}' for n, c in cos.items() if c is not None))
    lines.append('')
  return '\n'.join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--moments', default=','.join(map(str,
                                                        DEFAULT_MOMENTS)))
  parser.add_argument('--estimators', default=','.join(DEFAULT_ESTIMATORS))
  parser.add_argument('--samples', type=int, default=64,
                      help='rollout streams per repeat (batched)')
  parser.add_argument('--repeats', type=int, default=4)
  parser.add_argument('--clips', default='5.0,none',
                      help="inner/target clip norms to compare ('none')")
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--gin_file', default='gin/two_colors/ac_bmg_paper.gin',
                      help='the run the moments come from')
  parser.add_argument('--gin_bindings', action='append', default=[])
  parser.add_argument('--xla', action='store_true')
  parser.add_argument('--replot', action='store_true',
                      help='only redraw the PNG and markdown from the JSON')
  parser.add_argument('--out', default=os.path.join(
      REPO, 'results', 'meta_gradient_quality'))
  args = parser.parse_args()
  tf.get_logger().setLevel('ERROR')  # One trace per estimator, by design.
  try:
    args.moments = [int(m) for m in args.moments.split(',') if m]
    estimators = [e for e in args.estimators.split(',') if e]
    for e in estimators:
      parse_estimator(e)
    clips = [None if c.lower() == 'none' else float(c)
             for c in args.clips.split(',') if c]
  except ValueError as e:
    parser.error(str(e))
  if not args.moments or min(args.moments) <= 0:
    parser.error('--moments: positive env-step counts required')
  if args.samples < 2 or args.repeats < 1:
    parser.error('--samples must be >= 2 and --repeats >= 1')
  if args.replot:
    with open(os.path.join(args.out, 'meta_gradient_quality.json')) as f:
      summary = json.load(f)
    with open(os.path.join(args.out, 'meta_gradient_quality.md'), 'w') as f:
      f.write(_markdown(summary) + '\n')
    _plot(summary, os.path.join(args.out, 'meta_gradient_quality.png'))
    return
  # Each BMG estimator's reference MG(K+L) is computed when listed.
  refs = {e: reference_of(e) for e in estimators}
  os.makedirs(args.out, exist_ok=True)
  moments = train_moments(args)

  summary = {'moments': args.moments, 'estimators': estimators,
             'samples': args.samples * args.repeats, 'results': {}}
  for clip in clips:
    est = Estimators(args.samples, clip, args.xla)
    per_moment = {}
    for step in args.moments:
      state = moments[step]
      samples = {e: [] for e in estimators}
      stats = {e: [] for e in estimators}
      for rep in range(args.repeats):
        key = 1000 * args.seed + 17 * rep + 1
        for e in estimators:
          start = time.time()
          g, s = est.run(e, state, key)
          samples[e].append(g)
          stats[e].append(s)
          print(f'clip {clip} moment {step} repeat {rep} {e}: mean '
                f'{g.mean():+.2e} std {g.std():.2e} '
                f'({time.time() - start:.1f} s)', flush=True)
      samples = {e: np.concatenate(v) for e, v in samples.items()}
      table = {}
      for e in estimators:
        ref = refs[e] if refs[e] in samples else None
        table[e] = study.sample_stats(
            samples[e], samples[ref] if ref is not None else None)
        table[e]['reference'] = ref
        table[e]['stats'] = {k: float(np.mean([s[k] for s in stats[e]]))
                             for k in stats[e][0]}
      per_moment[str(step)] = {
          'entropy_weight': state['entropy_weight'],
          'context': [float(c) for c in state['context']],
          'dlogit_dtheta_norm': state['dlogit_dtheta_norm'],
          'estimators': table}
    cosines = {}
    for ref in sorted({r for r in refs.values() if r in estimators}):
      cosines[ref] = cosines_over_moments(
          [per_moment[str(s)]['estimators'] for s in args.moments],
          estimators, ref)
    summary['results'][str(clip)] = {'per_moment': per_moment,
                                     'cosines': cosines}
  with open(os.path.join(args.out, 'meta_gradient_quality.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  text = _markdown(summary)
  with open(os.path.join(args.out, 'meta_gradient_quality.md'), 'w') as f:
    f.write(text + '\n')
  _plot(summary, os.path.join(args.out, 'meta_gradient_quality.png'))
  print(text)


if __name__ == '__main__':
  main()
