r"""Reproduction study: two-colours Q-learning, fixed vs BMG-learned epsilon.

    python benchmarks/two_colors_q.py                 # default: ~1 h on 2 cores
    python benchmarks/two_colors_q.py --variants=fixed_0.1,fixed_0.3,\
      fixed_0.5,bmg,bmg_step100,bmg_L32 --steps=500000 \
      --out=results/two_colors_q_tuning                # tuning, seeds 0-2
    python benchmarks/two_colors_q.py \
      --variants=fixed_0.5,bmg_published_tlr1e-3_recent2k \
      --steps=10000000 --seeds=5 --first_seed=200 --log_every=10000 \
      --out=results/two_colors_q_final_3e-5            # fresh seeds, 10M
    python benchmarks/two_colors_q.py --progress <the same flags>  # so far
    python benchmarks/two_colors_q.py --steps=20000 --seeds=1 --out=/tmp/q

BMG_SPEC section 2.2: an epsilon-greedy Q(lambda) agent with a fixed
epsilon (`fixed_<eps>`, eps in 0.01, 0.1, 0.3, 0.5, 0.7), against epsilon
meta-learned by BMG (K=0): `bmg` (L=16, epsilon = sigmoid(MLP(mean reward
of each of the last 10 collection chunks))), `bmg_step100` (the published
context: the last 100 single-step rewards), `bmg_published` (that context
and the published 2x128 meta-network; suffix `_mlr1e-2`: meta-Adam 1e-2;
`_tlr3e-4`, `_tlr1e-3`, `_tlr3e-3`: the target step's Adam at that rate, not
the learner's 3e-5), `bmg_L32` / `bmg_L128` (longer bootstrap, same updates
per env step), `bmg_noctx` (one learned logit), `bmg_noctx_tlr1e-3` (one
logit, target step at 1e-3), `bmg_published_sgd0.01` / `_sgd0.03` (the
target step as SGD at that rate), `bmg_published_tlr1e-3_recent{500,2k,8k}`
(the target batch from the newest 500, 2k or 8k frames; `_recent2k` is
shipped, and `_recent2k_L32` / `_recent2k_L128` are it with a longer
bootstrap), `bmg_noctx_tlr1e-3_recent2k` (the same without a context).
`oracle_<low>_<high>_<k>k`: a diagnostic, not a learner: epsilon `low`, and
`high` for the `k` thousand env steps after each flip (it reads the env's
flip clock).
Published (follow-up paper, 10M steps, its own scale): fixed 0.58, BMG 1.78
(1.93 with the reward context).

Each (variant, seed) is one `bmg-train` run of `gin/two_colors/q_<...>.gin`
in its own subprocess, `--workers` at a time, under
`<out>/runs/<variant>_s<seed>`. A complete run is not re-run and an
interrupted one resumes from its checkpoint, so the study can be restarted.
Writes to `<out>` (default `results/two_colors_q`):

* `two_colors_q.json`: per run (with its history) and per variant, the
  reward per step over the whole run (the paper's "total return" divided by
  steps), its mean, standard deviation and standard error across seeds, the
  final epsilon, and the fraction of stalled log windows (|reward per
  step| < 0.005: the agent collected next to nothing, e.g. it hides in a
  corner after a flip, see docs/results/two_colors_q/);
* `two_colors_q.md`: the tables, with BMG's epsilon response to flips;
* `reward.png`: reward per step over time (mean over seeds, min-max band),
  flips marked; a run of more than 20 flip periods shows its last 10;
* `epsilon.png`: epsilon over time, one line per BMG seed, fixed values
  dashed, flips marked; the same span;
* `flip_profile.png`: reward per step and epsilon against the env steps
  since the last flip (the `by_10k_window` table, with a min-max band over
  seeds);
* `reward_by_period.png`: reward per step in each flip period, over the
  whole run (mean over seeds, min-max band);
* `total_reward.png`: reward per step per variant, each seed a dot.

`--progress` runs nothing: it prints each run's env steps and reward so far
from its `history.jsonl`, the variants paired per seed over the steps they
all reached, and the env steps left, for a study that spans sessions.

A study longer than a session, on machines that keep nothing between
sessions: stop it (each run loses at most `--checkpoint_every` steps),
`--snapshot=DIR` copies each run's log, config, result and newest checkpoint
(only for unfinished runs) into DIR, which can be committed; the next
session's `--restore=DIR` with the same flags brings the runs back and goes
on. The paper-scale table's state lives in
`docs/results/two_colors_q/final_10M/state`.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import study  # pylint: disable=g-import-not-at-top

REPO = study.REPO
GIN_DIR = os.path.join(REPO, 'gin', 'two_colors')
# Variant -> (gin file, bindings).
VARIANTS = {
    f'fixed_{eps}': ('q_fixed_eps.gin',
                     [f'two_colors_q.build.epsilon = {eps}'])
    for eps in (0.01, 0.1, 0.3, 0.5, 0.7)
}
# Every BMG variant states its context, meta-network, target step and target
# batch, so it stays what it was measured as whatever q_bmg_eps.gin ships
# (now the tuned `bmg_published_tlr1e-3_recent2k`).
_CHUNK_CONTEXT = ["RewardContext.granularity = 'rollout'",
                  'RewardContext.window = 10']
# The published set-up's context: the last 100 single-step rewards.
_STEP_CONTEXT = ["RewardContext.granularity = 'step'",
                 'RewardContext.window = 100']
_SMALL_NET = ['ContextualMetaParameters.hidden_sizes = (32,)']
# The published meta-network: 2x128 hidden units.
_PUBLISHED_NET = ['ContextualMetaParameters.hidden_sizes = (128, 128)']


def _target_lr(rate):
  return [f'target/create_optimizer.learning_rate = {rate}']


VARIANTS['bmg'] = ('q_bmg_eps.gin',
                   _CHUNK_CONTEXT + _SMALL_NET + _target_lr('3e-5'))
VARIANTS['bmg_step100'] = ('q_bmg_eps.gin',
                           _STEP_CONTEXT + _SMALL_NET + _target_lr('3e-5'))
for _l in (32, 128):
  # Same updates per env step: E = (L - 1) / replay_ratio.
  VARIANTS[f'bmg_L{_l}'] = ('q_bmg_eps.gin', VARIANTS['bmg'][1] + [
      f'BootstrapConfig.l_steps = {_l}'])
VARIANTS['bmg_noctx'] = ('q_bmg_eps_noctx.gin', _target_lr('3e-5'))
VARIANTS['bmg_published'] = ('q_bmg_eps.gin', _STEP_CONTEXT + _PUBLISHED_NET +
                             _target_lr('3e-5'))
# Tuning axes of BMG-epsilon on top of the published variant: a faster meta
# optimizer (Adam 1e-2 instead of 1e-3), and a longer target step (its own
# Adam at 3e-4 to 3e-3 instead of the learner's 3e-5), which moves x~
# further from x (benchmarks/q_churn.py: epsilon follows that churn).
VARIANTS['bmg_published_mlr1e-2'] = ('q_bmg_eps.gin', [
    *VARIANTS['bmg_published'][1], 'MetaOptimizer.learning_rate = 1e-2'])
for _tlr in ('3e-4', '1e-3', '3e-3'):
  VARIANTS[f'bmg_published_tlr{_tlr}'] = ('q_bmg_eps.gin', _STEP_CONTEXT +
                                          _PUBLISHED_NET + _target_lr(_tlr))
# The tuned target step without a context: one learned epsilon logit (the
# paper's non-contextual BMG-epsilon).
VARIANTS['bmg_noctx_tlr1e-3'] = ('q_bmg_eps_noctx.gin', _target_lr('1e-3'))
# The target step as plain SGD, whose step grows with the TD errors (Adam's
# is about the learning rate whatever the evidence): does the churn, and so
# epsilon, then rise where the replay holds news (after a flip)?
for _tlr in ('0.01', '0.03'):
  VARIANTS[f'bmg_published_sgd{_tlr}'] = ('q_bmg_eps.gin', _STEP_CONTEXT +
                                          _PUBLISHED_NET + _target_lr(_tlr) + [
                                              "target/create_optimizer.name "
                                              "= 'sgd'"])
# The shipped BMG with its target batch (and so the matching states) drawn
# from the newest 2k frames, not the whole 20k replay: right after a flip the
# replay is mostly stale, so a uniform target batch hardly sees the flip.
for _name, _frames in (('500', 500), ('2k', 2000), ('8k', 8000)):
  VARIANTS[f'bmg_published_tlr1e-3_recent{_name}'] = (
      'q_bmg_eps.gin', _STEP_CONTEXT + _PUBLISHED_NET + _target_lr('1e-3') +
      [f'two_colors_q.build.target_recent_frames = {_frames}'])
# The shipped BMG with a longer bootstrap (the published L in {16, 32, 128}),
# at the same updates per env step.
for _l in (32, 128):
  VARIANTS[f'bmg_published_tlr1e-3_recent2k_L{_l}'] = (
      'q_bmg_eps.gin', VARIANTS['bmg_published_tlr1e-3_recent2k'][1] + [
          f'BootstrapConfig.l_steps = {_l}'])
# The same recent target batch without a context (the paper's 0.178 cell).
VARIANTS['bmg_noctx_tlr1e-3_recent2k'] = (
    'q_bmg_eps_noctx.gin', _target_lr('1e-3') +
    ['two_colors_q.build.target_recent_frames = 2000'])
# Every other BMG variant draws its target batch from the whole replay, as
# measured, whatever the BMG gin files ship.
for _name, (_file, _bindings) in VARIANTS.items():
  if _file.startswith('q_bmg_eps') and not any('target_recent_frames' in b
                                               for b in _bindings):
    _bindings.append('two_colors_q.build.target_recent_frames = None')
# Diagnostic oracles, not meta-learners: a fixed epsilon `low`, switched to
# `high` for the first `k` thousand env steps after each reward flip (the
# pipeline's `oracle_flip_epsilon`, which reads the env's flip clock). They
# bound what a flip-triggered epsilon schedule can score with this learner.
for _low, _high, _k in ((0.1, 0.5, 50), (0.1, 0.7, 50), (0.1, 1.0, 50),
                        (0.1, 0.7, 30), (0.1, 0.7, 100), (0.05, 0.7, 50),
                        (0.3, 0.7, 50)):
  VARIANTS[f'oracle_{_low}_{_high}_{_k}k'] = ('q_fixed_eps.gin', [
      f'two_colors_q.build.epsilon = {_low}',
      f'two_colors_q.build.oracle_flip_epsilon = ({_high}, {_k * 1000})'])
COLOURS = {'fixed_0.01': 'sienna', 'fixed_0.1': 'tab:gray',
           'fixed_0.3': 'tab:brown', 'fixed_0.5': 'tab:pink',
           'fixed_0.7': 'tab:olive',
           'bmg': 'tab:red', 'bmg_step100': 'tab:purple',
           'bmg_L32': 'tab:orange', 'bmg_L128': 'tab:cyan',
           'bmg_noctx': 'tab:green', 'bmg_published': 'tab:blue',
           'bmg_published_mlr1e-2': 'navy',
           'bmg_published_tlr3e-4': 'magenta',
           'bmg_published_tlr1e-3': 'darkgreen',
           'bmg_published_tlr3e-3': 'black',
           'bmg_noctx_tlr1e-3': 'lime',
           'bmg_noctx_tlr1e-3_recent2k': 'yellowgreen',
           'bmg_published_sgd0.01': 'teal', 'bmg_published_sgd0.03': 'coral',
           'bmg_published_tlr1e-3_recent500': 'khaki',
           'bmg_published_tlr1e-3_recent2k': 'gold',
           'bmg_published_tlr1e-3_recent8k': 'goldenrod',
           'bmg_published_tlr1e-3_recent2k_L32': 'darkorange',
           'bmg_published_tlr1e-3_recent2k_L128': 'deepskyblue'}


def _colour(variant):
  if variant in COLOURS:
    return COLOURS[variant]
  # The oracles: shades of grey, darker for a larger `high`.
  high = float(variant.split('_')[2])
  return str(round(0.75 - 0.5 * high, 2))


# A window whose |reward per step| is below this collected next to nothing
# net: the agent hides (e.g. in a corner after a flip) or cancels out.
STALLED = 0.005


def _run_one(variant, seed, args):
  """Runs (or resumes, or skips) one run; returns its result.json."""
  root = os.path.join(args.out, 'runs', f'{variant}_s{seed}')
  gin_file, extra = VARIANTS[variant]
  bindings = [
      f'two_colors_q.build.num_env_steps = {args.steps}',
      f'two_colors_q.build.seed = {seed}',
      f'two_colors_q.build.log_every = {args.log_every}',
      f'two_colors_q.build.checkpoint_every = {args.checkpoint_every}',
      f'TFTwoColors.flip_period = {args.flip_period}',
      'two_colors_q.build.export = False',
  ] + extra + list(args.gin_bindings)
  result, wall = study.run_cli(os.path.join(GIN_DIR, gin_file), root,
                               bindings, args.steps)
  # `wall` covers this process only: a resumed run ran its earlier steps in
  # other processes (or sessions).
  return {**result, 'variant': variant, 'wall_seconds_this_process': wall}


def _read_history(root):
  """The rows of a run's `history.jsonl` so far (`[]` if it has none)."""
  path = os.path.join(root, 'history.jsonl')
  if not os.path.exists(path):
    return []
  rows = []
  with open(path) as f:
    for line in f:
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:  # A line being written as we read.
        break
  return rows


def progress(args):
  """Where a long study stands, from its runs' logs; runs nothing.

  Per run: env steps logged, reward per step so far (mean over its logged
  windows) and its speed (median over the last 10 windows). Per seed, the
  variants compared over the env steps they all reached (an interim
  pairing, not the result), and how many env steps remain with a rough
  time at the logged speeds.

  Returns:
    The printed report as a string.
  """
  lines = [f'Progress of {args.out} (interim; the table is written when '
           'every run has finished):', '',
           '| run | env steps | reward/step so far | epsilon (mean) | '
           'env steps/s (recent) |', '|---|---|---|---|---|']
  histories, remaining, rates = {}, 0, []
  for seed in range(args.first_seed, args.first_seed + args.seeds):
    for variant in args.variants:
      rows = _read_history(os.path.join(args.out, 'runs',
                                        f'{variant}_s{seed}'))
      histories[variant, seed] = rows
      done = int(rows[-1]['env_steps']) if rows else 0
      remaining += max(0, args.steps - done)
      if not rows:
        lines.append(f'| {variant}_s{seed} | 0 | | | |')
        continue
      # The median of the last 10 windows: one window can hold a pause.
      recent = sorted(h['env_steps_per_sec'] for h in rows[-10:]
                      if h.get('env_steps_per_sec'))
      rate = recent[len(recent) // 2] if recent else None
      if rate and done < args.steps:
        rates.append(rate)
      lines.append(
          f'| {variant}_s{seed} | {done:,} | '
          f'{sum(h["reward_per_step"] for h in rows) / len(rows):.4f} | '
          f'{sum(h["epsilon"] for h in rows) / len(rows):.3f} | '
          f'{rate or 0:,.0f} |')
  if len(args.variants) > 1:
    lines += ['', 'Per seed, over the env steps every variant reached:', '',
              '| seed | common env steps | ' +
              ' | '.join(args.variants) + ' |',
              '|---|---|' + '---|' * len(args.variants)]
    for seed in range(args.first_seed, args.first_seed + args.seeds):
      runs = [histories[v, seed] for v in args.variants]
      if not all(runs):
        continue
      common = min(r[-1]['env_steps'] for r in runs)
      cells = []
      for rows in runs:
        sel = [h['reward_per_step'] for h in rows
               if h['env_steps'] <= common]
        cells.append(f'{sum(sel) / len(sel):.4f}')
      lines.append(f'| {seed} | {int(common):,} | ' + ' | '.join(cells) +
                   ' |')
  hours = ''
  if rates:
    # The runs still going share the machine: `workers` at a time.
    per_run = sum(rates) / len(rates)
    hours = (f', about {remaining / (per_run * args.workers) / 3600:.1f} h '
             f'at {per_run:,.0f} env steps/s per run, {args.workers} at a '
             'time')
  lines += ['', f'Remaining: {remaining:,} env steps{hours}.']
  report = '\n'.join(lines)
  print(report)
  return report


def _curves(results, variant, key):
  """Steps `[N]` and values `[seeds, N]` over the rows all seeds share."""
  return study.curves([r for r in results if r['variant'] == variant], key)


FLIP_BEFORE = 30_000
FLIP_AFTER = 50_000


def _flip_response(results, args):
  """Per BMG run: mean epsilon before, max epsilon after, at each flip
  ('flip') and, as a control, half-way between flips ('mid')."""
  rows = []
  half = args.flip_period // 2
  for r in sorted(results, key=lambda r: r['seed']):
    if not r['variant'].startswith('bmg'):
      continue
    history = r['history']
    for at in range(half, args.steps, half):
      before = [h['epsilon'] for h in history
                if at - FLIP_BEFORE < h['env_steps'] <= at]
      after = [h['epsilon'] for h in history
               if at < h['env_steps'] <= at + FLIP_AFTER]
      if before and after:
        rows.append({'variant': r['variant'], 'seed': r['seed'], 'at': at,
                     'kind': 'flip' if at % args.flip_period == 0 else 'mid',
                     'before': sum(before) / len(before),
                     'max_after': max(after)})
  return rows


# Above this many rows the per-flip table is left to two_colors_q.json (a 10M
# study has about 1,000: 5 seeds x 2 kinds x 99) and the markdown keeps the
# per-seed summary.
MAX_FLIP_ROWS = 60
ROSE = 1.5


def _ratio_summary(rows):
  """Median max-after / before ratio and how many exceed `ROSE`."""
  ratios = sorted(r['max_after'] / r['before'] for r in rows)
  return ratios, ratios[len(ratios) // 2], sum(r > ROSE for r in ratios)


def _flip_lines(flips, max_rows=MAX_FLIP_ROWS):
  """Markdown lines for `_flip_response`'s rows.

  Args:
    flips: list of dicts with keys `variant`, `seed`, `at`, `kind` ('flip' or
      'mid'), `before` and `max_after` (float epsilons, `before` > 0).
    max_rows: the per-row table is written only up to this many rows.

  Returns:
    A list of str: a per-seed table (median ratio and the count above
    `ROSE`, at flips and at the control points), every row if there are at
    most `max_rows`, and a summary line per variant and kind.
  """
  lines = ['BMG epsilon at each reward flip and, as a control, half-way '
           f'between flips (mean over the {FLIP_BEFORE:,} steps before, max '
           f'over the {FLIP_AFTER:,} after), per seed:', '',
           '| variant | seed | flips | median ratio at flips | above '
           f'{ROSE} | control points | median ratio at control | above '
           f'{ROSE} |', '|---|---|---|---|---|---|---|---|']
  for variant, seed in sorted({(r['variant'], r['seed']) for r in flips}):
    cells = []
    for kind in ('flip', 'mid'):
      sel = [r for r in flips if (r['variant'], r['seed'], r['kind']) ==
             (variant, seed, kind)]
      if sel:
        _, median, rose = _ratio_summary(sel)
        cells += [f'{len(sel)}', f'{median:.2f}', f'{rose}']
      else:
        cells += ['0', '', '']
    lines.append(f'| {variant} | {seed} | ' + ' | '.join(cells) + ' |')
  if len(flips) <= max_rows:
    lines += ['', '| variant | seed | at step | kind | epsilon before | '
              'max after | ratio |', '|---|---|---|---|---|---|---|']
    for row in flips:
      lines.append(f"| {row['variant']} | {row['seed']} | {row['at']:,} | "
                   f"{row['kind']} | {row['before']:.3f} | "
                   f"{row['max_after']:.3f} | "
                   f"{row['max_after'] / row['before']:.2f} |")
  else:
    lines += ['', f'({len(flips)} rows; each is in two_colors_q.json, '
              '`bmg_epsilon_at_flips`.)']
  for variant in sorted({r['variant'] for r in flips}):
    for kind in ('flip', 'mid'):
      sel = [r for r in flips if r['kind'] == kind and
             r['variant'] == variant]
      if sel:
        ratios, median, rose = _ratio_summary(sel)
        lines.append(f'\n{variant}, {kind}: max-after / before ratio '
                     f'from {ratios[0]:.2f} to {ratios[-1]:.2f} (median '
                     f'{median:.2f}); above {ROSE} in {rose} of {len(sel)}.')
  return lines


# 10k-step windows since the last flip (placed by their midpoints; the
# windows that hold a flip fall in none, so 90k-100k stays empty).
PROFILE = tuple((k * 10_000, (k + 1) * 10_000) for k in range(9))


def _phase_table(results, variants, flip_period, phases=study.PHASES):
  """Reward per step and epsilon by time since the last flip.

  Averages, per variant, the logged windows of every seed in each phase of
  `phases` (scaled to `flip_period`), over the flip periods after the
  first (the first period starts from an empty replay). A window is placed
  by its midpoint; one with a flip inside it is left out. Epsilon is the
  value at each of those windows' ends.

  Returns:
    {variant: [{'phase': (start, end), 'reward_per_step': float,
    'epsilon': float, 'windows': int}, ...]}.
  """
  out = {}
  for variant in variants:
    # Per phase, the windows of every seed (split run by run).
    split = [study.split_by_phase(r['history'], flip_period, windows=True,
                                  phases=phases)
             for r in results if r['variant'] == variant]
    out[variant] = []
    for i, (phase, _) in enumerate(
        study.split_by_phase([], flip_period, phases=phases)):
      sel = [h for run in split for h in run[i][1]]
      out[variant].append({
          'phase': phase, 'windows': len(sel),
          'reward_per_step': (sum(h['reward_per_step'] for h in sel) /
                              max(1, len(sel))),
          'epsilon': sum(h['epsilon'] for h in sel) / max(1, len(sel))})
  return out


# reward.png and epsilon.png show a run's last ZOOM_PERIODS flip periods
# when it has more than twice as many: at 10M steps the whole run is a comb
# of 100 periods. flip_profile.png and reward_by_period.png show all of it.
ZOOM_PERIODS = 10


def _zoom(steps, flip_period):
  """(first env step shown, its title words) in reward.png / epsilon.png."""
  if steps <= 2 * ZOOM_PERIODS * flip_period:
    return 0, f'{steps:,} env steps'
  first = steps - ZOOM_PERIODS * flip_period
  return first, f'the last {steps - first:,} of {steps:,} env steps'


def _plots(results, args):
  """Writes the study's PNGs into `args.out` (see the module docstring)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  first, span = _zoom(args.steps, args.flip_period)
  flips = np.arange(args.flip_period, args.steps + 1, args.flip_period)
  flips = flips[flips > first]

  def mark_flips(ax):
    for x in flips:
      ax.axvline(x, color='k', lw=0.3, alpha=0.3)

  def zoomed(variant, key):
    steps, values = _curves(results, variant, key)
    if steps is None:
      return None, None
    keep = steps > first
    return steps[keep], values[:, keep]

  def save(fig, name):
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, name), dpi=120)
    plt.close(fig)

  fig, ax = plt.subplots(figsize=(10, 4))
  for variant in args.variants:
    steps, values = zoomed(variant, 'reward_per_step')
    if steps is None:
      continue
    ax.plot(steps, values.mean(0), label=variant, color=_colour(variant),
            lw=1)
    if len(values) > 1:
      ax.fill_between(steps, values.min(0), values.max(0), alpha=0.2,
                      color=_colour(variant))
  mark_flips(ax)
  ax.set_xlabel('env steps')
  ax.set_ylabel(f'reward per step (window {args.log_every})')
  ax.set_title(f'Two colours, Q(lambda): reward per step, {span}\n(mean '
               'over seeds, min-max band; lines = flips)', fontsize=10)
  ax.legend()
  save(fig, 'reward.png')

  fig, ax = plt.subplots(figsize=(10, 4))
  for variant in args.variants:
    steps, values = zoomed(variant, 'epsilon')
    if steps is None:
      continue
    if variant.startswith('bmg'):
      for i, v in enumerate(values):
        ax.plot(steps, v, color=_colour(variant), lw=0.8, alpha=0.8,
                label=variant if i == 0 else None)
    else:
      ax.plot(steps, values[0], color=_colour(variant), lw=0.8, ls='--',
              label=variant)
  mark_flips(ax)
  ax.set_yscale('log')
  ax.set_xlabel('env steps')
  ax.set_ylabel('epsilon')
  ax.set_title(f'Epsilon, {span}\n(BMG: one line per seed; dashed: fixed; '
               'lines = flips)', fontsize=10)
  ax.legend()
  save(fig, 'epsilon.png')

  # Everything after the first period, folded onto the time since a flip.
  # The rows of the `by_10k_window` table: reward per step over each window
  # (at its midpoint), epsilon at its end.
  scale = args.flip_period / 100_000
  mids = np.array([(a + b) / 2 for a, b in PROFILE]) * scale
  ends = np.array([b for _, b in PROFILE]) * scale
  fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
  for variant in args.variants:
    runs = [r for r in results if r['variant'] == variant]
    if not runs:
      continue
    for ax, key, x in ((top, 'reward_per_step', mids),
                       (bottom, 'epsilon', ends)):
      values = study.phase_means(runs, args.flip_period, key, PROFILE)
      ax.plot(x, np.nanmean(values, 0), marker='o', ms=3,
              color=_colour(variant), label=variant,
              ls='-' if variant.startswith('bmg') else '--')
      if len(runs) > 1:
        ax.fill_between(x, np.nanmin(values, 0), np.nanmax(values, 0),
                        alpha=0.2, color=_colour(variant))
  top.axhline(0, color='k', lw=0.5)
  top.set_ylabel(f'reward per step (window {args.log_every})')
  top.set_title('After a reward flip (periods after the first; mean over '
                'seeds, min-max band)', fontsize=10)
  top.legend(fontsize=8)
  bottom.set_ylabel('epsilon')
  bottom.set_xlabel('env steps since the last flip')
  save(fig, 'flip_profile.png')

  fig, ax = plt.subplots(figsize=(10, 4))
  for variant in args.variants:
    per_seed = [study.period_means(r['history'], args.flip_period,
                                   'reward_per_step')
                for r in results if r['variant'] == variant]
    per_seed = [p for p in per_seed if len(p[0])]
    if not per_seed:
      continue
    length = min(len(starts) for starts, _ in per_seed)
    starts = per_seed[0][0][:length]
    values = np.array([v[:length] for _, v in per_seed])
    ax.plot(starts, values.mean(0), color=_colour(variant), label=variant,
            lw=1)
    if len(values) > 1:
      ax.fill_between(starts, values.min(0), values.max(0), alpha=0.2,
                      color=_colour(variant))
  ax.set_xlabel('env steps at the start of the flip period')
  ax.set_ylabel('reward per step over the period')
  ax.set_title(f'Reward per step in each {args.flip_period:,}-step flip '
               'period (mean over seeds, min-max band)', fontsize=10)
  ax.legend()
  save(fig, 'reward_by_period.png')

  fig, ax = plt.subplots(figsize=(6, 4))
  for i, variant in enumerate(args.variants):
    vals = [r['reward_per_step'] for r in results if r['variant'] == variant]
    if not vals:
      continue
    mean, std = study.stats(vals)
    ax.bar(i, mean, yerr=std, color=_colour(variant), alpha=0.6, capsize=4)
    ax.scatter([i] * len(vals), vals, color='k', s=12, zorder=3)
  ax.set_xticks(range(len(args.variants)))
  ax.set_xticklabels(args.variants, fontsize=8)
  ax.set_ylabel('reward per step, whole run')
  ax.set_title(f'{args.steps:,} steps, {args.seeds} seeds (bar: mean, '
               f'error: std)', fontsize=10)
  save(fig, 'total_reward.png')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--variants', default=','.join(VARIANTS))
  parser.add_argument('--seeds', type=int, default=3)
  parser.add_argument('--first_seed', type=int, default=0,
                      help='seeds first_seed .. first_seed + seeds - 1 '
                      '(tune on 0-2, report on seeds no tuning run used)')
  parser.add_argument('--steps', type=int, default=400_000)
  parser.add_argument('--flip_period', type=int, default=100_000)
  parser.add_argument('--log_every', type=int, default=10_000)
  parser.add_argument('--checkpoint_every', type=int, default=100_000)
  parser.add_argument('--workers', type=int, default=2)
  parser.add_argument('--paper_scale', action='store_true',
                      help='10M steps and 10 seeds, as in the paper.')
  parser.add_argument('--gin_bindings', action='append', default=[],
                      help='extra bindings for every run')
  parser.add_argument('--out', default=os.path.join(REPO, 'results',
                                                     'two_colors_q'))
  parser.add_argument('--progress', action='store_true',
                      help='print where the study in --out stands (from '
                      'its logs) and exit; runs nothing')
  parser.add_argument('--snapshot', metavar='DIR',
                      help='copy what the stopped study in --out needs to '
                      'resume (logs, configs, results, newest checkpoints '
                      'of unfinished runs) into DIR and exit; runs nothing')
  parser.add_argument('--restore', metavar='DIR',
                      help='first bring back the runs of a --snapshot in '
                      'DIR (unless --out holds them further along), then '
                      'run the study')
  args = parser.parse_args()
  if args.paper_scale:
    args.steps, args.seeds = 10_000_000, 10
    args.log_every = max(args.log_every, 50_000)
  args.variants = [v for v in args.variants.split(',') if v]
  unknown = set(args.variants) - set(VARIANTS)
  if unknown:
    parser.error(f'--variants: unknown {sorted(unknown)}; known: '
                 f'{sorted(VARIANTS)}')
  if args.seeds < 1 or args.steps < 1:
    parser.error('--seeds/--steps: must be positive')
  if args.restore and (args.progress or args.snapshot):
    parser.error('--restore: not with --progress or --snapshot, which run '
                 'nothing')
  if args.progress and args.snapshot:
    parser.error('--snapshot: not with --progress')
  args.out = os.path.abspath(args.out)
  if args.progress:
    progress(args)
    return
  if args.snapshot:
    for name, (steps, kind) in study.snapshot(args.out, args.snapshot,
                                              args.steps).items():
      print(f'{name}: {steps:,} env steps ({kind})')
    return
  if args.restore:
    for name, steps in study.restore(args.restore, args.out).items():
      print(f'restored {name} at {steps:,} env steps', flush=True)
  os.makedirs(args.out, exist_ok=True)
  seeds = range(args.first_seed, args.first_seed + args.seeds)
  jobs = [(v, s) for s in seeds for v in args.variants]

  def report(v, s, r):
    # The logged windows' rates: a resumed run's wall time covers only the
    # steps since its restart.
    rates = sorted(h['env_steps_per_sec'] for h in r['history']
                   if h.get('env_steps_per_sec'))
    rate = (f', {rates[len(rates) // 2]:.0f} env steps/s (median over its '
            f'log windows)' if rates else '')
    return (f'{v} seed {s}: reward/step {r["reward_per_step"]:.4f}, '
            f'epsilon {r["epsilon"]:.4f}{rate}')

  results = study.run_all(jobs, lambda v, s: _run_one(v, s, args),
                          args.workers, report)
  summary = {'steps': args.steps, 'seeds': list(seeds),
             'flip_period': args.flip_period, 'variants': {}, 'runs': [],
             'stalled_threshold': STALLED}
  lines = ['| variant | reward/step (mean) | s.e. | seeds | steps | '
           'final epsilon (mean) | stalled windows | per seed |',
           '|---|---|---|---|---|---|---|---|']
  for variant in args.variants:
    rs = sorted((r for r in results if r['variant'] == variant),
                key=lambda r: r['seed'])
    mean, std = study.stats([r['reward_per_step'] for r in rs])
    eps, _ = study.stats([r['epsilon'] for r in rs])
    rows = [h for r in rs for h in r['history']]
    stalled = (sum(abs(h['reward_per_step']) < STALLED for h in rows) /
               max(1, len(rows)))
    summary['variants'][variant] = {
        'reward_per_step_mean': mean, 'reward_per_step_std': std,
        'reward_per_step_se': std / len(rs)**0.5,
        'per_seed': [r['reward_per_step'] for r in rs],
        'final_epsilon_mean': eps, 'stalled_window_fraction': stalled}
    per_seed = ', '.join(f'{r["reward_per_step"]:.3f}' for r in rs)
    lines.append(f'| {variant} | {mean:.4f} | {std / len(rs)**0.5:.4f} | '
                 f'{len(rs)} | {args.steps:,} | {eps:.3f} | {stalled:.0%} | '
                 f'{per_seed} |')
  for r in sorted(results, key=lambda r: (r['variant'], r['seed'])):
    summary['runs'].append({k: r[k] for k in (
        'variant', 'seed', 'env_steps', 'reward_per_step', 'epsilon',
        'wall_seconds_this_process', 'history')})
  ranked = sorted(args.variants,
                  key=lambda v: -summary['variants'][v]['reward_per_step_mean'])
  summary['ranking'] = ranked
  flips = _flip_response(results, args)
  if flips:
    summary['bmg_epsilon_at_flips'] = flips
    lines += [''] + _flip_lines(flips)
  for key, phases, title, cell in (
      ('by_phase', study.PHASES, 'Reward per step (and mean epsilon)',
       lambda c: f"{c['reward_per_step']:.3f} ({c['epsilon']:.2f})"),
      ('by_10k_window', PROFILE, 'Reward per step',
       lambda c: f"{c['reward_per_step']:.3f}")):
    table = _phase_table(results, args.variants, args.flip_period, phases)
    summary[key] = table
    heads = [study.phase_name(*p['phase'])
             for p in next(iter(table.values()))]
    lines += ['', f'{title} by env steps since the last flip, over the flip '
              'periods after the first (each 10k log window placed by its '
              'midpoint; windows holding a flip left out):', '',
              '| variant | ' + ' | '.join(heads) + ' |',
              '|---|' + '---|' * len(heads)]
    for variant, cells in table.items():
      lines.append(f'| {variant} | ' + ' | '.join(map(cell, cells)) + ' |')
  with open(os.path.join(args.out, 'two_colors_q.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  table = '\n'.join(lines)
  with open(os.path.join(args.out, 'two_colors_q.md'), 'w') as f:
    f.write(table + '\n')
  _plots(results, args)
  print(table)
  print('ranking (best first):', ' > '.join(ranked))


if __name__ == '__main__':
  main()
