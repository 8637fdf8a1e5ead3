"""One test per defect of the reliability issue (16), on the CLIs.

Each test states the defect it guards against; on the code before the fix
each of them failed (the defect numbers are the issue's). Runs are the toy
pipeline's (seconds each) unless the defect needs an environment.
"""

import hashlib
import json
import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'

import signal  # pylint: disable=g-import-not-at-top
import subprocess
import sys
import time

import gin
import numpy as np
import pytest
import tensorflow as tf

from bmg_tf import training
from pipelines import experiment

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tools'))
import pipeline_runs  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
TOY = os.path.join(REPO, 'gin', 'toy', 'lr_bmg.gin')
ENV = {**os.environ, 'TF_USE_LEGACY_KERAS': '1'}
ENV.pop('TF_CPP_MIN_LOG_LEVEL', None)  # The CLI's own default is tested.


def _train(root, steps, *bindings, flags=(), gin_file=TOY):
  args = [sys.executable, '-m', 'pipelines.train', f'--gin_file={gin_file}',
          f'--root_dir={root}', *flags,
          f'--gin_bindings=toy_regression.build.num_meta_steps = {steps}',
          '--gin_bindings=toy_regression.build.log_every = 5',
          '--gin_bindings=toy_regression.build.checkpoint_every = 5',
          *[f'--gin_bindings={b}' for b in bindings]]
  return subprocess.run(args, cwd=REPO, env=ENV, capture_output=True,
                        text=True, timeout=300)


def _export(root, export_dir, *flags):
  return subprocess.run(
      [sys.executable, '-m', 'pipelines.export', f'--root_dir={root}',
       f'--export_dir={export_dir}', *flags], cwd=REPO, env=ENV,
      capture_output=True, text=True, timeout=300)


def _ok(proc):
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def _error_line(proc, prog='bmg-train'):
  """The single error line of a failed CLI call (and nothing else)."""
  assert proc.returncode != 0
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert len(lines) == 1, proc.stderr[-3000:]
  assert lines[0].startswith(f'{prog}: error: ')
  assert 'In call to configurable' not in lines[0] and ' at 0x' not in lines[0]
  return lines[0]


def _files(directory):
  """{relative path: sha1} of every file below `directory`."""
  out = {}
  for base, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(base, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, directory)] = hashlib.sha1(
            f.read()).hexdigest()
  return out


def _history_steps(root):
  with open(os.path.join(root, 'history.jsonl')) as f:
    return [json.loads(line)['meta_steps'] for line in f]


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
  """A finished 20-step toy run (checkpoints at 10, 15, 20; export)."""
  root = tmp_path_factory.mktemp('finished') / 'run'
  _ok(_train(root, 20))
  return root


def _copy(src, dst):
  subprocess.run(['cp', '-r', str(src), str(dst)], check=True)
  return dst


def test_1_divergence_keeps_every_good_file(finished, tmp_path):
  # Defect 1: a diverging resume rotated out every good checkpoint,
  # replaced the export with a NaN model and wrote bare NaN into
  # result.json, with exit code 0.
  root = _copy(finished, tmp_path / 'run')
  before = _files(root)
  proc = _train(root, 40, 'target/create_optimizer.learning_rate = 1e30')
  line = _error_line(proc)
  assert 'non-finite' in line and 'ckpt-20' in line, line
  after = _files(root)
  for name in ('checkpoints', 'export', 'result.json'):
    assert {k: v for k, v in after.items() if k.startswith(name)} == {
        k: v for k, v in before.items() if k.startswith(name)}, name
  with open(root / 'result.json') as f:
    json.load(f)  # Still valid JSON.


def test_2_missing_index_restores_from_the_checkpoint_files(finished,
                                                            tmp_path):
  # Defect 2: without `checkpoints/checkpoint` the run silently restarted
  # from step 0 and its saves overwrote the existing checkpoints.
  root = _copy(finished, tmp_path / 'run')
  os.remove(root / 'checkpoints' / 'checkpoint')
  proc = _ok(_train(root, 30))
  assert 'ckpt-20 (no checkpoint index file)' in proc.stdout, proc.stdout
  assert _history_steps(root) == [5, 10, 15, 20, 25, 30]


def test_2_unreadable_checkpoints_are_not_silently_replaced(finished,
                                                            tmp_path):
  # Defect 2, second half: no start from step 0 over existing checkpoints
  # unless asked for (--from_scratch).
  root = _copy(finished, tmp_path / 'run')
  for name in os.listdir(root / 'checkpoints'):
    if '.data-' in name:
      with open(root / 'checkpoints' / name, 'r+b') as f:
        f.write(b'\0' * 64)
  line = _error_line(_train(root, 30))
  assert 'none of the 3 checkpoints' in line and '--from_scratch' in line
  proc = _ok(_train(root, 30, flags=['--from_scratch']))
  assert 'Restored' not in proc.stdout
  assert _history_steps(root)[-1] == 30


def test_3_a_second_process_is_refused_by_the_lock(finished, tmp_path):
  # Defect 3: two processes in one run directory both ran, writing the
  # same checkpoints and every history row twice.
  root = _copy(finished, tmp_path / 'run')
  before = _files(root)
  with training.RunLock(str(root)):
    line = _error_line(_train(root, 30))
  assert f'in use by process {os.getpid()}' in line, line
  assert {k: v for k, v in _files(root).items() if k != '.lock'} == {
      k: v for k, v in before.items() if k != '.lock'}
  _ok(_train(root, 30))  # Released: the run proceeds.


def test_3_the_lock_dies_with_its_process(tmp_path):
  root = tmp_path / 'run'
  root.mkdir()
  holder = subprocess.Popen(
      [sys.executable, '-c',
       'import sys, time\nfrom bmg_tf import training\n'
       f'training.RunLock({str(root)!r}).acquire()\n'
       'print("held", flush=True)\ntime.sleep(120)\n'],
      cwd=REPO, env=ENV, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'held'
    with pytest.raises(training.RunDirError, match=str(holder.pid)):
      training.RunLock(str(root)).acquire()
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  training.RunLock(str(root)).acquire().release()


def test_4_zero_batches_per_step_is_refused_before_anything_is_written(
    tmp_path):
  # Defect 4: MG with k_steps=0 (and 'fixed' with 0 updates) looped for
  # ever at 100% CPU. Now the config is refused, and no run directory made.
  for method in ('mg', 'fixed'):
    root = tmp_path / method
    line = _error_line(_train(root, 20, f"BootstrapConfig.method = '{method}'",
                              'BootstrapConfig.k_steps = 0'))
    assert f"k_steps: method='{method}' needs k_steps >= 1" in line, line
    assert not root.exists()


def test_5_a_corrupt_newest_checkpoint_falls_back_to_the_older_one(
    finished, tmp_path):
  # Defect 5: a corrupt latest checkpoint gave an 80-line DataLossError
  # traceback, with the intact older checkpoint beside it unused.
  root = _copy(finished, tmp_path / 'run')
  data = [n for n in os.listdir(root / 'checkpoints')
          if n.startswith('ckpt-20.data')]
  with open(root / 'checkpoints' / data[0], 'r+b') as f:
    f.seek(100)
    f.write(b'\xff' * 64)
  proc = _ok(_train(root, 25))
  assert 'Skipped unreadable checkpoint ckpt-20' in proc.stdout, proc.stdout
  assert 'Restored' in proc.stdout and 'ckpt-15' in proc.stdout
  # The resumed run ends where an uninterrupted 25-step run does.
  whole = tmp_path / 'whole'
  _ok(_train(whole, 25))
  got, want = (pipeline_runs.checkpoint_values(run) for run in (root, whole))
  assert sorted(got) == sorted(want)
  for name in want:
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_6_export_refuses_a_non_empty_directory_unless_overwrite(
    finished, tmp_path):
  # Defect 6: export silently wrote over an existing SavedModel, leaving a
  # mix with the user's own files.
  out = tmp_path / 'out'
  out.mkdir()
  (out / 'notes.txt').write_text('mine')
  line = _error_line(_export(finished, out), 'bmg-export')
  assert 'not empty' in line and '--overwrite' in line
  assert (out / 'notes.txt').read_text() == 'mine'
  _ok(_export(finished, out, '--overwrite'))
  assert sorted(os.listdir(out)) == ['assets', 'fingerprint.pb',
                                     'saved_model.pb', 'variables']
  # No temp directory is left beside it.
  assert sorted(os.listdir(tmp_path)) == ['out']


def test_7_one_line_errors(finished, tmp_path):
  # Defect 7: tracebacks for an export dir that is a file or unwritable, a
  # wrong-typed setting, and a full disk.
  a_file = tmp_path / 'file'
  a_file.write_text('x')
  assert 'is a file' in _error_line(_export(finished, a_file), 'bmg-export')
  line = _error_line(_export(finished, '/proc/bmg_tf_export'), 'bmg-export')
  assert '/proc' in line, line
  line = _error_line(_train(tmp_path / 'typed', 20,
                            "toy_regression.build.num_meta_steps = 'abc'"))
  assert 'num_meta_steps' in line, line
  assert not (tmp_path / 'typed').exists()


def test_7_a_full_disk_is_one_line(tmp_path, monkeypatch):
  def full(*args, **kwargs):
    raise tf.errors.ResourceExhaustedError(
        None, None, 'ckpt-5_temp/part-00000; No space left on device')

  monkeypatch.setattr(tf.train.CheckpointManager, 'save', full)
  with pytest.raises(SystemExit) as exit_info:
    experiment.cli_run('bmg-train', [TOY], [
        'toy_regression.build.num_meta_steps = 10',
        'toy_regression.build.checkpoint_every = 5'], str(tmp_path / 'run'))
  message = str(exit_info.value.code)
  assert message == ('bmg-train: error: ResourceExhaustedError: '
                     'ckpt-5_temp/part-00000; No space left on device')
  gin.clear_config()


def test_8_no_leftovers_after_a_kill(finished, tmp_path):
  # Defect 8: `ckpt-N_temp` directories of a kill during a save stayed for
  # ever, and resumed runs duplicated history rows.
  root = _copy(finished, tmp_path / 'run')
  stale = root / 'checkpoints' / 'ckpt-25_temp_1234'
  stale.mkdir()
  (stale / 'part-00000-of-00001').write_text('half')
  with open(root / 'history.jsonl', 'a') as f:  # A row after the last save.
    f.write(json.dumps({'meta_steps': 25, 'learning_rate': 0.0,
                        'meta_loss': 0.0}) + '\n')
  _ok(_train(root, 30))
  assert not stale.exists()
  assert _history_steps(root) == [5, 10, 15, 20, 25, 30]
  with open(root / 'result.json') as f:
    assert [r['meta_steps'] for r in json.load(f)['history']] == [
        5, 10, 15, 20, 25, 30]


def test_9_savedmodel_inputs_get_what_the_readme_says(finished):
  # Defect 9: NaN and inf inputs gave plausible outputs, and the README's
  # error claims did not match. The rows of the README's table, in order.
  model = tf.saved_model.load(str(finished / 'export'))
  predict = model.signatures['predict']
  good = np.zeros([2, 8], np.float32)
  assert predict(x=good)['y'].dtype == tf.float32
  # NumPy of another dtype: converted.
  np.testing.assert_array_equal(predict(x=good.astype(np.float64))['y'],
                                predict(x=good)['y'])
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='expected to be a float tensor but is a double'):
    predict(x=tf.constant(good, tf.float64))
  for bad in (np.zeros([2, 9], np.float32), np.zeros([8], np.float32)):
    with pytest.raises(TypeError, match='Can not cast TensorSpec'):
      predict(x=bad)
  with pytest.raises(TypeError, match="missing a required argument: 'x'"):
    predict(inputs=good)
  for value in (np.nan, np.inf, -np.inf):
    bad = good.copy()
    bad[1, 3] = value
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r'x: must be finite \(no NaN or inf\)'):
      predict(x=bad)


def test_10_quiet_start_and_no_run_dir_on_a_bad_binding(tmp_path):
  # Defect 10: every run printed oneDNN/absl lines and a Gym banner; errors
  # ended with gin's function addresses; a run directory was created (and
  # left empty) before the bindings were validated.
  proc = _ok(_train(tmp_path / 'quiet', 5))
  assert proc.stderr == '', proc.stderr
  proc = _train(tmp_path / 'loud', 5, flags=['--verbose'])
  assert 'oneDNN' in proc.stderr or 'absl' in proc.stderr
  root = tmp_path / 'bad'
  # MG builds no target step: the binding has no effect.
  line = _error_line(_train(
      root, 5, 'target/create_optimizer.learning_rate = 0.5',
      gin_file=os.path.join(REPO, 'gin', 'toy', 'lr_mg.gin')))
  assert 'no effect' in line and 'target/create_optimizer.learning_rate' in line
  assert not root.exists()
