"""Reads the gin configs of runs made before gin bound objects.

Until the one-runner refactor each pipeline took every setting as a
parameter of one entry point (`two_colors.train_eval.k_steps = 7`, later
`two_colors.build.k_steps = 7`); now the objects read their own bindings
(`BootstrapConfig.k_steps = 7`, `inner/create_optimizer.learning_rate =
0.1`, ...). `translate(text)` rewrites a saved `operative_config.gin` of the
old form into the new one, so that `bmg-export` can still export old runs.
A config of the new form is returned unchanged.

Old operative configs hold every parameter of the entry point, including
those the method never read (an MG run's `l_steps`); `translate` drops
those, as the old pipeline ignored them, and adds the settings the old
pipelines hard-coded (the Q pipeline's `k_steps = 0`). Bindings of library
objects that are no longer configurable (`ActorCritic.name`) are dropped.
"""

import importlib
import re
from typing import Dict, List, Tuple

import gin
from gin import config_parser

__all__ = ['translate', 'RENAMED']

_BMG = ('bmg',)
_MG_BMG = ('mg', 'bmg')
_ALL = ('fixed', 'mg', 'bmg')
_OPT = 'create_optimizer'
_INNER = f'inner/{_OPT}'
_TARGET = f'target/{_OPT}'

# Old parameters every pipeline with a target step and a meta-optimizer had.
_SHARED = {
    'method': ('BootstrapConfig.method', _ALL),
    'l_steps': ('BootstrapConfig.l_steps', _BMG),
    'reduction': ('BootstrapConfig.reduction', _BMG),
    'inner_clip_global_norm': (f'{_OPT}.clip_global_norm', _ALL),
    'target_optimizer': (f'{_TARGET}.name', _BMG),
    'target_learning_rate': (f'{_TARGET}.learning_rate', _BMG),
    'meta_learning_rate': ('MetaOptimizer.learning_rate', _ALL),
    'meta_epsilon': ('MetaOptimizer.epsilon', _ALL),
    'meta_clip_global_norm': ('MetaOptimizer.clip_global_norm', _ALL),
    'jit_compile': ('MetaLearner.jit_compile', _ALL),
}
# Those of the two two-colours pipelines.
_TWO_COLORS = {
    **_SHARED,
    'fixed_steps_per_call': ('BootstrapConfig.k_steps', ('fixed',)),
    'context_window': ('RewardContext.window', _ALL),
    'flip_period': ('TFTwoColors.flip_period', _ALL),
    'respawn': ('TFTwoColors.respawn', _ALL),
    'step_cost': ('TFTwoColors.step_cost', _ALL),
}
_BMG_SHAPE = {
    'continue_from': ('BootstrapConfig.continue_from', _BMG),
    'matching': ('BootstrapConfig.matching', _BMG),
}

# pipeline -> old parameter -> (new selector.param, methods it applies to).
# Parameters not listed stay parameters of `<pipeline>.build`.
RENAMED: Dict[str, Dict[str, Tuple[str, Tuple[str, ...]]]] = {
    'two_colors': {
        **_TWO_COLORS,
        **_BMG_SHAPE,
        'k_steps': ('BootstrapConfig.k_steps', _MG_BMG),
        'inner_learning_rate': (f'{_INNER}.learning_rate', _ALL),
        'context_transform': ('RewardContext.transform', _ALL),
        'context_scale': ('RewardContext.scale', _ALL),
        'context_decay': ('RewardContext.decay', _ALL),
        'meta_hidden_sizes': ('ContextualMetaParameters.hidden_sizes',
                              _MG_BMG),
        'meta_output_kernel_scale': (
            'ContextualMetaParameters.output_kernel_scale', _MG_BMG),
        **{name: (f'ActorCritic.{name}', _ALL) for name in (
            'hidden_sizes', 'gamma', 'value_coef', 'outer_entropy_weight',
            'return_steps')},
        'steps_per_call': ('MetaLearner.steps_per_call', _ALL),
    },
    'two_colors_q': {
        **_TWO_COLORS,
        'learning_rate': (f'{_INNER}.learning_rate', _ALL),
        'inner_learning_rate': (f'{_INNER}.learning_rate', _ALL),
        'meta_hidden_sizes': ('ContextualMetaParameters.hidden_sizes', _BMG),
        **{name: (f'QLearner.{name}', _ALL) for name in (
            'hidden_sizes', 'gamma', 'lambda_', 'trace')},
    },
    'stacx': {
        **_SHARED,
        **_BMG_SHAPE,
        'k_steps': ('BootstrapConfig.k_steps', _ALL),
        'learning_rate': (f'{_OPT}.learning_rate', _ALL),
        'inner_learning_rate': (f'{_OPT}.learning_rate', _ALL),
        'rmsprop_rho': (f'{_OPT}.rho', _ALL),
        'rmsprop_epsilon': (f'{_OPT}.epsilon', _ALL),
        'clip_global_norm': (f'{_OPT}.clip_global_norm', _ALL),
        **{name: (f'ImpalaAgent.{name}', _ALL) for name in (
            'num_aux_heads', 'reward_clip', 'outer_hparams')},
        'hparams': ('make_meta_parameters.init', _ALL),
        'aux_hparams': ('make_meta_parameters.aux_init', _ALL),
        'learn': ('make_meta_parameters.learn', _MG_BMG),
        'strategy': ('make_strategy.name', _ALL),
    },
    'toy_regression': {
        'init_learning_rate': ('toy_regression.build.inner_learning_rate',
                               _ALL),
        'method': ('BootstrapConfig.method', _ALL),
        'k_steps': ('BootstrapConfig.k_steps', _ALL),
        'l_steps': ('BootstrapConfig.l_steps', _BMG),
        'meta_learning_rate': ('MetaOptimizer.learning_rate', _ALL),
        'target_learning_rate': (f'{_TARGET}.learning_rate', _BMG),
        'jit_compile': ('MetaLearner.jit_compile', _ALL),
    },
}

# Settings the old pipelines passed themselves: pipeline -> method ->
# bindings.
_IMPLIED = {
    'two_colors': {'bmg': {'BootstrapConfig.matching': {'policy_kl': 1.0}}},
    'two_colors_q': {
        'bmg': {'BootstrapConfig.k_steps': 0,
                'BootstrapConfig.continue_from': 'K+L-1',
                'BootstrapConfig.matching': {'policy_kl': 1.0},
                f'{_INNER}.name': 'adam'},
        'fixed': {f'{_INNER}.name': 'adam'},
    },
    'stacx': {'bmg': {'BootstrapConfig.matching': {'policy_kl': 1.0}},
              '*': {f'{_OPT}.name': 'rmsprop'}},
    'toy_regression': {'bmg': {'BootstrapConfig.matching': {'param_l2': 1.0}}},
}

_ENTRY = re.compile(r'^(?:(\w+)\.)?(train_eval|build)$')


def _statements(text: str) -> List[object]:
  parser = config_parser.ConfigParser(text, _Delegate())
  return list(parser)


class _Delegate(config_parser.ParserDelegate):
  """Keeps references and macros as their text (`@x`, `%x`)."""

  def configurable_reference(self, scoped_name, evaluate):
    return _Ref(f'@{scoped_name}{"()" if evaluate else ""}')

  def macro(self, macro_name):
    return _Ref(f'%{macro_name}')


class _Ref(str):

  def __repr__(self):
    return str(self)


def _configurable_accepts(selector: str, param: str) -> bool:
  """Whether gin would accept `selector.param` (registered, allowed)."""
  try:
    configurable = gin.config._REGISTRY.get_match(selector)  # pylint: disable=protected-access
  except (KeyError, ValueError):
    return False
  if configurable is None:
    return False
  if configurable.allowlist is not None:
    return param in configurable.allowlist
  if configurable.denylist is not None and param in configurable.denylist:
    return False
  return True


def translate(text: str) -> str:
  """A saved gin config of the old flat form, in the object form.

  Args:
    text: the contents of an `operative_config.gin` (or a gin file).

  Returns:
    `text` itself if it binds no parameter of an old entry point (beyond
    those the new `build` keeps); else a new config text.
  """
  statements = _statements(text)
  pipeline = None
  old: Dict[str, object] = {}
  others: List[Tuple[str, str, str, object]] = []
  for st in statements:
    if not isinstance(st, config_parser.BindingStatement):
      continue
    if st.selector == 'run' and st.arg_name == 'experiment':
      match = re.match(r'@(\w+)\.(train_eval|build)', str(st.value))
      if match:
        pipeline = match.group(1)
      continue
    entry = _ENTRY.match(st.selector)
    if entry and not st.scope:
      old[st.arg_name] = st.value
    else:
      others.append((st.scope, st.selector, st.arg_name, st.value))
  if pipeline not in RENAMED:
    return text
  # Registers the pipeline's configurables (`_configurable_accepts`).
  importlib.import_module(f'pipelines.{pipeline}')
  table = RENAMED[pipeline]
  if not any(name in table for name in old) and 'train_eval' not in text:
    return text
  method = old.get('method', 'bmg')
  new: Dict[str, object] = {}
  for scope, selector, param, value in others:
    if _configurable_accepts(selector, param):
      new[f'{scope + "/" if scope else ""}{selector}.{param}'] = value
  implied = _IMPLIED.get(pipeline, {})
  new.update(implied.get('*', {}))
  new.update(implied.get(method, {}))
  for name, value in old.items():
    if name not in table:
      new[f'{pipeline}.build.{name}'] = value
      continue
    target, methods = table[name]
    if method not in methods:
      continue
    if target == f'{_OPT}.rho' or target == f'{_OPT}.epsilon':
      # RMSProp settings reach a non-RMSProp target step only if scoped.
      if old.get('target_optimizer', 'rmsprop') != 'rmsprop':
        target = f'inner/{target}'
    new[target] = value
  if new.get('BootstrapConfig.matching', 0) is None:  # The old default.
    new['BootstrapConfig.matching'] = implied.get(method, {}).get(
        'BootstrapConfig.matching', {'policy_kl': 1.0})
  if new.get(f'{_TARGET}.learning_rate', 0) is None:
    del new[f'{_TARGET}.learning_rate']  # None meant: the inner one.
  lines = ['import pipelines.experiment', f'import pipelines.{pipeline}', '',
           f'run.experiment = @{pipeline}.build']
  lines += [f'{k} = {v!r}' for k, v in sorted(new.items())]
  return '\n'.join(lines) + '\n'
