"""Two-colours actor-critic with a fixed, MG- or BMG-learned entropy weight.

BMG_SPEC section 2.1. One gin-configurable `train_eval` wires:

  TFTwoColors (in-graph, one stream) -> TF-Agents DynamicStepDriver with a
  FunctionalPolicy -> RolloutBuffer (16 steps) -> batch_fn of the
  MetaLearner, whose compiled step (optionally XLA) runs all K (+L) rollouts
  and updates of one meta-step.

Sample cost per meta-step (each env step feeds exactly one learner update,
because the last rollout of a meta-step is re-used as the first of the next,
see `RolloutCache`):
  fixed: `fixed_steps_per_call` rollouts; MG: K; BMG: K+L-1 with
  `continue_from='K+L-1'`, K with 'K' (then the L-1 bootstrap rollouts only
  build the target).

The budget `num_env_steps` is checked between meta-steps, so a run may
overshoot it by less than one meta-step.

`num_seeds=N > 1` runs N independent seeds (`seed`, ..., `seed + N - 1`) as a
batch dimension of one graph: N env streams, networks and meta-parameters
stacked along a seed axis, losses summed over seeds so that each seed's
gradients are its own, and clipping per seed. Seed n starts from the same
networks as a single-seed run with `seed + n` (its env stream and action
draws differ). `num_env_steps` is then per seed.
"""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

import math  # pylint: disable=g-import-not-at-top,g-bad-import-order
from typing import Mapping, Optional, Sequence

import gin
import tensorflow as tf

from bmg_tf import experiment as experiment_lib
from bmg_tf import export as export_lib
from bmg_tf.agents import actor_critic
from bmg_tf.agents import rollout as rollout_lib
from bmg_tf.core import bootstrap
from bmg_tf.core import meta_learner as meta_learner_lib
from bmg_tf.core import meta_params
from bmg_tf.core import optimizers
from bmg_tf.envs import tf_two_colors
from bmg_tf.networks import mlp

__all__ = ['build', 'train_eval']

def _over_rollouts(agent, objectives):
  """The agent's objectives, also taking a tuple of rollouts as a batch.

  For BMG's multi-rollout target batch (`target_rollouts`): the outer loss
  of a tuple is the mean of the rollouts' outer losses; the policy and value
  heads see every rollout's states, concatenated along time (`[M*T, B]`).
  A single rollout dict is handled as before.
  """

  def observations(batch):
    if isinstance(batch, tuple):
      return tf.concat([r['observation'] for r in batch], axis=0)
    return batch['observation']

  def outer_loss(params, batch):
    if isinstance(batch, tuple):
      return tf.add_n([agent.outer_loss(params, r) for r in batch]) / len(
          batch)
    return agent.outer_loss(params, batch)

  return objectives._replace(
      outer_loss=outer_loss,
      policy=lambda p, batch, meta: agent.logits(p, observations(batch)),
      value=lambda p, batch: agent.values(p, observations(batch)))


@gin.configurable
def build(env_name: str = 'TwoColors',
          method: str = 'bmg',
          num_env_steps: int = 10_000_000,
          rollout_length: int = 16,
          k_steps: int = 7,
          l_steps: int = 9,
          continue_from: str = 'K+L-1',
          matching: Optional[Mapping[str, float]] = None,
          reduction: str = 'sum',
          fixed_steps_per_call: int = 8,
          inner_learning_rate: float = 0.1,
          inner_clip_global_norm: Optional[float] = None,
          target_optimizer: str = 'sgd',
          target_learning_rate: float = 0.1,
          target_rollouts: int = 1,
          bootstrap_entropy_weight: Optional[float] = None,
          meta_learning_rate: float = 1e-4,
          meta_epsilon: float = 1e-4,
          meta_clip_global_norm: Optional[float] = None,
          entropy_weight: float = 0.3,
          contextual: bool = True,
          context_window: int = 10,
          context_transform: str = 'none',
          context_scale: float = 0.1,
          context_decay: float = 0.999,
          meta_hidden_sizes: Sequence[int] = (32,),
          meta_output_kernel_scale: float = 0.0,
          outer_entropy_weight: float = 0.0,
          hidden_sizes: Sequence[int] = (256, 256),
          gamma: float = 0.99,
          value_coef: float = 1.0,
          return_steps: str = 'n_step',
          flip_period: int = 100_000,
          respawn: str = 'collected',
          step_cost: float = 0.0,
          seed: int = 0,
          num_seeds: int = 1,
          jit_compile: bool = True,
          steps_per_call: int = 1,
          log_every: int = 50_000,
          checkpoint_every: int = 500_000,
          export: bool = True) -> experiment_lib.Experiment:
  """Builds the two-colours actor-critic experiment.

  `experiment_lib.run_experiment(build(...), root_dir)` trains it (resuming
  from `root_dir`), `export_experiment` exports a run of it.

  Args:
    env_name: 'TwoColors'.
    method: 'fixed', 'mg' or 'bmg'.
    num_env_steps: budget in env steps.
    rollout_length: env steps per rollout (one inner update each).
    k_steps: K, inner updates differentiated through (MG and BMG).
    l_steps: L, BMG's bootstrap length (L-1 inner steps + 1 target step).
    continue_from: BMG's continuation, 'K' or 'K+L-1'.
    matching: BMG's matching weights; default `{'policy_kl': 1.0}`.
    reduction: 'sum' or 'mean' over the matching rollout's states. 'sum'
      (the public PyTorch port's choice) scales the meta-gradient by T.
    fixed_steps_per_call: inner updates per compiled call for 'fixed'.
    inner_learning_rate: the inner SGD step size.
    inner_clip_global_norm: if set, the inner (and target) gradients are
      clipped to this global norm, differentiably (`GlobalNormClipped`).
    target_optimizer: BMG's target-step optimizer: 'sgd', 'rmsprop', ...
    target_learning_rate: its step size.
    target_rollouts: BMG only: M >= 1 rollouts in the target step's batch,
      all collected with x_{K+L-1}; the target step descends the mean of
      their outer losses, and with `match_batch='target'` the matching sums
      (or averages) over all M*T states. M > 1 costs (M-1)*T extra env steps
      per meta-step, counted in the budget; the last of the M rollouts is
      the one re-used by the next meta-step.
    bootstrap_entropy_weight: BMG only. None (the paper): the L-1 bootstrap
      steps use the meta-learned inner loss at the current entropy weight.
      A number: they use the inner loss with this fixed entropy weight
      instead, so the target holds no trace of the meta-learned weight
      (`Objectives.bootstrap_loss`; why in docs/fidelity.md).
    meta_learning_rate: Adam step size of the meta-optimizer.
    meta_epsilon: Adam epsilon of the meta-optimizer.
    meta_clip_global_norm: optional meta-gradient clipping.
    entropy_weight: the fixed weight ('fixed'), or the initial value of the
      learned one.
    contextual: learn the weight as sigmoid(MLP(last `context_window`
      rollout mean rewards)); else as a single sigmoid logit.
    context_window: rollouts in the reward context.
    context_transform: what the meta-network sees of the rollout mean
      rewards `r`: 'none' (`r`), 'tanh' (`tanh(r / context_scale)`) or
      'running_tanh' (`tanh((r - m) / s)` with running mean and deviation,
      see `rollout.RewardContext`).
    context_scale: the fixed scale of 'tanh'; the initial deviation of
      'running_tanh'.
    context_decay: per-rollout decay of 'running_tanh's running averages.
    meta_hidden_sizes: hidden widths of the contextual MLP.
    meta_output_kernel_scale: 0 starts the contextual MLP's output kernel at
      zero (the weight starts at `entropy_weight` at any context); > 0 scales
      a random Glorot-uniform output kernel.
    outer_entropy_weight: fixed entropy bonus in the outer objective (MG's
      meta-loss and BMG's target step).
    hidden_sizes: hidden widths of the policy and value MLPs.
    gamma: discount factor.
    value_coef: weight of the value loss in the inner loss.
    return_steps: 'n_step' or '1_step' returns.
    flip_period: env steps between reward flips.
    respawn: 'collected' or 'all'.
    step_cost: reward subtracted every step.
    seed: seed of the networks, env stream and action sampling.
    num_seeds: N > 1 runs seeds `seed`, ..., `seed + N - 1` as a batch
      dimension of one graph (see the module docstring); `num_env_steps` is
      then per seed, and the SavedModel of seed n goes to
      `export/seed_<n>`.
    jit_compile: compile the meta-step with XLA.
    steps_per_call: meta-steps per compiled call (a `tf.while_loop` in the
      graph, `MetaLearner`); the same result, less per-call overhead. The
      budget, logs and checkpoints are checked between calls.
    log_every: env steps between progress lines and summaries.
    checkpoint_every: env steps between checkpoints.
    export: write the SavedModel to `root_dir/export` at the end.
  Returns:
    An `Experiment`. Its run returns a dict: 'env_steps' (per seed),
    'reward_per_step' (whole run), 'entropy_weight' (final), 'history' (one
    row per log: env_steps, reward_per_step over the window, entropy_weight,
    policy_entropy, env_steps_per_sec (from the second log on)). With N > 1
    seeds the values are means over seeds; the result adds 'num_seeds',
    'reward_per_step_per_seed' and 'entropy_weight_per_seed', and the rows
    add '<name>/seed_<n>' and 'aggregate_env_steps_per_sec' (all seeds).
    Each row is also appended to `root_dir/history.jsonl`, and
    `root_dir/result.json` holds the summary with the whole history across
    restarts. The returned 'history' holds only the rows logged by this
    process.

  Raises:
    ValueError: naming the argument, on bad settings.
  """
  _check_settings(method, num_env_steps, rollout_length, target_rollouts,
                  bootstrap_entropy_weight, num_seeds)
  seeds = None if num_seeds == 1 else num_seeds  # The seed axis, if any.
  clip_dims = 0 if seeds is None else 1
  tf.random.set_seed(seed)
  env = tf_two_colors.make_env(env_name, flip_period=flip_period,
                               respawn=respawn, step_cost=step_cost,
                               batch_size=num_seeds, seed=seed)
  obs_dim = env.observation_spec().shape[-1]
  num_actions = int(env.action_spec().maximum) + 1
  agent = actor_critic.ActorCritic(
      obs_dim, num_actions, hidden_sizes=hidden_sizes, gamma=gamma,
      value_coef=value_coef, outer_entropy_weight=outer_entropy_weight,
      return_steps=return_steps, seed=seed, num_seeds=seeds)
  policy = rollout_lib.FunctionalPolicy(
      env.time_step_spec(), env.action_spec(), agent.distribution,
      lambda: agent.params, seed=seed + 1)
  collector = rollout_lib.RolloutCollector(env, policy, rollout_length)
  context = rollout_lib.RewardContext(
      context_window, num_streams=seeds, transform=context_transform,
      scale=context_scale, decay=context_decay)
  stats = rollout_lib.RunStats(seeds)
  cache = rollout_lib.RolloutCache(collector.rollout_spec())
  meta = _entropy_meta(method, entropy_weight, contextual, context_window,
                       meta_hidden_sizes, meta_output_kernel_scale, seed,
                       seeds)
  config = _bootstrap_config(method, k_steps, l_steps, fixed_steps_per_call,
                             matching, reduction, continue_from, num_seeds)
  objectives = agent.objectives()
  if target_rollouts > 1:
    objectives = _over_rollouts(agent, objectives)
  if bootstrap_entropy_weight is not None:
    fixed_meta = {'entropy_weight': tf.constant(
        float(bootstrap_entropy_weight), tf.float32)}
    objectives = objectives._replace(
        bootstrap_loss=lambda p, batch: agent.inner_loss(p, batch, fixed_meta))

  def collect(params):
    rollout = collector.collect(params)
    entropy = agent.distribution(params, rollout['observation']).entropy()
    entropy = (tf.reduce_mean(entropy) if seeds is None else
               tf.reduce_mean(entropy, axis=0))
    context.update(rollout)
    stats.update(rollout, entropy)
    return rollout

  def clipped(opt):
    if inner_clip_global_norm is None:
      return opt
    return optimizers.GlobalNormClipped(opt, inner_clip_global_norm,
                                        batch_dims=clip_dims)

  learner = meta_learner_lib.MetaLearner(
      agent.params, meta, objectives, config,
      inner_optimizer=clipped(
          optimizers.SGD(learning_rate=inner_learning_rate)),
      target_optimizer=(clipped(optimizers.get(
          target_optimizer, learning_rate=target_learning_rate))
                        if method == 'bmg' else None),
      meta_optimizer=meta_params.MetaOptimizer(
          learning_rate=meta_learning_rate, epsilon=meta_epsilon,
          clip_global_norm=meta_clip_global_norm,
          clip_batch_dims=clip_dims),
      batch_fn=_batch_fn(config, collect, cache, target_rollouts),
      jit_compile=jit_compile,
      steps_per_call=steps_per_call,
      context_fn=context.value)
  has_meta = method != 'fixed'
  export_fn = _export_fn(agent, meta, learner, obs_dim, num_seeds,
                         has_meta, has_meta and contextual, context_window)
  return experiment_lib.Experiment(
      learner=learner,
      trackables=dict(env=env, policy_rng=policy.generator, context=context,
                      stats=stats, cache=cache),
      export_fn=export_fn,
      train=lambda: _loop(learner, meta, context, stats, method, num_seeds),
      progress=lambda: int(stats.env_steps),
      total_steps=num_env_steps, step_unit='env steps',
      step_key='env_steps',
      rate_keys=({'env_steps_per_sec': 1} if seeds is None else
                 {'env_steps_per_sec': 1,
                  'aggregate_env_steps_per_sec': num_seeds}),
      log_every=log_every, checkpoint_every=checkpoint_every, export=export,
      info={'method': method, 'seed': seed},
      final_check=lambda result: (
          None if all(math.isfinite(r) for r in result.get(
              'reward_per_step_per_seed', [result['reward_per_step']]))
          else 'training diverged: non-finite reward per step.'))


train_eval = experiment_lib.trainer(build)


def _check_settings(method, num_env_steps, rollout_length, target_rollouts,
                    bootstrap_entropy_weight, num_seeds):
  """Raises a ValueError naming the argument on bad settings."""
  if method not in bootstrap.METHODS:
    raise ValueError(f'method: must be one of {bootstrap.METHODS}, got '
                     f'{method!r}.')
  if num_env_steps <= 0 or rollout_length <= 0:
    raise ValueError('num_env_steps/rollout_length: must be positive.')
  if (isinstance(target_rollouts, bool) or not isinstance(target_rollouts, int)
      or target_rollouts < 1):
    raise ValueError(f'target_rollouts: must be an int >= 1, got '
                     f'{target_rollouts!r}.')
  if target_rollouts > 1 and method != 'bmg':
    raise ValueError(f"target_rollouts: {target_rollouts} needs method='bmg', "
                     f'got {method!r}.')
  if bootstrap_entropy_weight is not None:
    if method != 'bmg':
      raise ValueError(f"bootstrap_entropy_weight: needs method='bmg', got "
                       f'{method!r}.')
    if (isinstance(bootstrap_entropy_weight, bool) or
        not isinstance(bootstrap_entropy_weight, (int, float)) or
        not math.isfinite(bootstrap_entropy_weight) or
        bootstrap_entropy_weight < 0):
      raise ValueError(f'bootstrap_entropy_weight: must be a finite number '
                       f'>= 0 or None, got {bootstrap_entropy_weight!r}.')
  if mlp.check_num_seeds(num_seeds) is None:
    raise ValueError('num_seeds: must be a positive int, got None.')


def _entropy_meta(method, entropy_weight, contextual, context_window,
                  meta_hidden_sizes, output_kernel_scale, seed, seeds):
  """The entropy weight: fixed, one sigmoid logit, or contextual."""
  if method == 'fixed':
    return meta_params.MetaParameters({'entropy_weight': entropy_weight})
  if contextual:
    return meta_params.MetaParameters({}, contextual=(
        meta_params.ContextualMetaParameters(
            context_window, {'entropy_weight': entropy_weight},
            hidden_sizes=meta_hidden_sizes, seed=seed + 2000,
            num_seeds=seeds, output_kernel_scale=output_kernel_scale)))
  return meta_params.MetaParameters({
      'entropy_weight': meta_params.MetaParameter(
          entropy_weight, 'sigmoid', num_seeds=seeds,
          name='entropy_weight')})


def _bootstrap_config(method, k_steps, l_steps, fixed_steps_per_call,
                      matching, reduction, continue_from, num_seeds):
  """The engine's `BootstrapConfig` for `method`."""
  if method == 'fixed':
    return bootstrap.BootstrapConfig(method='fixed',
                                     k_steps=fixed_steps_per_call)
  if method == 'mg':
    return bootstrap.BootstrapConfig(method='mg', k_steps=k_steps)
  weights = dict(matching or {'policy_kl': 1.0})
  if num_seeds > 1 and reduction == 'mean':
    # A mean over [T, N] states is 1/N of the per-seed means' sum.
    weights = {k: w * (num_seeds if k != 'param_l2' else 1)
               for k, w in weights.items()}
  return bootstrap.BootstrapConfig(
      method='bmg', k_steps=k_steps, l_steps=l_steps, matching=weights,
      reduction=reduction, continue_from=continue_from)


def _batch_fn(config, collect, cache, target_rollouts):
  """The learner's `batch_fn(i, params)`: rollouts collected in-graph.

  MG and BMG re-use the last rollout of a meta-step as the first of the
  next (`cache`); BMG's target batch may hold `target_rollouts` rollouts.
  """
  last_index = config.batches_per_step - 1
  target_index = (config.k_steps + config.l_steps - 1
                  if config.method == 'bmg' else None)
  if config.method == 'fixed':
    return lambda i, params: collect(params)

  def batch_fn(i, params):
    first = tf.equal(i, 0) if tf.is_tensor(i) else tf.constant(i == 0)
    rollout = tf.cond(tf.logical_and(cache.valid, first), cache.read,
                      lambda: collect(params))
    last = rollout
    if target_rollouts > 1 and isinstance(i, int) and i == target_index:
      rollouts = [rollout] + [collect(params)
                              for _ in range(target_rollouts - 1)]
      last, rollout = rollouts[-1], tuple(rollouts)
    if isinstance(i, int) and i == last_index:
      cache.write(last)
    return rollout

  return batch_fn


def _export_fn(agent, meta, learner, obs_dim, num_seeds, has_meta,
               contextual, context_window):
  """`(export_dir, gin_config)`: the SavedModel(s); one per seed if N > 1."""

  def export_seed(export_dir, n, gin_config):
    """One SavedModel; seed n's slice of a batched run when n is set."""

    def per_seed(x):
      # [B, D] -> [B, N, D]: every seed sees the input; keep seed n's output.
      return x if n is None else tf.tile(x[:, None], [1, num_seeds, 1])

    def pick(y, axis):
      return y if n is None else tf.gather(y, n, axis=axis)

    def meta_of_context(ctx):
      return {k: pick(v, 1) for k, v in meta(per_seed(ctx)).items()}

    def meta_fixed():
      return {k: pick(v, 0) for k, v in meta().items()}

    return export_lib.export_policy(
        export_dir,
        head_fn=lambda obs: pick(agent.logits(agent.params, per_seed(obs)), 1),
        observation_dim=obs_dim,
        variables=agent.params + list(meta.variables),
        head='logits',
        meta_fn=meta_of_context if contextual else (
            meta_fixed if has_meta else None),
        context_dim=context_window if contextual else None,
        train_step=int(learner.train_step_counter),
        gin_config=gin_config)

  def export_to(export_dir, gin_config):
    if num_seeds == 1:
      return export_seed(export_dir, None, gin_config)
    for n in range(num_seeds):
      export_seed(os.path.join(export_dir, f'seed_{n}'), n, gin_config)
    return export_dir

  return export_to


def _per_seed_values(x):
  """A scalar or `[N]` tensor -> a list of N floats (N = 1 unbatched)."""
  return [float(v) for v in tf.reshape(x, [-1]).numpy()]


def _mean(values):
  return sum(values) / len(values)


def _loop(learner, meta, context, stats, method, num_seeds):
  """The training loop's pieces: windows of reward, entropy and weight."""
  seeds = None if num_seeds == 1 else num_seeds

  def entropy_weights_now():
    return _per_seed_values(meta(context.value())['entropy_weight'])

  def with_seeds(name, values):
    """{name: mean} plus {name/seed_n: value} for a batched run."""
    out = {name: _mean(values)}
    if seeds is not None:
      out.update({f'{name}/seed_{n}': v for n, v in enumerate(values)})
    return out

  def snapshot():
    return {'steps': int(stats.env_steps),
            'reward': _per_seed_values(stats.total_reward),
            'entropy': _per_seed_values(stats.entropy_sum),
            'rollouts': int(stats.rollouts)}

  last = {}

  def begin():
    last.update(snapshot())

  def window(metrics):
    now = snapshot()
    steps = max(1, now['steps'] - last['steps'])
    count = max(1, now['rollouts'] - last['rollouts'])
    row = {
        **with_seeds('reward_per_step',
                     [(r - r0) / steps
                      for r, r0 in zip(now['reward'], last['reward'])]),
        **with_seeds('policy_entropy',
                     [(e - e0) / count
                      for e, e0 in zip(now['entropy'], last['entropy'])]),
        **with_seeds('entropy_weight', entropy_weights_now()),
    }
    last.update(now)
    return {**metrics, **row}, row

  def summary():
    step = int(stats.env_steps)
    rewards = [r / max(1, step)
               for r in _per_seed_values(stats.total_reward)]
    weights = entropy_weights_now()
    result = {'env_steps': step, 'reward_per_step': _mean(rewards),
              'entropy_weight': _mean(weights)}
    if seeds is not None:
      result.update({'num_seeds': num_seeds,
                     'reward_per_step_per_seed': rewards,
                     'entropy_weight_per_seed': weights})
    return result

  def describe(result):
    if seeds is None:
      return (f'{method.upper()}: {result["env_steps"]} env steps, '
              f'reward/step {result["reward_per_step"]:.4f}, entropy weight '
              f'{result["entropy_weight"]:.4f}')
    return (f'{method.upper()} x {num_seeds} seeds: {result["env_steps"]} env '
            'steps each, reward/step '
            f'{", ".join(f"{r:.4f}" for r in result["reward_per_step_per_seed"])}'
            ', entropy weight '
            f'{", ".join(f"{w:.4f}" for w in result["entropy_weight_per_seed"])}')

  return experiment_lib.Loop(iterate=learner.step, window=window,
                             summary=summary, describe=describe, begin=begin)
