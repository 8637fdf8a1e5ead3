"""The gin root of every run: `run.experiment` names the experiment.

Gin files bind `run.experiment = @<module>.train_eval` and import the
modules they need. `pipelines/train.py` (the CLI) calls `run`; tests call it
in-process. It lives apart from the CLI so that a gin file never imports the
module that defines the absl flags.
"""

import gin

__all__ = ['run']


@gin.configurable
def run(root_dir: str, experiment=gin.REQUIRED):
  """Runs `experiment(root_dir=root_dir)`; `experiment` is bound by gin.

  Args:
    root_dir: the run directory.
    experiment: a `train_eval`-style callable taking `root_dir`.

  Returns:
    Whatever the experiment returns (a dict of final figures).
  """
  return experiment(root_dir=root_dir)
