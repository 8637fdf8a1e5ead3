"""The in-graph task samplers: episode structure, ranges, streams."""

import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest
import tensorflow as tf

from bmg_tf.few_shot import episodes

CLASSES, EXAMPLES = 12, 9


def _coded_images():
  """Image [c, e] is a 2x2x1 image whose pixels all equal c * 100 + e."""
  codes = (np.arange(CLASSES)[:, None] * 100 + np.arange(EXAMPLES)[None, :])
  return np.broadcast_to(codes[:, :, None, None, None].astype(np.float32),
                         (CLASSES, EXAMPLES, 2, 2, 1)).copy()


def _decode(x):
  codes = np.asarray(x)[..., 0, 0, 0].astype(int)
  return codes // 100, codes % 100


@pytest.mark.parametrize('jit', [False, True])
def test_class_episodes_are_n_way_k_shot_with_disjoint_query(jit):
  tasks, n, k, q = 6, 4, 2, 3
  sampler = episodes.ClassEpisodes(_coded_images(), tasks, n, k, q, seed=1)
  sample = tf.function(sampler.sample, jit_compile=jit, autograph=False)
  seen = np.zeros(CLASSES)
  for _ in range(20):
    ep = sample()
    assert ep.support_x.shape == (tasks, n * k, 2, 2, 1)
    assert ep.query_x.shape == (tasks, n * q, 2, 2, 1)
    assert ep.support_y.dtype == tf.int32
    np.testing.assert_array_equal(ep.support_y,
                                  np.tile(np.repeat(np.arange(n), k),
                                          (tasks, 1)))
    np.testing.assert_array_equal(ep.query_y,
                                  np.tile(np.repeat(np.arange(n), q),
                                          (tasks, 1)))
    s_class, s_example = _decode(ep.support_x)
    q_class, q_example = _decode(ep.query_x)
    for t in range(tasks):
      label_class = {}
      for cls, lab in zip(np.concatenate([s_class[t], q_class[t]]),
                          np.concatenate([ep.support_y[t], ep.query_y[t]])):
        assert label_class.setdefault(int(lab), cls) == cls
      assert len(set(label_class.values())) == n  # N distinct classes.
      seen[list(label_class.values())] += 1
      for lab, cls in label_class.items():
        support = set(s_example[t][s_class[t] == cls])
        query = set(q_example[t][q_class[t] == cls])
        assert len(support) == k and len(query) == q
        assert not support & query
  # Every class is drawn, about uniformly (120 tasks x 4 of 12 classes).
  assert seen.min() > 20 and seen.max() < 60


def test_uint8_images_are_scaled_to_unit_interval():
  images = np.full((5, 4, 3, 3, 1), 255, np.uint8)
  images[2] = 51
  ep = episodes.ClassEpisodes(images, 2, 5, 1, 1, seed=0).sample()
  values = np.unique(np.asarray(ep.support_x))
  np.testing.assert_allclose(values, [0.2, 1.0], rtol=1e-6)
  assert ep.support_x.dtype == tf.float32


def test_streams_are_seeded_and_resume_from_a_checkpoint(tmp_path):
  make = lambda: episodes.ClassEpisodes(_coded_images(), 3, 3, 1, 2, seed=7)
  a, b = make(), make()
  np.testing.assert_array_equal(a.sample().support_x, b.sample().support_x)
  path = tf.train.Checkpoint(sampler=a).save(str(tmp_path / 'ckpt'))
  want = a.sample().query_x
  c = make()
  tf.train.Checkpoint(sampler=c).restore(path).assert_consumed()
  np.testing.assert_array_equal(c.sample().query_x, want)
  # The class array is data, not checkpoint state.
  names = [n for n, _ in tf.train.list_variables(path)]
  assert not any('images' in n for n in names)


def test_sinusoid_tasks_lie_on_one_sinusoid_per_task():
  tasks = episodes.SinusoidTasks(50, support_size=5, query_size=7, seed=3)
  ep = tasks.sample()
  assert ep.support_x.shape == (50, 5, 1) and ep.query_y.shape == (50, 7, 1)
  x = np.concatenate([ep.support_x, ep.query_x], 1)[..., 0].astype(float)
  y = np.concatenate([ep.support_y, ep.query_y], 1)[..., 0].astype(float)
  assert x.min() >= -5 and x.max() <= 5
  for t in range(50):
    # A sin(x - phi) = a sin x + b cos x, a = A cos phi, b = -A sin phi:
    # fitted on the support set, it predicts the query set.
    basis = np.stack([np.sin(x[t]), np.cos(x[t])], 1)
    (a, b), *_ = np.linalg.lstsq(basis[:5], y[t, :5], rcond=None)
    np.testing.assert_allclose(basis[5:] @ [a, b], y[t, 5:], atol=1e-4)
    amplitude, phase = np.hypot(a, b), np.arctan2(-b, a)
    assert 0.1 - 1e-4 <= amplitude <= 5 + 1e-4
    assert -1e-4 <= phase <= np.pi + 1e-4


@pytest.mark.parametrize('kwargs, match', [
    (dict(n_way=13), 'n_way'),
    (dict(k_shot=5, query_per_class=5), 'k_shot/query_per_class'),
    (dict(num_tasks=0), 'num_tasks'),
    (dict(images=np.zeros((3, 4, 2), np.float32)), 'images'),
    (dict(images=np.zeros((3, 4, 2, 2, 1), np.float64)), 'float32 or uint8'),
])
def test_bad_class_episode_settings_are_errors(kwargs, match):
  args = dict(images=_coded_images(), num_tasks=2, n_way=3, k_shot=1,
              query_per_class=1)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    episodes.ClassEpisodes(**args)


def test_bad_sinusoid_settings_are_errors():
  with pytest.raises(ValueError, match='amplitude'):
    episodes.SinusoidTasks(2, amplitude=(5.0, 0.1))
  with pytest.raises(ValueError, match='support_size'):
    episodes.SinusoidTasks(2, support_size=0)
