"""The gin root of every run: `run.experiment` names the experiment.

Gin files bind `run.experiment = @<module>.train_eval` and import the
modules they need. `pipelines/train.py` (the CLI) calls `run`; tests call it
in-process. It lives apart from the CLI so that a gin file never imports the
module that defines the absl flags.

Every experiment's `train_eval(root_dir, ..., export_only=None)` also
exports without training: given `export_only=DIR`, it restores the latest
checkpoint of `root_dir` and writes its SavedModel to DIR
(`pipelines/export.py`).
"""

from typing import Optional

import gin

__all__ = ['run']


@gin.configurable(denylist=['export_dir'])
def run(root_dir: str, experiment=gin.REQUIRED,
        export_dir: Optional[str] = None):
  """Runs `experiment(root_dir=root_dir)`; `experiment` is bound by gin.

  Args:
    root_dir: the run directory.
    experiment: a `train_eval`-style callable taking `root_dir` and
      `export_only`.
    export_dir: if set, do not train: export the latest checkpoint of
      `root_dir` to this directory (`experiment(..., export_only=...)`).

  Returns:
    Whatever the experiment returns (a dict of final figures).
  """
  if export_dir is not None:
    return experiment(root_dir=root_dir, export_only=export_dir)
  return experiment(root_dir=root_dir)
