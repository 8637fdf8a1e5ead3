r"""Entry point for every bmg_tf experiment (also the `bmg-train` script).

    bmg-train --gin_file=gin/toy/lr_bmg.gin --root_dir=runs/toy \
      --gin_bindings='toy_regression.train_eval.num_meta_steps=100'

The gin file names the experiment (`run.experiment = @...train_eval`) and
its settings. Re-running with the same `--root_dir` resumes from the last
checkpoint there. Configuration errors print one line; set BMG_TF_DEBUG=1 to
get the traceback instead.
"""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import sys  # pylint: disable=g-import-not-at-top,g-bad-import-order

from absl import app
from absl import flags
from absl import logging
import gin

from pipelines import experiment

__all__ = ['main', 'run_main']

flags.DEFINE_multi_string('gin_file', [], 'Gin config files to load.')
flags.DEFINE_multi_string('gin_bindings', [],
                          'Gin bindings, e.g. "train_eval.seed=1".')
flags.DEFINE_string('root_dir', None,
                    'Run directory: checkpoints, summaries, config, export.')

FLAGS = flags.FLAGS


def _fail(message: str):
  message = ' '.join(str(message).split())  # One line.
  sys.exit(f'bmg-train: error: {message}')


def main(argv):
  logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    _fail(f'unexpected arguments: {argv[1:]}')
  if not FLAGS.gin_file:
    _fail('--gin_file is required.')
  if not FLAGS.root_dir:
    _fail('--root_dir is required.')
  for path in FLAGS.gin_file:
    if not os.path.isfile(path):
      _fail(f'--gin_file: no such file: {path}')
  # Imported late, so that bad flags fail fast and TensorFlow's start-up
  # happens only for real runs.
  from bmg_tf import training  # pylint: disable=g-import-not-at-top
  try:
    gin.parse_config_files_and_bindings(FLAGS.gin_file, FLAGS.gin_bindings)
  except (ValueError, KeyError, NameError, ImportError, SyntaxError,
          TypeError) as e:
    _fail(f'bad gin config: {e}')
  try:
    training.prepare_root_dir(FLAGS.root_dir)
  except training.RunDirError as e:
    _fail(e)
  try:
    experiment.run(root_dir=FLAGS.root_dir)
  except ValueError as e:  # Includes RunDirError and bad settings.
    if os.environ.get('BMG_TF_DEBUG'):
      raise
    _fail(e)


def run_main():
  app.run(main)


if __name__ == '__main__':
  run_main()
