"""The most reward per step that two colours allows, by epsilon.

What does a reward per step of 0.058 or 0.193 mean in this environment? This
script measures the ceiling: a planner that always knows the good colour and
walks a shortest path to the good object that never steps on the bad one. With
probability epsilon it takes a uniform random action instead, as an
epsilon-greedy agent whose greedy policy were perfect would. It runs on the
gymnasium `TwoColors` itself, so respawns, flips and walls are the real ones.

No learner can beat the planner at epsilon 0; an epsilon-greedy learner cannot
beat the planner at its own epsilon. Every Q result in
`docs/results/two_colors_q/` can then be read as a fraction of what its
epsilon leaves possible.

  python benchmarks/two_colors_ceiling.py --steps=200000 --seeds=2

Writes `ceiling.json` and `ceiling.md` under `--out`.
"""

import argparse
import collections
import json
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bmg_tf.envs import two_colors  # pylint: disable=g-import-not-at-top,wrong-import-position

__all__ = ['planner_action', 'run_planner', 'EPSILONS']

EPSILONS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)


def _moved(pos, action, size):
  d_row, d_col = two_colors.ACTION_DELTAS[action]
  return (min(max(pos[0] + d_row, 0), size - 1),
          min(max(pos[1] + d_col, 0), size - 1))


def planner_action(agent, good, bad, size, rng):
  """A first move of a shortest path from `agent` to `good` avoiding `bad`.

  Args:
    agent: `(row, col)` of the agent.
    good: `(row, col)` of the object that pays +1.
    bad: `(row, col)` of the object that pays -1; the path never enters it.
    size: Int, the grid's side.
    rng: `np.random.Generator`, breaks ties between equally short moves.

  Returns:
    An int action in `{0, 1, 2, 3}`. A uniform random one if `good` cannot be
    reached without entering `bad` (which cannot happen on a grid of side
    >= 2 with one blocked cell, but is handled).
  """
  # Distances to `good` over the cells other than `bad`, by a breadth-first
  # search from `good` (moves are symmetric: a wall bump stays put).
  dist = {good: 0}
  queue = collections.deque([good])
  while queue:
    cell = queue.popleft()
    for action in range(4):
      nxt = _moved(cell, action, size)
      if nxt != bad and nxt not in dist:
        dist[nxt] = dist[cell] + 1
        queue.append(nxt)
  best = [a for a in range(4)
          if _moved(agent, a, size) in dist and
          dist[_moved(agent, a, size)] == dist.get(agent, np.inf) - 1]
  if not best:
    return int(rng.integers(4))
  return int(best[rng.integers(len(best))])


def run_planner(epsilon, steps, seed, size=5, flip_period=100_000,
                respawn='collected', step_cost=0.0):
  """Runs the epsilon-noisy planner on `TwoColors`.

  Args:
    epsilon: Float in [0, 1], the chance of a uniform random action.
    steps: Int, env steps to run.
    seed: Int, seeds the env and the planner's choices.
    size, flip_period, respawn, step_cost: `TwoColors`' arguments.

  Returns:
    A dict: `reward_per_step` (float), `collected_good` and `collected_bad`
    (ints, collections of the good and the bad colour).
  """
  env = two_colors.TwoColors(size=size, flip_period=flip_period,
                             respawn=respawn, step_cost=step_cost)
  env.reset(seed=seed)
  rng = np.random.default_rng(seed + 1_000_003)
  total, good_n, bad_n = 0.0, 0, 0
  for _ in range(steps):
    state = env.get_state()
    good = env.good_colour
    if rng.random() < epsilon:
      action = int(rng.integers(4))
    else:
      action = planner_action(state['agent'], state['objects'][good],
                              state['objects'][1 - good], size, rng)
    _, reward, _, _, info = env.step(action)
    total += reward
    if info['collected'] >= 0:
      if info['collected'] == good:
        good_n += 1
      else:
        bad_n += 1
  return {'reward_per_step': total / steps, 'collected_good': good_n,
          'collected_bad': bad_n}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--epsilons', default=','.join(map(str, EPSILONS)))
  parser.add_argument('--steps', type=int, default=200_000)
  parser.add_argument('--seeds', type=int, default=2)
  parser.add_argument('--out', default=os.path.join(REPO, 'results',
                                                     'two_colors_ceiling'))
  args = parser.parse_args()
  epsilons = [float(e) for e in args.epsilons.split(',') if e]
  if any(not 0 <= e <= 1 for e in epsilons):
    parser.error('--epsilons: each must lie in [0, 1]')
  if args.steps < 1 or args.seeds < 1:
    parser.error('--steps/--seeds: must be positive')
  os.makedirs(args.out, exist_ok=True)
  rows = []
  lines = [f'Planner that knows the good colour, epsilon-noisy; '
           f'{args.steps:,} steps x {args.seeds} seeds, 5x5, flips every '
           '100k steps.', '',
           '| epsilon | reward per step | per seed | good / bad collected per '
           '1k steps |', '|---|---|---|---|']
  for eps in epsilons:
    runs = [run_planner(eps, args.steps, seed) for seed in range(args.seeds)]
    per_seed = [r['reward_per_step'] for r in runs]
    good = 1000 * np.mean([r['collected_good'] for r in runs]) / args.steps
    bad = 1000 * np.mean([r['collected_bad'] for r in runs]) / args.steps
    rows.append({'epsilon': eps, 'reward_per_step': float(np.mean(per_seed)),
                 'per_seed': per_seed, 'good_per_1k': float(good),
                 'bad_per_1k': float(bad)})
    lines.append(f'| {eps:g} | {np.mean(per_seed):.4f} | '
                 + ', '.join(f'{v:.4f}' for v in per_seed) +
                 f' | {good:.1f} / {bad:.1f} |')
    print(lines[-1], flush=True)
  with open(os.path.join(args.out, 'ceiling.json'), 'w') as f:
    json.dump({'steps': args.steps, 'seeds': args.seeds, 'rows': rows}, f,
              indent=2)
  with open(os.path.join(args.out, 'ceiling.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
