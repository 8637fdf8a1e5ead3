r"""Entry point for every bmg_tf experiment (also the `bmg-train` script).

    bmg-train --gin_file=gin/toy/lr_bmg.gin --root_dir=runs/toy \
      --gin_bindings='toy_regression.build.num_meta_steps=100'

The gin file names the experiment (`run.experiment = @<module>.build`) and
binds the objects it builds. Re-running with the same `--root_dir` resumes from the last
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
                          'Gin bindings, e.g. "two_colors.build.seed=1".')
flags.DEFINE_string('root_dir', None,
                    'Run directory: checkpoints, summaries, config, export.')
flags.DEFINE_bool('from_scratch', False,
                  'Train from step 0 even if root_dir holds checkpoints of '
                  'which none is readable (by default that is an error).')
flags.DEFINE_bool('verbose', False,
                  "Show TensorFlow's start-up lines (hidden by default).")

FLAGS = flags.FLAGS


def _fail(message: str):
  experiment.cli_fail('bmg-train', message)


def main(argv):
  logging.set_verbosity(logging.WARNING)
  experiment.cli_check_args('bmg-train', argv, gin_file=FLAGS.gin_file,
                            root_dir=FLAGS.root_dir)
  for path in FLAGS.gin_file:
    if not os.path.isfile(path):
      _fail(f'--gin_file: no such file: {path}')
  # Imported late, so that bad flags fail fast and TensorFlow's start-up
  # happens only for real runs.
  with experiment.quiet_imports(FLAGS.verbose):
    from bmg_tf import training  # pylint: disable=g-import-not-at-top
  # The run directory is created only once the bindings are validated.
  experiment.cli_run('bmg-train', FLAGS.gin_file, FLAGS.gin_bindings,
                     FLAGS.root_dir, prepare=training.check_root_dir,
                     verbose=FLAGS.verbose, from_scratch=FLAGS.from_scratch)


def run_main():
  app.run(main)


if __name__ == '__main__':
  run_main()
