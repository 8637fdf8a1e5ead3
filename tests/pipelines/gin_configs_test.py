"""Loads every shipped gin file and smoke-runs it (Dopamine-style).

A gin file that matches no pattern in SMOKE_BINDINGS fails the test: every
shipped config must be runnable. The paper-scale few-shot configs read data
sets from disk: they run on tiny fabricated copies written in the real
layouts (`tests/few_shot/fabricate.py`), whose directory replaces
`{data_dir}` in their bindings.
"""

import fnmatch
import glob
import importlib.util
import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'

import gin  # pylint: disable=g-import-not-at-top
import pytest

from pipelines import experiment

_SPEC = importlib.util.spec_from_file_location(
    'fabricate', os.path.join(os.path.dirname(__file__), '..', 'few_shot',
                              'fabricate.py'))
fabricate = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(fabricate)

GIN_DIR = os.path.join(os.path.dirname(__file__), '..', '..', 'gin')
GIN_FILES = sorted(glob.glob(os.path.join(GIN_DIR, '**', '*.gin'),
                             recursive=True))

# Small overrides per file pattern (relative to gin/), so that each file runs
# in seconds.
SMOKE_BINDINGS = {
    'toy/*.gin': ['toy_regression.build.num_meta_steps = 12',
                  'toy_regression.build.log_every = 4',
                  'toy_regression.build.checkpoint_every = 6'],
    'two_colors/ac_*.gin': ['two_colors.build.num_env_steps = 300',
                   'BootstrapConfig.k_steps = 2',
                   'BootstrapConfig.l_steps = 3',
                   'ActorCritic.hidden_sizes = (32, 32)',
                   'MetaLearner.jit_compile = False',
                   'two_colors.build.log_every = 100',
                   'two_colors.build.checkpoint_every = 150'],
    'two_colors/q_*.gin': ['two_colors_q.build.num_env_steps = 300',
                   'BootstrapConfig.l_steps = 3',
                   'two_colors_q.build.batch_size = 4',
                   'two_colors_q.build.sequence_length = 3',
                   'two_colors_q.build.min_replay_size = 40',
                   'two_colors_q.build.replay_capacity = 200',
                   'QLearner.hidden_sizes = (32, 32)',
                   'MetaLearner.jit_compile = False',
                   'two_colors_q.build.log_every = 100',
                   'two_colors_q.build.checkpoint_every = 150'],
    # Pong at paper settings, shrunk: 2 in-process actors, short unrolls,
    # a narrow ResNet, no XLA.
    'atari/*.gin': ['stacx.build.num_frames = 160',
                    'stacx.build.num_envs = 2',
                    'stacx.build.asynchronous = False',
                    'stacx.build.unroll_length = 4',
                    'BootstrapConfig.l_steps = 2',
                    'ImpalaResNet.channels = (4, 4, 4)',
                    'ImpalaResNet.embedding_size = 32',
                    'MetaLearner.jit_compile = False',
                    'stacx.build.export = False',
                    'stacx.build.log_every = 64',
                    'stacx.build.checkpoint_every = 64'],
    'minatar/*.gin': ['stacx.build.num_frames = 120',
                      'stacx.build.num_envs = 2',
                      'stacx.build.unroll_length = 5',
                      'BootstrapConfig.l_steps = 2',
                      'stacx.build.export = False',
                      'stacx.build.log_every = 40',
                      'stacx.build.checkpoint_every = 40'],
}
_FEW_SHOT = ['few_shot.build.num_meta_steps = 4',
             'few_shot.build.meta_batch_size = 2',
             'few_shot.build.eval_tasks = 6',
             'few_shot.build.eval_batch_size = 3',
             'few_shot.build.eval_every = 2',
             'few_shot.build.log_every = 2',
             'few_shot.build.checkpoint_every = 2',
             'MetaLearner.jit_compile = False']
_FEW_SHOT_IMAGES = _FEW_SHOT + ['few_shot.build.filters = 4',
                                'few_shot.build.query_per_class = 2']
SMOKE_BINDINGS.update({
    'few_shot/*_sinusoid.gin': _FEW_SHOT,
    'few_shot/*_digits.gin': _FEW_SHOT_IMAGES,
    'few_shot/*_omniglot.gin': _FEW_SHOT_IMAGES + [
        "few_shot.build.data_dir = '{data_dir}'"],
    'few_shot/*_miniimagenet.gin': _FEW_SHOT_IMAGES + [
        "few_shot.build.data_dir = '{data_dir}'",
        'few_shot.build.eval_adapt_steps = 2'],
})
# Pattern -> writes a fabricated data set under a directory, returns it.
FABRICATED = {
    'few_shot/*_omniglot.gin': lambda d: fabricate.write_omniglot(d),
    'few_shot/*_miniimagenet.gin': lambda d: fabricate.write_miniimagenet(
        d, layout='pickle', classes_per_split=(5, 5, 5), per_class=4),
}


def test_there_are_gin_files():
  assert len(GIN_FILES) >= 2


@pytest.mark.parametrize('path', GIN_FILES,
                         ids=[os.path.relpath(p, GIN_DIR) for p in GIN_FILES])
def test_gin_file_loads_and_runs(path, tmp_path):
  rel = os.path.relpath(path, GIN_DIR)
  patterns = [p for p in SMOKE_BINDINGS if fnmatch.fnmatch(rel, p)]
  assert len(patterns) == 1, f'{rel}: add one SMOKE_BINDINGS pattern for it'
  bindings = SMOKE_BINDINGS[patterns[0]]
  if patterns[0] in FABRICATED:
    data_dir = FABRICATED[patterns[0]](str(tmp_path / 'data'))
    bindings = [b.replace('{data_dir}', data_dir) for b in bindings]
  run_dir = tmp_path / 'run'
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings([path], bindings)
    result = experiment.run(root_dir=str(run_dir))
    config = (run_dir / 'operative_config.gin').read_text()
  finally:
    gin.clear_config()
  assert result is not None
  assert 'run.experiment' in config
  assert os.listdir(run_dir / 'checkpoints')
  assert os.listdir(run_dir / 'summaries')


TWO_COLORS_BMG = os.path.join(GIN_DIR, 'two_colors', 'ac_bmg.gin')
TINY_TWO_COLORS = SMOKE_BINDINGS['two_colors/ac_*.gin']


def _run_two_colors(tmp_path, extra):
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings([TWO_COLORS_BMG],
                                        TINY_TWO_COLORS + extra)
    return experiment.run(root_dir=str(tmp_path))
  finally:
    gin.clear_config()


@pytest.mark.parametrize('binding, name', [
    # Shadowed: both optimizers that read it have a scoped learning rate.
    ('create_optimizer.learning_rate = 0.5', 'create_optimizer.learning_rate'),
    # A configurable this experiment never builds.
    ('ImpalaResNet.channels = (4, 4, 4)', 'ImpalaResNet.channels'),
])
def test_a_binding_without_effect_is_an_error(binding, name, tmp_path):
  with pytest.raises(ValueError, match=f'no effect:.*{name}'):
    _run_two_colors(tmp_path, [binding])
  assert not os.path.exists(tmp_path / 'checkpoints')


def test_a_target_binding_of_a_method_without_target_is_an_error(tmp_path):
  gin.parse_config_files_and_bindings(
      [os.path.join(GIN_DIR, 'two_colors', 'ac_mg.gin')],
      TINY_TWO_COLORS + ['target/create_optimizer.learning_rate = 0.5'])
  with pytest.raises(ValueError,
                     match='no effect:.*target/create_optimizer.learning_rate'):
    experiment.run(root_dir=str(tmp_path))


@pytest.mark.parametrize('binding', [
    'ActorCritic.seed = 3',  # Wiring: the pipeline's own `seed`.
    'MetaLearner.batch_fn = None',
    'create_optimizer.batch_dims = 1',
])
def test_wiring_parameters_cannot_be_bound(binding):
  with pytest.raises(ValueError, match=binding.split('.')[1].split(' ')[0]):
    gin.parse_config_files_and_bindings([TWO_COLORS_BMG], [binding])


def test_a_binding_the_pipeline_leaves_to_gin_takes_effect(tmp_path):
  _run_two_colors(tmp_path, ["BootstrapConfig.match_batch = 'fresh'"])
  config = (tmp_path / 'operative_config.gin').read_text()
  assert "BootstrapConfig.match_batch = 'fresh'" in config


def test_an_unbound_required_setting_is_a_one_line_error(tmp_path):
  # The toy's BMG target step needs `target/create_optimizer.learning_rate`.
  with pytest.raises(SystemExit) as exit_info:
    experiment.cli_run('bmg-train', [], [
        'import pipelines.toy_regression',
        'run.experiment = @toy_regression.build'], str(tmp_path / 'run'))
  message = str(exit_info.value.code)
  assert message.startswith('bmg-train: error: bad gin config: Required')
  assert 'learning_rate' in message and '\n' not in message
  assert not os.path.exists(tmp_path / 'run')
