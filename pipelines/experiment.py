"""The gin root of every run: `run.experiment` names the experiment.

Gin files bind `run.experiment = @<module>.build` and import the modules
they need. `build(...)` returns a `bmg_tf.experiment.Experiment`; `run`
trains it with `run_experiment`, or, given `export_dir`, restores the latest
checkpoint and exports it with `export_experiment` (no training, no
training-only objects; `pipelines/export.py`). `pipelines/train.py` (the CLI)
calls `run`; tests call it in-process. It lives apart from the CLI so that a
gin file never imports the module that defines the absl flags.
"""

import contextlib
import logging
import os
import re
import sys
import tempfile
from typing import List, Optional, Sequence

import gin

__all__ = ['run', 'ineffective_bindings', 'check_bindings', 'cli_check_args',
           'cli_fail', 'cli_run', 'quiet_imports']


@gin.configurable(allowlist=['experiment'])
def run(root_dir: str, experiment=gin.REQUIRED,
        export_dir: Optional[str] = None, from_scratch: bool = False,
        overwrite: bool = False):
  """Trains (or exports) the experiment that gin binds.

  Args:
    root_dir: the run directory.
    experiment: a pipeline's `build`: `() -> Experiment`, configured by gin.
    export_dir: if set, do not train: export the newest readable checkpoint
      of `root_dir` to this directory.
    from_scratch: train from step 0 even if `root_dir` holds checkpoints
      none of which is readable (else an error).
    overwrite: replace a non-empty `export_dir`.

  Returns:
    The run's result dict (`run_experiment`), or the export's
    (`export_experiment`).
  """
  # Imported here: the CLIs import this module before TensorFlow is needed.
  from bmg_tf import experiment as experiment_lib  # pylint: disable=g-import-not-at-top
  built = experiment()
  if export_dir is not None:
    # The saved config also binds what only training builds: not checked.
    return experiment_lib.export_experiment(built, root_dir, export_dir,
                                            overwrite=overwrite)
  return experiment_lib.run_experiment(built, root_dir,
                                       on_setup=check_bindings,
                                       from_scratch=from_scratch)


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


@contextlib.contextmanager
def quiet_imports(verbose: bool = False):
  """Silences what importing TensorFlow and its friends print to stderr.

  TensorFlow's C++ start-up (oneDNN and absl lines) and the old `gym`
  package (a deprecation banner, imported by TF-Agents) write to file
  descriptor 2 while being imported. Inside this context that output goes
  to a temp file, dropped if the block succeeds or exits (`cli_fail`), and
  written back to stderr if it raises anything else.

  Args:
    verbose: if True, do nothing (the CLIs' `--verbose`).

  Yields:
    None.
  """
  if verbose:
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    except SystemExit:
      raise
    except BaseException:
      sys.stderr.flush()
      os.dup2(saved, 2)
      captured.seek(0)
      sys.stderr.write(captured.read().decode(errors='replace'))
      raise
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)


# What gin appends to an error raised inside a configurable: the function's
# address says nothing to a user.
_GIN_CALL = re.compile(r"\s*In call to configurable '[\w.]+' \(<[^>]*>\)")


def cli_fail(prog: str, message) -> None:
  """Exits with `<prog>: error: <message>` on one line (the CLIs' errors)."""
  message = ' '.join(_GIN_CALL.sub('', str(message)).split())
  sys.exit(f'{prog}: error: {message}')


def cli_run(prog: str, config_files: Sequence[str], bindings: Sequence[str],
            root_dir: str, export_dir: Optional[str] = None,
            prepare=None, verbose: bool = False, **run_kwargs):
  """Parses the gin config and calls `run`, turning errors into one line.

  Args:
    prog: the command's name, for the error line.
    config_files: gin files to parse.
    bindings: gin bindings applied after them.
    root_dir: the run directory.
    export_dir: passed to `run` (export without training).
    prepare: optional `(root_dir) -> root_dir` check run after parsing,
      whose ValueError is reported like the others.
    verbose: keep TensorFlow's start-up lines (`quiet_imports`).
    **run_kwargs: `run`'s `from_scratch` and `overwrite`.

  Returns:
    What the experiment returns. A bad config, bad settings, a wrong-typed
    setting, an unusable run or export directory, a full disk or another
    I/O failure exit with one line; with BMG_TF_DEBUG=1 they raise instead.
  """
  if not verbose:
    # TensorFlow's Python warnings (e.g. about the values a checkpoint that
    # failed to restore left unused) are not the user's business.
    logging.getLogger('tensorflow').setLevel(logging.ERROR)
  try:
    # Parsing imports the pipelines, and with them TensorFlow.
    with quiet_imports(verbose):
      gin.parse_config_files_and_bindings(list(config_files), list(bindings))
  except (ValueError, KeyError, NameError, ImportError, SyntaxError,
          TypeError) as e:
    cli_fail(prog, f'bad gin config: {e}')
  try:
    if prepare is not None:
      root_dir = prepare(root_dir)
    return run(root_dir=root_dir, export_dir=export_dir, **run_kwargs)
  except Exception as e:  # pylint: disable=broad-except
    if os.environ.get('BMG_TF_DEBUG'):
      raise
    message = _one_line_error(e)
    if message is None:
      raise
    cli_fail(prog, message)


def _one_line_error(e: Exception) -> Optional[str]:
  """The one-line report of an error a user can act on; None otherwise."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if isinstance(e, ValueError):  # Includes RunDirError and bad settings.
    return str(e)
  if isinstance(e, RuntimeError) and str(e).startswith('Required bindings'):
    return f'bad gin config: {e}'  # A gin.REQUIRED left unbound.
  if isinstance(e, TypeError):  # A setting of the wrong type.
    return (f'bad setting (wrong type?): {e}; set BMG_TF_DEBUG=1 for the '
            f'traceback.')
  if isinstance(e, OSError):
    where = f' ({e.filename})' if getattr(e, 'filename', None) else ''
    return f'{e.strerror or e}{where}.'
  if isinstance(e, tf.errors.OpError):  # Disk full, permission denied, ...
    first = str(e.message).strip().splitlines()[0] if e.message else ''
    return f'{type(e).__name__}: {first}'
  return None
