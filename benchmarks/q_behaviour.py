r"""What a trained two-colours Q-agent does: does it hide after a flip?

    python benchmarks/q_behaviour.py RUN_DIR [RUN_DIR ...] [--chunks=100]
    python benchmarks/q_behaviour.py RUN_DIR ... --plot=OUT.png  # + curves

For each run directory of `pipelines.two_colors_q` (a `bmg-train` root with
`operative_config.gin` and `checkpoints/`), rebuilds the experiment from its
operative config, restores the newest checkpoint and lets the agent act
with its own epsilon (the fixed one, or the learned one at its reward
context) for `--chunks` collection chunks of E env steps, without learning
(collection and replay writes only; nothing is saved). It prints one JSON
line per run:

* 'reward_per_step' over those steps, and the reward sign of the colours;
* 'top_cell_share': the fraction of chunk ends at which the agent stands in
  its most frequent cell (1/25 for a uniform walk over the 5x5 grid; near 1
  for an agent that parks in one cell);
* 'frozen_chunk_share': the fraction of chunks during which no object moved
  (nothing was collected);
* 'epsilon' at the start.

A run that ends in the deadlock documented in docs/results/two_colors_q/
(after a flip, the greedy policy avoids both colours, parks in a corner,
and nothing is ever collected again, so the data never shows that the
avoided colour now pays +1) reads reward 0, top cell share near 1 and
frozen share near 1.

`--plot=OUT.png` also draws each run's logged reward per step
(`history.jsonl`) against env steps, flips marked every
`--flip_period` steps, and writes the curves beside it as JSON.
"""

import argparse
import collections
import json
import os
import sys

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))


def behaviour(root, chunks):
  """The statistics above for one run directory."""
  sys.path.insert(0, REPO)
  # pylint: disable=g-import-not-at-top
  import gin
  import tensorflow as tf
  from pipelines import experiment  # pylint: disable=unused-import
  from pipelines import two_colors_q
  # pylint: enable=g-import-not-at-top
  gin.clear_config()
  gin.parse_config_files_and_bindings(
      [os.path.join(root, 'operative_config.gin')],
      ['two_colors_q.build.export = False'])
  exp = two_colors_q.build()
  ckpt = tf.train.Checkpoint(**exp.checkpoint_objects())
  path = tf.train.latest_checkpoint(os.path.join(root, 'checkpoints'))
  if path is None:
    raise ValueError(f'{root}: no checkpoint')
  ckpt.restore(path).expect_partial()
  loop = exp.train()
  collect = loop.iterate.collect_only  # Collect E steps, no learning.
  env, stats = exp.trackables['env'], exp.trackables['stats']
  epsilon = loop.summary()['epsilon']
  reward0, steps0 = float(stats.total_reward), int(stats.env_steps)
  where, frozen = collections.Counter(), 0
  for _ in range(chunks):
    objects = env.objects.numpy().copy()
    collect()
    frozen += int((env.objects.numpy() == objects).all())
    where[tuple(env.agent.numpy().ravel().tolist())] += 1
  steps = int(stats.env_steps) - steps0
  gin.clear_config()
  return {
      'run': root, 'checkpoint_env_steps': steps0,
      'reward_per_step': (float(stats.total_reward) - reward0) / steps,
      'top_cell_share': where.most_common(1)[0][1] / chunks,
      'top_cell': where.most_common(1)[0][0],
      'frozen_chunk_share': frozen / chunks, 'epsilon': epsilon,
      'env_steps_acted': steps,
  }


def plot(roots, path, flip_period):
  """Reward per step of each run's history; curves as JSON beside."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  curves = {}
  fig, ax = plt.subplots(figsize=(10, 4))
  for root in roots:
    with open(os.path.join(root, 'history.jsonl')) as f:
      rows = [json.loads(line) for line in f if line.strip()]
    name = os.path.basename(os.path.normpath(root))
    curves[name] = [[r['env_steps'], r['reward_per_step']] for r in rows]
    ax.plot(*zip(*curves[name]), label=name, lw=1)
  last = max(c[-1][0] for c in curves.values())
  for x in range(flip_period, int(last) + 1, flip_period):
    ax.axvline(x, color='k', lw=0.3)
  ax.set_xlabel('env steps')
  ax.set_ylabel('reward per step (log window)')
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  with open(os.path.splitext(path)[0] + '.json', 'w') as f:
    json.dump(curves, f)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('runs', nargs='+')
  parser.add_argument('--chunks', type=int, default=100)
  parser.add_argument('--plot', default='')
  parser.add_argument('--flip_period', type=int, default=100_000)
  args = parser.parse_args()
  for root in args.runs:
    print(json.dumps(behaviour(os.path.abspath(root), args.chunks)),
          flush=True)
  if args.plot:
    plot(args.runs, args.plot, args.flip_period)


if __name__ == '__main__':
  main()
