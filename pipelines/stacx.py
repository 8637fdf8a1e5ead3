"""Atari / MinAtar: self-tuning IMPALA (STACX) meta-learned by MG or BMG.

BMG_SPEC section 2.3. `build` (gin-configurable) wires:

  gymnasium ALE or MinAtar envs (`bmg_tf.envs.atari`), batched in a
  gymnasium vector env behind the TF-Agents adapter ->
  TF-Agents `PyTFEagerPolicy` over the `ActorPolicy` (main head, emits its
  logits) -> time-major unrolls of `unroll_length` steps per env ->
  `MetaLearner.step` (the engine: MG, BMG or fixed hyperparameters), under
  a gin-selected `tf.distribute` strategy, optionally XLA-compiled.

Actors and learner alternate, IMPALA-style: before each meta-step the actors
collect every new unroll that step needs with the current parameters, so the
later unrolls of a meta-step are off-policy by up to K+L-2 updates; V-trace
corrects for that with the stored behaviour logits. Each meta-step re-uses
the previous step's last unroll as its first (as in the two-colours
pipeline), so every unroll feeds exactly one learner update:
  fixed: K unrolls per call (no re-use); MG: K; BMG with
  `continue_from='K+L-1'`: K+L-1.

Loss scale: the agent's losses are means over the T x B transitions of an
unroll batch, so that a batch split across replicas gives the same update.
IMPALA's (and STACX's) losses are sums, and their RMSProp epsilon (0.01) and
gradient clip (40) are set for sums. This pipeline takes those values and
converts them: the gradient of the mean is the sum's divided by N = T x B, so
RMSProp's epsilon becomes epsilon / N^2 and the clip norm clip / N, which
makes every update identical to the summed loss's (RMSProp is otherwise
invariant to the gradient's scale).

Counting: a frame is one emulator frame (`frame_skip` per env step on
Atari, 1 on MinAtar); the budget `num_frames` counts every env step of every
actor, including the reset steps between episodes. It is checked between
meta-steps.

Resume: the learner, meta-parameters, optimizer states, the acting
generator and the counters are checkpointed. Python environments are not:
a resumed run restarts its episodes (and drops the unroll it would have
re-used), so it is not bit-identical to an uninterrupted one.
"""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

import math  # pylint: disable=g-import-not-at-top,g-bad-import-order
from typing import Mapping, Optional

import gin
import numpy as np
import tensorflow as tf
from tf_agents.policies import py_tf_eager_policy
from tf_agents.specs import tensor_spec

from bmg_tf import experiment as experiment_lib
from bmg_tf import export as export_lib
from bmg_tf.agents import impala
from bmg_tf.core import bootstrap
from bmg_tf.core import distribute
from bmg_tf.core import meta_learner as meta_learner_lib
from bmg_tf.core import meta_params
from bmg_tf.core import optimizers
from bmg_tf.envs import atari
from bmg_tf.envs import atari_scores

__all__ = ['SUITES', 'build', 'train_eval']

# suite -> (default torso, observation scale).
SUITES = {'atari': ('nature', 255.0), 'minatar': ('minatar', 1.0)}


class RunStats(tf.Module):
  """Frame, episode and return counters (checkpointed)."""

  def __init__(self):
    super().__init__(name='run_stats')
    self.frames = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.episodes = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.return_sum = tf.Variable(0.0, dtype=tf.float64, trainable=False)


def _frames_per_step(suite: str, env_kwargs: Mapping[str, object]) -> int:
  if suite == 'atari':
    return int(env_kwargs.get('frame_skip', 4))
  return 1


@gin.configurable
def build(suite: str = 'minatar',
          game: str = 'Breakout',
          num_frames: int = 5_000_000,
          num_envs: int = 16,
          asynchronous: bool = False,
          env_kwargs: Optional[Mapping[str, object]] = None,
          unroll_length: int = 20,
          torso: Optional[str] = None,
          seed: int = 0,
          log_every: int = 100_000,
          checkpoint_every: int = 1_000_000,
          export: bool = True) -> experiment_lib.Experiment:
  """Builds the self-tuning IMPALA experiment.

  `build` creates no environment: the specs come from
  `atari.static_specs`, and the actors' vector env is created only by the
  experiment's `train()` (`run_experiment`), so an export starts no
  emulator.

  The objects read their own gin bindings (`gin/atari/*.gin`,
  `gin/minatar/*.gin`): `BootstrapConfig` (method 'fixed' (plain IMPALA,
  `k_steps` updates per call), 'mg' or 'bmg'; K, L, matching, reduction:
  'mean' or 'sum' of BMG's matching, 'sum' refused under a multi-replica
  strategy), `ImpalaAgent` (num_aux_heads: STACX auxiliary heads, 0 is
  self-tuning IMPALA; reward_clip; outer_hparams: the fixed hyperparameters
  of the outer objective), `make_meta_parameters` (init and aux_init: the
  initial or fixed hyperparameters of the main and auxiliary heads; learn:
  which of `impala.HPARAMS` are meta-learned, ignored for 'fixed'),
  `create_optimizer` (unscoped: the inner RMSProp, and BMG's target step
  unless `target/create_optimizer.*` says otherwise; `epsilon` and
  `clip_global_norm` in IMPALA's sum-loss convention, converted here, see
  the module docstring), `MetaOptimizer`, `make_strategy` (the
  `tf.distribute` strategy of the learner step: 'default', 'mirrored',
  'multi_worker_mirrored', 'tpu'; the batch is split across replicas) and
  `MetaLearner` (jit_compile).

  Args:
    suite: 'atari' (ALE via gymnasium, `ALE/<game>-v5`) or 'minatar'.
    game: e.g. 'Pong', 'Breakout' (Atari) or 'Breakout', 'SpaceInvaders'
      (MinAtar).
    num_frames: budget in emulator frames (see the module docstring).
    num_envs: actors (the batch size B of every unroll).
    asynchronous: step the actors in subprocesses (gymnasium's
      `AsyncVectorEnv`) rather than in this process.
    env_kwargs: keyword arguments of `atari.make_atari` / `make_minatar`
      (e.g. `{'episodic_life': True}`).
    unroll_length: T, env steps per unroll.
    torso: 'nature', 'impala' or 'minatar'; None: the suite's default.
    seed: seed of the networks, the envs and action sampling.
    log_every: frames between progress lines and summaries.
    checkpoint_every: frames between checkpoints.
    export: write the SavedModel to `root_dir/export` at the end.
  Returns:
    An `Experiment`. Its run returns a dict: 'frames', 'episodes',
    'episode_return' (mean over the run's episodes), 'hparams' (final
    main-head values), 'history' (this process's log rows: frames,
    episode_return (window mean; None without episodes), episodes,
    frames_per_sec, the main head's hyperparameters; on Atari also
    human_normalized_return, `atari_scores.human_normalized_score` of the
    window's mean return). `root_dir/result.json` has the whole history
    across restarts.

  Raises:
    ValueError: naming the argument, on bad settings.
  """
  if suite not in SUITES:
    raise ValueError(f'suite: must be one of {sorted(SUITES)}, got '
                     f'{suite!r}.')
  experiment_lib.check_positive_ints(
      num_frames=num_frames, num_envs=num_envs, unroll_length=unroll_length,
      log_every=log_every, checkpoint_every=checkpoint_every)
  config = bootstrap.BootstrapConfig()
  method = config.method
  env_kwargs = dict(env_kwargs or {})
  default_torso, obs_scale = SUITES[suite]
  tf.random.set_seed(seed)
  strat = distribute.make_strategy()
  time_step_spec, action_spec = atari.static_specs(suite, game, **env_kwargs)
  obs_spec = time_step_spec.observation
  num_actions = int(action_spec.maximum) - int(action_spec.minimum) + 1
  # IMPALA's sum-loss settings, for the agent's mean losses (docstring).
  transitions = unroll_length * num_envs
  with strat.scope():
    agent = impala.ImpalaAgent(
        obs_spec.shape, num_actions, torso=torso or default_torso,
        observation_scale=obs_scale, seed=seed)
    meta = (impala.make_meta_parameters(agent.num_heads - 1, learn=())
            if method == 'fixed' else
            impala.make_meta_parameters(agent.num_heads - 1))
    with gin.config_scope('inner'):
      inner = optimizers.create_optimizer(loss_scale=transitions)
    target = None
    if method == 'bmg':
      with gin.config_scope('target'):
        target = optimizers.create_optimizer(loss_scale=transitions)
    learner = meta_learner_lib.MetaLearner(
        agent.params, meta, agent.objectives(), config,
        inner_optimizer=inner, target_optimizer=target,
        meta_optimizer=meta_params.MetaOptimizer(), strategy=strat,
        carry_spec=impala.batch_spec(obs_spec.shape, obs_spec.dtype,
                                     num_actions, unroll_length, num_envs))
  stats = RunStats()

  def scaled_hparams():
    # The values the losses use: each meta-value times its scale.
    return {n: impala.COEF_SCALES[n.split('/')[-1]] * v
            for n, v in meta().items()}

  def export_to(export_dir, gin_config):
    return export_lib.export_policy(
        export_dir,
        head_fn=lambda obs: agent.logits(agent.params, obs),
        observation_dim=list(obs_spec.shape),
        observation_dtype=obs_spec.dtype,
        variables=agent.params + list(meta.variables),
        head='logits',
        meta_fn=scaled_hparams if method != 'fixed' else None,
        train_step=int(learner.train_step_counter.numpy()),
        gin_config=gin_config)

  def make_env():
    return atari.make_batched_env(suite, game, num_envs=num_envs, seed=seed,
                                  asynchronous=asynchronous, **env_kwargs)

  def describe(result):
    return (f'{method.upper()} {suite}/{game}: {result["frames"]} frames, '
            f'{result["episodes"]} episodes, mean return '
            f'{result["episode_return"]}')

  return experiment_lib.Experiment(
      learner=learner, trackables=dict(stats=stats), export_fn=export_to,
      train=lambda: _loop(make_env, agent, meta, learner, stats,
                          unroll_length, _frames_per_step(suite, env_kwargs),
                          game if suite == 'atari' else None, seed, describe),
      progress=lambda: int(stats.frames),
      total_steps=num_frames, step_unit='frames', step_key='frames',
      rate_keys={'frames_per_sec': 1}, log_every=log_every,
      checkpoint_every=checkpoint_every, export=export,
      info={'method': method, 'suite': suite, 'game': game, 'seed': seed},
      final_check=lambda result: (
          None if all(math.isfinite(v) for v in result['hparams'].values())
          else 'training diverged: non-finite hyperparameters.'))


train_eval = experiment_lib.trainer(build)


def _loop(make_env, agent, meta, learner, stats, unroll_length,
          frames_per_step, atari_game, seed, describe):
  """Actors and the learner alternating (module docstring)."""
  env = make_env()
  actor = impala.ActorPolicy(tensor_spec.from_spec(env.time_step_spec()),
                             tensor_spec.from_spec(env.action_spec()), agent,
                             seed=seed + 1)
  py_actor = py_tf_eager_policy.PyTFEagerPolicy(actor, use_tf_function=True)
  num_envs = env.batch_size
  state = {'time_step': None}
  episode_window = []

  def hparams_now():
    values = meta()
    return {n: float(impala.COEF_SCALES[n] * values[n])
            for n in impala.HPARAMS}

  def collect():
    steps, actions, logits = [state['time_step']], [], []
    for _ in range(unroll_length):
      action_step = py_actor.action(state['time_step'])
      state['time_step'] = env.step(action_step.action)
      steps.append(state['time_step'])
      actions.append(action_step.action)
      logits.append(action_step.info['logits'])
    finished = env.pop_episode_stats()
    for ret, _ in finished:
      episode_window.append(ret)
    stats.frames.assign_add(unroll_length * num_envs * frames_per_step)
    stats.episodes.assign_add(len(finished))
    stats.return_sum.assign_add(sum(r for r, _ in finished))
    return impala.batch_from_time_steps(steps, actions, logits)

  def begin():
    state['time_step'] = env.reset()

  def iterate():
    # The learner prepends the batch it carries over (MG, BMG).
    batches = [collect() for _ in range(learner.new_batches_per_step)]
    return learner.step({k: np.stack([b[k] for b in batches])
                         for k in batches[0]})

  def window(metrics):
    ret = float(np.mean(episode_window)) if episode_window else math.nan
    row = {'episode_return': ret, 'episodes': float(len(episode_window))}
    episode_window.clear()
    if atari_game is not None and not math.isnan(ret):
      row['human_normalized_return'] = (
          atari_scores.human_normalized_score(atari_game, ret))
    now = hparams_now()
    scalars = {**metrics, **row, **{f'hparams/{k}': v for k, v in now.items()}}
    row = {k: (None if isinstance(v, float) and math.isnan(v) else v)
           for k, v in {**row, **now}.items()}
    return scalars, row

  def summary():
    episodes = int(stats.episodes)
    return {'frames': int(stats.frames), 'episodes': episodes,
            'episode_return': (float(stats.return_sum) / episodes
                               if episodes else None),
            'hparams': hparams_now()}

  return experiment_lib.Loop(
      iterate=iterate, window=window, summary=summary, describe=describe,
      trackables=dict(actor_rng=actor.generator), begin=begin,
      close=env.close)
