"""Every binding of every shipped gin file takes effect (or is checked).

For each gin file under `gin/`, the test builds the experiment the file
names (`build()` only: nothing is trained and no actor env is created),
takes a fingerprint of everything the built `Experiment` holds (the object
graph reachable from it: object attributes, closure cells, variables'
initial values), then changes one binding at a time and builds again. Each
change must change the fingerprint, or, when no valid alternative value
exists (the Q pipeline's BMG needs K = 0), be refused with a ValueError that
names the parameter. A binding that gin parsed but nothing read would leave
the fingerprint unchanged and fail the test.

Bindings shared by several files of one pipeline are checked once, in the
first file that has them. Attribute paths whose values differ between two
builds of the same config (auto-numbered names) are ignored. The few-shot
configs that read a data set from disk build on tiny fabricated copies
(`tests/few_shot/fabricate.py`).
"""

import collections
import fnmatch
import functools
import glob
import hashlib
import importlib.util
import os
import tempfile
import types

os.environ['TF_USE_LEGACY_KERAS'] = '1'

import gin  # pylint: disable=g-import-not-at-top
from gin import config_parser
import numpy as np
import pytest
import tensorflow as tf

from bmg_tf.networks import torsos  # pylint: disable=unused-import
from pipelines import experiment  # pylint: disable=unused-import

GIN_DIR = os.path.join(os.path.dirname(__file__), '..', '..', 'gin')
GIN_FILES = sorted(glob.glob(os.path.join(GIN_DIR, '**', '*.gin'),
                             recursive=True))

# Alternatives for string-valued parameters, by parameter name.
# Bindings that must change with a parameter for its alternative to be valid.
COMPANIONS = {('suite', 'minatar'): ["stacx.build.game = 'Breakout'"],
              ('suite', 'atari'): ["stacx.build.game = 'Pong'"]}
STRING_ALTERNATIVES = {
    'method': ('mg', 'fixed', 'bmg'),
    'continue_from': ('K', 'K+L-1'),
    'reduction': ('sum', 'mean'),
    'match_batch': ('fresh', 'target'),
    'return_steps': ('1_step', 'n_step'),
    'name': ('adam', 'sgd', 'rmsprop'),
    'transform': ('tanh', 'none'),
    'trace': ('watkins', 'peng'),
    'respawn': ('all', 'collected'),
    'suite': ('minatar', 'atari'),
    'game': ('SpaceInvaders', 'Breakout', 'Pong'),
    'torso': ('nature', 'minatar', 'impala'),
    'env_name': ('ThreeColors',),
    'dataset': ('digits', 'sinusoid'),
    'pooling': ('stride', 'max'),
    'target_data': ('support', 'query', 'support_query'),
    'granularity': ('rollout', 'step'),
}
# Values for parameters bound to None.
NONE_ALTERNATIVES = {'clip_global_norm': (1.0,),
                     'bootstrap_entropy_weight': (0.1,)}


def _bindings(path):
  """[(scope, selector, param, value)] of a gin file (run.experiment not)."""
  with open(path) as f:
    parser = config_parser.ConfigParser(f.read(), _Delegate())
    statements = list(parser)
  return [(st.scope, st.selector, st.arg_name, st.value) for st in statements
          if isinstance(st, config_parser.BindingStatement) and
          st.selector != 'run']


class _Delegate(config_parser.ParserDelegate):

  def configurable_reference(self, scoped_name, evaluate):
    return '@' + scoped_name

  def macro(self, macro_name):
    return '%' + macro_name


def _alternatives(param, value):
  """Other valid-looking values for a binding, most likely first."""
  return [v for v in _candidates(param, value) if v != value]


def _candidates(param, value):
  if isinstance(value, bool):
    return [not value]
  if value is None:
    return list(NONE_ALTERNATIVES.get(param, ()))
  if isinstance(value, int):
    return [value + 1, value * 2, value - 1]
  if isinstance(value, float):
    return [value / 2, value * 2 if value else 0.5, value + 0.1]
  if isinstance(value, str):
    return [v for v in STRING_ALTERNATIVES.get(param, ()) if v != value]
  if isinstance(value, tuple) and value:
    if all(isinstance(v, int) for v in value):
      return [value[:-1] + (value[-1] + 1,)]
    return [value[:-1]]
  if isinstance(value, dict) and value:
    first = sorted(value)[0]
    return [{**value, first: value[first] / 2}]
  return []


def _hash(array):
  return hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()


def _fingerprint(root):
  """{attribute path: value} of the object graph reachable from `root`."""
  out = {}
  seen = set()

  def walk(obj, path, depth):
    if depth > 14:
      return
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
      out[path] = repr(obj)
      return
    if isinstance(obj, (types.ModuleType, type)):
      out[path] = getattr(obj, '__name__', '?')
      return
    if id(obj) in seen:
      return
    seen.add(id(obj))
    if isinstance(obj, tf.keras.optimizers.Optimizer):
      # Its hyperparameters; its internals are keyed by variable ids.
      out[path] = repr(sorted(obj.get_config().items()))
      return
    if isinstance(obj, tf.Variable):
      out[path] = (tuple(obj.shape), obj.dtype.name, _hash(obj.numpy()))
      return
    if isinstance(obj, tf.Tensor) and obj.dtype in (tf.resource, tf.variant):
      out[path] = obj.dtype.name
      return
    if isinstance(obj, (tf.Tensor, np.ndarray, np.generic)):
      array = np.asarray(obj)
      out[path] = (array.shape, str(array.dtype), _hash(array))
      return
    if isinstance(obj, tf.TensorSpec):
      out[path] = repr(obj)
      return
    if isinstance(obj, dict):
      for k in sorted(obj, key=repr):
        walk(obj[k], f'{path}[{k!r}]', depth + 1)
      return
    if isinstance(obj, (list, tuple)):
      for i, v in enumerate(obj):
        walk(v, f'{path}[{i}]', depth + 1)
      return
    if isinstance(obj, (types.FunctionType, types.MethodType)):
      function = getattr(obj, '__func__', obj)
      if hasattr(obj, '__self__'):
        walk(obj.__self__, f'{path}.__self__', depth + 1)
      for name, cell in zip(function.__code__.co_freevars,
                            function.__closure__ or ()):
        try:
          walk(cell.cell_contents, f'{path}<{name}>', depth + 1)
        except ValueError:  # An empty cell.
          pass
      walk(function.__defaults__, f'{path}.defaults', depth + 1)
      return
    attributes = getattr(obj, '__dict__', None)
    if attributes is None:
      out[path] = type(obj).__name__
      return
    for name in sorted(attributes):
      if name.startswith('_self_'):
        continue  # tf.Module / trackable bookkeeping.
      walk(attributes[name], f'{path}.{name}', depth + 1)

  walk(root, 'experiment', 0)
  return out


_SPEC = importlib.util.spec_from_file_location(
    'fabricate', os.path.join(os.path.dirname(__file__), '..', 'few_shot',
                              'fabricate.py'))
fabricate = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(fabricate)
# File pattern -> writes a fabricated data set into a directory.
FABRICATED = {
    'few_shot/*_omniglot.gin': fabricate.write_omniglot,
    'few_shot/*_miniimagenet.gin': functools.partial(
        fabricate.write_miniimagenet, layout='pickle',
        classes_per_split=(5, 5, 5), per_class=16),
}


@functools.lru_cache(maxsize=None)
def _data_dir(pattern):
  return FABRICATED[pattern](tempfile.mkdtemp(prefix='bindings_test_'))


def _data_bindings(path):
  rel = os.path.relpath(path, GIN_DIR)
  return [f"few_shot.build.data_dir = '{_data_dir(p)}'"
          for p in FABRICATED if fnmatch.fnmatch(rel, p)]


def _build(path, extra):
  gin.clear_config()
  gin.parse_config_files_and_bindings([path], _data_bindings(path) + extra)
  build = gin.query_parameter('run.experiment').scoped_configurable_fn
  return _fingerprint(build())


def _changed(base, noisy, other):
  keys = (set(base) | set(other)) - noisy
  return sorted(k for k in keys if base.get(k) != other.get(k))


def _cases():
  """gin file -> its bindings not already checked in an earlier file."""
  done = collections.defaultdict(set)
  cases = {}
  for path in GIN_FILES:
    with open(path) as f:
      pipeline = f.read().split('run.experiment = @', 1)[1].split('.')[0]
    mine = []
    for scope, selector, param, value in _bindings(path):
      key = (scope, selector, param)
      if key not in done[pipeline]:
        done[pipeline].add(key)
        mine.append((scope, selector, param, value))
    cases[os.path.relpath(path, GIN_DIR)] = mine
  return cases


CASES = _cases()


def test_every_shipped_binding_is_exercised():
  assert sum(len(v) for v in CASES.values()) >= 80
  for bindings in CASES.values():
    for _, _, param, value in bindings:
      # Every binding has at least one alternative to try, or is the one
      # whose only alternatives are errors (env_name).
      assert _alternatives(param, value), (param, value)


def _ineffective(path, bindings):
  """The bindings of `bindings` whose change changed nothing (see above)."""
  base = _build(path, [])
  again = _build(path, [])
  noisy = {k for k in set(base) | set(again)
           if base.get(k) != again.get(k)}
  assert len(noisy) < len(base) / 10, sorted(noisy)[:20]
  ineffective = []
  for scope, selector, param, value in bindings:
    name = f'{scope + "/" if scope else ""}{selector}.{param}'
    errors = []
    for alternative in _alternatives(param, value):
      try:
        other = _build(path, [f'{name} = {alternative!r}'] +
                       (COMPANIONS.get((param, alternative), [])
                        if isinstance(alternative, str) else []))
      except ValueError as e:
        # The error itself, without the binding or call gin appends.
        errors.append(str(e).split('\n  In ')[0])
        continue
      if _changed(base, noisy, other):
        break
      errors.append(f'{alternative!r} changed nothing')
    else:
      # No alternative built something different: acceptable only if every
      # one was refused with an error naming the parameter.
      if not errors or not all(param in e for e in errors):
        ineffective.append((name, errors))
  gin.clear_config()
  return ineffective


def test_a_binding_nothing_reads_is_caught():
  # Control: the check can fail. ImpalaResNet is registered (imported
  # above) but the toy experiment never builds one, so changing its binding
  # changes nothing.
  path = os.path.join(GIN_DIR, 'toy', 'lr_bmg.gin')
  got = _ineffective(path, [('', 'ImpalaResNet', 'channels', (16, 32, 32)),
                            ('', 'MetaOptimizer', 'learning_rate', 0.05)])
  assert [name for name, _ in got] == ['ImpalaResNet.channels']


@pytest.mark.parametrize('rel', sorted(CASES))
def test_changing_each_binding_changes_the_built_experiment(rel):
  assert not _ineffective(os.path.join(GIN_DIR, rel), CASES[rel])
