"""SavedModel export of a policy and its meta-parameter network.

`export_policy` writes a SavedModel whose serving signatures need only
TensorFlow to load (no bmg_tf import):

| signature         | inputs                                   | outputs |
|-------------------|------------------------------------------|---------|
| `action`          | `observation` float32 `[B, obs_dim]`     | `action` int64 `[B]` (greedy), `logits` or `q_values` float32 `[B, A]` |
| `sample_action`   | `observation` float32 `[B, obs_dim]`, `seed` int32 `[2]` | `action` int64 `[B]` sampled from the policy, and the same head |
| `meta_parameters` | `context` float32 `[B, C]` (or no input) | one float32 `[B]` (or `[]`) tensor per meta-parameter |
| `metadata`        | none                                     | `train_step` int64, `gin_config` string, `version` string |

(Image policies, e.g. Atari's, take `observation` `[B, H, W, C]` in the
dtype the env emits, uint8: `observation_dim` may be a shape and
`observation_dtype` a dtype.)

`meta_parameters` is present when the run has meta-parameters. Inputs of the
wrong dtype or shape are rejected at the signature's entry with an
`InvalidArgumentError` that names the input ("... input #0 was expected to
be a float tensor but is a double tensor", "Shape of tensor observation
[3,7] is not compatible with expected shape [?,30]"): a serving signature
does not check shapes by itself, so each function starts with
`tf.ensure_shape`. Float inputs with a NaN or an infinity are rejected
too (`InvalidArgumentError`: "observation: must be finite (no NaN or
inf)"), rather than mapped to a plausible action. Called as attributes of
the loaded object
(`loaded.action(obs)`), the same functions raise `ValueError`/`TypeError`
from their input signature instead.

`export_regressor` writes the same `meta_parameters` and `metadata`
signatures beside `predict`: `x` float32 `[B, input_dim]` -> `y` float32
`[B, output_dim]` (the toy regression demo).

`export_few_shot` writes a meta-learned initialisation with
`adapt_and_predict`: `support_x` float32 `[S, *input_shape]`, `support_y`
(int32 `[S]` labels, or float32 `[S, output_dim]` targets) and `query_x`
float32 `[Q, *input_shape]` -> `predictions` float32 `[Q, output_dim]`
(logits or regression outputs) after the learner's K adaptation steps on the
support set, all inside the signature; plus `meta_parameters` (the initial
weights, and the inner learning rate if learned) and `metadata`.
"""

import os
from typing import Callable, Mapping, Optional, Sequence, Union

import tensorflow as tf

import bmg_tf

__all__ = ['export_policy', 'export_regressor', 'export_few_shot']


class _Exported(tf.Module):
  """Holds the variables and the serving functions."""


def _checked(tensor, spec):
  """`tensor`, with run-time shape (and, if float, finiteness) checks that
  name the input."""
  tensor = tf.ensure_shape(tensor, spec.shape, name=spec.name)
  if tensor.dtype.is_floating:
    tensor = tf.debugging.assert_all_finite(
        tensor, f'{spec.name}: must be finite (no NaN or inf)')
  return tensor


def export_policy(export_dir: str,
                  head_fn: Callable[[tf.Tensor], tf.Tensor],
                  observation_dim: Union[int, Sequence[int]],
                  variables: Sequence[tf.Variable],
                  head: str = 'logits',
                  meta_fn: Optional[Callable[..., Mapping[str,
                                                          tf.Tensor]]] = None,
                  context_dim: Optional[int] = None,
                  train_step: int = 0,
                  gin_config: str = '',
                  epsilon_fn: Optional[Callable[[], tf.Tensor]] = None,
                  observation_dtype: tf.DType = tf.float32) -> str:
  """Writes the SavedModel.

  Args:
    export_dir: output directory (overwritten).
    head_fn: `observation [B, obs_dim] float32 -> [B, A]` logits or Q-values,
      computed from `variables`.
    observation_dim: flat observation size, or the shape of one observation
      (e.g. `[84, 84, 4]`).
    variables: every variable `head_fn` and `meta_fn` read (saved with the
      model).
    head: 'logits' (softmax policy) or 'q_values' (epsilon-greedy policy).
    meta_fn: `(context) -> {name: tensor}`, or `() -> {...}` when
      `context_dim` is None; None for no `meta_parameters` signature.
    context_dim: size of the meta-parameters' context, if contextual.
    train_step: recorded in `metadata`.
    gin_config: the operative gin config, recorded in `metadata`.
    epsilon_fn: for 'q_values': `() -> epsilon` used by `sample_action`;
      None means greedy sampling.
    observation_dtype: dtype of the `observation` input.

  Returns:
    `export_dir`.

  Raises:
    ValueError: on a bad `head` or `observation_dim`.
  """
  if head not in ('logits', 'q_values'):
    raise ValueError(f"head: must be 'logits' or 'q_values', got {head!r}.")
  obs_shape = ([observation_dim] if isinstance(observation_dim, int) else
               [int(d) for d in observation_dim])
  if not obs_shape or min(obs_shape) <= 0:
    raise ValueError(f'observation_dim: must be positive, got '
                     f'{observation_dim}.')
  module = _Exported()
  module.saved_variables = list(variables)
  obs_spec = tf.TensorSpec([None] + obs_shape, tf.as_dtype(observation_dtype),
                           name='observation')

  seed_spec = tf.TensorSpec([2], tf.int32, name='seed')

  def action(observation):
    out = head_fn(_checked(observation, obs_spec))
    return {'action': tf.argmax(out, axis=-1, output_type=tf.int64),
            head: out}

  def sample_action(observation, seed):
    out = head_fn(_checked(observation, obs_spec))
    seed = _checked(seed, seed_spec)
    if head == 'logits':
      sampled = tf.random.stateless_categorical(out, 1, seed,
                                                dtype=tf.int64)[:, 0]
    else:
      greedy = tf.argmax(out, axis=-1, output_type=tf.int64)
      eps = epsilon_fn() if epsilon_fn is not None else tf.constant(0.0)
      batch = tf.shape(out)[0]
      seeds = tf.random.experimental.stateless_split(seed, 2)
      explore = tf.random.stateless_uniform([batch], seeds[0]) < eps
      uniform = tf.random.stateless_uniform(
          [batch], seeds[1], maxval=tf.shape(out, out_type=tf.int64)[-1],
          dtype=tf.int64)
      sampled = tf.where(explore, uniform, greedy)
    return {'action': sampled, head: out}

  module.action = tf.function(action, input_signature=[obs_spec],
                              autograph=False)
  module.sample_action = tf.function(
      sample_action,
      input_signature=[obs_spec, seed_spec], autograph=False)
  signatures = {
      'action': module.action.get_concrete_function(),
      'sample_action': module.sample_action.get_concrete_function(),
  }
  return _save(module, signatures, export_dir, meta_fn, context_dim,
               train_step, gin_config)


def export_regressor(export_dir: str,
                     predict_fn: Callable[[tf.Tensor], tf.Tensor],
                     input_dim: int,
                     variables: Sequence[tf.Variable],
                     meta_fn: Optional[Callable[..., Mapping[str,
                                                             tf.Tensor]]] = None,
                     context_dim: Optional[int] = None,
                     train_step: int = 0,
                     gin_config: str = '') -> str:
  """Writes a SavedModel with `predict`, `meta_parameters` and `metadata`.

  Args:
    export_dir: output directory (overwritten).
    predict_fn: `x [B, input_dim] float32 -> y [B, output_dim] float32`.
    input_dim: size of `x`.
    variables: every variable `predict_fn` and `meta_fn` read.
    meta_fn, context_dim, train_step, gin_config: as in `export_policy`.

  Returns:
    `export_dir`.

  Raises:
    ValueError: on a bad `input_dim`.
  """
  if input_dim <= 0:
    raise ValueError(f'input_dim: must be positive, got {input_dim}.')
  module = _Exported()
  module.saved_variables = list(variables)
  x_spec = tf.TensorSpec([None, input_dim], tf.float32, name='x')
  module.predict = tf.function(
      lambda x: {'y': predict_fn(_checked(x, x_spec))},
      input_signature=[x_spec], autograph=False)
  signatures = {'predict': module.predict.get_concrete_function()}
  return _save(module, signatures, export_dir, meta_fn, context_dim,
               train_step, gin_config)


def export_few_shot(export_dir: str,
                    adapt_and_predict_fn: Callable[
                        [tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor],
                    input_shape: Sequence[int],
                    label_spec: tf.TensorSpec,
                    variables: Sequence[tf.Variable],
                    meta_fn: Callable[[], Mapping[str, tf.Tensor]],
                    train_step: int = 0,
                    gin_config: str = '') -> str:
  """Writes a SavedModel with `adapt_and_predict`, `meta_parameters` and
  `metadata`.

  Args:
    export_dir: output directory (overwritten).
    adapt_and_predict_fn: `(support_x [S, *input_shape], support_y,
      query_x [Q, *input_shape]) -> predictions [Q, output_dim]` float32.
    input_shape: the shape of one input.
    label_spec: the spec of `support_y` (`[None]` int32 labels or
      `[None, output_dim]` float32 targets); its name is the input's.
    variables: every variable the functions read.
    meta_fn: `() -> {name: tensor}`, the meta-parameters.
    train_step, gin_config: as in `export_policy`.

  Returns:
    `export_dir`.
  """
  module = _Exported()
  module.saved_variables = list(variables)
  shape = [None] + [int(s) for s in input_shape]
  support_spec = tf.TensorSpec(shape, tf.float32, name='support_x')
  query_spec = tf.TensorSpec(shape, tf.float32, name='query_x')
  label_spec = tf.TensorSpec(label_spec.shape, label_spec.dtype,
                             name='support_y')

  def adapt_and_predict(support_x, support_y, query_x):
    return {'predictions': adapt_and_predict_fn(
        _checked(support_x, support_spec), _checked(support_y, label_spec),
        _checked(query_x, query_spec))}

  module.adapt_and_predict = tf.function(
      adapt_and_predict, input_signature=[support_spec, label_spec,
                                          query_spec], autograph=False)
  signatures = {'adapt_and_predict':
                module.adapt_and_predict.get_concrete_function()}
  return _save(module, signatures, export_dir, meta_fn, None, train_step,
               gin_config)


def _save(module, signatures, export_dir, meta_fn, context_dim, train_step,
          gin_config):
  """Adds `meta_parameters` (if `meta_fn`) and `metadata`; saves."""
  if meta_fn is not None:
    if context_dim is not None:
      context_spec = tf.TensorSpec([None, context_dim], tf.float32,
                                   name='context')
      module.meta_parameters = tf.function(
          lambda context: dict(meta_fn(_checked(context, context_spec))),
          input_signature=[context_spec], autograph=False)
    else:
      module.meta_parameters = tf.function(lambda: dict(meta_fn()),
                                           input_signature=[],
                                           autograph=False)
    signatures['meta_parameters'] = (
        module.meta_parameters.get_concrete_function())
  step = tf.constant(int(train_step), tf.int64)
  config = tf.constant(gin_config)
  version = tf.constant(bmg_tf.__version__)
  module.metadata = tf.function(
      lambda: {'train_step': step, 'gin_config': config, 'version': version},
      input_signature=[], autograph=False)
  signatures['metadata'] = module.metadata.get_concrete_function()
  os.makedirs(export_dir, exist_ok=True)
  tf.saved_model.save(module, export_dir, signatures=signatures)
  return export_dir
