"""End-to-end tests of the two-colours Q-learning pipeline (BMG epsilon).

Tiny runs (small networks, no XLA): one uninterrupted BMG run in-process
through the gin file, checked on its own, against a run killed with SIGKILL
and resumed through the CLI, and through its SavedModel in a fresh process;
bad settings; the checkpointed replay sampling.
"""

import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'

import json  # pylint: disable=g-import-not-at-top
import subprocess
import sys
import textwrap

import gin
import numpy as np
import pytest
import tensorflow as tf

from pipelines import experiment
from pipelines import two_colors_q

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tools'))
import pipeline_runs  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO, ENV = pipeline_runs.REPO, pipeline_runs.ENV
BMG_GIN = os.path.join(REPO, 'gin', 'two_colors', 'q_bmg_eps.gin')
L_STEPS = 4
TINY = dict(batch_size=8, sequence_length=4, replay_ratio=0.25,
            min_replay_size=60, replay_capacity=1000)
OBJECTS = [f'BootstrapConfig.l_steps = {L_STEPS}',
           'QLearner.hidden_sizes = (16, 16)',
           'ContextualMetaParameters.hidden_sizes = (8,)',
           'MetaOptimizer.learning_rate = 0.05',
           'MetaLearner.jit_compile = False']
SMALL = [f'two_colors_q.build.{k} = {v!r}' for k, v in TINY.items()] + [
    *OBJECTS,
    'MetaLearner.steps_per_call = 2',
    'two_colors_q.build.log_every = 300',
    'two_colors_q.build.checkpoint_every = 300',
]
BUDGET = 2400
CAPACITY = TINY['replay_capacity']
LP = 'learner/learner_params/{}/.ATTRIBUTES/VARIABLE_VALUE'
MP = ('learner/meta_parameters/contextual/net/{}/.ATTRIBUTES/'
      'VARIABLE_VALUE')

# The first three tests share one uninterrupted run.
pytestmark = pytest.mark.xdist_group('two_colors_q_pipeline')


def _bindings(steps, *extra):
  return SMALL + [f'two_colors_q.build.num_env_steps = {steps}', *extra]


def _cmd(root_dir, steps, *extra):
  return pipeline_runs.train_command(BMG_GIN, root_dir,
                                     _bindings(steps, *extra))


def _run(root_dir, steps, *extra):
  return pipeline_runs.run_train(BMG_GIN, root_dir, _bindings(steps, *extra))


def _mlp(params, x):
  for i in range(0, len(params), 2):
    x = x @ params[i] + params[i + 1]
    if i < len(params) - 2:
      x = np.maximum(x, 0)
  return x


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


@pytest.fixture(scope='module')
def whole_run(tmp_path_factory):
  """The uninterrupted run, in-process through the same gin file."""
  root = tmp_path_factory.mktemp('whole') / 'run'
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings(
        [BMG_GIN],
        SMALL + [f'two_colors_q.build.num_env_steps = {BUDGET}'])
    result = experiment.run(root_dir=str(root))
  finally:
    gin.clear_config()
  return root, result


def test_bmg_run_moves_epsilon_and_fills_the_replay(whole_run):
  root, result = whole_run
  steps_per_iteration = round((L_STEPS - 1) / TINY['replay_ratio'])
  assert result['env_steps_per_iteration'] == steps_per_iteration
  # Two meta-steps (iterations) per compiled call.
  assert BUDGET <= result['env_steps'] < BUDGET + 2 * steps_per_iteration
  # The replay holds every collected frame, up to its capacity.
  assert CAPACITY < BUDGET
  assert result['replay_frames'] == min(result['env_steps'], CAPACITY)
  # The meta-gradient moved epsilon: the contextual net's output layer starts
  # at zero, so without updates epsilon is 0.1 at every context.
  assert abs(result['epsilon'] - 0.1) > 1e-3, result['epsilon']
  # Learning starts after the warm-up; L-1 updates per iteration.
  warmup = -(-TINY['min_replay_size'] // steps_per_iteration)
  iterations = -(-result['env_steps'] // steps_per_iteration)
  assert result['learner_updates'] == (L_STEPS - 1) * (
      iterations - warmup)
  saved = json.loads((root / 'result.json').read_text())
  assert saved['method'] == 'bmg' and saved['env_steps'] == result['env_steps']
  assert [r['env_steps'] for r in saved['history']] == [
      r['env_steps'] for r in result['history']]
  assert len(saved['history']) == BUDGET // 300
  assert all(np.isfinite(r['reward_per_step']) and 0 < r['epsilon'] < 1
             for r in saved['history'])
  assert 'two_colors_q.build' in (
      root / 'operative_config.gin').read_text()
  assert os.listdir(root / 'summaries')


def _resume_and_compare(root, at, whole_run):
  """Resumes the run in `root` from its checkpoint `at` to BUDGET through
  the CLI; asserts it ends with the uninterrupted run's variables.

  Returns:
    (resumed, uninterrupted) checkpoint values, without the save counter.
  """
  resumed = _run(root, BUDGET, 'two_colors_q.build.export = False')
  assert f'ckpt-{at}' in resumed.stdout, resumed.stdout[-2000:]
  return pipeline_runs.assert_same_variables(root, whole_run[0])


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path,
                                                           whole_run):
  killed = tmp_path / 'killed'
  at_kill = pipeline_runs.kill_after_checkpoint(
      _cmd(killed, BUDGET, 'two_colors_q.build.export = False'), killed, 600)
  assert at_kill is not None and at_kill < BUDGET
  before = pipeline_runs.checkpoint_values(killed)
  assert int(before['stats/env_steps/.ATTRIBUTES/VARIABLE_VALUE']) == at_kill

  got, want = _resume_and_compare(killed, at_kill, whole_run)
  # Everything is in the checkpoint: replay data and its sampling stream.
  assert any(k.startswith('replay/_data_table') for k in want)
  assert 'replay/generator/_state_var/.ATTRIBUTES/VARIABLE_VALUE' in want
  assert int(got['stats/env_steps/.ATTRIBUTES/VARIABLE_VALUE']) >= BUDGET
  # The killed run's history rows after its checkpoint were re-logged.
  history = json.loads((killed / 'result.json').read_text())['history']
  assert [r['env_steps'] for r in history] == [
      r['env_steps'] for r in json.loads(
          (whole_run[0] / 'result.json').read_text())['history']]


def test_snapshot_restore_resumes_in_a_new_directory(tmp_path, whole_run):
  """A study that spans machines: a run stopped half-way, snapshotted
  (newest checkpoint, logs, config), restored into a fresh directory and
  resumed there, ends where the uninterrupted run ends."""
  sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
  import study  # pylint: disable=g-import-not-at-top
  half = BUDGET // 2
  old_run = tmp_path / 'old' / 'runs' / 'r'
  _run(old_run, half, 'two_colors_q.build.export = False')
  got = study.snapshot(tmp_path / 'old', tmp_path / 'state', BUDGET)
  reached = pipeline_runs.latest_checkpoint_number(old_run)
  assert got == {'r': (reached, 'checkpoint')} and half <= reached < BUDGET
  saved = tmp_path / 'state' / 'runs' / 'r'
  # Only the newest checkpoint; no summaries, no stdout.
  assert sorted(os.listdir(saved)) == ['checkpoints', 'history.jsonl',
                                       'operative_config.gin', 'result.json']
  assert {n.split('.')[0] for n in os.listdir(saved / 'checkpoints')} == {
      f'ckpt-{reached}', 'checkpoint'}
  assert study.restore(tmp_path / 'state', tmp_path / 'new') == {
      'r': reached}
  # Restoring again changes nothing: the study already holds that state.
  assert study.restore(tmp_path / 'state', tmp_path / 'new') == {}
  moved = tmp_path / 'new' / 'runs' / 'r'
  _resume_and_compare(moved, reached, whole_run)

  def learning(run):  # The history without its wall-clock speed.
    return [{k: v for k, v in row.items() if k != 'env_steps_per_sec'}
            for row in json.loads((run / 'result.json').read_text())[
                'history']]
  assert learning(moved) == learning(whole_run[0])
  # A finished run keeps no checkpoint in its snapshot.
  ended = whole_run[1]['env_steps']  # The budget, rounded up to a call.
  assert study.snapshot(tmp_path / 'new', tmp_path / 'state', BUDGET) == {
      'r': (ended, 'finished')}
  assert not (saved / 'checkpoints').exists()


def _twenty_iterations(*drop):
  """`(budget, bindings)`: SMALL without the bindings naming any of `drop`,
  for a run of the warm-up then 20 iterations, without export."""
  budget = TINY['min_replay_size'] + 20 * round(
      (L_STEPS - 1) / TINY['replay_ratio'])
  return budget, [b for b in SMALL if not any(d in b for d in drop)] + [
      f'two_colors_q.build.num_env_steps = {budget}',
      'two_colors_q.build.export = False']


def _in_process(root, bindings):
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings([BMG_GIN], bindings)
    result = experiment.run(root_dir=str(root))
  finally:
    gin.clear_config()
  return result


@pytest.mark.parametrize('jit_compile', [False, True])
def test_one_call_loop_equals_one_iteration_per_call(tmp_path, jit_compile):
  """`steps_per_call` iterations (collect, replay add, sample, meta-step)
  in one compiled call end where as many separate calls do."""
  steps_per_iteration = round((L_STEPS - 1) / TINY['replay_ratio'])
  # Warm-up, then five calls of four iterations.
  budget, common = _twenty_iterations('steps_per_call', 'jit_compile')
  assert budget == TINY['min_replay_size'] + 20 * steps_per_iteration
  common.append(f'MetaLearner.jit_compile = {jit_compile}')
  one = _in_process(tmp_path / 'one', common + [
      'MetaLearner.steps_per_call = 1'])
  four = _in_process(tmp_path / 'four', common + [
      'MetaLearner.steps_per_call = 4'])
  assert one['env_steps'] == four['env_steps'] == budget
  assert one['learner_updates'] == four['learner_updates'] == 20 * (
      L_STEPS - 1)
  assert one['reward_per_step'] == four['reward_per_step']
  assert one['epsilon'] == four['epsilon'] and one['epsilon'] != 0.1
  pipeline_runs.assert_same_variables(tmp_path / 'one', tmp_path / 'four')


_FRESH = textwrap.dedent('''
    import json, sys
    import numpy as np
    import tensorflow as tf
    m = tf.saved_model.load(sys.argv[1])
    obs = tf.constant(np.load(sys.argv[2]))
    ctx = tf.constant(np.load(sys.argv[3]))
    act = m.signatures['action'](observation=obs)
    many = tf.repeat(obs[:1], 4000, axis=0)
    out = {
        'q_values': act['q_values'].numpy(),
        'action': act['action'].numpy(),
        'sampled': m.signatures['sample_action'](
            observation=many, seed=tf.constant([1, 2]))['action'].numpy(),
        'epsilon': m.signatures['meta_parameters'](
            context=ctx)['epsilon'].numpy(),
    }
    meta = m.signatures['metadata']()
    out['train_step'] = int(meta['train_step'])
    out['gin'] = meta['gin_config'].numpy().decode()
    out['modules'] = sorted(k for k in sys.modules if k.startswith('bmg_tf'))
    print(json.dumps({k: (v.tolist() if hasattr(v, 'tolist') else v)
                      for k, v in out.items()}))
''')


def test_export_loads_in_a_fresh_process_without_bmg_tf(tmp_path,
                                                       whole_run):
  root, _ = whole_run
  ckpt = pipeline_runs.checkpoint_values(root)
  q_params = [ckpt[LP.format(i)] for i in range(6)]
  # The contextual net's layers, whatever the gin file makes them.
  layers = sum(MP.format(f'kernel_{i}') in ckpt for i in range(10))
  assert layers >= 2
  meta = [ckpt[MP.format(f'{n}_{i}')] for i in range(layers)
          for n in ('kernel', 'bias')]
  final_ctx = ckpt['context/rewards/.ATTRIBUTES/VARIABLE_VALUE']
  assert meta[0].shape[0] == final_ctx.shape[-1]
  rng = np.random.RandomState(0)
  obs = np.zeros([5, 30], np.float32)
  for row in obs:  # Valid one-hot observations.
    for block in range(6):
      row[5 * block + rng.randint(5)] = 1.0
  ctx = rng.uniform(-1, 1, size=[3, final_ctx.shape[-1]]).astype(np.float32)
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
  want_q = _mlp(q_params, obs)
  np.testing.assert_allclose(out['q_values'], want_q, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(out['action'], want_q.argmax(-1))
  np.testing.assert_allclose(out['epsilon'],
                             _sigmoid(_mlp(meta, ctx)[:, 0]), rtol=1e-5)
  # sample_action explores with the epsilon of the final reward context.
  eps = float(_sigmoid(_mlp(meta, final_ctx[None])[0, 0]))
  assert abs(eps - 0.1) > 1e-3  # It was learned.
  sampled = np.array(out['sampled'])
  assert set(sampled) <= {0, 1, 2, 3}
  greedy = np.mean(sampled == want_q[0].argmax())
  assert abs(greedy - (1 - eps + eps / 4)) < 0.03, (greedy, eps)
  assert out['train_step'] == int(
      ckpt['learner/train_step_counter/.ATTRIBUTES/VARIABLE_VALUE'])
  assert 'two_colors_q.build' in out['gin']


@pytest.mark.parametrize('override, bindings, name', [
    (dict(env_name='ThreeColors'), [], 'env_name: unknown .*ThreeColors'),
    ({}, ["BootstrapConfig.method = 'mg'"], 'method'),
    ({}, ['BootstrapConfig.l_steps = 1'], 'l_steps'),
    ({}, ['BootstrapConfig.k_steps = 1'], 'k_steps'),
    (dict(replay_ratio=0.0), [], 'replay_ratio'),
    (dict(min_replay_size=4), [], 'min_replay_size'),
    (dict(replay_capacity=10), [], 'replay_capacity'),
    (dict(epsilon=1.5), ["BootstrapConfig.method = 'fixed'",
                         "BootstrapConfig.continue_from = 'K'",
                         'BootstrapConfig.k_steps = 15'], 'epsilon'),
    (dict(target_recent_frames=4), [], 'target_recent_frames: must be >='),
    (dict(target_recent_frames=60), ["BootstrapConfig.method = 'fixed'",
                                     "BootstrapConfig.continue_from = 'K'",
                                     'BootstrapConfig.k_steps = 15'],
     "target_recent_frames: only with method 'bmg'"),
    (dict(target_recent_frames=60), ["BootstrapConfig.match_batch = 'fresh'"],
     'target_recent_frames: needs BootstrapConfig.match_batch'),
])
def test_bad_settings_name_the_argument(tmp_path, override, bindings, name):
  gin.parse_config_files_and_bindings([BMG_GIN], OBJECTS + bindings)
  with pytest.raises(ValueError, match=name):
    two_colors_q.train_eval(str(tmp_path), **{**TINY, **override})


FIXED_GIN = os.path.join(REPO, 'gin', 'two_colors', 'q_fixed_eps.gin')


def _epsilon_greedy_entropy(eps, num_actions=4):
  greedy = 1 - eps + eps / num_actions
  return -(greedy * np.log(greedy) +
           (num_actions - 1) * eps / num_actions * np.log(eps / num_actions))


def test_oracle_flip_epsilon_acts_only_in_the_window_after_each_flip(
    tmp_path):
  """`oracle_flip_epsilon=(0.9, 240)` with flips every 600 steps: the chunks
  collected 600-840 and 1200-1440 act with 0.9, all others with 0.2."""
  period, after, window = 600, 0.9, 240
  bindings = [f'two_colors_q.build.{k} = {v!r}' for k, v in TINY.items()] + [
      'QLearner.hidden_sizes = (16, 16)', 'MetaLearner.jit_compile = False',
      'MetaLearner.steps_per_call = 1', 'BootstrapConfig.k_steps = 3',
      'two_colors_q.build.epsilon = 0.2',
      f'two_colors_q.build.oracle_flip_epsilon = ({after}, {window})',
      f'TFTwoColors.flip_period = {period}',
      'two_colors_q.build.num_env_steps = 1560',
      'two_colors_q.build.log_every = 120', 'two_colors_q.build.export = False']
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings([FIXED_GIN], bindings)
    result = experiment.run(root_dir=str(tmp_path / 'run'))
  finally:
    gin.clear_config()
  # 12 env steps per iteration (3 updates / 0.25): windows of 120 steps are
  # whole chunks, so each window acted with one epsilon throughout.
  assert result['env_steps_per_iteration'] == 12
  history = result['history']
  assert [r['env_steps'] for r in history] == list(range(120, 1561, 120))
  for row in history:
    start = row['env_steps'] - 120  # The window's first env step.
    want = after if start >= period and start % period < window else 0.2
    np.testing.assert_allclose(row['policy_entropy'],
                               _epsilon_greedy_entropy(want), rtol=1e-5,
                               err_msg=str(row))
  # The run ends at 1560 = 2 * 600 + 360: outside the window.
  assert result['env_steps'] == 1560 and result['epsilon'] == pytest.approx(
      0.2)


@pytest.mark.parametrize('oracle, name', [
    ((0.5, 100), "only with method 'fixed'"),
    ((1.5, 100), 'epsilon_after must be in'),
    ((0.5, 0), 'steps must be an int'),
])
def test_oracle_flip_epsilon_rejects_bad_settings(tmp_path, oracle, name):
  bindings = list(OBJECTS)
  if oracle[0] != 0.5 or oracle[1] != 100:
    bindings += ["BootstrapConfig.method = 'fixed'",
                 "BootstrapConfig.continue_from = 'K'",
                 'BootstrapConfig.k_steps = 15']
  gin.parse_config_files_and_bindings([BMG_GIN], bindings)
  try:
    with pytest.raises(ValueError, match=name):
      two_colors_q.train_eval(str(tmp_path), oracle_flip_epsilon=oracle,
                              **TINY)
  finally:
    gin.clear_config()


def test_target_batch_from_recent_frames_trains_and_changes_the_run(
    tmp_path):
  """`target_recent_frames` draws the target's batch from the newest frames
  (the sampling itself: tests/agents/replay_test.py); the run trains, with
  the same updates, to another epsilon than the whole-replay target."""
  budget, common = _twenty_iterations('steps_per_call')
  common.append('MetaLearner.steps_per_call = 4')
  whole = _in_process(tmp_path / 'whole', common + [
      'two_colors_q.build.target_recent_frames = None'])
  recent = _in_process(tmp_path / 'recent', common + [
      'two_colors_q.build.target_recent_frames = 60'])
  assert recent['env_steps'] == whole['env_steps'] == budget
  assert recent['learner_updates'] == whole['learner_updates'] == 20 * (
      L_STEPS - 1)
  assert np.isfinite(recent['epsilon']) and recent['epsilon'] != 0.1
  assert recent['epsilon'] != whole['epsilon']
