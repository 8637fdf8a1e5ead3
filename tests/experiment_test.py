"""Tests of the one run loop (`bmg_tf.experiment`) on a counting experiment.

The experiment is a tf.Module whose step adds 3 to a counter (the
"learner") and a training-only counter; its metrics are chosen per test.
"""

import io
import json
import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'

import pytest  # pylint: disable=g-import-not-at-top
import tensorflow as tf

from bmg_tf import experiment as experiment_lib
from bmg_tf import training


class Counter(tf.Module):

  def __init__(self, name):
    super().__init__(name=name)
    self.train_step_counter = tf.Variable(0, dtype=tf.int64)


def make(total=30, log_every=6, checkpoint_every=12, metric=1.0,
         final=1.0, exported=None, trained=None):
  learner = Counter('learner')
  extra = Counter('extra')  # Checkpointed, exists without training.

  def train():
    actor = Counter('actor')  # Training-only state.
    if trained is not None:
      trained.append(actor)

    def iterate():
      learner.train_step_counter.assign_add(3)
      actor.train_step_counter.assign_add(1)
      return {'loss': tf.constant(metric)}

    def window(metrics):
      row = {'value': float(learner.train_step_counter) / 2, 'gone': None}
      return {**metrics, 'value': row['value']}, row

    return experiment_lib.Loop(
        iterate=iterate, window=window,
        summary=lambda: {'steps': int(learner.train_step_counter),
                         'final': final},
        describe=lambda result: f'done {result["steps"]}',
        trackables={'actor': actor})

  def export_fn(export_dir, gin_config):
    del gin_config
    exported.append((export_dir, int(learner.train_step_counter)))

  return experiment_lib.Experiment(
      learner=learner, trackables={'extra': extra}, export_fn=export_fn,
      train=train, progress=lambda: int(learner.train_step_counter),
      total_steps=total, step_unit='steps', step_key='steps',
      rate_keys={'steps_per_sec': 1, 'double_rate': 2},
      log_every=log_every, checkpoint_every=checkpoint_every,
      export=exported is not None, info={'method': 'count'},
      final_check=lambda result: (None if result['final'] == 1.0 else
                                  'diverged: final'))


def test_runs_logs_saves_and_writes_the_result(tmp_path):
  exported = []
  result = experiment_lib.run_experiment(make(exported=exported),
                                         str(tmp_path), output=io.StringIO())
  assert result['steps'] == 30
  # Logs when the count crosses a multiple of 6 (every 2 iterations).
  assert [row['steps'] for row in result['history']] == [6, 12, 18, 24, 30]
  assert [row['value'] for row in result['history']] == [3, 6, 9, 12, 15]
  assert all(row['gone'] is None for row in result['history'])
  later = result['history'][1]
  assert later['double_rate'] == pytest.approx(2 * later['steps_per_sec'])
  with open(tmp_path / 'result.json') as f:
    saved = json.load(f)
  assert saved['method'] == 'count' and saved['steps'] == 30
  with open(tmp_path / 'history.jsonl') as f:
    rows = [json.loads(line) for line in f]
  assert [r['steps'] for r in rows] == [6, 12, 18, 24, 30]
  assert all('gone' not in r for r in rows)  # None is not recorded.
  # Written to a temp directory beside `export/`, then renamed into place.
  [(written, step)] = exported
  assert step == 30 and written.startswith(str(tmp_path / 'export.tmp-'))
  assert os.path.isdir(tmp_path / 'export') and not os.path.exists(written)
  manager_dir = tmp_path / 'checkpoints'
  assert tf.train.latest_checkpoint(str(manager_dir)).endswith('ckpt-30')
  reader = tf.train.load_checkpoint(str(manager_dir))
  key = 'actor/train_step_counter/.ATTRIBUTES/VARIABLE_VALUE'
  assert int(reader.get_tensor(key)) == 10  # Training-only state is saved.


def test_resumes_from_the_checkpoint(tmp_path):
  experiment_lib.run_experiment(make(total=12), str(tmp_path),
                                output=io.StringIO())
  trained = []
  result = experiment_lib.run_experiment(make(total=24, trained=trained),
                                         str(tmp_path), output=io.StringIO())
  assert [row['steps'] for row in result['history']] == [18, 24]
  assert int(trained[0].train_step_counter) == 8  # 4 restored + 4 new.
  with open(tmp_path / 'result.json') as f:
    assert [r['steps'] for r in json.load(f)['history']] == [6, 12, 18, 24]


def test_non_finite_metrics_stop_at_the_iteration_that_shows_them(tmp_path):
  # Checked after every iteration (3 steps each), not only at logs (6).
  with pytest.raises(ValueError, match=r"diverged at step 3: non-finite "
                     r"\['loss'\]; nothing saved or exported, the last good "
                     r"checkpoint is none"):
    experiment_lib.run_experiment(make(metric=float('nan')), str(tmp_path),
                                  output=io.StringIO())
  assert tf.train.latest_checkpoint(str(tmp_path / 'checkpoints')) is None


def test_final_check_raises_after_the_result_without_export(tmp_path):
  exported = []
  with pytest.raises(ValueError, match='diverged: final'):
    experiment_lib.run_experiment(make(final=float('inf'), exported=exported),
                                  str(tmp_path), output=io.StringIO())
  assert os.path.exists(tmp_path / 'result.json')
  assert not exported


def test_export_restores_without_training(tmp_path):
  experiment_lib.run_experiment(make(total=12), str(tmp_path / 'run'),
                                output=io.StringIO())
  exported, trained = [], []
  before = sorted(os.listdir(tmp_path / 'run'))
  out = experiment_lib.export_experiment(
      make(exported=exported, trained=trained), str(tmp_path / 'run'),
      str(tmp_path / 'model'), output=io.StringIO())
  assert not trained  # `train()` was never called.
  [(written, step)] = exported
  assert step == 12 and written.startswith(str(tmp_path / 'model.tmp-'))
  assert os.path.isdir(tmp_path / 'model') and not os.path.exists(written)
  assert out['train_step'] == 12 and out['steps'] == 12
  assert out['checkpoint'].endswith('ckpt-12')
  assert sorted(os.listdir(tmp_path / 'run')) == before


def test_export_without_a_checkpoint_is_a_run_dir_error(tmp_path):
  with pytest.raises(training.RunDirError, match='no checkpoint to export'):
    experiment_lib.export_experiment(make(exported=[]), str(tmp_path),
                                     str(tmp_path / 'model'))


def test_trackable_names_must_not_clash():
  experiment = make()
  loop = experiment.train()
  loop.trackables['extra'] = Counter('other')
  with pytest.raises(ValueError, match=r"names used twice: \['extra'\]"):
    experiment.checkpoint_objects(loop)


def test_trainer_runs_the_build(tmp_path):
  train_eval = experiment_lib.trainer(lambda **kw: make(**kw))
  result = train_eval(str(tmp_path), total=6)
  assert result['steps'] == 6


def _counting(learner_step=3, poison_at=None, total=30):
  """A counting experiment whose learner variable turns NaN at a step."""
  learner = Counter('learner')
  learner.weight = tf.Variable(1.0)

  def train():

    def iterate():
      learner.train_step_counter.assign_add(learner_step)
      if (poison_at is not None and
          int(learner.train_step_counter) >= poison_at):
        learner.weight.assign(float('nan'))
      return {}

    return experiment_lib.Loop(
        iterate=iterate, window=lambda m: ({}, {}),
        summary=lambda: {'steps': int(learner.train_step_counter)},
        describe=lambda result: 'done')

  return experiment_lib.Experiment(
      learner=learner, trackables={}, export_fn=lambda d, c: None,
      train=train, progress=lambda: int(learner.train_step_counter),
      total_steps=total, step_key='steps', log_every=6,
      checkpoint_every=12)


def test_divergence_never_reaches_a_checkpoint(tmp_path):
  experiment_lib.run_experiment(_counting(total=24), str(tmp_path),
                                output=io.StringIO())
  with pytest.raises(ValueError, match=r'diverged by step 36: non-finite '
                     r"\['learner/Variable:0'\].*ckpt-24"):
    experiment_lib.run_experiment(_counting(total=60, poison_at=30),
                                  str(tmp_path), output=io.StringIO())
  directory = str(tmp_path / 'checkpoints')
  assert tf.train.latest_checkpoint(directory).endswith('ckpt-24')
  reader = tf.train.load_checkpoint(directory)
  assert reader.get_tensor('learner/weight/.ATTRIBUTES/VARIABLE_VALUE') == 1


def test_an_iteration_without_progress_is_an_error(tmp_path):
  with pytest.raises(ValueError, match='advanced no steps'):
    experiment_lib.run_experiment(_counting(learner_step=0), str(tmp_path),
                                  output=io.StringIO())


def test_resume_drops_history_rows_logged_after_the_checkpoint(tmp_path):
  experiment_lib.run_experiment(make(total=12), str(tmp_path),
                                output=io.StringIO())
  # A killed run logged 18 and 24 after its last checkpoint (12).
  with open(tmp_path / 'history.jsonl', 'a') as f:
    f.write(json.dumps({'steps': 18, 'value': -1}) + '\n')
    f.write(json.dumps({'steps': 24, 'value': -1}) + '\n')
  experiment_lib.run_experiment(make(total=24), str(tmp_path),
                                output=io.StringIO())
  with open(tmp_path / 'history.jsonl') as f:
    rows = [json.loads(line) for line in f]
  assert [r['steps'] for r in rows] == [6, 12, 18, 24]
  assert all(r['value'] > 0 for r in rows)


def test_result_json_stays_valid_with_non_finite_figures(tmp_path):
  with pytest.raises(ValueError, match='diverged: final'):
    experiment_lib.run_experiment(make(final=float('nan')), str(tmp_path),
                                  output=io.StringIO())
  with open(tmp_path / 'result.json') as f:
    assert json.load(f)['final'] is None  # Strict JSON: no bare NaN.


def test_stale_temp_checkpoint_dirs_are_removed(tmp_path):
  stale = tmp_path / 'checkpoints' / 'ckpt-7_temp_abc' / 'part-0'
  stale.mkdir(parents=True)
  experiment_lib.run_experiment(make(total=6), str(tmp_path),
                                output=io.StringIO())
  assert not (tmp_path / 'checkpoints' / 'ckpt-7_temp_abc').exists()
