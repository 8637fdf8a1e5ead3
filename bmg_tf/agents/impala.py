"""Self-tuning IMPALA/V-trace actor-critic with STACX auxiliary heads.

BMG_SPEC section 2.3. Losses, heads and meta-parameters only: the engine
(`bmg_tf.core.bootstrap`) does the unroll, the bootstrap and the matching.

Network: a convolutional torso (`bmg_tf.networks.torsos`: 'nature',
'impala' or 'minatar'), shared by `1 + num_aux_heads` linear heads, each a
softmax policy and a state value. Head 0 (the main head) acts; the auxiliary
heads (STACX, Zahavy et al. 2020) only add their losses to the inner loss,
each with its own hyperparameters, and shape the shared torso.

Hyperparameters (`HPARAMS`): 'discount', 'lambda' (V-trace), and the loss
coefficients 'policy_coef', 'value_coef', 'entropy_coef'. Head `h` reads the
meta-values `'{prefix}{name}'` with prefix '' for the main head and
`'aux{h}/'` for auxiliary head h (1-based). Every meta-value is in (0, 1)
(a sigmoid meta-parameter, or a fixed value); the loss coefficients are that
value times `COEF_SCALES[name]`, so that e.g. a policy coefficient of 1 is
reachable. `make_meta_parameters` builds the collection, with a mask of which
names learn.

Losses of one head on a batch, with `N = T * B`:
  pg      = -sum(mask * A_t * log pi(a_t|x_t)) / N
  value   = 0.5 * sum(mask * (v_t - V(x_t))^2) / N
  entropy = sum(mask * H[pi(.|x_t)]) / N
  loss    = policy_coef * pg + value_coef * value - entropy_coef * entropy
where `v_t` and `A_t` are V-trace targets and advantages
(`bmg_tf.agents.vtrace`) from the head's own policy (importance weights
against the behaviour policy), its own discount and lambda, and clipped
rewards. The targets carry no gradient to the network (values and ratios are
stopped) but do to the discount and lambda, so the meta-gradient sees how
they shape the targets, as in meta-gradient RL (Xu et al., 2018).

* `inner_loss(params, batch, meta)`: the sum of every head's loss with its
  meta-values;
* `outer_loss(params, batch)`: the main head's loss with fixed
  `outer_hparams`: MG's meta-objective and BMG's target-step objective;
* `policy(params, batch)` / `values(params, batch)`: the main head's logits
  `[T, B, A]` and values `[T, B]` on the batch's states, for BMG's policy
  (KL) and value matching.

Batch (time-major, T transitions of B streams; `batch_from_time_steps`
builds it from T+1 TF-Agents time steps):
  'observation':      `[T+1, B, H, W, C]` (uint8 or float), states 0..T;
  'action':           `[T, B]` int32, the action taken in state t;
  'reward':           `[T, B]` float32, the reward that followed it;
  'discount':         `[T, B]` float32, 0 where the episode ended after
                      step t (termination or truncation), else 1;
  'mask':             `[T, B]` float32, 0 where state t was the LAST state of
                      an episode (the env ignored the action and reset);
  'behaviour_logits': `[T, B, A]` float32, the acting policy's logits.
Truncation is treated as termination (no bootstrapping across it), a common
simplification; Atari's 108k-frame cap rarely binds.
"""

from typing import Dict, List, Mapping, Optional, Sequence

import gin
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tf_agents.policies import tf_policy
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts_lib

from bmg_tf.agents import rollout as rollout_lib
from bmg_tf.agents import vtrace as vtrace_lib
from bmg_tf.core import bootstrap
from bmg_tf.core import meta_params as meta_params_lib
from bmg_tf.networks import torsos

__all__ = [
    'HPARAMS',
    'COEF_SCALES',
    'DEFAULT_HPARAMS',
    'head_prefix',
    'make_meta_parameters',
    'batch_from_time_steps',
    'batch_spec',
    'ImpalaAgent',
    'ActorPolicy',
]

tfd = tfp.distributions

HPARAMS = ('discount', 'lambda', 'policy_coef', 'value_coef', 'entropy_coef')
# A loss coefficient is COEF_SCALES[name] * (a value in (0, 1)).
COEF_SCALES = {'discount': 1.0, 'lambda': 1.0, 'policy_coef': 2.0,
               'value_coef': 1.0, 'entropy_coef': 0.05}
# Initial (and, where not learned, fixed) hyperparameters; those of STACX's
# and IMPALA's Atari setups.
DEFAULT_HPARAMS = {'discount': 0.995, 'lambda': 1.0, 'policy_coef': 1.0,
                   'value_coef': 0.5, 'entropy_coef': 0.01}


def head_prefix(head: int) -> str:
  """The meta-value prefix of head `head`: '' for 0, 'aux{head}/' else."""
  return '' if head == 0 else f'aux{head}/'


def _check_hparams(values: Mapping[str, float], arg: str) -> Dict[str, float]:
  values = dict(values)
  unknown = sorted(set(values) - set(HPARAMS))
  if unknown:
    raise ValueError(f'{arg}: unknown hyperparameters {unknown}; valid: '
                     f'{list(HPARAMS)}.')
  out = dict(DEFAULT_HPARAMS)
  out.update({k: float(v) for k, v in values.items()})
  for name, value in out.items():
    scaled = value / COEF_SCALES[name]
    if not 0.0 < scaled <= 1.0:
      raise ValueError(f'{arg}[{name!r}]: must be in (0, '
                       f'{COEF_SCALES[name]}], got {value}.')
  return out


@gin.configurable(allowlist=['init', 'aux_init', 'learn'])
def make_meta_parameters(num_aux_heads: int = 0,
                         init: Optional[Mapping[str, float]] = None,
                         aux_init: Optional[Mapping[str, float]] = None,
                         learn: Sequence[str] = HPARAMS
                        ) -> meta_params_lib.MetaParameters:
  """The self-tuned hyperparameters of every head.

  Args:
    num_aux_heads: auxiliary (STACX) heads; 0 is self-tuning IMPALA.
    init: initial hyperparameters of the main head (defaults:
      `DEFAULT_HPARAMS`).
    aux_init: initial hyperparameters of every auxiliary head (defaults:
      `init`).
    learn: which of `HPARAMS` learn, for every head (the mask); the others
      stay at their initial value. An empty mask gives fixed hyperparameters
      (plain IMPALA).

  Returns:
    A `MetaParameters` with names `'{prefix}{hparam}'` (see `head_prefix`),
    each in (0, 1): a sigmoid `MetaParameter` if learned, else a float.

  Raises:
    ValueError: on unknown names or out-of-range values.
  """
  if num_aux_heads < 0:
    raise ValueError(f'num_aux_heads: must be >= 0, got {num_aux_heads}.')
  unknown = sorted(set(learn) - set(HPARAMS))
  if unknown:
    raise ValueError(f'learn: unknown hyperparameters {unknown}; valid: '
                     f'{list(HPARAMS)}.')
  main = _check_hparams(init or {}, 'init')
  aux = _check_hparams(aux_init if aux_init is not None else main,
                       'aux_init')
  parameters = {}
  for head in range(num_aux_heads + 1):
    values = main if head == 0 else aux
    for name in HPARAMS:
      key = head_prefix(head) + name
      scaled = values[name] / COEF_SCALES[name]
      if name in learn:
        # sigmoid(raw) = 1 is out of reach; start just below it.
        parameters[key] = meta_params_lib.MetaParameter(
            min(scaled, 1.0 - 1e-3), 'sigmoid', name=key.replace('/', '_'))
      else:
        parameters[key] = scaled
  return meta_params_lib.MetaParameters(parameters)


def batch_spec(observation_shape: Sequence[int], observation_dtype,
               num_actions: int, unroll_length: int,
               num_envs: int) -> Dict[str, tf.TensorSpec]:
  """The spec of one `batch_from_time_steps` batch (T steps, B envs).

  Args:
    observation_shape: one observation's shape.
    observation_dtype: its dtype.
    num_actions: A.
    unroll_length: T.
    num_envs: B.

  Returns:
    dict name -> `tf.TensorSpec`, the keys, shapes and dtypes of
    `batch_from_time_steps`.
  """
  t, b = unroll_length, num_envs
  return {
      'observation': tf.TensorSpec([t + 1, b] + list(observation_shape),
                                   tf.as_dtype(observation_dtype)),
      'action': tf.TensorSpec([t, b], tf.int32),
      'reward': tf.TensorSpec([t, b], tf.float32),
      'discount': tf.TensorSpec([t, b], tf.float32),
      'mask': tf.TensorSpec([t, b], tf.float32),
      'behaviour_logits': tf.TensorSpec([t, b, num_actions], tf.float32),
  }


def batch_from_time_steps(time_steps: Sequence[ts_lib.TimeStep],
                          actions: Sequence[np.ndarray],
                          behaviour_logits: Sequence[np.ndarray]
                         ) -> Dict[str, np.ndarray]:
  """Builds a time-major batch (module docstring) from T+1 batched steps.

  Args:
    time_steps: T+1 TF-Agents `TimeStep`s of a batched env, each field
      `[B, ...]`; `time_steps[t+1]` followed `actions[t]`.
    actions: T int arrays `[B]`, taken in `time_steps[t]`.
    behaviour_logits: T float arrays `[B, A]`, the acting policy's logits.

  Returns:
    dict of NumPy arrays: 'observation' `[T+1, B, ...]`, 'action' `[T, B]`
    int32, 'reward', 'discount', 'mask' `[T, B]` float32,
    'behaviour_logits' `[T, B, A]` float32.

  Raises:
    ValueError: if the lengths do not match.
  """
  t = len(actions)
  if len(time_steps) != t + 1 or len(behaviour_logits) != t or t == 0:
    raise ValueError(f'time_steps/actions/behaviour_logits: need T+1, T, T '
                     f'(T >= 1), got {len(time_steps)}, {t}, '
                     f'{len(behaviour_logits)}.')
  step_types = np.stack([np.asarray(s.step_type) for s in time_steps])
  is_last = (step_types == int(ts_lib.StepType.LAST)).astype(np.float32)
  return {
      'observation': np.stack([np.asarray(s.observation) for s in time_steps]),
      'action': np.stack([np.asarray(a) for a in actions]).astype(np.int32),
      'reward': np.stack([np.asarray(s.reward) for s in time_steps[1:]]
                        ).astype(np.float32),
      'discount': 1.0 - is_last[1:],
      'mask': 1.0 - is_last[:-1],
      'behaviour_logits': np.stack(
          [np.asarray(l) for l in behaviour_logits]).astype(np.float32),
  }


@gin.configurable(allowlist=['num_aux_heads', 'reward_clip', 'outer_hparams',
                             'clip_rho_threshold', 'clip_pg_rho_threshold'])
class ImpalaAgent(tf.Module):
  """Torso + (1 + num_aux_heads) policy/value heads, V-trace losses."""

  def __init__(self,
               observation_shape: Sequence[int],
               num_actions: int,
               torso: str = 'nature',
               num_aux_heads: int = 0,
               observation_scale: float = 255.0,
               reward_clip: Optional[float] = 1.0,
               outer_hparams: Optional[Mapping[str, float]] = None,
               clip_rho_threshold: Optional[float] = 1.0,
               clip_pg_rho_threshold: Optional[float] = 1.0,
               seed: int = 0,
               name: str = 'impala'):
    """Creates the networks.

    Args:
      observation_shape: `[H, W, C]` of one observation.
      num_actions: number of discrete actions.
      torso: a key of `torsos.TORSOS`.
      num_aux_heads: STACX auxiliary heads (0: self-tuning IMPALA).
      observation_scale: observations are divided by this (255 for Atari
        frames, 1 for MinAtar's 0/1 boards).
      reward_clip: rewards are clipped to [-reward_clip, reward_clip] in the
        losses (None: no clipping). The env reports raw rewards.
      outer_hparams: the main head's fixed hyperparameters in the outer
        objective (defaults: `DEFAULT_HPARAMS`).
      clip_rho_threshold: V-trace rho-bar.
      clip_pg_rho_threshold: V-trace clipping of the policy-gradient ratios.
      seed: initialisation seed.
      name: module name.

    Raises:
      ValueError: naming the argument, on bad settings.
    """
    super().__init__(name=name)
    if num_actions <= 1:
      raise ValueError(f'num_actions: must be > 1, got {num_actions}.')
    if num_aux_heads < 0:
      raise ValueError(f'num_aux_heads: must be >= 0, got {num_aux_heads}.')
    if not observation_scale > 0:
      raise ValueError(f'observation_scale: must be positive, got '
                       f'{observation_scale}.')
    if reward_clip is not None and not reward_clip > 0:
      raise ValueError(f'reward_clip: must be positive or None, got '
                       f'{reward_clip}.')
    self.observation_shape = tuple(int(d) for d in observation_shape)
    self.num_actions = int(num_actions)
    self.num_heads = int(num_aux_heads) + 1
    self.observation_scale = float(observation_scale)
    self.reward_clip = reward_clip
    self.outer_hparams = _check_hparams(outer_hparams or {}, 'outer_hparams')
    self.clip_rho_threshold = clip_rho_threshold
    self.clip_pg_rho_threshold = clip_pg_rho_threshold
    with self.name_scope:
      self.torso = torsos.make_torso(torso, self.observation_shape, seed=seed)
      emb = self.torso.embedding_size
      init = tf.keras.initializers.GlorotUniform(seed=seed + 1000)
      # One matrix for all heads: [E, heads * A] logits, [E, heads] values.
      self.policy_kernel = tf.Variable(
          init([emb, self.num_heads * self.num_actions]),
          name='policy_kernel')
      self.policy_bias = tf.Variable(
          tf.zeros([self.num_heads * self.num_actions]), name='policy_bias')
      self.value_kernel = tf.Variable(
          tf.keras.initializers.GlorotUniform(seed=seed + 2000)(
              [emb, self.num_heads]), name='value_kernel')
      self.value_bias = tf.Variable(tf.zeros([self.num_heads]),
                                    name='value_bias')

  @property
  def params(self) -> List[tf.Variable]:
    """Torso variables, then policy kernel/bias and value kernel/bias."""
    return self.torso.params + [self.policy_kernel, self.policy_bias,
                                self.value_kernel, self.value_bias]

  def heads(self, params: Sequence[tf.Tensor], observation: tf.Tensor):
    """Every head's logits and values.

    Args:
      params: tensors shaped like `self.params`.
      observation: `[..., H, W, C]`.

    Returns:
      (logits `[heads, ..., A]`, values `[heads, ...]`), float32.
    """
    with tf.name_scope('impala_heads'):
      params = list(params)
      n = len(self.torso.params)
      obs = tf.cast(observation, tf.float32) / self.observation_scale
      emb = self.torso.apply(params[:n], obs)
      pk, pb, vk, vb = params[n:]
      logits = tf.tensordot(emb, pk, axes=1) + pb
      values = tf.tensordot(emb, vk, axes=1) + vb
      lead = tf.shape(emb)[:-1]
      logits = tf.reshape(
          logits, tf.concat([lead, [self.num_heads, self.num_actions]], 0))
      rank = emb.shape.rank - 1
      perm_l = [rank] + list(range(rank)) + [rank + 1]
      perm_v = [rank] + list(range(rank))
      return tf.transpose(logits, perm_l), tf.transpose(values, perm_v)

  def logits(self, params: Sequence[tf.Tensor],
             observation: tf.Tensor) -> tf.Tensor:
    """The main (acting) head's logits `[..., A]`."""
    return self.heads(params, observation)[0][0]

  def policy(self, params, batch, meta_values=None) -> tf.Tensor:
    """Main-head logits `[T, B, A]` on the batch's states 0..T-1."""
    del meta_values
    return self.logits(params, batch['observation'][:-1])

  def values(self, params, batch) -> tf.Tensor:
    """Main-head values `[T, B]` on the batch's states 0..T-1."""
    return self.heads(params, batch['observation'][:-1])[1][0]

  def _head_terms(self, logits, values, batch, log_mu,
                  hp) -> Dict[str, tf.Tensor]:
    """Unweighted losses of one head; `logits` `[T+1, B, A]`, `log_mu`
    `[T, B]` the behaviour policy's log-probabilities of the actions."""
    actions = tf.cast(batch['action'], tf.int32)
    mask = tf.cast(batch['mask'], tf.float32)
    count = tf.cast(tf.size(mask), tf.float32)
    logits_t, v_t, bootstrap_value = logits[:-1], values[:-1], values[-1]
    log_pi = -tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=actions, logits=logits_t)
    rewards = tf.cast(batch['reward'], tf.float32)
    if self.reward_clip is not None:
      rewards = tf.clip_by_value(rewards, -self.reward_clip, self.reward_clip)
    targets = vtrace_lib.vtrace(
        log_rhos=tf.stop_gradient(log_pi - log_mu),
        discounts=hp['discount'] * tf.cast(batch['discount'], tf.float32),
        rewards=rewards,
        values=tf.stop_gradient(v_t),
        bootstrap_value=tf.stop_gradient(bootstrap_value),
        lambda_=hp['lambda'],
        clip_rho_threshold=self.clip_rho_threshold,
        clip_pg_rho_threshold=self.clip_pg_rho_threshold)
    entropy = tfd.Categorical(logits=logits_t).entropy()
    return {
        'pg': -tf.reduce_sum(mask * targets.pg_advantages * log_pi) / count,
        'value': 0.5 * tf.reduce_sum(
            mask * tf.square(targets.vs - v_t)) / count,
        'entropy': tf.reduce_sum(mask * entropy) / count,
    }

  @staticmethod
  def _behaviour_log_probs(batch) -> tf.Tensor:
    """`log mu(a_t|x_t)` `[T, B]`, shared by every head."""
    return -tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(batch['action'], tf.int32),
        logits=tf.cast(batch['behaviour_logits'], tf.float32))

  @staticmethod
  def _weighted(terms, hp):
    return (hp['policy_coef'] * terms['pg'] + hp['value_coef'] *
            terms['value'] - hp['entropy_coef'] * terms['entropy'])

  def head_hparams(self, meta_values: Mapping[str, tf.Tensor],
                   head: int) -> Dict[str, tf.Tensor]:
    """Head `head`'s hyperparameters: meta-value times `COEF_SCALES`."""
    prefix = head_prefix(head)
    missing = [prefix + n for n in HPARAMS if prefix + n not in meta_values]
    if missing:
      raise ValueError(f'meta_values: missing {missing} (see '
                       'make_meta_parameters).')
    return {n: COEF_SCALES[n] * tf.cast(meta_values[prefix + n], tf.float32)
            for n in HPARAMS}

  def loss_terms(self, params, batch, meta_values) -> Dict[str, tf.Tensor]:
    """Every head's unweighted terms, keyed '{prefix}{pg,value,entropy}'."""
    logits, values = self.heads(params, batch['observation'])
    log_mu = self._behaviour_log_probs(batch)
    out = {}
    for head in range(self.num_heads):
      terms = self._head_terms(logits[head], values[head], batch, log_mu,
                               self.head_hparams(meta_values, head))
      for k, v in terms.items():
        out[head_prefix(head) + k] = v
    return out

  def inner_loss(self, params, batch, meta_values) -> tf.Tensor:
    """Sum over heads of each head's loss with its meta-values; scalar."""
    with tf.name_scope('impala_inner_loss'):
      terms = self.loss_terms(params, batch, meta_values)
      total = 0.0
      for head in range(self.num_heads):
        prefix = head_prefix(head)
        total += self._weighted(
            {k: terms[prefix + k] for k in ('pg', 'value', 'entropy')},
            self.head_hparams(meta_values, head))
      return total

  def outer_loss(self, params, batch) -> tf.Tensor:
    """The main head's loss with the fixed `outer_hparams`; scalar."""
    with tf.name_scope('impala_outer_loss'):
      logits, values = self.heads(params, batch['observation'])
      hp = {n: tf.constant(v, tf.float32)
            for n, v in self.outer_hparams.items()}
      return self._weighted(
          self._head_terms(logits[0], values[0], batch,
                           self._behaviour_log_probs(batch), hp), hp)

  def objectives(self) -> bootstrap.Objectives:
    return bootstrap.Objectives(
        inner_loss=self.inner_loss,
        outer_loss=self.outer_loss,
        policy=self.policy,
        value=self.values)


class ActorPolicy(tf_policy.TFPolicy):
  """The acting policy: the main head on the agent's variables.

  Emits `info={'logits': [B, A]}` (the behaviour logits V-trace needs).
  Samples with its own `tf.random.Generator` (checkpointable).
  """

  def __init__(self, time_step_spec, action_spec, agent: ImpalaAgent,
               seed: int = 0, name: str = 'impala_actor'):
    info_spec = {'logits': tf.TensorSpec([agent.num_actions], tf.float32)}
    super().__init__(time_step_spec, action_spec, info_spec=info_spec,
                     name=name)
    self._agent = agent
    self.generator = tf.random.Generator.from_seed(seed)

  # Plain TF ops: autograph (which TF-Agents' tf.function wrappers turn on)
  # would only spend seconds converting the torso.
  @tf.autograph.experimental.do_not_convert
  def _distribution(self, time_step, policy_state):
    logits = self._agent.logits(self._agent.params, time_step.observation)
    return policy_step.PolicyStep(
        tfd.Categorical(logits=logits, dtype=self.action_spec.dtype),
        policy_state, {'logits': logits})

  @tf.autograph.experimental.do_not_convert
  def _action(self, time_step, policy_state, seed=None):
    del seed  # The policy's own generator makes the stream checkpointable.
    logits = self._agent.logits(self._agent.params, time_step.observation)
    action = rollout_lib.gumbel_max(logits, self.generator.uniform(
        tf.shape(logits), minval=1e-12, maxval=1.0))
    return policy_step.PolicyStep(
        tf.cast(action, self.action_spec.dtype), policy_state,
        {'logits': logits})
