"""The README's engine example runs as written."""

import os
import re

os.environ['TF_USE_LEGACY_KERAS'] = '1'

import numpy as np  # pylint: disable=g-import-not-at-top

README = os.path.join(os.path.dirname(__file__), '..', 'README.md')


def _engine_example():
  text = open(README, encoding='utf-8').read()
  section = text.split('## The engine on your own loss', 1)[1]
  return re.search(r'```python\n(.*?)```', section, re.S).group(1)


def test_engine_example_is_short_and_runs():
  code = _engine_example()
  assert len(code.strip().splitlines()) <= 20
  namespace = {}
  exec(compile(code, 'README.md', 'exec'), namespace)  # pylint: disable=exec-used
  metrics = namespace['metrics']
  assert np.isfinite(float(metrics['meta_loss']))
  assert float(metrics['meta_grad_norm']) > 0.0
  learner = namespace['learner']
  assert int(learner.train_step_counter) == 1
