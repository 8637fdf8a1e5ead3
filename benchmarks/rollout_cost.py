r"""Where a two-colours meta-step's time goes: the pieces of one rollout.

    python benchmarks/rollout_cost.py

Times, for 240 env steps (one BMG K=7 L=9 meta-step's worth) with the
2x256 actor-critic of the pipeline, each compiled with and without XLA:

* `collect`: 15 rollouts of 16 steps through the pipeline's
  `RolloutCollector` (TF-Agents `DynamicStepDriver`, `FunctionalPolicy`,
  `RolloutBuffer` observer, in-graph `TFTwoColors`);
* `env`: 240 `TFTwoColors` steps with a constant action, nothing else;
* `policy`: 240 forward passes of the policy network on one observation;
* `meta_step`: one BMG K=7 L=9 meta-step of the configuration
  `benchmarks/speed.py` measures (the pipeline's defaults: contextual
  entropy weight, KL matching, SGD inner and target steps, continue from
  K+L-1, no clipping) on 16 given rollouts of 16 steps: the learning alone,
  without the env or the driver;
* `meta_step_clip5`: the same with the inner and target gradients clipped
  to global norm 5, differentiably, as `gin/two_colors/ac_bmg_paper.gin` does;
* `meta_step_scalar`: `meta_step` with a single sigmoid-logit entropy
  weight (`two_colors.build.contextual=False`) instead of the
  contextual MLP.

Prints the median of 30 calls after a warm-up, and writes
`<out>/rollout_cost.json` (default `results/speed`). A BMG K=7 L=9
meta-step of the pipeline consumes 240 new env steps (its first rollout is
the previous meta-step's last), so `meta_step` bounds the pipeline's rate
from above even with a free env and driver.
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
STEPS = 240


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--repeats', type=int, default=30)
  parser.add_argument('--pieces', default='collect,env,policy,meta_step,'
                      'meta_step_clip5', help='Comma-separated pieces (also '
                      'meta_step_scalar).')
  parser.add_argument('--xla', default='on,off',
                      help='Comma-separated XLA settings: on, off.')
  parser.add_argument('--out', default=os.path.join(REPO, 'results',
                                                     'speed'))
  args = parser.parse_args()
  known = ('collect', 'env', 'policy', 'meta_step', 'meta_step_clip5',
           'meta_step_scalar')
  if not set(args.pieces.split(',')) <= set(known):
    parser.error(f'--pieces: a comma-separated list of {known}; got '
                 f'{args.pieces!r}.')
  if not set(args.xla.split(',')) <= {'on', 'off'}:
    parser.error(f'--xla: a comma-separated list of on, off; got '
                 f'{args.xla!r}.')
  sys.path.insert(0, REPO)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from bmg_tf.agents import actor_critic  # pylint: disable=g-import-not-at-top
  from bmg_tf.agents import rollout
  from bmg_tf.core import bootstrap
  from bmg_tf.core import meta_learner
  from bmg_tf.core import meta_params
  from bmg_tf.core import optimizers
  from bmg_tf.envs import tf_two_colors

  env = tf_two_colors.make_env('TwoColors', batch_size=1, seed=0)
  agent = actor_critic.ActorCritic(30, 4, hidden_sizes=(256, 256), seed=0)
  policy = rollout.FunctionalPolicy(env.time_step_spec(), env.action_spec(),
                                    agent.distribution, lambda: agent.params,
                                    seed=1)
  collector = rollout.RolloutCollector(env, policy, 16)

  def collect():
    total = tf.constant(0.0)
    for _ in range(STEPS // 16):
      total += tf.reduce_sum(collector.collect(agent.params)['reward'])
    return total

  def env_only():
    def body(i, acc):
      step = env.step(tf.constant([1], tf.int64))
      return i + 1, acc + tf.reduce_sum(step.reward)
    return tf.while_loop(lambda i, _: i < STEPS, body, (0, 0.0),
                         maximum_iterations=STEPS)[1]

  def policy_only():
    obs = env.current_time_step().observation
    params = [tf.stop_gradient(p) for p in agent.params]

    def body(i, acc):
      # The loop index enters the input, so the pass is not hoisted.
      logits = agent.logits(params, obs + tf.cast(i, tf.float32) * 1e-9)
      return i + 1, acc + tf.reduce_sum(logits)
    return tf.while_loop(lambda i, _: i < STEPS, body, (0, 0.0),
                         maximum_iterations=STEPS)[1]

  config = bootstrap.BootstrapConfig(
      method='bmg', k_steps=7, l_steps=9, matching={'policy_kl': 1.0},
      reduction='sum', continue_from='K+L-1')
  spec = collector.rollout_spec()
  batches = {k: tf.zeros([config.batches_per_step] + v.shape.as_list(),
                         v.dtype) for k, v in spec.items()}
  batches['observation'] = tf.one_hot(
      tf.random.uniform(batches['observation'].shape[:-1], 0, 30,
                        dtype=tf.int32), 30)
  batches['bootstrap_observation'] = batches['observation'][:, 0]
  batches['reward'] = tf.random.uniform(batches['reward'].shape, -1, 1)
  batches['discount'] = tf.ones_like(batches['discount'])
  batches['action'] = tf.random.uniform(batches['action'].shape, 0, 4,
                                        dtype=tf.int64)
  context = tf.random.uniform([10], -0.1, 0.1)
  learners = {}

  def meta_step_fn(xla, clip, contextual=True):
    # A learner per setting; its step is the compiled call timed.
    if contextual:
      meta = meta_params.MetaParameters({}, contextual=(
          meta_params.ContextualMetaParameters(
              10, {'entropy_weight': 0.3}, hidden_sizes=(32,), seed=2000)))
    else:
      meta = meta_params.MetaParameters({
          'entropy_weight': meta_params.MetaParameter(0.3, 'sigmoid')})

    def sgd():
      opt = optimizers.SGD(learning_rate=0.1)
      return optimizers.GlobalNormClipped(opt, clip) if clip else opt
    learners[xla, clip, contextual] = meta_learner.MetaLearner(
        agent.params, meta, agent.objectives(), config,
        inner_optimizer=sgd(), target_optimizer=sgd(),
        meta_optimizer=meta_params.MetaOptimizer(learning_rate=1e-4),
        jit_compile=xla)
    return lambda: learners[xla, clip, contextual].step(
        batches, context)['meta_loss']

  rows = []
  pieces = [(name, xla == 'on') for name in args.pieces.split(',')
            for xla in args.xla.split(',')]
  plain = {'collect': collect, 'env': env_only, 'policy': policy_only}
  for name, xla in pieces:
    if name.startswith('meta_step'):
      compiled = meta_step_fn(xla, 5.0 if name.endswith('clip5') else None,
                              contextual=not name.endswith('scalar'))
    else:
      compiled = tf.function(plain[name], jit_compile=xla, autograph=False)
    float(compiled())
    times = []
    for _ in range(args.repeats):
      start = time.perf_counter()
      float(compiled())
      times.append(time.perf_counter() - start)
    ms = 1000 * statistics.median(times)
    rows.append({'piece': name, 'xla': xla, 'ms_per_240_steps': ms,
                 'steps_per_sec': STEPS / ms * 1000})
    print(f'{name:15s} XLA {"on " if xla else "off"}: {ms:7.2f} ms per '
          f'{STEPS} env steps ({STEPS / ms * 1000:,.0f} steps/s)',
          flush=True)
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, 'rollout_cost.json'), 'w') as f:
    json.dump(rows, f, indent=1)


if __name__ == '__main__':
  main()
