"""The statistics of the study scripts (benchmarks/study.py), on cases whose
answers are known in closed form."""

import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..',
                                'benchmarks'))
import study  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_flip_response_sees_a_jump_after_each_flip_and_not_between():
  steps = np.arange(1_000, 400_001, 1_000)
  base = np.full(len(steps), 0.1)
  # Seed 0 doubles for 10k steps after each flip; seed 1 never moves.
  jump = base.copy()
  for flip in (100_000, 200_000, 300_000):
    jump[(steps > flip) & (steps <= flip + 10_000)] = 0.2
  got = study.flip_response(steps, np.stack([jump, base]), 100_000)
  # Flips at 100k, 200k, 300k (400k has no logged after-window): ratios 2,
  # 2, 2 (seed 0) and 1, 1, 1 (seed 1).
  assert got['flip_ratio'] == pytest.approx(1.5)
  assert got['control_ratio'] == pytest.approx(1.0)
  assert got['flips_up'] == pytest.approx(0.5)


def test_flip_response_without_a_complete_flip():
  steps = np.arange(1_000, 50_001, 1_000)
  got = study.flip_response(steps, np.ones((2, len(steps))), 100_000)
  assert got == {'flip_ratio': None, 'control_ratio': None, 'flips_up': None}


def test_sample_stats_closed_form():
  samples = np.array([-3.0, -1.0, 1.0, -1.0])  # mean -1, sample std 1.633
  ref = np.array([-6.0, -2.0, 2.0, -2.0])      # 2 x samples: corr 1
  got = study.sample_stats(samples, ref)
  std = math.sqrt(8.0 / 3.0)
  assert got['mean'] == pytest.approx(-1.0)
  assert got['std'] == pytest.approx(std)
  assert got['se'] == pytest.approx(std / 2.0)
  assert got['snr'] == pytest.approx(1.0 / std)
  assert got['drift'] == pytest.approx(-1.0 / math.sqrt(1.0 + std**2))
  assert got['push_up_fraction'] == pytest.approx(0.75)
  assert got['corr_with_reference'] == pytest.approx(1.0)
  assert got['sign_agrees_with_reference'] is True
  assert got['finite_fraction'] == 1.0


def test_sample_stats_leaves_out_diverged_samples():
  got = study.sample_stats([1.0, float('nan'), 3.0, float('inf')])
  assert got['finite_fraction'] == pytest.approx(0.5)
  assert got['mean'] == pytest.approx(2.0)
  assert math.isnan(study.sample_stats([float('nan'), 1.0])['mean'])


def test_split_by_phase_places_windows_by_midpoint_and_drops_flip_windows():
  # Windows end 380 steps past each 10k mark, as 480-step calls make them:
  # (90_380, 100_380] straddles the flip at 100k.
  ends = [10_000 * k + 380 for k in range(1, 31)]
  rows = [{'env_steps': e, 'at': e} for e in ends]
  phases = study.split_by_phase(rows, 100_000, windows=True)
  got = {study.phase_name(*p): [r['at'] for r in sel] for p, sel in phases}
  # The first period is left out; the windows ending at 100_380, 200_380 and
  # 300_380 hold a flip: in no phase.
  assert got['0k-20k'] == [110_380, 120_380, 210_380, 220_380]
  assert got['20k-50k'] == [130_380, 140_380, 150_380, 230_380, 240_380,
                            250_380]
  assert got['50k-100k'] == [160_380, 170_380, 180_380, 190_380, 260_380,
                             270_380, 280_380, 290_380]
  # Point values (epsilon at the row's step) are placed by their step: the
  # row at 100_380 is 380 steps after the flip.
  points = study.split_by_phase(rows, 100_000)
  assert [r['at'] for r in points[0][1]][:2] == [100_380, 110_380]


def test_phase_means_keeps_each_run_apart():
  # 10k windows over three flip periods; run i earns (midpoint's steps since
  # the flip) / 100k + i. A third run never leaves the first period.
  def run(i, ends):
    return {'history': [
        {'env_steps': e, 'reward_per_step': ((e - 5_000) % 100_000) / 1e5 + i}
        for e in ends]}

  ends = range(10_000, 300_001, 10_000)
  runs = [run(0, ends), run(1, ends), run(2, range(10_000, 90_001, 10_000))]
  runs[1]['history'][12].pop('reward_per_step')  # The window 120k-130k.
  got = study.phase_means(runs, 100_000, 'reward_per_step')
  assert got.shape == (3, 3)
  # 0k-20k: midpoints 5k, 15k; 20k-50k: 25k, 35k, 45k; 50k-100k: 55k..95k.
  np.testing.assert_allclose(got[0], [0.1, 0.35, 0.75])
  np.testing.assert_allclose(got[1], [1.1, (1.25 + 1.35 * 2 + 1.45 * 2) / 5,
                                      1.75])
  assert np.isnan(got[2]).all()


def test_period_means_weigh_windows_and_drop_an_unfinished_period():
  # Window midpoints 30k, 85k (straddles the flip at 100k), 120k, 165k and
  # 225k (period 2, which the rows end inside of).
  rows = [{'env_steps': e, 'reward_per_step': v}
          for e, v in ((60_000, 1.0), (110_000, 2.0), (130_000, 3.0),
                       (200_000, 4.0), (250_000, 5.0))]
  starts, values = study.period_means(rows, 100_000, 'reward_per_step')
  np.testing.assert_array_equal(starts, [0, 100_000])
  np.testing.assert_allclose(values, [(1.0 * 60 + 2.0 * 50) / 110,
                                      (3.0 * 20 + 4.0 * 70) / 90])
  empty = study.period_means([], 100_000, 'reward_per_step')
  assert [len(a) for a in empty] == [0, 0]


def _fake_run(root, history_steps, checkpoints=(), result_steps=None):
  """A run directory as the pipeline leaves it (files, not real tensors)."""
  os.makedirs(root / 'checkpoints', exist_ok=True)
  os.makedirs(root / 'summaries', exist_ok=True)
  (root / 'summaries' / 'events.out').write_text('x')
  (root / 'stdout.log').write_text('log')
  (root / 'operative_config.gin').write_text('a = 1\n')
  (root / 'history.jsonl').write_text(''.join(
      f'{{"env_steps": {s}}}\n' for s in history_steps))
  for n in checkpoints:
    (root / 'checkpoints' / f'ckpt-{n}.index').write_text(f'index {n}')
    (root / 'checkpoints' / f'ckpt-{n}.data-00000-of-00001').write_text(
        f'data {n}')
  if checkpoints:
    (root / 'checkpoints' / 'checkpoint').write_text(
        f'model_checkpoint_path: "ckpt-{checkpoints[-1]}"\n' + ''.join(
            f'all_model_checkpoint_paths: "ckpt-{n}"\n' for n in checkpoints))
  if result_steps is not None:
    (root / 'result.json').write_text(f'{{"env_steps": {result_steps}}}')


def test_snapshot_keeps_only_what_a_resume_needs(tmp_path):
  out = tmp_path / 'out'
  _fake_run(out / 'runs' / 'a_s0', [100, 200, 250], (100, 200))
  _fake_run(out / 'runs' / 'b_s0', [100, 200, 300], (200, 300), 300)
  # A stale checkpoint of `b` from an earlier snapshot must go.
  _fake_run(tmp_path / 'state' / 'runs' / 'b_s0', [100], (100,))
  got = study.snapshot(out, tmp_path / 'state', steps=300)
  assert got == {'a_s0': (200, 'checkpoint'), 'b_s0': (300, 'finished')}
  a = tmp_path / 'state' / 'runs' / 'a_s0'
  assert sorted(os.listdir(a)) == ['checkpoints', 'history.jsonl',
                                   'operative_config.gin']
  # The newest checkpoint only, and a state file naming only it.
  assert sorted(os.listdir(a / 'checkpoints')) == [
      'checkpoint', 'ckpt-200.data-00000-of-00001', 'ckpt-200.index']
  assert (a / 'checkpoints' / 'ckpt-200.index').read_text() == 'index 200'
  assert 'ckpt-100' not in (a / 'checkpoints' / 'checkpoint').read_text()
  assert (a / 'history.jsonl').read_text().count('\n') == 3
  b = tmp_path / 'state' / 'runs' / 'b_s0'
  assert sorted(os.listdir(b)) == ['history.jsonl', 'operative_config.gin',
                                   'result.json']


def test_restore_never_goes_back(tmp_path):
  state = tmp_path / 'state'
  _fake_run(state / 'runs' / 'a_s0', [100, 200], (200,))
  _fake_run(state / 'runs' / 'b_s0', [100], (100,))
  out = tmp_path / 'out'
  _fake_run(out / 'runs' / 'a_s0', [100], (100,))          # Behind: replaced.
  _fake_run(out / 'runs' / 'b_s0', [100, 200], (100, 200))  # Ahead: kept.
  assert study.restore(state, out) == {'a_s0': 200}
  a = out / 'runs' / 'a_s0' / 'checkpoints'
  assert sorted(os.listdir(a)) == [
      'checkpoint', 'ckpt-200.data-00000-of-00001', 'ckpt-200.index']
  assert sorted(os.listdir(out / 'runs' / 'b_s0' / 'checkpoints')) == [
      'checkpoint', 'ckpt-100.data-00000-of-00001', 'ckpt-100.index',
      'ckpt-200.data-00000-of-00001', 'ckpt-200.index']
  assert study.restore(state, out) == {}
  with pytest.raises(study.StudyStateError, match='no snapshot'):
    study.restore(tmp_path / 'nothing', out)


def test_snapshot_and_restore_refuse_a_run_in_progress(tmp_path):
  import fcntl  # pylint: disable=g-import-not-at-top
  out = tmp_path / 'out'
  _fake_run(out / 'runs' / 'a_s0', [100], (100,))
  _fake_run(tmp_path / 'state' / 'runs' / 'a_s0', [100, 200], (200,))
  with open(out / 'runs' / 'a_s0' / '.lock', 'w') as held:
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # As `RunLock` does.
    with pytest.raises(study.StudyStateError, match='in use'):
      study.snapshot(out, tmp_path / 'other', steps=300)
    with pytest.raises(study.StudyStateError, match='in use'):
      study.restore(tmp_path / 'state', out)
  # Released (the process ended): both work.
  assert study.restore(tmp_path / 'state', out) == {'a_s0': 200}
