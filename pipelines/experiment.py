"""The gin root of every run: `run.experiment` names the experiment.

Gin files bind `run.experiment = @<module>.build` and import the modules
they need. `build(...)` returns a `bmg_tf.experiment.Experiment`; `run`
trains it with `run_experiment`, or, given `export_dir`, restores the latest
checkpoint and exports it with `export_experiment` (no training, no
training-only objects; `pipelines/export.py`). `pipelines/train.py` (the CLI)
calls `run`; tests call it in-process. It lives apart from the CLI so that a
gin file never imports the module that defines the absl flags.
"""

import os
import sys
from typing import List, Optional, Sequence

import gin

__all__ = ['run', 'ineffective_bindings', 'check_bindings', 'cli_check_args',
           'cli_fail', 'cli_run']


@gin.configurable(denylist=['export_dir'])
def run(root_dir: str, experiment=gin.REQUIRED,
        export_dir: Optional[str] = None):
  """Trains (or exports) the experiment that gin binds.

  Args:
    root_dir: the run directory.
    experiment: a pipeline's `build`: `() -> Experiment`, configured by gin.
    export_dir: if set, do not train: export the latest checkpoint of
      `root_dir` to this directory.

  Returns:
    The run's result dict (`run_experiment`), or the export's
    (`export_experiment`).
  """
  # Imported here: the CLIs import this module before TensorFlow is needed.
  from bmg_tf import experiment as experiment_lib  # pylint: disable=g-import-not-at-top
  built = experiment()
  if export_dir is not None:
    # The saved config also binds what only training builds: not checked.
    return experiment_lib.export_experiment(built, root_dir, export_dir)
  return experiment_lib.run_experiment(built, root_dir,
                                       on_setup=check_bindings)


def ineffective_bindings() -> List[str]:
  """The parsed gin bindings that no configurable call has applied.

  Gin lets a caller's explicit argument win over a binding, silently, a
  binding of a configurable that is never called does nothing, and an
  unscoped binding is shadowed in every scope that binds the parameter
  itself. Either way the binding is missing from gin's operative config
  (or was not the binding a call used) once everything is built. (The
  pipelines pass only arguments that are not configurable, so the first
  case is a parse error.)

  Returns:
    'scope/Name.param' strings, sorted; empty when every binding took
    effect.
  """
  # gin has no public accessor for the parsed and the applied bindings.
  parsed = gin.config._CONFIG  # pylint: disable=protected-access
  applied = gin.config._OPERATIVE_CONFIG  # pylint: disable=protected-access
  def applies(scope, call_scope):
    # A binding in scope 'a' also applies to calls in 'a/b', an unscoped
    # one to every call.
    return not scope or call_scope == scope or call_scope.startswith(
        scope + '/')

  used = set()  # (scope, selector, param) of the bindings that took effect.
  for (call_scope, selector), call_params in applied.items():
    for param in call_params:
      # Gin records a call under its own scope; the binding it used is the
      # innermost parsed one that applies (None: a default or an argument).
      sources = [scope for (scope, sel), params in parsed.items()
                 if sel == selector and param in params and
                 applies(scope, call_scope)]
      if sources:
        used.add((max(sources, key=len), selector, param))
  out = []
  for (scope, selector), params in parsed.items():
    if selector in ('gin.macro', 'gin.constant', 'gin.singleton'):
      continue  # Their values reach configurables through references.
    name = selector.split('.')[-1]
    for param in params:
      if (scope, selector, param) not in used:
        out.append(f'{scope + "/" if scope else ""}{name}.{param}')
  return sorted(out)


def check_bindings() -> None:
  """Raises ValueError naming every gin binding that had no effect.

  Called by `run` once the experiment and its training loop are built,
  before the run directory is touched.
  """
  ignored = ineffective_bindings()
  if ignored:
    raise ValueError(
        f'gin: these bindings have no effect: {ignored}. This experiment '
        f'never builds that object (e.g. a target/ optimizer for MG), or '
        f'scoped bindings override the unscoped one everywhere.')


def cli_check_args(prog: str, argv: Sequence[str], **required) -> None:
  """Exits with one line on stray arguments or a missing required flag.

  Args:
    prog: the command's name, for the error line.
    argv: the arguments absl left (the program name first).
    **required: flag name -> its value; an empty one is an error.
  """
  if len(argv) > 1:
    cli_fail(prog, f'unexpected arguments: {list(argv[1:])}')
  for name, value in required.items():
    if not value:
      cli_fail(prog, f'--{name} is required.')


def cli_fail(prog: str, message) -> None:
  """Exits with `<prog>: error: <message>` on one line (the CLIs' errors)."""
  message = ' '.join(str(message).split())
  sys.exit(f'{prog}: error: {message}')


def cli_run(prog: str, config_files: Sequence[str], bindings: Sequence[str],
            root_dir: str, export_dir: Optional[str] = None,
            prepare=None):
  """Parses the gin config and calls `run`, turning errors into one line.

  Args:
    prog: the command's name, for the error line.
    config_files: gin files to parse.
    bindings: gin bindings applied after them.
    root_dir: the run directory.
    export_dir: passed to `run` (export without training).
    prepare: optional `(root_dir) -> root_dir` check run after parsing,
      whose ValueError is reported like the others.

  Returns:
    What the experiment returns. A bad config, bad settings or an unusable
    run directory exit with one line; with BMG_TF_DEBUG=1 the experiment's
    errors raise instead.
  """
  try:
    gin.parse_config_files_and_bindings(list(config_files), list(bindings))
  except (ValueError, KeyError, NameError, ImportError, SyntaxError,
          TypeError) as e:
    cli_fail(prog, f'bad gin config: {e}')
  try:
    if prepare is not None:
      root_dir = prepare(root_dir)
    return run(root_dir=root_dir, export_dir=export_dir)
  except ValueError as e:  # Includes RunDirError and bad settings.
    if os.environ.get('BMG_TF_DEBUG'):
      raise
    cli_fail(prog, e)
  except RuntimeError as e:
    if not str(e).startswith('Required bindings'):
      raise
    cli_fail(prog, f'bad gin config: {e}')  # A gin.REQUIRED left unbound.
