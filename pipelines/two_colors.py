"""Two-colours actor-critic with a fixed, MG- or BMG-learned entropy weight.

BMG_SPEC section 2.1. `build` (gin-configurable) wires:

  TFTwoColors (in-graph, one stream) -> TF-Agents DynamicStepDriver with a
  FunctionalPolicy -> RolloutBuffer (16 steps) -> batch_fn of the
  MetaLearner, whose compiled step (optionally XLA) runs all K (+L) rollouts
  and updates of one meta-step.

Sample cost per meta-step (each env step feeds exactly one learner update,
because the last rollout of a meta-step is re-used as the first of the next,
see `bmg_tf.core.carry`):
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

import dataclasses  # pylint: disable=g-import-not-at-top,g-bad-import-order
import math
from typing import Optional

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
          num_env_steps: int = 10_000_000,
          rollout_length: int = 16,
          entropy_weight: float = 0.3,
          contextual: bool = True,
          target_rollouts: int = 1,
          bootstrap_entropy_weight: Optional[float] = None,
          seed: int = 0,
          num_seeds: int = 1,
          log_every: int = 50_000,
          checkpoint_every: int = 500_000,
          export: bool = True) -> experiment_lib.Experiment:
  """Builds the two-colours actor-critic experiment.

  `experiment_lib.run_experiment(build(...), root_dir)` trains it (resuming
  from `root_dir`), `export_experiment` exports a run of it.

  The objects read their own gin bindings (`gin/two_colors/ac_*.gin`):
  `BootstrapConfig` (method 'fixed', 'mg' or 'bmg'; K, L, matching, ...;
  for 'fixed', `k_steps` is the inner updates per compiled call),
  `TFTwoColors` (flip_period, respawn, step_cost), `ActorCritic` (hidden
  sizes, gamma, value_coef, outer_entropy_weight, return_steps),
  `RewardContext` (window, transform, scale, decay),
  `ContextualMetaParameters` (hidden_sizes, output_kernel_scale),
  `create_optimizer` in the scopes `inner` (the learner's update) and
  `target` (BMG's target step), `MetaOptimizer` and `MetaLearner`
  (jit_compile, steps_per_call). With N > 1 seeds the pipeline clips each
  seed by its own norm, and for `reduction='mean'` multiplies the policy
  and value matching weights by N (a mean over `[T, N]` states is 1/N of the
  per-seed means' sum).

  Args:
    env_name: 'TwoColors'.
    num_env_steps: budget in env steps.
    rollout_length: env steps per rollout (one inner update each).
    entropy_weight: the fixed weight ('fixed'), or the initial value of the
      learned one.
    contextual: learn the weight as sigmoid(MLP(the reward context)); else
      as a single sigmoid logit.
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
    seed: seed of the networks, env stream and action sampling.
    num_seeds: N > 1 runs seeds `seed`, ..., `seed + N - 1` as a batch
      dimension of one graph (see the module docstring); `num_env_steps` is
      then per seed, and the SavedModel of seed n goes to
      `export/seed_<n>`.
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
  experiment_lib.check_positive_ints(log_every=log_every,
                                     checkpoint_every=checkpoint_every)
  config = _bootstrap_config(bootstrap.BootstrapConfig(), num_seeds)
  method = config.method
  _check_settings(method, num_env_steps, rollout_length, target_rollouts,
                  bootstrap_entropy_weight, num_seeds)
  seeds = None if num_seeds == 1 else num_seeds  # The seed axis, if any.
  clip_dims = 0 if seeds is None else 1
  tf.random.set_seed(seed)
  env = tf_two_colors.make_env(env_name, batch_size=num_seeds, seed=seed)
  obs_dim = env.observation_spec().shape[-1]
  num_actions = int(env.action_spec().maximum) + 1
  agent = actor_critic.ActorCritic(obs_dim, num_actions, seed=seed,
                                   num_seeds=seeds)
  policy = rollout_lib.FunctionalPolicy(
      env.time_step_spec(), env.action_spec(), agent.distribution,
      lambda: agent.params, seed=seed + 1)
  collector = rollout_lib.RolloutCollector(env, policy, rollout_length)
  context = rollout_lib.RewardContext(num_streams=seeds)
  stats = rollout_lib.RunStats(seeds)
  contextual = contextual and method != 'fixed'
  meta = _entropy_meta(method, entropy_weight, contextual, context.window,
                       seed, seeds)
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

  inner, target = _optimizers(method == 'bmg', batch_dims=clip_dims)
  learner = meta_learner_lib.MetaLearner(
      agent.params, meta, objectives, config,
      inner_optimizer=inner, target_optimizer=target,
      meta_optimizer=meta_params.MetaOptimizer(clip_batch_dims=clip_dims),
      batch_fn=_batch_fn(config, collect, target_rollouts),
      context_fn=context.value, carry_spec=collector.rollout_spec())
  export_fn = _export_fn(agent, meta, learner, obs_dim, num_seeds,
                         method != 'fixed', contextual, context.window)
  return experiment_lib.Experiment(
      learner=learner,
      trackables=dict(env=env, policy_rng=policy.generator, context=context,
                      stats=stats,
                      # The carried rollout, under its old checkpoint name.
                      **({'cache': learner.carry} if learner.carry else {})),
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
  experiment_lib.check_positive_ints(num_env_steps=num_env_steps,
                                     rollout_length=rollout_length)
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


def _entropy_meta(method, entropy_weight, contextual, context_window, seed,
                  seeds):
  """The entropy weight: fixed, one sigmoid logit, or contextual."""
  if method == 'fixed':
    return meta_params.MetaParameters({'entropy_weight': entropy_weight})
  if contextual:
    return meta_params.MetaParameters({}, contextual=(
        meta_params.ContextualMetaParameters(
            context_window, {'entropy_weight': entropy_weight},
            seed=seed + 2000, num_seeds=seeds)))
  return meta_params.MetaParameters({
      'entropy_weight': meta_params.MetaParameter(
          entropy_weight, 'sigmoid', num_seeds=seeds,
          name='entropy_weight')})


def _bootstrap_config(config, num_seeds):
  """The gin-bound `BootstrapConfig`, with BMG's weights made per seed.

  With N seeds batched and `reduction='mean'`, a mean over `[T, N]` states
  is 1/N of the per-seed means' sum: the policy and value weights are
  multiplied by N so that each seed's meta-gradient is its own.
  """
  if config.method != 'bmg' or num_seeds == 1 or config.reduction != 'mean':
    return config
  return dataclasses.replace(config, matching={
      k: w * (num_seeds if k != 'param_l2' else 1)
      for k, w in config.matching.items()})


def _optimizers(with_target, batch_dims):
  """The inner and (BMG's) target optimizers, from gin scopes."""
  with gin.config_scope('inner'):
    inner = optimizers.create_optimizer(batch_dims=batch_dims)
  if not with_target:
    return inner, None
  with gin.config_scope('target'):
    return inner, optimizers.create_optimizer(batch_dims=batch_dims)


def _batch_fn(config, collect, target_rollouts):
  """The learner's `batch_fn(i, params)`: rollouts collected in-graph.

  BMG's target batch may hold `target_rollouts` rollouts (a tuple); the
  learner carries the last rollout of a meta-step over to the next.
  """
  target_index = (config.k_steps + config.l_steps - 1
                  if config.method == 'bmg' else None)

  def batch_fn(i, params):
    if target_rollouts > 1 and isinstance(i, int) and i == target_index:
      return tuple(collect(params) for _ in range(target_rollouts))
    return collect(params)

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
