"""The few-shot data set loaders (bmg_tf/few_shot/datasets.py).

Digits use the real scikit-learn data; Omniglot and mini-ImageNet use tiny
fakes written in their exact on-disk layouts by `fabricate.py`.
"""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

# pylint: disable=g-import-not-at-top,wrong-import-position
import csv
import importlib.util
import pickle
import tempfile

import numpy as np
from PIL import Image
import pytest

from bmg_tf.few_shot import datasets

_SPEC = importlib.util.spec_from_file_location(
    'fabricate', os.path.join(os.path.dirname(__file__), 'fabricate.py'))
fabricate = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(fabricate)
# pylint: enable=g-import-not-at-top,wrong-import-position

ROTS = (0, 90, 180, 270)


# ----------------------------------------------------------------------------
# Digits.


@pytest.fixture(scope='module')
def digits():
  return {split: datasets.load_digits(split) for split in ('train', 'test')}


def _base_digits(dataset):
  return {int(n[len('digit'):n.index('_')]) for n in dataset.class_names}


def test_digits_shapes_dtype_and_range(digits):
  for split, dataset in digits.items():
    assert dataset.images.shape == (16, 174, 8, 8, 1)
    assert dataset.images.dtype == np.float32
    assert dataset.images.min() == 0.0 and dataset.images.max() == 1.0
    assert len(dataset.class_names) == 16
    assert dataset.name == f'digits/{split}'
    plain = datasets.load_digits(split, rotations=False)
    assert plain.images.shape == (5, 174, 8, 8, 1)
    assert plain.class_names == tuple(
        f'digit{d}_rot0' for d in sorted(_base_digits(dataset)))


def test_digits_splits_have_disjoint_base_digits(digits):
  assert _base_digits(digits['train']) == {0, 1, 2, 3, 4}
  assert _base_digits(digits['test']) == {5, 6, 7, 8, 9}


def test_digits_drop_symmetric_duplicates(digits):
  names = set(digits['train'].class_names) | set(digits['test'].class_names)
  for digit in (0, 1, 8, 9):
    for deg in (180, 270):
      assert f'digit{digit}_rot{deg}' not in names
  expected = [f'digit{d}_rot{r}' for d in range(10) for r in ROTS
              if not (d in (0, 1, 8, 9) and r in (180, 270))]
  assert (digits['train'].class_names + digits['test'].class_names ==
          tuple(expected))


def test_digits_are_the_first_174_of_each_digit_and_rotate(digits):
  import sklearn.datasets  # pylint: disable=g-import-not-at-top
  raw = sklearn.datasets.load_digits()
  for dataset in digits.values():
    names = dataset.class_names
    for digit in _base_digits(dataset):
      base = dataset.images[names.index(f'digit{digit}_rot0')]
      want = raw.images[raw.target == digit][:174, :, :, None] / 16.0
      np.testing.assert_allclose(base, want, rtol=0, atol=1e-7)
      for deg in (90, 180, 270):
        name = f'digit{digit}_rot{deg}'
        if name in names:
          np.testing.assert_array_equal(
              dataset.images[names.index(name)],
              np.rot90(base, deg // 90, axes=(1, 2)))


def test_digits_uint8_and_bad_arguments():
  raw = datasets.load_digits('test', dtype=np.uint8)
  assert raw.images.dtype == np.uint8 and raw.images.max() == 255
  floats = datasets.load_digits('test')
  np.testing.assert_allclose(raw.images / 255.0, floats.images, atol=0.5 / 255)
  with pytest.raises(ValueError, match='split'):
    datasets.load_digits('val')
  with pytest.raises(ValueError, match='dtype'):
    datasets.load_digits('train', dtype=np.float64)


# ----------------------------------------------------------------------------
# Omniglot.

# The fabricated Omniglot's characters, sorted: 2 alphabets x 3 characters
# per folder, the evaluation set's alphabets numbered on from 2.
TRAIN_CHARS = [f'Alphabet_{a}/character{c:02d}' for a in (0, 1)
               for c in (1, 2, 3)]
TEST_CHARS = [f'Alphabet_{a}/character{c:02d}' for a in (2, 3)
              for c in (1, 2, 3)]


@pytest.fixture(scope='module')
def omniglot_root(tmp_path_factory):
  """A shared, never-modified fake Omniglot (cache off in readers)."""
  return fabricate.write_omniglot(str(tmp_path_factory.mktemp('omniglot')))


@pytest.fixture
def small_omniglot(tmp_path):
  """A small fake Omniglot that a test may modify."""
  return fabricate.write_omniglot(str(tmp_path / 'omniglot'), alphabets=1,
                                  characters=2, drawings=3, size=40)


def _png(root, folder, character, index):
  path = os.path.join(root, folder, character)
  return os.path.join(path, sorted(os.listdir(path))[index])


def test_omniglot_shapes_names_and_order(omniglot_root):
  train = datasets.load_omniglot(omniglot_root, 'train', cache=False)
  assert train.images.shape == (24, 20, 28, 28, 1)
  assert train.images.dtype == np.float32
  assert 0.0 <= train.images.min() and train.images.max() <= 1.0
  assert train.name == 'omniglot/train'
  assert train.class_names == tuple(f'{c}_rot{r}' for c in TRAIN_CHARS
                                    for r in ROTS)
  test = datasets.load_omniglot(omniglot_root, 'test', rotations=False,
                                cache=False)
  assert test.images.shape == (6, 20, 28, 28, 1)
  assert test.class_names == tuple(f'{c}_rot0' for c in TEST_CHARS)
  both = datasets.load_omniglot(omniglot_root, 'all', cache=False)
  assert both.images.shape == (48, 20, 28, 28, 1)
  assert both.class_names == train.class_names + tuple(
      f'{c}_rot{r}' for c in TEST_CHARS for r in ROTS)
  np.testing.assert_array_equal(both.images[:24], train.images)
  np.testing.assert_array_equal(both.images[24::4], test.images)


def test_omniglot_inverts_sorts_and_rotates(omniglot_root):
  """At the native size no resizing happens: pixels are exactly inverted."""
  got = datasets.load_omniglot(omniglot_root, 'train', image_size=105,
                               cache=False)
  for i, character in enumerate(TRAIN_CHARS):
    for j in (0, 7, 19):
      png = _png(omniglot_root, 'images_background', character, j)
      assert png.endswith(f'_{j + 1:02d}.png')
      ink = np.asarray(Image.open(png)) == 0
      image = got.images[4 * i, j, :, :, 0]
      np.testing.assert_array_equal(image, np.where(ink, 1.0, 0.0))
      assert ink.any() and (~ink).any()
    base = got.images[4 * i]
    for k in (1, 2, 3):
      np.testing.assert_array_equal(got.images[4 * i + k],
                                    np.rot90(base, k, axes=(1, 2)))


def test_omniglot_resizes_with_lanczos(omniglot_root):
  got = datasets.load_omniglot(omniglot_root, 'test', image_size=20,
                               rotations=False, cache=False, dtype=np.uint8)
  assert got.images.shape == (6, 20, 20, 20, 1)
  assert got.images.dtype == np.uint8
  png = _png(omniglot_root, 'images_evaluation', TEST_CHARS[2], 5)
  want = 255 - np.asarray(Image.open(png).convert('L').resize(
      (20, 20), Image.Resampling.LANCZOS))
  np.testing.assert_array_equal(got.images[2, 5, :, :, 0], want)


def test_omniglot_requires_equal_drawings(small_omniglot):
  os.remove(_png(small_omniglot, 'images_background',
                 'Alphabet_0/character02', 0))
  with pytest.raises(ValueError, match='character02.*2 images, expected 3'):
    datasets.load_omniglot(small_omniglot, 'train')


def test_omniglot_all_requires_equal_drawings_across_folders(small_omniglot):
  for character in ('Alphabet_1/character01', 'Alphabet_1/character02'):
    os.remove(_png(small_omniglot, 'images_evaluation', character, 0))
  assert datasets.load_omniglot(small_omniglot, 'test').images.shape[1] == 2
  with pytest.raises(ValueError, match='images_evaluation.*character01'):
    datasets.load_omniglot(small_omniglot, 'all')


def test_omniglot_missing_paths(tmp_path, small_omniglot):
  missing = str(tmp_path / 'nowhere')
  with pytest.raises(FileNotFoundError, match='nowhere'):
    datasets.load_omniglot(missing, 'train')
  os.rename(os.path.join(small_omniglot, 'images_evaluation'),
            os.path.join(small_omniglot, 'moved'))
  with pytest.raises(FileNotFoundError, match='images_evaluation'):
    datasets.load_omniglot(small_omniglot, 'test')
  with pytest.raises(ValueError, match='split'):
    datasets.load_omniglot(small_omniglot, 'val')
  with pytest.raises(ValueError, match='image_size'):
    datasets.load_omniglot(small_omniglot, 'train', image_size=0)


def test_omniglot_bad_layouts(small_omniglot):
  empty_alphabet = os.path.join(small_omniglot, 'images_background', 'Empty')
  os.makedirs(empty_alphabet)
  with pytest.raises(ValueError, match='Empty'):
    datasets.load_omniglot(small_omniglot, 'train')
  os.rmdir(empty_alphabet)
  character = os.path.join(small_omniglot, 'images_background',
                           'Alphabet_0', 'character03')
  os.makedirs(character)
  with open(os.path.join(character, 'notes.txt'), 'w') as f:
    f.write('not a png')
  with pytest.raises(ValueError, match='character03'):
    datasets.load_omniglot(small_omniglot, 'train')
  empty_folder = os.path.join(small_omniglot, 'images_evaluation')
  for alphabet in os.listdir(empty_folder):
    os.rename(os.path.join(empty_folder, alphabet),
              os.path.join(small_omniglot, alphabet))
  with pytest.raises(ValueError, match='images_evaluation'):
    datasets.load_omniglot(small_omniglot, 'test')


def test_omniglot_unreadable_png(small_omniglot):
  png = _png(small_omniglot, 'images_background', 'Alphabet_0/character01', 1)
  with open(png, 'wb') as f:
    f.write(b'\x89PNG not really')
  with pytest.raises(ValueError, match=os.path.basename(png)):
    datasets.load_omniglot(small_omniglot, 'train', cache=False)


def test_omniglot_cache_round_trip(small_omniglot, monkeypatch):
  uncached = datasets.load_omniglot(small_omniglot, 'train', cache=False)
  assert not os.path.exists(os.path.join(small_omniglot, 'train_28.npz'))
  first = datasets.load_omniglot(small_omniglot, 'train')
  assert os.path.isfile(os.path.join(small_omniglot, 'train_28.npz'))
  assert sorted(f for f in os.listdir(small_omniglot)
                if f.endswith('.tmp')) == []

  def fail(*args):
    raise AssertionError(f'decoded {args[0]} despite the cache')

  monkeypatch.setattr(datasets, '_read_image', fail)
  second = datasets.load_omniglot(small_omniglot, 'train')
  plain = datasets.load_omniglot(small_omniglot, 'train', rotations=False,
                                 dtype=np.uint8)
  for got in (first, second):
    np.testing.assert_array_equal(got.images, uncached.images)
    assert got.class_names == uncached.class_names
  np.testing.assert_array_equal(
      plain.images.astype(np.float32) / np.float32(255), uncached.images[::4])
  with pytest.raises(AssertionError, match='despite the cache'):
    datasets.load_omniglot(small_omniglot, 'test')  # No test cache yet.


def test_omniglot_corrupt_cache_is_rebuilt(small_omniglot):
  uncached = datasets.load_omniglot(small_omniglot, 'test', image_size=12,
                                    cache=False)
  path = os.path.join(small_omniglot, 'test_12.npz')
  with open(path, 'wb') as f:
    f.write(b'PK\x03\x04 truncated zip')
  got = datasets.load_omniglot(small_omniglot, 'test', image_size=12)
  np.testing.assert_array_equal(got.images, uncached.images)
  with np.load(path) as cache:  # Rewritten, valid.
    assert cache['images'].shape == (2, 3, 12, 12, 1)


def test_omniglot_stale_cache_is_rebuilt(small_omniglot):
  """Caches at 28 and 40 pixels, then one png changes under both."""
  datasets.load_omniglot(small_omniglot, 'train')
  before = datasets.load_omniglot(small_omniglot, 'train', image_size=40)
  assert not np.all(before.images[4, 2] == 1.0)
  png = _png(small_omniglot, 'images_background', 'Alphabet_0/character02', 2)
  Image.fromarray(np.full((40, 40), 0, np.uint8), 'L').save(png)
  os.utime(png, ns=(1, 1))
  got = datasets.load_omniglot(small_omniglot, 'train', image_size=40)
  assert np.all(got.images[4, 2] == 1.0)
  got = datasets.load_omniglot(small_omniglot, 'train')
  np.testing.assert_array_equal(
      got.images, datasets.load_omniglot(small_omniglot, 'train',
                                         cache=False).images)


def test_omniglot_unwritable_root_skips_the_cache(small_omniglot,
                                                   monkeypatch):
  def read_only(*args, **kwargs):
    raise PermissionError('read-only file system')

  monkeypatch.setattr(tempfile, 'mkstemp', read_only)
  got = datasets.load_omniglot(small_omniglot, 'train')
  assert got.images.shape == (8, 3, 28, 28, 1)
  assert not any(f.endswith('.npz') for f in os.listdir(small_omniglot))


# ----------------------------------------------------------------------------
# mini-ImageNet.


def _mini_want(split_index, num_classes, per_class=6, size=84):
  """float32 [C, E, size, size, 3] of the fabricated pixels."""
  return np.stack([
      np.stack([fabricate.mini_pixels(1000 * (100 * split_index + c) + k, size)
                for k in range(per_class)]) for c in range(num_classes)
  ]).astype(np.float32) / 255.0


@pytest.fixture(scope='module')
def mini_roots(tmp_path_factory):
  """Shared, never-modified fakes of both layouts, identical pixels."""
  return {layout: fabricate.write_miniimagenet(
      str(tmp_path_factory.mktemp(f'mini_{layout}')), layout)
          for layout in ('csv', 'pickle')}


def test_mini_pickle_layout_is_exact(mini_roots):
  for s, (split, classes) in enumerate(zip(('train', 'val', 'test'),
                                           (5, 3, 3))):
    got = datasets.load_miniimagenet(mini_roots['pickle'], split)
    assert got.images.shape == (classes, 6, 84, 84, 3)
    assert got.images.dtype == np.float32
    assert got.name == f'miniimagenet/{split}'
    assert got.class_names == tuple(fabricate.mini_label(s, c)
                                    for c in range(classes))
    np.testing.assert_array_equal(got.images, _mini_want(s, classes))


def test_mini_csv_layout_matches_within_jpeg_tolerance(mini_roots):
  for s, split in ((0, 'train'), (2, 'test')):
    from_csv = datasets.load_miniimagenet(mini_roots['csv'], split)
    from_pickle = datasets.load_miniimagenet(mini_roots['pickle'], split)
    assert from_csv.images.shape == from_pickle.images.shape
    assert from_csv.class_names == from_pickle.class_names
    assert from_csv.name == from_pickle.name
    error = np.abs(from_csv.images - _mini_want(s, len(from_csv.images)))
    assert error.mean() < 0.01 and error.max() < 0.1


def test_mini_uint8(mini_roots):
  for layout in ('csv', 'pickle'):
    raw = datasets.load_miniimagenet(mini_roots[layout], 'val',
                                     dtype=np.uint8)
    floats = datasets.load_miniimagenet(mini_roots[layout], 'val')
    assert raw.images.dtype == np.uint8
    np.testing.assert_array_equal(raw.images.astype(np.float32) / 255.0,
                                  floats.images)


def test_mini_prefers_the_pickle(tmp_path):
  root = str(tmp_path)
  fabricate.write_miniimagenet(root, 'csv', (2, 1, 1), per_class=3)
  fabricate.write_miniimagenet(root, 'pickle', (2, 1, 1), per_class=3)
  got = datasets.load_miniimagenet(root, 'train')
  np.testing.assert_array_equal(got.images, _mini_want(0, 2, per_class=3))


def test_mini_resizes(tmp_path):
  for layout in ('csv', 'pickle'):
    root = fabricate.write_miniimagenet(str(tmp_path / layout), layout,
                                        (2, 1, 1), per_class=2, size=100)
    got = datasets.load_miniimagenet(root, 'train')
    assert got.images.shape == (2, 2, 84, 84, 3)
    want = np.asarray(Image.fromarray(fabricate.mini_pixels(1001, 100)).resize(
        (84, 84), Image.Resampling.LANCZOS)) / 255.0
    atol = 1e-6 if layout == 'pickle' else 0.1
    np.testing.assert_allclose(got.images[1, 1], want, atol=atol)
    small = datasets.load_miniimagenet(root, 'val', image_size=32)
    assert small.images.shape == (1, 2, 32, 32, 3)


def test_mini_truncates_to_the_smallest_class(tmp_path):
  csv_root = fabricate.write_miniimagenet(str(tmp_path / 'csv'), 'csv',
                                          (3, 1, 1), per_class=4)
  path = os.path.join(csv_root, 'train.csv')
  with open(path) as f:
    rows = list(csv.reader(f))
  with open(path, 'w', newline='') as f:
    csv.writer(f).writerows(rows[:-2])  # Class 2 keeps 2 of 4 images.
  got = datasets.load_miniimagenet(csv_root, 'train')
  assert got.images.shape == (3, 2, 84, 84, 3)
  np.testing.assert_allclose(got.images, _mini_want(0, 3, 4)[:, :2],
                             atol=0.1)

  pkl_root = fabricate.write_miniimagenet(str(tmp_path / 'pkl'), 'pickle',
                                          (3, 1, 1), per_class=4)
  path = os.path.join(pkl_root, 'mini-imagenet-cache-train.pkl')
  with open(path, 'rb') as f:
    data = pickle.load(f)
  data['class_dict'][fabricate.mini_label(0, 1)].pop(0)
  with open(path, 'wb') as f:
    pickle.dump(data, f)
  got = datasets.load_miniimagenet(pkl_root, 'train')
  want = _mini_want(0, 3, 4)
  np.testing.assert_array_equal(got.images[0], want[0, :3])
  np.testing.assert_array_equal(got.images[1], want[1, 1:])


def test_mini_missing_layouts(tmp_path):
  with pytest.raises(FileNotFoundError, match='nowhere'):
    datasets.load_miniimagenet(str(tmp_path / 'nowhere'), 'train')
  with pytest.raises(FileNotFoundError,
                     match=r'mini-imagenet-cache-val\.pkl.*val\.csv'):
    datasets.load_miniimagenet(str(tmp_path), 'val')
  with pytest.raises(ValueError, match='split'):
    datasets.load_miniimagenet(str(tmp_path), 'training')


def _rewrite(path, text):
  with open(path, 'w') as f:
    f.write(text)


def test_mini_malformed_csv(tmp_path):
  root = fabricate.write_miniimagenet(str(tmp_path), 'csv', (2, 1, 1),
                                      per_class=2)
  path = os.path.join(root, 'train.csv')
  with open(path) as f:
    good = f.read()
  _rewrite(path, good.replace('filename,label', 'file,class'))
  with pytest.raises(ValueError, match='train.csv.*header'):
    datasets.load_miniimagenet(root, 'train')
  lines = good.splitlines()
  _rewrite(path, '\n'.join(lines[:3] + ['missing.jpg,n01000000'] +
                           lines[3:]) + '\n')
  with pytest.raises(ValueError, match='train.csv.* line 4.*missing.jpg'):
    datasets.load_miniimagenet(root, 'train')
  _rewrite(path, '\n'.join(lines[:2] + ['just_one_field']) + '\n')
  with pytest.raises(ValueError, match='train.csv.* line 3'):
    datasets.load_miniimagenet(root, 'train')
  _rewrite(path, lines[0] + '\n')
  with pytest.raises(ValueError, match='train.csv.*no rows'):
    datasets.load_miniimagenet(root, 'train')
  _rewrite(path, good)
  image = os.path.join(root, 'images', lines[2].split(',')[0])
  _rewrite(image, 'not a jpeg')
  with pytest.raises(ValueError, match=os.path.basename(image)):
    datasets.load_miniimagenet(root, 'train')


def test_mini_malformed_pickle(tmp_path):
  root = str(tmp_path)
  path = os.path.join(root, 'mini-imagenet-cache-test.pkl')
  images = np.zeros((4, 84, 84, 3), np.uint8)
  cases = [
      ({'image_data': images}, 'keys'),
      ({'image_data': images[..., 0], 'class_dict': {'a': [0]}}, 'shape'),
      ({'image_data': images.astype(np.float32), 'class_dict': {'a': [0]}},
       'uint8'),
      ({'image_data': images, 'class_dict': {'a': [0, 4]}}, 'rows'),
      ({'image_data': images, 'class_dict': {'a': []}}, 'rows'),
      ({'image_data': images, 'class_dict': {}}, 'class_dict'),
      ([images], 'keys'),
  ]
  for data, message in cases:
    with open(path, 'wb') as f:
      pickle.dump(data, f)
    with pytest.raises(ValueError, match=f'cache-test.pkl.*{message}|'
                       f'{message}.*cache-test.pkl'):
      datasets.load_miniimagenet(root, 'test')
  _rewrite(path, 'garbage')
  with pytest.raises(ValueError, match='cache-test.pkl'):
    datasets.load_miniimagenet(root, 'test')


# ----------------------------------------------------------------------------
# Dispatcher.


def test_load_dispatches(mini_roots, omniglot_root):
  got = datasets.load('digits', None, 'train', rotations=False)
  assert got.images.shape == (5, 174, 8, 8, 1)
  got = datasets.load('miniimagenet', mini_roots['pickle'], 'val',
                      dtype=np.uint8)
  assert got.images.dtype == np.uint8 and got.images.shape[0] == 3
  got = datasets.load('omniglot', omniglot_root, 'test', image_size=14,
                      cache=False)
  assert got.images.shape == (24, 20, 14, 14, 1)


def test_load_errors():
  with pytest.raises(ValueError, match='name.*cifar'):
    datasets.load('cifar', '/tmp', 'train')
  for name in ('omniglot', 'miniimagenet'):
    with pytest.raises(ValueError, match='root'):
      datasets.load(name, None, 'train')
