r"""Has a two-colours Q-network died? Dead ReLU units per checkpoint.

    python benchmarks/q_dead_units.py RUN_DIR [RUN_DIR ...] [--states=3000]

For each run directory of `pipelines.two_colors_q` (a `bmg-train` root with
`operative_config.gin` and `checkpoints/`), rebuilds the experiment from its
operative config and restores every checkpoint the directory keeps, oldest
first. The Q-network (an MLP of ReLU layers, `learner_params` in the order
`[w_0, b_0, w_1, b_1, ...]`) is run on `--states` observations of a
uniformly random walk in the gymnasium `TwoColors` env (the same states for
every checkpoint and run). One JSON line per checkpoint:

* 'dead': per hidden layer, the fraction of units that are zero on every
  one of those states (a dead ReLU gets no gradient and never recovers);
* 'q_state_std': the standard deviation over states of the mean Q-value
  (0: the network outputs a constant);
* 'action_gap': the mean gap between the best and second-best action's
  Q-value (0: the greedy action is arbitrary);
* 'q_mean', 'weight_norms' (per kernel).

A network whose last hidden layer is all dead outputs its output bias for
every state: the greedy policy is one fixed action, and the agent collects
only what its epsilon-random moves bump into (reward per step near 0, as
the two colours' +1 and -1 cancel).
"""

import argparse
import json
import os
import sys

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))


def random_walk_states(count, seed=0):
  """`count` observations `[count, obs_dim]` float32 of a random walk."""
  sys.path.insert(0, REPO)
  import numpy as np  # pylint: disable=g-import-not-at-top
  from bmg_tf.envs import two_colors  # pylint: disable=g-import-not-at-top
  env = two_colors.TwoColors()
  rng = np.random.default_rng(seed)
  obs, _ = env.reset(seed=seed)
  states = []
  for _ in range(count):
    obs, _, terminated, truncated, _ = env.step(int(rng.integers(4)))
    states.append(obs)
    if terminated or truncated:
      obs, _ = env.reset()
  return np.asarray(states, np.float32)


def dead_units(root, states):
  """One dict per checkpoint of `root` (see the module docstring)."""
  # pylint: disable=g-import-not-at-top
  import gin
  import numpy as np
  import tensorflow as tf
  from pipelines import experiment  # pylint: disable=unused-import
  from pipelines import two_colors_q
  # pylint: enable=g-import-not-at-top
  gin.clear_config()
  gin.parse_config_files_and_bindings(
      [os.path.join(root, 'operative_config.gin')],
      ['two_colors_q.build.export = False'])
  exp = two_colors_q.build()
  state = tf.train.get_checkpoint_state(os.path.join(root, 'checkpoints'))
  if state is None:
    raise ValueError(f'{root}: no checkpoint')
  rows = []
  for path in state.all_model_checkpoint_paths:
    tf.train.Checkpoint(**exp.checkpoint_objects()).restore(
        path).expect_partial()
    weights = [p.numpy() for p in exp.learner.learner_params]
    h, dead = states, []
    for i in range(0, len(weights) - 2, 2):
      h = np.maximum(h @ weights[i] + weights[i + 1], 0.0)
      dead.append(float((h.max(axis=0) == 0).mean()))
    q = h @ weights[-2] + weights[-1]
    top = np.sort(q, axis=1)
    rows.append({
        'run': os.path.basename(os.path.normpath(root)),
        'checkpoint': os.path.basename(path), 'dead': dead,
        'q_state_std': float(q.mean(axis=1).std()),
        'action_gap': float((top[:, -1] - top[:, -2]).mean()),
        'q_mean': float(q.mean()),
        'weight_norms': [float(np.linalg.norm(w))
                         for w in weights[0::2]]})
  gin.clear_config()
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('runs', nargs='+')
  parser.add_argument('--states', type=int, default=3000)
  args = parser.parse_args()
  states = random_walk_states(args.states)
  for root in args.runs:
    for row in dead_units(os.path.abspath(root), states):
      print(json.dumps(row), flush=True)


if __name__ == '__main__':
  main()
