"""End-to-end tests of the two-colours pipeline: resume after SIGKILL, export.

The runs are tiny (small networks, no XLA) so that tracing dominates, not
training.
"""

import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'

import json  # pylint: disable=g-import-not-at-top
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tools'))
import pipeline_runs  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO, ENV = pipeline_runs.REPO, pipeline_runs.ENV
BMG_GIN = os.path.join(REPO, 'gin', 'two_colors', 'ac_bmg.gin')
# Every fidelity option at its default: the base the options are tested on.
PAPER_GIN = os.path.join(REPO, 'gin', 'two_colors', 'ac_bmg_paper.gin')
MG_GIN = os.path.join(REPO, 'gin', 'two_colors', 'ac_mg.gin')
SMALL = [
    'BootstrapConfig.k_steps = 2',
    'BootstrapConfig.l_steps = 3',
    'ActorCritic.hidden_sizes = (16, 16)',
    'ContextualMetaParameters.hidden_sizes = (8,)',
    'MetaOptimizer.learning_rate = 0.01',
    'MetaLearner.jit_compile = False',
    'two_colors.build.log_every = 256',
    'two_colors.build.checkpoint_every = 256',
]


def _bindings(steps, *extra):
  return SMALL + [f'two_colors.build.num_env_steps = {steps}', *extra]


def _cmd(root_dir, steps, *extra):
  return pipeline_runs.train_command(BMG_GIN, root_dir,
                                     _bindings(steps, *extra))


def _run(root_dir, steps, *extra):
  return pipeline_runs.run_train(BMG_GIN, root_dir, _bindings(steps, *extra))


BUDGET = 2048

# Both tests below share one uninterrupted run; keep them on one worker.
pytestmark = pytest.mark.xdist_group('two_colors_pipeline')


@pytest.fixture(scope='module')
def whole_run(tmp_path_factory):
  root = tmp_path_factory.mktemp('whole') / 'run'
  _run(root, BUDGET)
  return root


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path,
                                                           whole_run):
  killed = tmp_path / 'killed'
  at_kill = pipeline_runs.kill_after_checkpoint(
      _cmd(killed, BUDGET, 'two_colors.build.export = False'), killed, 512,
      poll_seconds=0.05)
  assert at_kill is not None and at_kill < BUDGET
  before = pipeline_runs.checkpoint_values(killed)
  assert int(before['stats/env_steps/.ATTRIBUTES/VARIABLE_VALUE']) == at_kill

  resumed = _run(killed, BUDGET, 'two_colors.build.export = False')
  assert f'ckpt-{at_kill}' in resumed.stdout, resumed.stdout[-2000:]
  # The restarted run continued from the checkpoint: it ends exactly where
  # the uninterrupted run ends, variable for variable.
  got, _ = pipeline_runs.assert_same_variables(killed, whole_run)
  assert int(got['stats/env_steps/.ATTRIBUTES/VARIABLE_VALUE']) >= BUDGET


_FRESH = textwrap.dedent('''
    import json, sys
    import numpy as np
    import tensorflow as tf
    m = tf.saved_model.load(sys.argv[1])
    obs = tf.constant(np.load(sys.argv[2]))
    ctx = tf.constant(np.load(sys.argv[3]))
    out = {
        'logits': m.signatures['action'](observation=obs)['logits'].numpy(),
        'action': m.signatures['action'](observation=obs)['action'].numpy(),
        'sampled': m.signatures['sample_action'](
            observation=obs, seed=tf.constant([1, 2]))['action'].numpy(),
        'entropy_weight': m.signatures['meta_parameters'](
            context=ctx)['entropy_weight'].numpy(),
    }
    meta = m.signatures['metadata']()
    out['train_step'] = int(meta['train_step'])
    out['gin'] = meta['gin_config'].numpy().decode()
    errors = []
    for bad in (tf.zeros([2, 7]), tf.zeros([2, 30], tf.int32)):
      try:
        m.signatures['action'](observation=bad)
        errors.append('accepted')
      except (ValueError, TypeError, tf.errors.InvalidArgumentError) as e:
        errors.append(type(e).__name__)
    out['errors'] = errors
    out['modules'] = sorted(k for k in sys.modules if k.startswith('bmg_tf'))
    print(json.dumps({k: (v.tolist() if hasattr(v, 'tolist') else v)
                      for k, v in out.items()}))
''')


def _mlp(params, x, n_layers):
  for i in range(n_layers):
    x = x @ params[2 * i] + params[2 * i + 1]
    if i < n_layers - 1:
      x = np.maximum(x, 0)
  return x


def test_export_loads_in_a_fresh_process_without_bmg_tf(tmp_path,
                                                       whole_run):
  root = whole_run
  ckpt = pipeline_runs.checkpoint_values(root)
  lp = 'learner/learner_params/{}/.ATTRIBUTES/VARIABLE_VALUE'
  policy = [ckpt[lp.format(i)] for i in range(6)]
  mp = 'learner/meta_parameters/contextual/net/{}/.ATTRIBUTES/VARIABLE_VALUE'
  meta = [ckpt[mp.format(n)] for n in ('kernel_0', 'bias_0', 'kernel_1',
                                       'bias_1')]
  rng = np.random.RandomState(0)
  obs = np.zeros([5, 30], np.float32)
  for row in obs:  # Valid one-hot observations.
    for block in range(6):
      row[5 * block + rng.randint(5)] = 1.0
  ctx = rng.uniform(-1, 1, size=[3, 10]).astype(np.float32)
  np.save(tmp_path / 'obs.npy', obs)
  np.save(tmp_path / 'ctx.npy', ctx)
  script = tmp_path / 'fresh.py'
  script.write_text(_FRESH)
  proc = subprocess.run(
      [sys.executable, str(script), str(root / 'export'),
       str(tmp_path / 'obs.npy'), str(tmp_path / 'ctx.npy')],
      env=ENV, capture_output=True, text=True, timeout=300, cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out['modules'] == []  # bmg_tf was never imported.
  # Same action probabilities as the trained policy's variables give.
  want_logits = _mlp(policy, obs, 3)
  np.testing.assert_allclose(out['logits'], want_logits, rtol=1e-4,
                             atol=1e-5)
  np.testing.assert_array_equal(out['action'], want_logits.argmax(-1))
  assert all(0 <= a < 4 for a in out['sampled'])
  want_ew = 1 / (1 + np.exp(-_mlp(meta, ctx, 2)[:, 0]))
  np.testing.assert_allclose(out['entropy_weight'], want_ew, rtol=1e-5)
  assert out['train_step'] == int(
      ckpt['learner/train_step_counter/.ATTRIBUTES/VARIABLE_VALUE'])
  assert 'two_colors.build' in out['gin']
  # Wrong shape and wrong dtype are both refused by the signature.
  assert 'accepted' not in out['errors'], out['errors']
  assert (root / 'operative_config.gin').exists()


def test_unknown_env_name_is_one_line(tmp_path):
  proc = subprocess.run(
      _cmd(tmp_path, 64, "two_colors.build.env_name = 'ThreeColors'"),
      cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  lines = [l for l in proc.stderr.splitlines() if 'bmg-train: error' in l]
  assert len(lines) == 1 and 'ThreeColors' in lines[0], proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr


def test_batched_seeds_run_resume_and_export_one_model_per_seed(tmp_path):
  sys.path.insert(0, REPO)
  from pipelines import two_colors  # pylint: disable=g-import-not-at-top
  import gin  # pylint: disable=g-import-not-at-top
  gin.parse_config_files_and_bindings([PAPER_GIN], SMALL[:6] + [
      'create_optimizer.clip_global_norm = 1.0'])
  small = dict(log_every=128, checkpoint_every=256, num_seeds=2, seed=3)
  root = str(tmp_path / 'run')
  first = two_colors.train_eval(root, num_env_steps=256, export=False,
                                **small)
  assert first['num_seeds'] == 2 and first['env_steps'] >= 256
  result = two_colors.train_eval(root, num_env_steps=512, **small)
  # Resumed: the per-seed counter continued from the checkpoint.
  assert 512 <= result['env_steps'] < 512 + 80
  assert result['history'][0]['env_steps'] > first['env_steps']
  assert len(result['reward_per_step_per_seed']) == 2
  assert result['reward_per_step'] == pytest.approx(
      np.mean(result['reward_per_step_per_seed']))
  row = result['history'][-1]
  for key in ('reward_per_step/seed_1', 'entropy_weight/seed_0',
              'policy_entropy/seed_1'):
    assert key in row
  assert row['aggregate_env_steps_per_sec'] == pytest.approx(
      2 * row['env_steps_per_sec'])
  # The two seeds are different learners.
  weights = result['entropy_weight_per_seed']
  assert weights[0] != weights[1]

  ckpt = pipeline_runs.checkpoint_values(root)
  lp = 'learner/learner_params/{}/.ATTRIBUTES/VARIABLE_VALUE'
  mp = 'learner/meta_parameters/contextual/net/{}/.ATTRIBUTES/VARIABLE_VALUE'
  obs = np.random.RandomState(0).uniform(size=[5, 30]).astype(np.float32)
  ctx = np.random.RandomState(1).uniform(-1, 1, [3, 10]).astype(np.float32)
  assert sorted(os.listdir(os.path.join(root, 'export'))) == [
      'seed_0', 'seed_1']
  for n in range(2):
    model = tf.saved_model.load(os.path.join(root, 'export', f'seed_{n}'))
    policy = [ckpt[lp.format(i)][n] for i in range(6)]
    meta = [ckpt[mp.format(k)][n] for k in ('kernel_0', 'bias_0',
                                            'kernel_1', 'bias_1')]
    logits = model.signatures['action'](observation=obs)['logits'].numpy()
    np.testing.assert_allclose(logits, _mlp(policy, obs, 3), rtol=1e-4,
                               atol=1e-5)
    ew = model.signatures['meta_parameters'](context=ctx)['entropy_weight']
    np.testing.assert_allclose(ew, 1 / (1 + np.exp(-_mlp(meta, ctx, 2)[:, 0])),
                               rtol=1e-5)
  with pytest.raises(ValueError, match='num_seeds'):
    two_colors.train_eval(str(tmp_path / 'bad'), num_seeds=0)
  with pytest.raises(ValueError, match='target_rollouts'):
    two_colors.train_eval(str(tmp_path / 'bad'), target_rollouts=0)
  for bad in (-0.1, float('inf'), '0.1'):
    with pytest.raises(ValueError, match='bootstrap_entropy_weight'):
      two_colors.train_eval(str(tmp_path / 'bad'),
                            bootstrap_entropy_weight=bad)
  gin.clear_config()
  gin.parse_config_files_and_bindings([MG_GIN], SMALL[2:6])
  with pytest.raises(ValueError, match='target_rollouts'):
    two_colors.train_eval(str(tmp_path / 'bad'), target_rollouts=2)
  with pytest.raises(ValueError, match='bootstrap_entropy_weight'):
    two_colors.train_eval(str(tmp_path / 'bad'), bootstrap_entropy_weight=0.0)


def _run_with_bindings(root, bindings):
  """One tiny in-process run through gin; returns its checkpoint values."""
  import gin  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, REPO)
  from pipelines import experiment  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings(
        [PAPER_GIN], SMALL + ['two_colors.build.num_env_steps = 320',
                            'two_colors.build.export = False',
                            'two_colors.build.log_every = 10000'] +
        list(bindings))
    experiment.run(root_dir=root)
  finally:
    gin.clear_config()
  return pipeline_runs.checkpoint_values(root)


def test_fidelity_options_are_bindings_that_take_effect(tmp_path):
  mp = 'learner/meta_parameters/contextual/net/{}/.ATTRIBUTES/VARIABLE_VALUE'
  names = [mp.format(k) for k in ('kernel_0', 'bias_0', 'kernel_1',
                                  'bias_1')]
  base = _run_with_bindings(str(tmp_path / 'base'), [])
  # Control: the same run again is identical, so a difference below comes
  # from the option.
  again = _run_with_bindings(str(tmp_path / 'again'), [])
  for n in names:
    np.testing.assert_array_equal(again[n], base[n])
  options = {
      'tanh': ["RewardContext.transform = 'tanh'"],
      'running': ["RewardContext.transform = 'running_tanh'",
                  'RewardContext.decay = 0.9'],
      'random_out': ['ContextualMetaParameters.output_kernel_scale = 1.0'],
      'target_rollouts': ['two_colors.build.target_rollouts = 3'],
      'fixed_bootstrap': [
          'two_colors.build.bootstrap_entropy_weight = 0.0'],
  }
  for name, bindings in options.items():
    got = _run_with_bindings(str(tmp_path / name), bindings)
    differs = [not np.allclose(got[n], base[n], rtol=0, atol=1e-9)
               for n in names]
    assert any(differs), name
    if name == 'running':
      assert any('running_mean' in k for k in got), sorted(got)[:5]
    if name == 'tanh':
      # The scale of the fixed squashing is a binding too.
      scaled = _run_with_bindings(
          str(tmp_path / 'tanh_scale'),
          bindings + ['RewardContext.scale = 0.5'])
      assert any(not np.allclose(scaled[n], got[n], rtol=0, atol=1e-9)
                 for n in names)
    if name == 'target_rollouts':
      # 2 more rollouts per meta-step: fewer meta-steps for the budget.
      step = 'learner/train_step_counter/.ATTRIBUTES/VARIABLE_VALUE'
      assert got[step] < base[step], (got[step], base[step])


def test_divergence_on_resume_keeps_the_good_checkpoints_and_export(
    tmp_path):
  # Reliability defect 1: a finished good run, resumed with an exploding
  # inner step, used to save NaN checkpoints over the good ones, replace
  # export/ and write bare NaN into result.json.
  root = tmp_path / 'run'
  _run(root, 512)
  good = pipeline_runs.checkpoint_values(root)
  good_number = pipeline_runs.latest_checkpoint_number(root)
  export_files = sorted(p.name for p in (root / 'export').iterdir())
  saved_model = (root / 'export' / 'saved_model.pb').read_bytes()
  proc = subprocess.run(
      _cmd(root, 2048, 'inner/create_optimizer.learning_rate = 1e30',
           'create_optimizer.clip_global_norm = None',
           'two_colors.build.checkpoint_every = 128'),
      cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
  assert proc.returncode != 0
  errors = [l for l in proc.stderr.splitlines() if 'bmg-train: error' in l]
  assert len(errors) == 1 and 'training diverged' in errors[0], (
      proc.stderr[-2000:])
  assert pipeline_runs.latest_checkpoint_number(root) == good_number
  after = pipeline_runs.checkpoint_values(root)
  assert set(after) == set(good)
  for name, value in good.items():
    np.testing.assert_array_equal(after[name], value)
  assert sorted(p.name for p in (root / 'export').iterdir()) == export_files
  assert (root / 'export' / 'saved_model.pb').read_bytes() == saved_model
  with open(root / 'result.json') as f:
    json.load(f)  # Still the good run's, and valid JSON.


def test_mg_without_new_rollouts_is_an_error_not_a_hang(tmp_path):
  # Reliability defect 4: MG with k_steps=0 re-uses its one cached rollout
  # for ever, so env steps never advance; it used to spin at 100% CPU.
  import gin  # pylint: disable=g-import-not-at-top
  from pipelines import two_colors  # pylint: disable=g-import-not-at-top
  gin.parse_config_files_and_bindings([MG_GIN], [
      'BootstrapConfig.k_steps = 0', 'ActorCritic.hidden_sizes = (8, 8)',
      'ContextualMetaParameters.hidden_sizes = (4,)',
      'MetaLearner.jit_compile = False'])
  # Refused when the config is built, before any directory is touched.
  with pytest.raises(ValueError, match="k_steps: method='mg' needs"):
    two_colors.train_eval(str(tmp_path / 'run'), num_env_steps=1000)
  assert not os.path.exists(tmp_path / 'run')
