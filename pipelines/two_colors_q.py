"""Two-colours epsilon-greedy Q(lambda) with a fixed or BMG-learned epsilon.

BMG_SPEC section 2.2. `build` (gin-configurable) wires:

  TFTwoColors (in-graph, one stream) -> TF-Agents DynamicStepDriver with the
  epsilon-greedy `FunctionalPolicy` of a `QLearner` -> observer: a
  `RolloutBuffer` holding the chunk of E steps just collected (it also feeds
  the reward context and the stats) -> `add_sequence` of the chunk into a
  TF-Agents uniform replay buffer (`replay.InGraphUniformReplayBuffer`) ->
  `get_next(sample_batch_size=N*B, num_steps=T+1)` (with
  `target_recent_frames`, BMG's target batch from `get_next_recent`) -> the
  MetaLearner's engine on a nest of N batches `[N, B, T+1, ...]`.

One compiled call. All of it, collection included, is the MetaLearner's
`data_fn`: each call of `learner.step()` runs `MetaLearner.steps_per_call`
iterations (collect, replay add, sample, meta-step) in one `tf.while_loop`,
compiled with XLA when `MetaLearner.jit_compile` is set. The replay buffer
is TF-Agents' `TFUniformReplayBuffer` without its `CriticalSection` (which
XLA cannot compile), so it runs inside the compiled loop; the chunk goes in
with one write, the same as E `add_batch` calls. Results equal those of one
call per iteration, bit for bit, with and without XLA
(tests/pipelines/two_colors_q_test.py). Warm-up iterations (below
`min_replay_size`) collect and add in a compiled call of their own.

One iteration = collect `E` env steps, sample N batches, one learner step:

  fixed: N = `BootstrapConfig.k_steps` Q-learning updates, no meta-gradient;
  bmg:   `BootstrapConfig(method='bmg', k_steps=0, l_steps=L,
         matching={'policy_kl': 1.0}, continue_from='K+L-1')`: N = L batches;
         the L-1 bootstrap Q-learning steps are the learner's real updates,
         the L-th batch takes one more Q-learning step (the target optimizer,
         own state) to build the target `x~`, and the meta-loss is
         `E_s KL(greedy(q_{x~}) || pi_eps(q_x))` on that batch's states `s_0..
         s_{T-1}` (`reduction`), where `x` is the learner at the start of the
         iteration (K = 0). No extra samples: the target batch is re-used.

Replay ratio. `U` = learner updates kept per iteration (`k_steps` for
'fixed', L-1 for 'bmg'; BMG's target step is not counted), and

  E = max(1, round(U / replay_ratio))   env steps collected per iteration,

so `replay_ratio` is learner updates per env step (each update on a batch of
`batch_size` sequences of `sequence_length` + 1 steps); the realised ratio is
`U / E`. No learner step is taken until the env-step count reaches
`min_replay_size` (collection continues in chunks of E steps, acting with the
initial epsilon). The shipped configs (L = 16; 'fixed': K = 15) give
fixed and BMG the same E and the same updates per env step.

Reward context. One collection chunk (E env steps) is one "rollout" of
`rollout.RewardContext`: the contextual epsilon is
`sigmoid(MLP(mean reward of each of the last `RewardContext.window`
chunks))`.

Replay sampling. TF-Agents' `TFUniformReplayBuffer.get_next` draws its
indices with the stateful `tf.random.uniform` op, whose state lives in the
op's kernel: it is not checkpointed, and a restarted process would start that
stream afresh. The pipeline's buffer (`bmg_tf.agents.replay`) has the same
storage and valid windows, and its `get_next` draws from a checkpointed
`tf.random.Generator`, so a run killed and resumed ends exactly where an
uninterrupted one does.

Export. `export/` holds the Q-network (`head='q_values'`): `action` is
greedy, and `sample_action` explores with the epsilon at the end of training
(for a contextual epsilon, at the final reward context, which is saved with
the model); `meta_parameters` maps a context `[B, C]` to epsilon `[B]`
(contextual), returns the scalar epsilon (non-contextual BMG), or is absent
('fixed').

The budget `num_env_steps` is checked between calls, so a run may overshoot
it by less than E * `steps_per_call` env steps; the checks for non-finite
metrics run after every call.
"""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

import math  # pylint: disable=g-import-not-at-top,g-bad-import-order
from typing import Optional, Tuple  # pylint: disable=g-import-not-at-top

import gin
import tensorflow as tf
import tensorflow_probability as tfp
from tf_agents.drivers import dynamic_step_driver

from bmg_tf import experiment as experiment_lib
from bmg_tf import export as export_lib
from bmg_tf.agents import q_learning
from bmg_tf.agents import replay as replay_lib
from bmg_tf.agents import rollout as rollout_lib
from bmg_tf.core import bootstrap
from bmg_tf.core import meta_learner as meta_learner_lib
from bmg_tf.core import meta_params
from bmg_tf.core import optimizers
from bmg_tf.envs import tf_two_colors

__all__ = ['METHODS', 'build', 'train_eval']

METHODS = ('fixed', 'bmg')
tfd = tfp.distributions


def _check(condition: bool, message: str):
  if not condition:
    raise ValueError(message)


def _epsilon_meta(method, epsilon, contextual, context_window,
                  seed) -> meta_params.MetaParameters:
  """The epsilon meta-parameter: fixed, a sigmoid logit, or contextual."""
  if method == 'fixed':
    _check(0.0 <= epsilon <= 1.0,
           f'epsilon: must be in [0, 1], got {epsilon}.')
    return meta_params.MetaParameters({'epsilon': epsilon})
  if contextual:
    return meta_params.MetaParameters({}, contextual=(
        meta_params.ContextualMetaParameters(
            context_window, {'epsilon': epsilon}, seed=seed + 2000,
            name='epsilon_net')))
  return meta_params.MetaParameters({
      'epsilon': meta_params.MetaParameter(epsilon, 'sigmoid',
                                           name='epsilon')})


@gin.configurable
def build(env_name: str = 'TwoColors',
          num_env_steps: int = 10_000_000,
          replay_ratio: float = 0.25,
          batch_size: int = 32,
          sequence_length: int = 8,
          replay_capacity: int = 20_000,
          min_replay_size: int = 1_000,
          epsilon: float = 0.1,
          oracle_flip_epsilon: Optional[Tuple[float, int]] = None,
          contextual: bool = True,
          target_recent_frames: Optional[int] = None,
          seed: int = 0,
          log_every: int = 50_000,
          checkpoint_every: int = 500_000,
          export: bool = True) -> experiment_lib.Experiment:
  """Builds the two-colours Q-learner experiment.

  `experiment_lib.run_experiment(build(...), root_dir)` trains it (resuming
  from `root_dir`); its files are those of every run (checkpoints,
  summaries, operative config, `history.jsonl`, `result.json`, `export/`).

  The objects read their own gin bindings (`gin/two_colors/q_*.gin`):
  `BootstrapConfig` (method 'fixed' with `k_steps` Q-learning updates per
  iteration, or 'bmg' with K = 0 and L >= 2: L-1 updates kept, then the
  target step; MG is not offered: epsilon is not in the Q-learning update,
  so its meta-gradient is exactly zero, tests/agents/q_learning_test.py),
  `QLearner` (hidden_sizes, gamma, lambda_, trace), `TFTwoColors`,
  `RewardContext` (window: collection chunks in the context),
  `ContextualMetaParameters` (hidden_sizes), `create_optimizer` in the
  scopes `inner` (the learner's Adam; the gin files use the published
  3e-5) and
  `target` (BMG's target step, with its own state), `MetaOptimizer` and
  `MetaLearner` (jit_compile: the whole iteration; steps_per_call:
  iterations per compiled call).

  Args:
    env_name: 'TwoColors'.
    num_env_steps: budget in env steps (warm-up included).
    replay_ratio: learner updates per env step (module docstring).
    batch_size: B, sequences per learner update.
    sequence_length: T, Q(lambda) steps per sequence (T+1 observations).
    replay_capacity: frames the replay buffer holds (oldest overwritten).
    min_replay_size: env steps collected before the first learner step;
      >= sequence_length + 1.
    epsilon: the fixed epsilon ('fixed', in [0, 1]) or the initial value of
      the learned one ('bmg', in (0, 1)).
    oracle_flip_epsilon: 'fixed' only, a diagnostic, not a meta-learner:
      `(epsilon_after, steps)` acts with `epsilon_after` for the first
      `steps` env steps after each reward flip and with `epsilon` at all
      other times. It reads the env's step count and flip period, which no
      learner sees, so it bounds what a flip-triggered epsilon schedule can
      score (benchmarks/two_colors_q.py, `oracle_*` variants).
    contextual: 'bmg' only: learn epsilon as sigmoid(MLP(the reward
      context)); else as one sigmoid logit.
    target_recent_frames: 'bmg' only. None: the target's batch (the L-th,
      whose states the meta-loss also uses) is drawn from the whole replay,
      as the others. W: it is drawn from the W newest frames
      (`get_next_recent`; all of them if W >= `replay_capacity`), so that
      the target sees what the agent met lately (a flip) before the stale
      part of the replay has turned over; the L-1 kept updates still sample
      the whole replay.
    seed: seed of the networks, env stream, action sampling and replay
      sampling (`tf.random.set_seed(seed)` too).
    log_every: env steps between progress lines, summaries and history rows.
    checkpoint_every: env steps between checkpoints.
    export: write the SavedModel to `root_dir/export` at the end.
  Returns:
    An `Experiment`. Its run returns a dict: 'env_steps', 'reward_per_step'
    (whole run), 'epsilon' (final, at the final reward context),
    'learner_updates', 'replay_frames', 'env_steps_per_iteration', 'history'
    (rows logged by this process: env_steps, reward_per_step over the
    window, epsilon, policy_entropy, env_steps_per_sec from the second log
    on). `root_dir/result.json` holds the same with the whole history across
    restarts, plus 'method' and 'seed'.

  Raises:
    ValueError: naming the argument, on bad settings.
  """
  experiment_lib.check_positive_ints(
      num_env_steps=num_env_steps, batch_size=batch_size,
      sequence_length=sequence_length, replay_capacity=replay_capacity,
      min_replay_size=min_replay_size, log_every=log_every,
      checkpoint_every=checkpoint_every)
  config = bootstrap.BootstrapConfig()
  method = config.method
  _check_settings(config, replay_ratio, sequence_length, min_replay_size,
                  replay_capacity)
  tf.random.set_seed(seed)
  env = tf_two_colors.make_env(env_name, batch_size=1, seed=seed)
  obs_dim = env.observation_spec().shape[-1]
  num_actions = int(env.action_spec().maximum) + 1
  agent = q_learning.QLearner(obs_dim, num_actions, seed=seed)
  context = rollout_lib.RewardContext()
  contextual = contextual and method == 'bmg'
  meta = _epsilon_meta(method, epsilon, contextual, context.window, seed)

  def epsilon_fn():
    return meta(context.value())['epsilon']

  if oracle_flip_epsilon is not None:
    epsilon_fn = _oracle_epsilon_fn(epsilon_fn, env, method,
                                    oracle_flip_epsilon)

  steps_per_iteration = max(1, round(config.learner_steps / replay_ratio))
  policy = agent.make_policy(env.time_step_spec(), env.action_spec(),
                             epsilon_fn=epsilon_fn, seed=seed + 1)
  replay = replay_lib.InGraphUniformReplayBuffer(
      policy.trajectory_spec, batch_size=1, max_length=replay_capacity,
      seed=seed + 3000)
  stats = rollout_lib.RunStats()
  with gin.config_scope('inner'):
    inner = optimizers.create_optimizer()
  target = None
  if method == 'bmg':
    with gin.config_scope('target'):
      target = optimizers.create_optimizer()
  if target_recent_frames is not None:
    _check(method == 'bmg', f"target_recent_frames: only with method 'bmg' "
           f'(the target batch), got {method!r}.')
    # The target's batch is then the last of the N: K + L - 1.
    _check(config.match_batch == 'target', f"target_recent_frames: needs "
           f"BootstrapConfig.match_batch = 'target', got "
           f'{config.match_batch!r}.')
    _check(target_recent_frames >= sequence_length + 1,
           f'target_recent_frames: must be >= sequence_length + 1 = '
           f'{sequence_length + 1}, got {target_recent_frames}.')
    # The newest W frames of a smaller buffer are all of it.
    target_recent_frames = min(target_recent_frames, replay_capacity)
  warm_up, data_fn = _data_fns(
      agent, env, policy, replay, context, stats, epsilon_fn,
      steps_per_iteration, config.batches_per_step, batch_size,
      sequence_length, target_recent_frames)
  learner = meta_learner_lib.MetaLearner(
      agent.params, meta, agent.objectives(), config,
      inner_optimizer=inner, target_optimizer=target,
      meta_optimizer=meta_params.MetaOptimizer(), data_fn=data_fn)
  # Graph code throughout (the driver runs a tf.while_loop): AutoGraph would
  # only add tracing time.
  warm_up = tf.function(warm_up, autograph=False,
                        jit_compile=learner.jit_compile)

  def export_to(export_dir, gin_config):
    return export_lib.export_policy(
        export_dir,
        head_fn=lambda obs: agent.q_values(agent.params, obs),
        observation_dim=obs_dim,
        variables=agent.params + list(meta.variables) + [context.rewards],
        head='q_values',
        epsilon_fn=epsilon_fn,
        meta_fn=(lambda ctx: meta(ctx)) if contextual else (
            (lambda: meta()) if method == 'bmg' else None),
        context_dim=context.window if contextual else None,
        train_step=int(learner.train_step_counter),
        gin_config=gin_config)

  def iterate():
    if int(stats.env_steps) < min_replay_size:
      warm_up()
      return {}
    return learner.step()

  # Collection without learning, for diagnostics (benchmarks/q_behaviour.py,
  # benchmarks/bare_q.py): E env steps into the replay.
  iterate.collect_only = warm_up

  return experiment_lib.Experiment(
      learner=learner,
      trackables=dict(env=env, policy_rng=policy.generator, replay=replay,
                      context=context, stats=stats),
      export_fn=export_to,
      train=lambda: _loop(iterate, learner, config, replay, stats,
                          epsilon_fn, steps_per_iteration, method),
      progress=lambda: int(stats.env_steps),
      total_steps=num_env_steps, step_unit='env steps',
      step_key='env_steps', rate_keys={'env_steps_per_sec': 1},
      log_every=log_every, checkpoint_every=checkpoint_every, export=export,
      info={'method': method, 'seed': seed},
      final_check=lambda result: (
          None if math.isfinite(result['reward_per_step']) else
          'training diverged: non-finite reward per step.'))


train_eval = experiment_lib.trainer(build)


def _check_settings(config, replay_ratio, sequence_length, min_replay_size,
                    replay_capacity):
  """Raises a ValueError naming the argument on bad settings."""
  _check(config.method in METHODS, f'method: must be one of {METHODS}, got '
         f'{config.method!r} (MG has no gradient for epsilon).')
  if config.method == 'bmg':
    _check(config.k_steps == 0, f'k_steps: BMG here has K = 0 (epsilon is '
           f'not in the Q-learning update), got {config.k_steps}.')
    _check(config.l_steps >= 2, f'l_steps: must be >= 2 (K = 0: the learner '
           f'keeps L-1 updates), got {config.l_steps}.')
  else:
    _check(config.k_steps >= 1, f'k_steps: the fixed learner needs >= 1 '
           f'update per iteration, got {config.k_steps}.')
  _check(math.isfinite(replay_ratio) and replay_ratio > 0,
         f'replay_ratio: must be finite and positive, got {replay_ratio}.')
  _check(min_replay_size >= sequence_length + 1,
         f'min_replay_size: must be >= sequence_length + 1 = '
         f'{sequence_length + 1}, got {min_replay_size}.')
  _check(replay_capacity >= min_replay_size,
         f'replay_capacity: must be >= min_replay_size = {min_replay_size}, '
         f'got {replay_capacity}.')


def _oracle_epsilon_fn(epsilon_fn, env, method, oracle_flip_epsilon):
  """`epsilon_fn` with `epsilon_after` in the `steps` after each flip."""
  _check(method == 'fixed', f'oracle_flip_epsilon: only with method '
         f"'fixed' (a schedule, not a meta-learner), got {method!r}.")
  _check(len(oracle_flip_epsilon) == 2, f'oracle_flip_epsilon: must be '
         f'(epsilon_after, steps), got {oracle_flip_epsilon!r}.')
  after, steps = oracle_flip_epsilon
  _check(0.0 <= after <= 1.0, f'oracle_flip_epsilon: epsilon_after must be '
         f'in [0, 1], got {after}.')
  _check(isinstance(steps, int) and steps >= 1, f'oracle_flip_epsilon: '
         f'steps must be an int >= 1, got {steps!r}.')
  period = env.flip_period

  def oracle_epsilon_fn():
    # The reward of the step taken at count t is set by t // period.
    t = env.step_count[0]
    in_window = tf.logical_and(t >= period, t % period < steps)
    return tf.where(in_window, tf.constant(after, tf.float32),
                    tf.cast(epsilon_fn(), tf.float32))

  return oracle_epsilon_fn


def _data_fns(agent, env, policy, replay, context, stats, epsilon_fn,
              steps_per_iteration, num_batches, batch_size, sequence_length,
              target_recent_frames=None):
  """The warm-up function and the learner's `data_fn` (graph code).

  Returns:
    `warm_up()`: collects E env steps and adds them to the replay.
    `data_fn() -> (batches, context)`: the same, then samples the N batches
    `[N, B, T+1, ...]` of a meta-step and reads the reward context.
  """
  chunk = rollout_lib.RolloutBuffer(policy.trajectory_spec,
                                    steps_per_iteration, 1)
  driver = dynamic_step_driver.DynamicStepDriver(
      env, policy, observers=[chunk], num_steps=steps_per_iteration)

  def collect_and_add():
    """E env steps into the replay; updates the context and the stats."""
    eps = epsilon_fn()  # The epsilon that acts during this chunk.
    chunk.clear()
    driver.run()
    traj = chunk.read()  # [E, 1, ...]
    probs = q_learning.epsilon_greedy_probs(
        agent.q_values(agent.params, traj.observation), eps)
    entropy = tf.reduce_mean(tfd.Categorical(probs=probs).entropy())
    context.update({'reward': traj.reward})
    stats.update({'reward': traj.reward}, entropy)
    # One write, the same as E `add_batch` calls.
    replay.add_sequence(chunk.read())

  def data_fn():
    collect_and_add()
    if target_recent_frames is None:
      traj, _ = replay.get_next(sample_batch_size=num_batches * batch_size,
                                num_steps=sequence_length + 1)
    else:
      # Batches 0..N-2 from the whole replay, the target's (N-1) from the
      # newest frames.
      kept, _ = replay.get_next(
          sample_batch_size=(num_batches - 1) * batch_size,
          num_steps=sequence_length + 1)
      recent, _ = replay.get_next_recent(batch_size, sequence_length + 1,
                                         target_recent_frames)
      traj = tf.nest.map_structure(lambda a, b: tf.concat([a, b], 0), kept,
                                   recent)
    batch = q_learning.batch_from_trajectory(traj)
    batches = tf.nest.map_structure(
        lambda t: tf.reshape(t, [num_batches, batch_size] +
                             t.shape.as_list()[1:]), batch)
    return batches, context.value()

  return collect_and_add, data_fn


def _loop(iterate, learner, config, replay, stats, epsilon_fn,
          steps_per_iteration, method):
  """The training loop's pieces: windows of reward, entropy and epsilon."""
  last = []

  def snapshot():
    return (int(stats.env_steps), float(stats.total_reward),
            float(stats.entropy_sum), int(stats.rollouts))

  def begin():
    last[:] = snapshot()

  def window(metrics):
    now = snapshot()
    row = {
        'reward_per_step': (now[1] - last[1]) / max(1, now[0] - last[0]),
        'policy_entropy': (now[2] - last[2]) / max(1, now[3] - last[3]),
        'epsilon': float(epsilon_fn()),
    }
    last[:] = now
    scalars = {('td_loss' if k == 'inner_loss' else k): float(v)
               for k, v in metrics.items()}
    return {**scalars, **row}, row

  def summary():
    step = int(stats.env_steps)
    return {
        'env_steps': step,
        'reward_per_step': float(stats.total_reward) / max(1, step),
        'epsilon': float(epsilon_fn()),
        'learner_updates': (int(learner.train_step_counter) *
                            config.learner_steps),
        'replay_frames': int(replay.num_frames()),
        'env_steps_per_iteration': steps_per_iteration,
    }

  def describe(result):
    return (f'Q-{method.upper()}: {result["env_steps"]} env steps, '
            f'reward/step {result["reward_per_step"]:.4f}, epsilon '
            f'{result["epsilon"]:.4f}')

  return experiment_lib.Loop(iterate=iterate, window=window, summary=summary,
                             describe=describe, begin=begin)
