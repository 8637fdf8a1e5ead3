r"""Two-colours fidelity ablations: named variants, N seeds batched per run.

    python benchmarks/two_colors_ablations.py --list
    python benchmarks/two_colors_ablations.py --variants=bmg,fixed_0.1
    python benchmarks/two_colors_ablations.py --variants=all --steps=2000000

Each variant is a gin file of `gin/two_colors/` plus bindings. One variant is
one `bmg-train` run with `num_seeds=N` (seeds `seed`, ..., `seed+N-1` as a
batch dimension of one graph), under `<out>/runs/<variant>`; a finished run
is not re-run and an interrupted one resumes. The tuning seeds are 0, 1, 2
(`--seed=0 --num_seeds=3`, the default); the final table uses other seeds.

Writes `<out>/ablations.json` and `<out>/ablations.md`: per variant, the
reward per step of each seed over the whole run, mean and standard error,
the entropy weight at the end, how far it moved (max - min over the logged
history, mean over seeds), and its response to reward flips: the ratio of
the mean weight in the 10k steps after each flip to the 10k steps before
it, against the same ratio at control points half-way between flips (the
flip-vs-control statistic of the epsilon-Q study). `--plot=v1,v2` adds
`<out>/entropy_weight.png` and `<out>/reward.png` for those variants.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import study  # pylint: disable=g-import-not-at-top

REPO = study.REPO

# name -> (gin file under gin/two_colors, bindings). Hypotheses in
# docs/fidelity.md.
VARIANTS = {
    # Baselines as published: fixed weight swept, MG outer entropy 0 / 0.1.
    **{f'fixed_{w}': ('ac_fixed.gin', [f'two_colors.build.entropy_weight = {w}'])
       for w in ('0.0', '0.1', '0.2', '0.4', '0.8')},
    'mg': ('ac_mg.gin', ['ActorCritic.outer_entropy_weight = 0.12']),
    'mg_outer0': ('ac_mg.gin', ['ActorCritic.outer_entropy_weight = 0.0']),
    'mg_outer0.1': ('ac_mg.gin', ['ActorCritic.outer_entropy_weight = 0.1']),
    # BMG as shipped before the fidelity work, and single-knob changes.
    'bmg': ('ac_bmg_paper.gin', []),
    'bmg_noclip_1step': ('ac_bmg_paper.gin', ['create_optimizer.clip_global_norm = None',
                                        "ActorCritic.return_steps = '1_step'"]),
    # The public PyTorch port's learner (1-step TD, no clip) for the
    # baselines too, so that BMG is compared on the same learner.
    'fixed_0.3_noclip_1step': ('ac_fixed.gin', [
        'two_colors.build.entropy_weight = 0.3', 'create_optimizer.clip_global_norm = None',
        "ActorCritic.return_steps = '1_step'"]),
    'fixed_0.1_noclip_1step': ('ac_fixed.gin', [
        'two_colors.build.entropy_weight = 0.1', 'create_optimizer.clip_global_norm = None',
        "ActorCritic.return_steps = '1_step'"]),
    'fixed_0.2_noclip_1step': ('ac_fixed.gin', [
        'two_colors.build.entropy_weight = 0.2', 'create_optimizer.clip_global_norm = None',
        "ActorCritic.return_steps = '1_step'"]),
    'mg_outer0.12_noclip_1step': ('ac_mg.gin', [
        'ActorCritic.outer_entropy_weight = 0.12', 'create_optimizer.clip_global_norm = None',
        "ActorCritic.return_steps = '1_step'"]),
    'mg_outer0.1_noclip_1step': ('ac_mg.gin', [
        'ActorCritic.outer_entropy_weight = 0.1', 'create_optimizer.clip_global_norm = None',
        "ActorCritic.return_steps = '1_step'"]),
    'mg_outer0_noclip_1step': ('ac_mg.gin', [
        'ActorCritic.outer_entropy_weight = 0.0', 'create_optimizer.clip_global_norm = None',
        "ActorCritic.return_steps = '1_step'"]),
    'bmg_meta_lr1e-3': ('ac_bmg_paper.gin', ['MetaOptimizer.learning_rate = 1e-3']),
    'bmg_meta_eps1e-8': ('ac_bmg_paper.gin', ['MetaOptimizer.epsilon = 1e-8']),
    'bmg_fresh': ('ac_bmg_paper.gin', ["BootstrapConfig.match_batch = 'fresh'"]),
    'bmg_L16': ('ac_bmg_paper.gin', ['BootstrapConfig.l_steps = 16']),
    'bmg_K1': ('ac_bmg_paper.gin', ['BootstrapConfig.k_steps = 1']),
    'bmg_cont_K': ('ac_bmg_paper.gin', ["BootstrapConfig.continue_from = 'K'"]),
    'bmg_mean': ('ac_bmg_paper.gin', ["BootstrapConfig.reduction = 'mean'"]),
    'bmg_target_lr0.01': ('ac_bmg_paper.gin', [
        'target/create_optimizer.learning_rate = 0.01']),
    # What the meta-network sees and how it starts.
    'bmg_tanh': ('ac_bmg_paper.gin', ["RewardContext.transform = 'tanh'"]),
    'bmg_running': ('ac_bmg_paper.gin', ["RewardContext.transform = 'running_tanh'"]),
    'bmg_rand': ('ac_bmg_paper.gin', ['ContextualMetaParameters.output_kernel_scale = 1.0']),
    'bmg_running_rand': ('ac_bmg_paper.gin', [
        "RewardContext.transform = 'running_tanh'",
        'ContextualMetaParameters.output_kernel_scale = 1.0']),
    # The target step's objective: MG's (entropy bonus 0.12) instead of the
    # bare policy-gradient loss; a target on 4 rollouts.
    'bmg_outer0.12': ('ac_bmg_paper.gin', ['ActorCritic.outer_entropy_weight = 0.12']),
    'bmg_target4': ('ac_bmg_paper.gin', ['two_colors.build.target_rollouts = 4']),
    'bmg_running_rand_lr1e-3': ('ac_bmg_paper.gin', [
        "RewardContext.transform = 'running_tanh'",
        'ContextualMetaParameters.output_kernel_scale = 1.0',
        'MetaOptimizer.learning_rate = 1e-3']),
    # The bootstrap under a fixed rule (entropy weight 0 or 0.1): the target
    # no longer contains the meta-learned weight's own effect.
    'bmg_fixboot': ('ac_bmg_paper.gin', ['two_colors.build.bootstrap_entropy_weight = 0.0']),
    'bmg_fixboot0.1': ('ac_bmg_paper.gin', ['two_colors.build.bootstrap_entropy_weight = 0.1']),
    # Control: the same learner with (practically) no meta-learning, to
    # tell a meta-learning gain from the changed bootstrap steps, which are
    # 8 of the learner's 15 updates per meta-step with continue_from K+L-1.
    'bmg_fixboot_nometa': ('ac_bmg_paper.gin', [
        'two_colors.build.bootstrap_entropy_weight = 0.0',
        'MetaOptimizer.learning_rate = 1e-12']),
    'bmg_fixboot0.1_nometa': ('ac_bmg_paper.gin', [
        'two_colors.build.bootstrap_entropy_weight = 0.1',
        'MetaOptimizer.learning_rate = 1e-12']),
    'bmg_fixboot_running_rand': ('ac_bmg_paper.gin', [
        'two_colors.build.bootstrap_entropy_weight = 0.0',
        "RewardContext.transform = 'running_tanh'",
        'ContextualMetaParameters.output_kernel_scale = 1.0']),
    'bmg_L4': ('ac_bmg_paper.gin', ['BootstrapConfig.l_steps = 4']),
    # The target step on MG's outer objective (entropy bonus 0.12), with
    # the fixed-rule bootstrap at 0 or at MG's 0.12.
    'bmg_fixboot_outer0.12': ('ac_bmg_paper.gin', [
        'two_colors.build.bootstrap_entropy_weight = 0.0',
        'ActorCritic.outer_entropy_weight = 0.12']),
    'bmg_fixboot0.12_outer0.12': ('ac_bmg_paper.gin', [
        'two_colors.build.bootstrap_entropy_weight = 0.12',
        'ActorCritic.outer_entropy_weight = 0.12']),
    'bmg_fixboot_lr1e-3': ('ac_bmg_paper.gin', [
        'two_colors.build.bootstrap_entropy_weight = 0.0',
        'MetaOptimizer.learning_rate = 1e-3']),
    'bmg_fixboot0.1_running_rand_lr1e-3': ('ac_bmg_paper.gin', [
        'two_colors.build.bootstrap_entropy_weight = 0.1',
        "RewardContext.transform = 'running_tanh'",
        'ContextualMetaParameters.output_kernel_scale = 1.0',
        'MetaOptimizer.learning_rate = 1e-3']),
    'bmg_fixboot_running_rand_lr1e-3': ('ac_bmg_paper.gin', [
        'two_colors.build.bootstrap_entropy_weight = 0.0',
        "RewardContext.transform = 'running_tanh'",
        'ContextualMetaParameters.output_kernel_scale = 1.0',
        'MetaOptimizer.learning_rate = 1e-3']),
    'mg_running_rand': ('ac_mg.gin', [
        'ActorCritic.outer_entropy_weight = 0.12',
        "RewardContext.transform = 'running_tanh'",
        'ContextualMetaParameters.output_kernel_scale = 1.0']),
}


def _bindings(variant, args):
  gin_file, extra = VARIANTS[variant]
  return os.path.join(REPO, 'gin', 'two_colors', gin_file), [
      f'two_colors.build.num_env_steps = {args.steps}',
      f'two_colors.build.seed = {args.seed}',
      f'two_colors.build.num_seeds = {args.num_seeds}',
      f'two_colors.build.log_every = {args.log_every}',
      f'two_colors.build.checkpoint_every = {args.checkpoint_every}',
      'two_colors.build.export = False',
  ] + list(extra) + list(args.gin_bindings)


def _run_one(variant, _, args):
  gin_file, bindings = _bindings(variant, args)
  root = os.path.join(args.out, 'runs', variant)
  try:
    result, _ = study.run_cli(gin_file, root, bindings, args.steps)
  except RuntimeError as e:  # E.g. diverged: reported, the others go on.
    return {'variant': variant, 'failed': str(e)}
  result['variant'] = variant
  return result


def per_seed_curve(result, key):
  """`(steps [T], values [N, T])` of `key` per seed from a run's history."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  rows = [r for r in result['history'] if key in r or f'{key}/seed_0' in r]
  steps = np.array([r['env_steps'] for r in rows], dtype=float)
  n = result.get('num_seeds', 1)
  if n == 1:
    return steps, np.array([[r[key] for r in rows]], dtype=float)
  # A fixed (unlearned) weight is one value for all seeds: its rows hold
  # only 'seed_0', or none.
  return steps, np.array([[r.get(f'{key}/seed_{i}', r[key]) for r in rows]
                          for i in range(n)], dtype=float)


def summarise(result, flip_period):
  """The table row of one finished variant run."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  rewards = result.get('reward_per_step_per_seed',
                       [result['reward_per_step']])
  mean, std = study.stats(rewards)
  row = {'variant': result['variant'], 'env_steps': result['env_steps'],
         'seeds': len(rewards), 'reward_per_seed': rewards,
         'reward_mean': mean, 'reward_se': std / len(rewards)**0.5,
         'entropy_weight_final': result.get('entropy_weight_per_seed',
                                            [result['entropy_weight']])}
  steps, weights = per_seed_curve(result, 'entropy_weight')
  if len(steps):
    row['entropy_weight_range'] = float(np.mean(weights.max(1) -
                                                weights.min(1)))
    if row['entropy_weight_range'] > 0:  # A fixed weight has no response.
      row.update(study.flip_response(steps, weights, flip_period))
  return row


def _fmt(v, spec='.3f'):
  return '-' if v is None else format(v, spec)


def _table(rows):
  lines = ['| variant | reward/step per seed | mean ± s.e. | entropy weight '
           'at end | weight range | flip / control ratio | up after flips |',
           '|---|---|---|---|---|---|---|']
  for r in rows:
    lines.append(
        f'| {r["variant"]} | '
        f'{", ".join(f"{v:.3f}" for v in r["reward_per_seed"])} | '
        f'{r["reward_mean"]:.4f} ± {r["reward_se"]:.4f} | '
        f'{", ".join(f"{v:.3f}" for v in r["entropy_weight_final"])} | '
        f'{_fmt(r.get("entropy_weight_range"))} | '
        f'{_fmt(r.get("flip_ratio"), ".2f")} / '
        f'{_fmt(r.get("control_ratio"), ".2f")} | '
        f'{_fmt(r.get("flips_up"), ".0%")} |')
  return '\n'.join(lines)


def _plots(results, args):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  for key, name in (('entropy_weight', 'entropy_weight.png'),
                    ('reward_per_step', 'reward.png')):
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for i, result in enumerate(results):
      steps, values = per_seed_curve(result, key)
      if not len(steps):
        continue
      ax.plot(steps, values.mean(0), lw=0.9, color=f'C{i % 10}',
              label=result['variant'])
    for x in range(args.flip_period, args.steps + 1, args.flip_period):
      ax.axvline(x, color='k', lw=0.3, alpha=0.3)
    ax.set_xlabel('env steps')
    ax.set_ylabel(f'{key} (mean over seeds)')
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, name), dpi=110)
    plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--variants', default='bmg',
                      help="comma-separated names, or 'all'")
  parser.add_argument('--list', action='store_true')
  parser.add_argument('--steps', type=int, default=2_000_000)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--num_seeds', type=int, default=3)
  parser.add_argument('--flip_period', type=int, default=100_000)
  parser.add_argument('--log_every', type=int, default=10_000)
  parser.add_argument('--checkpoint_every', type=int, default=500_000)
  parser.add_argument('--workers', type=int, default=1)
  parser.add_argument('--plot', default='',
                      help="comma-separated variants to plot, or 'all'")
  parser.add_argument('--gin_bindings', action='append', default=[])
  parser.add_argument('--out', default=os.path.join(REPO, 'results',
                                                     'ablations'))
  args = parser.parse_args()
  if args.list:
    for name, (gin_file, extra) in VARIANTS.items():
      print(f'{name}: {gin_file} {" ".join(extra)}')
    return
  variants = (list(VARIANTS) if args.variants == 'all' else
              [v for v in args.variants.split(',') if v])
  unknown = [v for v in variants if v not in VARIANTS]
  if unknown:
    parser.error(f'--variants: unknown {unknown}; see --list')
  if args.steps <= 0 or args.num_seeds <= 0 or args.workers <= 0:
    parser.error('--steps, --num_seeds and --workers must be positive')
  os.makedirs(args.out, exist_ok=True)
  results = study.run_all(
      [(v, 0) for v in variants], lambda v, s: _run_one(v, s, args),
      args.workers,
      lambda v, s, r: (f'{v}: reward/step per seed '
                       f'{r.get("reward_per_step_per_seed", r.get("failed"))}'))
  order = {v: i for i, v in enumerate(variants)}
  results.sort(key=lambda r: order[r['variant']])
  plotted = [r for r in results if 'failed' not in r]
  # Merge with variants finished earlier into the same --out.
  path = os.path.join(args.out, 'ablations.json')
  rows = {}
  if os.path.exists(path):
    with open(path) as f:
      rows = {r['variant']: r for r in json.load(f)['rows']}
  for result in results:
    if 'failed' in result:
      print(f'{result["variant"]}: FAILED: {result["failed"]}')
      continue
    rows[result['variant']] = summarise(result, args.flip_period)
  rows = [rows[v] for v in VARIANTS if v in rows]
  with open(path, 'w') as f:
    json.dump({'steps': args.steps, 'seed': args.seed,
               'num_seeds': args.num_seeds, 'rows': rows}, f, indent=2)
  table = _table(rows)
  with open(os.path.join(args.out, 'ablations.md'), 'w') as f:
    f.write(table + '\n')
  if args.plot:
    shown = (variants if args.plot == 'all' else
             [v for v in args.plot.split(',') if v])
    _plots([r for r in plotted if r['variant'] in shown], args)
  print(table)


if __name__ == '__main__':
  main()
