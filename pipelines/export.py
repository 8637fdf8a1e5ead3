r"""Exports a run's latest checkpoint as a SavedModel (the `bmg-export` script).

    bmg-export --root_dir=runs/two_colors_ac_bmg --export_dir=/tmp/policy

Reads `root_dir/operative_config.gin` (written by training), rebuilds the
experiment it names, restores the latest checkpoint of `root_dir` and writes
the SavedModel to `--export_dir`, without training and without writing to
the run directory. `--gin_bindings` override the saved config (for example
`two_colors.train_eval.jit_compile = False`: the step is not run anyway).
The signatures are those of `bmg_tf/export.py`. Errors print one line; set
BMG_TF_DEBUG=1 for the traceback.

Runs trained before the one-runner refactor saved their config under the
old entry point names (`two_colors.train_eval.*`) and a few old parameter
names (`learning_rate` of the Q and STACX pipelines, `clip_global_norm` of
STACX, `init_learning_rate` of the toy); they are read under the new ones
(`two_colors.build.*`, `inner_learning_rate`, `inner_clip_global_norm`),
which take the same settings.
"""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import re
import tempfile

from absl import app
from absl import flags
from absl import logging

from pipelines import experiment

__all__ = ['main', 'run_main']

flags.DEFINE_string('root_dir', None, 'Run directory to export from.')
flags.DEFINE_string('export_dir', None, 'Where to write the SavedModel.')
flags.DEFINE_multi_string('gin_bindings', [],
                          'Gin bindings overriding the saved config.')

FLAGS = flags.FLAGS

# The pipelines whose entry point `train_eval` became `build`; a saved
# config names it in full (`@two_colors.train_eval`) or, for a parameter,
# by its shortest unique name (`train_eval.seed = 0`).
_RENAMED = re.compile(
    r'\b(two_colors_q|two_colors|stacx|toy_regression)\.train_eval\b')
_RENAMED_SHORT = re.compile(r'^train_eval\.', re.MULTILINE)
# Parameters renamed with it, so that one concept has one name everywhere.
_RENAMED_PARAMS = {
    'two_colors_q': {'learning_rate': 'inner_learning_rate'},
    'stacx': {'learning_rate': 'inner_learning_rate',
              'clip_global_norm': 'inner_clip_global_norm'},
    'toy_regression': {'init_learning_rate': 'inner_learning_rate'},
}
_EXPERIMENT = re.compile(r'^run\.experiment\s*=\s*@(\w+)\.train_eval\b',
                         re.MULTILINE)


def _current_names(config_path: str, scratch: str) -> str:
  """`config_path`, or a copy in `scratch` with the old names renamed."""
  with open(config_path) as f:
    text = f.read()
  pipeline = _EXPERIMENT.search(text)
  renamed = _RENAMED_SHORT.sub('build.', _RENAMED.sub(r'\1.build', text))
  if pipeline is not None:
    for old, new in _RENAMED_PARAMS.get(pipeline.group(1), {}).items():
      renamed = re.sub(rf'^((?:\w+\.)?build)\.{old}\b', rf'\1.{new}',
                       renamed, flags=re.MULTILINE)
  if renamed == text:
    return config_path
  path = os.path.join(scratch, 'operative_config.gin')
  with open(path, 'w') as f:
    f.write(renamed)
  return path


def _fail(message: str):
  experiment.cli_fail('bmg-export', message)


def main(argv):
  logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    _fail(f'unexpected arguments: {argv[1:]}')
  if not FLAGS.root_dir:
    _fail('--root_dir is required.')
  if not FLAGS.export_dir:
    _fail('--export_dir is required.')
  root_dir = os.path.abspath(os.path.expanduser(FLAGS.root_dir))
  config = os.path.join(root_dir, 'operative_config.gin')
  if not os.path.isdir(root_dir):
    _fail(f'--root_dir: no such directory: {root_dir}')
  if not os.path.isfile(config):
    _fail(f'--root_dir: {config} not found; is {root_dir} a bmg-train run '
          'directory?')
  export_dir = os.path.abspath(os.path.expanduser(FLAGS.export_dir))
  if export_dir == root_dir:
    _fail('--export_dir: must differ from --root_dir.')
  with tempfile.TemporaryDirectory() as scratch:
    experiment.cli_run('bmg-export', [_current_names(config, scratch)],
                       FLAGS.gin_bindings, root_dir, export_dir=export_dir)


def run_main():
  app.run(main)


if __name__ == '__main__':
  run_main()
