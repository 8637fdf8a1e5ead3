"""Every variant of benchmarks/two_colors_q.py builds, and all its bindings
take effect.

A study runs for hours; a variant whose binding is a typo, or binds an
object its gin file never builds (`two_colors_q.build.contextual = False`
on a file that binds the context network), fails only when it is reached.
Building the experiment is enough to apply every binding, so each variant
is built once here, on a tiny network, without training.
"""

import os
import sys

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

import gin  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..',
                                'benchmarks'))
import two_colors_q as study  # pylint: disable=g-import-not-at-top,wrong-import-position
from pipelines import experiment  # pylint: disable=g-import-not-at-top
from pipelines import two_colors_q  # pylint: disable=g-import-not-at-top

# What `_run_one` adds to every run, and a small learner (not a binding the
# variants set: theirs must still win where they set one).
COMMON = ['two_colors_q.build.num_env_steps = 1000',
          'two_colors_q.build.seed = 0',
          'two_colors_q.build.export = False',
          'TFTwoColors.flip_period = 100000',
          'QLearner.hidden_sizes = (8,)',
          'MetaLearner.jit_compile = False']


@pytest.mark.parametrize('variant', sorted(study.VARIANTS))
def test_variant_builds_and_every_binding_takes_effect(variant):
  gin_file, bindings = study.VARIANTS[variant]
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings(
        [os.path.join(study.GIN_DIR, gin_file)], COMMON + bindings)
    two_colors_q.build()
    # `run.experiment` names this build; `pipelines.train` calls it.
    assert [b for b in experiment.ineffective_bindings()
            if b != 'run.experiment'] == []
    # The variant's own bindings win over the common ones.
    for binding in bindings:
      name, value = (part.strip() for part in binding.split('=', 1))
      assert gin.query_parameter(name) == gin.config.parse_value(value), (
          binding)
  finally:
    gin.clear_config()


def test_the_oracles_and_the_final_study_variants_exist():
  # The documented commands name these (README, docs/results/two_colors_q/).
  for variant in ('fixed_0.5', 'bmg_published_tlr1e-3', 'bmg_noctx_tlr1e-3',
                  'oracle_0.1_0.7_50k', 'bmg_published_sgd0.03'):
    assert variant in study.VARIANTS


def test_progress_reports_runs_so_far_and_pairs_common_steps(tmp_path):
  import argparse  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top

  def write(run, rows):
    os.makedirs(tmp_path / 'runs' / run)
    with open(tmp_path / 'runs' / run / 'history.jsonl', 'w') as f:
      for steps, reward in rows:
        f.write(json.dumps({'env_steps': steps, 'reward_per_step': reward,
                            'epsilon': 0.5,
                            'env_steps_per_sec': 1000.0}) + '\n')
      f.write('{"env_steps": 4')  # A line cut by a write in progress.

  write('fixed_0.5_s7', [(10, 0.1), (20, 0.3), (30, 0.5)])
  write('bmg_published_tlr1e-3_recent2k_s7', [(10, 0.2), (20, 0.4)])
  args = argparse.Namespace(
      out=str(tmp_path), variants=['fixed_0.5',
                                   'bmg_published_tlr1e-3_recent2k'],
      first_seed=7, seeds=2, steps=100, workers=2)
  report = study.progress(args)
  assert '| fixed_0.5_s7 | 30 | 0.3000 |' in report
  assert '| bmg_published_tlr1e-3_recent2k_s7 | 20 | 0.3000 |' in report
  assert '| fixed_0.5_s8 | 0 |' in report
  # Seed 7 paired over the first 20 steps: 0.2 against 0.3.
  assert '| 7 | 20 | 0.2000 | 0.3000 |' in report
  # 70 + 80 + 100 + 100 steps left, 2 runs at 1,000 steps/s each.
  assert 'Remaining: 350 env steps, about 0.0 h' in report


def test_flip_lines_summarise_per_seed_and_cap_the_row_table():
  def row(seed, at, kind, before, after):
    return {'variant': 'bmg_x', 'seed': seed, 'at': at, 'kind': kind,
            'before': before, 'max_after': after}

  # Seed 1: ratios 2, 3, 1 at flips (median 2, two above 1.5), 1 at control.
  # Seed 2: one flip at ratio 1.2, no control point.
  flips = [row(1, 100, 'flip', 0.1, 0.2), row(1, 150, 'mid', 0.2, 0.2),
           row(1, 200, 'flip', 0.1, 0.3), row(1, 300, 'flip', 0.2, 0.2),
           row(2, 100, 'flip', 0.5, 0.6)]
  lines = study._flip_lines(flips, max_rows=10)
  assert '| bmg_x | 1 | 3 | 2.00 | 2 | 1 | 1.00 | 0 |' in lines
  assert '| bmg_x | 2 | 1 | 1.20 | 0 | 0 |  |  |' in lines
  assert '| bmg_x | 1 | 200 | flip | 0.100 | 0.300 | 3.00 |' in lines
  assert ('\nbmg_x, flip: max-after / before ratio from 1.00 to 3.00 '
          '(median 2.00); above 1.5 in 2 of 4.') in lines
  capped = study._flip_lines(flips, max_rows=4)
  assert not any('| flip |' in line for line in capped)
  assert ('(5 rows; each is in two_colors_q.json, `bmg_epsilon_at_flips`.)'
          in capped)
  assert '| bmg_x | 1 | 3 | 2.00 | 2 | 1 | 1.00 | 0 |' in capped


def test_plots_of_a_long_study(tmp_path):
  import argparse  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  # reward.png and epsilon.png show all of a short run, and only the last
  # ZOOM_PERIODS flip periods of a long one.
  assert study._zoom(2_000_000, 100_000) == (0, '2,000,000 env steps')
  assert study._zoom(2_500_000, 100_000) == (
      1_500_000, 'the last 1,000,000 of 2,500,000 env steps')
  # Two variants, two seeds, 25 flip periods: every plot is written.
  steps, period = 2_500_000, 100_000
  rng = np.random.default_rng(0)
  results = [
      {'variant': v, 'seed': s, 'reward_per_step': 0.05,
       'history': [{'env_steps': e, 'reward_per_step': rng.normal(0.05, 0.1),
                    'epsilon': 0.5 if v.startswith('fixed') else
                               rng.uniform(0.2, 0.8)}
                   for e in range(10_000, steps + 1, 10_000)]}
      for v in ('fixed_0.5', 'bmg_published_tlr1e-3_recent2k')
      for s in (0, 1)]
  args = argparse.Namespace(
      out=str(tmp_path), variants=['fixed_0.5',
                                   'bmg_published_tlr1e-3_recent2k'],
      steps=steps, seeds=2, flip_period=period, log_every=10_000)
  study._plots(results, args)
  for name in ('reward.png', 'epsilon.png', 'flip_profile.png',
               'reward_by_period.png', 'total_reward.png'):
    with open(tmp_path / name, 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n', name


def test_snapshot_and_restore_flags(tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  run = tmp_path / 'out' / 'runs' / 'fixed_0.5_s200'
  os.makedirs(run / 'checkpoints')
  (run / 'history.jsonl').write_text('{"env_steps": 100}\n')
  (run / 'checkpoints' / 'ckpt-100.index').write_text('i')
  (run / 'checkpoints' / 'checkpoint').write_text(
      'model_checkpoint_path: "ckpt-100"\n')
  script = os.path.join(os.path.dirname(study.__file__), 'two_colors_q.py')
  flags = ['--variants=fixed_0.5', '--steps=1000', '--first_seed=200',
           '--seeds=1']
  saved = subprocess.run(
      [sys.executable, script, *flags, f'--out={tmp_path / "out"}',
       f'--snapshot={tmp_path / "state"}'], capture_output=True, text=True,
      check=True)
  assert saved.stdout == 'fixed_0.5_s200: 100 env steps (checkpoint)\n'
  assert (tmp_path / 'state' / 'runs' / 'fixed_0.5_s200' / 'checkpoints' /
          'ckpt-100.index').exists()
  # --restore goes on to run the study (tested through `study.restore` in
  # tests/pipelines/two_colors_q_test.py), so it does not mix with the
  # flags that run nothing.
  back = subprocess.run(
      [sys.executable, script, *flags, f'--out={tmp_path / "new"}',
       f'--restore={tmp_path / "state"}', '--progress'],
      capture_output=True, text=True, check=False)
  assert back.returncode == 2 and 'not with --progress' in back.stderr
  back = subprocess.run(
      [sys.executable, script, *flags, f'--out={tmp_path / "new"}',
       f'--snapshot={tmp_path / "state"}', f'--restore={tmp_path / "x"}'],
      capture_output=True, text=True, check=False)
  assert (back.returncode == 2 and
          'not with --progress or --snapshot' in back.stderr)
