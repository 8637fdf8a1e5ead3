r"""Exports a run's latest checkpoint as a SavedModel (the `bmg-export` script).

    bmg-export --root_dir=runs/two_colors_ac_bmg --export_dir=/tmp/policy

Reads `root_dir/operative_config.gin` (written by training), rebuilds the
experiment it names, restores the latest checkpoint of `root_dir` and writes
the SavedModel to `--export_dir`, without training and without writing to
the run directory. `--gin_bindings` override the saved config (for example
`MetaLearner.jit_compile = False`: the step is not run anyway).
The signatures are those of `bmg_tf/export.py`. Errors print one line; set
BMG_TF_DEBUG=1 for the traceback.

Runs trained before gin bound objects saved their config in the old flat
form (`two_colors.train_eval.k_steps = 7`, `two_colors.build.k_steps = 7`);
`pipelines/legacy.py` reads it in the current form
(`BootstrapConfig.k_steps = 7`), which takes the same settings.
"""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import tempfile

from absl import app
from absl import flags
from absl import logging

from pipelines import experiment
from pipelines import legacy

__all__ = ['main', 'run_main']

flags.DEFINE_string('root_dir', None, 'Run directory to export from.')
flags.DEFINE_string('export_dir', None, 'Where to write the SavedModel.')
flags.DEFINE_multi_string('gin_bindings', [],
                          'Gin bindings overriding the saved config.')
flags.DEFINE_bool('overwrite', False,
                  'Replace a non-empty --export_dir (by default an error).')
flags.DEFINE_bool('verbose', False,
                  "Show TensorFlow's start-up lines (hidden by default).")

FLAGS = flags.FLAGS

def _current_names(config_path: str, scratch: str) -> str:
  """`config_path`, or a copy in `scratch` in the current binding form."""
  with open(config_path) as f:
    text = f.read()
  translated = legacy.translate(text)
  if translated == text:
    return config_path
  path = os.path.join(scratch, 'operative_config.gin')
  with open(path, 'w') as f:
    f.write(translated)
  return path


def _fail(message: str):
  experiment.cli_fail('bmg-export', message)


def main(argv):
  logging.set_verbosity(logging.WARNING)
  experiment.cli_check_args('bmg-export', argv, root_dir=FLAGS.root_dir,
                            export_dir=FLAGS.export_dir)
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
    with experiment.quiet_imports(FLAGS.verbose):  # Reading imports TF.
      current = _current_names(config, scratch)
    experiment.cli_run('bmg-export', [current], FLAGS.gin_bindings, root_dir,
                       export_dir=export_dir, verbose=FLAGS.verbose,
                       overwrite=FLAGS.overwrite)


def run_main():
  app.run(main)


if __name__ == '__main__':
  run_main()
