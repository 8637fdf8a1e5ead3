r"""What sets BMG's epsilon? The greedy-action churn its target implies.

    python benchmarks/q_churn.py RUN_DIR [RUN_DIR ...] [--flip_period=100000]
        [--json=OUT.json]

BMG-epsilon (BMG_SPEC 2.2) matches the epsilon-greedy policy of the current
Q-values `q_x` to the greedy policy of the bootstrapped `q_{x~}`. For one
epsilon shared by the batch, with `A` actions and a fraction `p` of the
batch's states whose greedy action differs between `q_x` and `q_{x~}` (the
*churn*), the matching loss is

    KL = -(1 - p) log(1 - c eps) - p log(eps / A),   c = (A - 1) / A,

whose minimum over eps is at `eps* = p / c = p A / (A - 1)`. So BMG's
epsilon is pulled toward the churn of its own bootstrap target, rescaled: a
target that hardly moves the greedy policy asks for a small epsilon, one
that moves it on many states asks for a large one.

The pipeline logs, per window, `matching/policy_kl` (the last meta-step's
loss) and `epsilon` (the current value), both to `summaries/`. This script
inverts the loss for `p` in every window,

    p = (KL + log(1 - c eps)) / (log(1 - c eps) - log(eps / A)),

and reports per run: mean epsilon, mean churn and mean `eps*`, overall and
by env steps since the last flip, in the phases of the study
(`study.PHASES`: 0-20k, 20k-50k, 50k-100k, over the flip periods
after the first). In 20k-50k a deadlocked agent needs to explore; does the
target's churn, and so epsilon, rise there? The inversion is
exact when the logged epsilon is the one the last meta-step used; a
contextual epsilon may have moved a little since (one collection chunk).
"""

import argparse
import glob
import json
import math
import os
import sys

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import study  # pylint: disable=g-import-not-at-top,wrong-import-position

NUM_ACTIONS = 4


def implied_churn(kl, epsilon, num_actions=NUM_ACTIONS):
  """The fraction `p` of states whose greedy action the target changed.

  Args:
    kl: float, `KL(one_hot(argmax q_{x~}) || pi_eps(q_x))` averaged over the
      batch's states.
    epsilon: float in (0, 1), the epsilon that loss was computed with.
    num_actions: int, `A`.

  Returns:
    float `p` (not clipped: noise can put it slightly outside [0, 1]).
  """
  c = (num_actions - 1) / num_actions
  agree = math.log(1.0 - c * epsilon)
  disagree = math.log(epsilon / num_actions)
  return (kl + agree) / (agree - disagree)


def optimal_epsilon(churn, num_actions=NUM_ACTIONS):
  """`eps* = p A / (A - 1)`, clipped to [0, 1]: the KL's minimiser."""
  return min(1.0, max(0.0, churn * num_actions / (num_actions - 1)))


def read_scalars(root):
  """`{tag: {step: value}}` from the tf.summary event files of `root`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  scalars = {}
  for path in sorted(glob.glob(os.path.join(root, 'summaries', '*'))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        number = (float(tf.make_ndarray(value.tensor))
                  if value.HasField('tensor') else value.simple_value)
        scalars.setdefault(value.tag, {})[int(event.step)] = number
  return scalars


def churn_report(root, flip_period):
  """Per-window churn of one run, and its means (module docstring)."""
  scalars = read_scalars(root)
  if 'matching/policy_kl' not in scalars:
    raise ValueError(f'{root}: no matching/policy_kl summaries (a fixed-'
                     f'epsilon run has no BMG target).')
  kl, epsilon = scalars['matching/policy_kl'], scalars['epsilon']
  rows = []
  for step in sorted(set(kl) & set(epsilon)):
    eps = min(max(epsilon[step], 1e-6), 1 - 1e-6)
    p = implied_churn(kl[step], eps)
    rows.append({'env_steps': step, 'epsilon': eps, 'kl': kl[step],
                 'churn': p, 'optimal_epsilon': optimal_epsilon(p),
                 'after_first_flip': step > flip_period})

  def mean(key, subset):
    values = [r[key] for r in subset]
    return sum(values) / len(values) if values else float('nan')

  summary = {'run': root, 'windows': len(rows)}
  subsets = {'all': rows}
  for phase, subset in study.split_by_phase(rows, flip_period):
    subsets[study.phase_name(*phase)] = subset
  for name, subset in subsets.items():
    for key in ('epsilon', 'churn', 'optimal_epsilon'):
      summary[f'{key}_{name}'] = mean(key, subset)
  return summary, rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('runs', nargs='+')
  parser.add_argument('--flip_period', type=int, default=100_000)
  parser.add_argument('--json', default=None)
  args = parser.parse_args()
  out = []
  phases = [study.phase_name(*p) for p in study.PHASES]
  print('| run | epsilon | churn p | eps* = 4p/3 | ' + ' | '.join(
      f'churn (epsilon), {p} after a flip' for p in phases) + ' |')
  print('|---|---|---|---|' + '---|' * len(phases))
  for root in args.runs:
    summary, rows = churn_report(root, args.flip_period)
    out.append({**summary, 'rows': rows})
    print(f'| {os.path.basename(os.path.normpath(root))} '
          f'| {summary["epsilon_all"]:.3f} | {summary["churn_all"]:.3f} '
          f'| {summary["optimal_epsilon_all"]:.3f} | ' + ' | '.join(
              f'{summary["churn_" + p]:.3f} ({summary["epsilon_" + p]:.2f})'
              for p in phases) + ' |')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(out, f, indent=1)


if __name__ == '__main__':
  main()
