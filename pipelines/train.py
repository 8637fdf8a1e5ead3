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

from absl import app
from absl import flags
from absl import logging

from pipelines import experiment

__all__ = ['main', 'run_main']

flags.DEFINE_multi_string('gin_file', [], 'Gin config files to load.')
flags.DEFINE_multi_string('gin_bindings', [],
                          'Gin bindings, e.g. "train_eval.seed=1".')
flags.DEFINE_string('root_dir', None,
                    'Run directory: checkpoints, summaries, config, export.')

FLAGS = flags.FLAGS


def _fail(message: str):
  experiment.cli_fail('bmg-train', message)


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
  experiment.cli_run('bmg-train', FLAGS.gin_file, FLAGS.gin_bindings,
                     FLAGS.root_dir, prepare=training.prepare_root_dir)


def run_main():
  app.run(main)


if __name__ == '__main__':
  run_main()
