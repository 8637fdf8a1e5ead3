"""Few-shot classification data sets as dense per-class arrays.

Each loader returns a `ClassDataset` whose `images` array has the shape
`[num_classes, examples_per_class, H, W, C]`: every class has the same number
of examples, so an in-graph episode sampler can draw classes and examples by
index alone. Three sources are supported:

*   `load_digits`: the 8x8 greyscale digits that ship inside scikit-learn,
    with rotated digits as extra classes. A small, offline stand-in for
    Omniglot-style tasks (real pixels, no download).
*   `load_omniglot`: Omniglot (Lake et al., 2015) from the folder layout of
    the original `images_background.zip` / `images_evaluation.zip`, with an
    optional `.npz` cache of the decoded, resized images.
*   `load_miniimagenet`: mini-ImageNet (Vinyals et al., 2016) with the split
    of Ravi & Larochelle (2017), either from its CSV + JPEG layout or from the
    commonly shared `mini-imagenet-cache-<split>.pkl` files.

`load(name, root, split, **kwargs)` dispatches on the data set's name.

Pixel values: with the default `dtype=np.float32` images lie in `[0, 1]`;
with `dtype=np.uint8` they are the raw `0..255` values (so a sampler can keep
the compact array and convert per episode; mini-ImageNet's train split is
~3.3 GB as float32 but ~0.8 GB as uint8). Nothing is ever downloaded.

Rotations: where offered, a rotation by `deg` in (0, 90, 180, 270) degrees is
`np.rot90(image, deg // 90)` over the (H, W) axes, i.e. counter-clockwise.
Rotated copies are separate classes (the MAML convention for Omniglot) and
are stored next to their base class: class `4 * i + k` is base class `i`
rotated by `90 * k` degrees (for Omniglot; see `load_digits` for the digits'
dropped duplicates).
"""

import csv
import os
import pickle
import tempfile
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

__all__ = ['ClassDataset', 'load', 'load_digits', 'load_miniimagenet',
           'load_omniglot']

_ROTATIONS = (0, 90, 180, 270)

# Digits whose rotated classes would duplicate another class: 0, 1 and 8
# look the same after a half turn (so 180 ~ 0 and 270 ~ 90), and 9 rotated
# by 180 (270) is a 6 at 0 (90).
_DIGITS_DROPPED = frozenset({(0, 180), (0, 270), (1, 180), (1, 270),
                             (8, 180), (8, 270), (9, 180), (9, 270)})
_DIGITS_SPLITS = {'train': (0, 1, 2, 3, 4), 'test': (5, 6, 7, 8, 9)}
_DIGITS_PER_CLASS = 174  # The smallest digit count (8) in scikit-learn's set.

_OMNIGLOT_FOLDERS = {'train': ('images_background',),
                     'test': ('images_evaluation',),
                     'all': ('images_background', 'images_evaluation')}
_OMNIGLOT_CACHE_KEYS = {'images_background': 'train',
                        'images_evaluation': 'test'}
_OMNIGLOT_CACHE_VERSION = 1

_MINI_SPLITS = ('train', 'val', 'test')
_MINI_HEADER = ['filename', 'label']


class ClassDataset(NamedTuple):
  """A few-shot data set as one dense array of classes.

  Attributes:
    images: `[num_classes, examples_per_class, H, W, C]` array, float32 in
      `[0, 1]` (default) or uint8 in `0..255` (with `dtype=np.uint8`).
    class_names: tuple of `num_classes` str, one per row of `images`.
    name: str, data set and split, e.g. `'omniglot/train'`.
  """
  images: np.ndarray
  class_names: Tuple[str, ...]
  name: str


def _check_dtype(dtype) -> np.dtype:
  """Returns `dtype` as float32 or uint8; raises ValueError otherwise."""
  try:
    checked = np.dtype(dtype)
  except TypeError as e:
    raise ValueError(f'dtype must be np.float32 or np.uint8, got {dtype!r}'
                     ) from e
  if checked not in (np.dtype(np.float32), np.dtype(np.uint8)):
    raise ValueError(f'dtype must be np.float32 or np.uint8, got {dtype!r}')
  return checked


def _check_image_size(image_size) -> int:
  """Returns `image_size` as an int >= 1; raises ValueError otherwise."""
  if isinstance(image_size, bool) or not isinstance(
      image_size, (int, np.integer)) or image_size < 1:
    raise ValueError(
        f'image_size must be a positive int, got {image_size!r}')
  return int(image_size)


def _from_uint8(images: np.ndarray, dtype: np.dtype) -> np.ndarray:
  """uint8 `0..255` -> `dtype` (float32 in `[0, 1]`, or uint8 as is)."""
  if dtype == np.uint8:
    return images
  return images.astype(np.float32) / np.float32(255.0)


def _with_rotations(images: np.ndarray, names: Sequence[str],
                    rotations: bool) -> Tuple[np.ndarray, Tuple[str, ...]]:
  """Adds rotated copies of each class next to it.

  Args:
    images: `[N, E, H, W, C]` array, any dtype; H must equal W if
      `rotations`.
    names: N base class names.
    rotations: if True, every class `i` becomes classes `4i .. 4i + 3`,
      rotated by 0, 90, 180 and 270 degrees; otherwise only 0.

  Returns:
    `(images, names)`: `[N * R, E, H, W, C]` with R = 4 or 1, same dtype, and
    the N * R names `'<name>_rot<deg>'`.
  """
  degrees = _ROTATIONS if rotations else (0,)
  if len(degrees) == 1:
    return images, tuple(f'{n}_rot0' for n in names)
  out = np.empty((images.shape[0], len(degrees)) + images.shape[1:],
                 images.dtype)
  for k, deg in enumerate(degrees):
    out[:, k] = np.rot90(images, deg // 90, axes=(2, 3))
  out = out.reshape((-1,) + images.shape[1:])
  return out, tuple(f'{n}_rot{d}' for n in names for d in degrees)


# --------------------------------------------------------------------------
# Digits (scikit-learn).


def load_digits(split: str, rotations: bool = True,
                dtype=np.float32) -> ClassDataset:
  """The scikit-learn digits as a small few-shot task (no download).

  What it is: scikit-learn's `sklearn.datasets.load_digits`, which ships the
  test set of the UCI "Optical Recognition of Handwritten Digits" data: 1,797
  greyscale 8x8 images with values 0..16 (174 to 183 per digit). It is a
  small, honest stand-in for Omniglot-style tasks (real handwriting, few
  pixels, runs offline in seconds), not a benchmark with published numbers.

  Classes are (digit, rotation) pairs, the rotation by 0, 90, 180 or 270
  degrees (`np.rot90` over H, W: counter-clockwise) when `rotations`, else
  only 0. Splits are by base digit, so meta-train and meta-test never share a
  digit: `'train'` holds digits 0-4, `'test'` digits 5-9. Rotated classes
  that are near-identical copies of another class are dropped: 0, 1 and 8 at
  180 and 270 degrees (these digits are symmetric under a half turn, so 180
  repeats 0 and 270 repeats 90) and 9 at 180 and 270 (a 6 at 0 and 90). This
  leaves 16 classes per split with rotations (train: digits 0 and 1 with 2
  rotations, 2-4 with 4; test: 5-7 with 4, 8 and 9 with 2) and 5 without.
  Classes are ordered by digit, then rotation.

  Every class keeps the first 174 images of its digit in the data set's
  order (174 is the smallest count over all ten digits, so both splits have
  the same number of examples per class); the result is deterministic.

  Args:
    split: `'train'` (digits 0-4) or `'test'` (digits 5-9).
    rotations: whether to add the rotated classes.
    dtype: `np.float32` (values / 16, in `[0, 1]`) or `np.uint8`
      (`round(value * 255 / 16)`, in `0..255`).

  Returns:
    A `ClassDataset` with `images` of shape `[16, 174, 8, 8, 1]` (or
    `[5, 174, 8, 8, 1]` without rotations) of `dtype`, `class_names` like
    `'digit3_rot90'`, and `name` `'digits/<split>'`.

  Raises:
    ValueError: unknown `split` or `dtype`.
  """
  if split not in _DIGITS_SPLITS:
    raise ValueError(f'split must be one of {sorted(_DIGITS_SPLITS)} for '
                     f'digits, got {split!r}')
  dtype = _check_dtype(dtype)
  # Imported here: scikit-learn is only needed by this loader.
  import sklearn.datasets  # pylint: disable=g-import-not-at-top
  data = sklearn.datasets.load_digits()
  degrees = _ROTATIONS if rotations else (0,)
  images, names = [], []
  for digit in _DIGITS_SPLITS[split]:
    base = data.images[data.target == digit][:_DIGITS_PER_CLASS]
    base = base.astype(np.float32)[..., None]  # [E, 8, 8, 1], 0..16.
    for deg in degrees:
      if (digit, deg) in _DIGITS_DROPPED:
        continue
      images.append(np.rot90(base, deg // 90, axes=(1, 2)))
      names.append(f'digit{digit}_rot{deg}')
  stacked = np.stack(images)
  if dtype == np.uint8:
    stacked = np.round(stacked * (255.0 / 16.0)).astype(np.uint8)
  else:
    stacked = stacked / np.float32(16.0)
  return ClassDataset(np.ascontiguousarray(stacked), tuple(names),
                      f'digits/{split}')


# --------------------------------------------------------------------------
# Omniglot.


def _subdirs(path: str) -> List[str]:
  """Sorted names of the directories inside `path` (hidden ones skipped)."""
  return sorted(n for n in os.listdir(path)
                if not n.startswith('.') and
                os.path.isdir(os.path.join(path, n)))


def _scan_omniglot(folder: str) -> Tuple[List[str], List[List[str]]]:
  """Lists an Omniglot split folder.

  Args:
    folder: path of `images_background` or `images_evaluation`.

  Returns:
    `(names, files)`: the character names `'<alphabet>/<character>'` sorted
    by (alphabet, character), and for each the sorted png paths.

  Raises:
    ValueError: no alphabet or character folders, a character folder
      without pngs.
  """
  alphabets = _subdirs(folder)
  if not alphabets:
    raise ValueError(f'No alphabet folders in Omniglot folder {folder!r}')
  names, files = [], []
  for alphabet in alphabets:
    alphabet_dir = os.path.join(folder, alphabet)
    characters = _subdirs(alphabet_dir)
    if not characters:
      raise ValueError(
          f'No character folders in Omniglot alphabet {alphabet_dir!r}')
    for character in characters:
      character_dir = os.path.join(alphabet_dir, character)
      pngs = sorted(n for n in os.listdir(character_dir)
                    if n.lower().endswith('.png') and not n.startswith('.'))
      if not pngs:
        raise ValueError(
            f'No .png images in Omniglot character folder {character_dir!r}')
      names.append(f'{alphabet}/{character}')
      files.append([os.path.join(character_dir, n) for n in pngs])
  return names, files


def _read_image(path: str, mode: str, image_size: int) -> np.ndarray:
  """Reads one image as uint8 `[image_size, image_size(, 3)]`.

  Converts to `mode` ('L' or 'RGB') and resizes with PIL's LANCZOS filter
  when the image is not already `image_size` x `image_size`.

  Raises:
    ValueError: the file cannot be read or decoded (names the file).
  """
  try:
    with Image.open(path) as image:
      image = image.convert(mode)
      if image.size != (image_size, image_size):
        image = image.resize((image_size, image_size),
                             Image.Resampling.LANCZOS)
      return np.asarray(image, np.uint8)
  except (OSError, ValueError, SyntaxError) as e:  # PIL's decode errors.
    raise ValueError(f'Cannot read image {path!r}: {e}') from e


def _file_signature(files: Sequence[str]) -> np.ndarray:
  """int64 `[len(files), 2]`: (size, mtime in ns) of each file."""
  stats = [os.stat(f) for f in files]
  return np.array([[s.st_size, s.st_mtime_ns] for s in stats], np.int64)


def _read_cache(path: str, names: Sequence[str], relative: Sequence[str],
                signature: np.ndarray, shape: Tuple[int, ...]
                ) -> Optional[np.ndarray]:
  """The cached uint8 images if `path` holds them for exactly these files.

  Returns None for a missing, unreadable, corrupt or stale cache (other
  characters, files, file sizes or modification times, or image shape).
  """
  if not os.path.isfile(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as cache:
      if (int(cache['version']) != _OMNIGLOT_CACHE_VERSION or
          cache['names'].tolist() != list(names) or
          cache['files'].tolist() != list(relative) or
          not np.array_equal(cache['signature'], signature)):
        return None
      images = cache['images']
  except Exception:  # pylint: disable=broad-except
    return None  # Corrupt (truncated zip, missing key, ...): rebuild.
  if images.dtype != np.uint8 or images.shape != shape:
    return None
  return images


def _write_cache(path: str, images: np.ndarray, names: Sequence[str],
                 relative: Sequence[str], signature: np.ndarray) -> None:
  """Atomically writes the cache; silently gives up if it cannot."""
  directory = os.path.dirname(path) or '.'
  try:
    handle, tmp = tempfile.mkstemp(dir=directory, suffix='.npz.tmp')
  except OSError:
    return  # Read-only root: no cache.
  try:
    with os.fdopen(handle, 'wb') as f:
      np.savez(f, version=np.int64(_OMNIGLOT_CACHE_VERSION), images=images,
               names=np.array(names, dtype=str),
               files=np.array(relative, dtype=str), signature=signature)
    os.replace(tmp, path)
  except OSError:
    try:
      os.remove(tmp)
    except OSError:
      pass


def _load_omniglot_folder(root: str, folder_name: str, image_size: int,
                          cache: bool, expected: Optional[int]
                          ) -> Tuple[np.ndarray, List[str]]:
  """Loads one Omniglot split folder as uint8 strokes-are-255 images.

  Args:
    root: the Omniglot root.
    folder_name: `'images_background'` or `'images_evaluation'`.
    image_size: side of the resized images.
    cache: whether to read/write `root/<split>_<image_size>.npz`.
    expected: the required drawings per character, or None to take the
      first character's count.

  Returns:
    `(images, names)`: uint8 `[num_characters, drawings, image_size,
    image_size, 1]` and the `'<alphabet>/<character>'` names.

  Raises:
    FileNotFoundError: the folder is missing.
    ValueError: bad layout, unequal drawings per character, unreadable png.
  """
  folder = os.path.join(root, folder_name)
  if not os.path.isdir(folder):
    raise FileNotFoundError(
        f'Omniglot split folder {folder!r} not found (expected the unzipped '
        f'{folder_name}.zip under root {root!r})')
  names, files = _scan_omniglot(folder)
  if expected is None:
    expected = len(files[0])
  for name, pngs in zip(names, files):
    if len(pngs) != expected:
      raise ValueError(
          f'Omniglot character folder {os.path.join(folder, name)!r} has '
          f'{len(pngs)} images, expected {expected} (like the first '
          f'character); every character must have the same number')
  flat = [f for pngs in files for f in pngs]
  relative = [os.path.relpath(f, root) for f in flat]
  shape = (len(names), expected, image_size, image_size, 1)
  cache_path = os.path.join(
      root, f'{_OMNIGLOT_CACHE_KEYS[folder_name]}_{image_size}.npz')
  signature = _file_signature(flat) if cache else None
  if cache:
    images = _read_cache(cache_path, names, relative, signature, shape)
    if images is not None:
      return images, names
  images = np.empty(shape, np.uint8)
  for i, pngs in enumerate(files):
    for j, png in enumerate(pngs):
      # Omniglot draws black strokes on white: invert so strokes are 255.
      images[i, j, :, :, 0] = 255 - _read_image(png, 'L', image_size)
  if cache:
    _write_cache(cache_path, images, names, relative, signature)
  return images, names


def load_omniglot(root: str, split: str, image_size: int = 28,
                  rotations: bool = True, cache: bool = True,
                  dtype=np.float32) -> ClassDataset:
  """Omniglot from the folder layout of its original zips.

  Expects `root/images_background/<alphabet>/<character>/*.png` and
  `root/images_evaluation/<alphabet>/<character>/*.png`, i.e. the
  `images_background.zip` and `images_evaluation.zip` of
  github.com/brendenlake/omniglot unzipped into `root`. `split='train'` reads
  the background set (964 characters of 30 alphabets) and `split='test'` the
  evaluation set (659 characters of 20 alphabets): the background/evaluation
  split of Lake et al. (2015). MAML (Finn et al., 2017) instead split all
  1623 characters 1200/423; `split='all'` returns both sets concatenated,
  background first, so a caller can re-split (by base character: with
  `rotations`, classes `4i .. 4i + 3` are one character).

  Characters are sorted by (alphabet, character) folder name, drawings by
  file name. Each png is converted to greyscale ('L'), resized to
  `image_size` x `image_size` with PIL's LANCZOS filter (skipped when
  already that size) and inverted: Omniglot draws black strokes on white,
  here strokes are 1 (255) and the background 0.

  With `cache`, the decoded images (uint8, before rotation) are stored in
  `root/<train|test>_<image_size>.npz` together with the file names, sizes
  and modification times; later loads of the same files read only the cache.
  A stale (files changed) or corrupt cache is ignored and rewritten; when
  `root` is not writable no cache is written, silently. `split='all'` uses
  the train and test caches.

  Args:
    root: the directory holding `images_background` / `images_evaluation`.
    split: `'train'` (background), `'test'` (evaluation) or `'all'` (both).
    image_size: side of the square output images, in pixels.
    rotations: whether every character also appears rotated by 90, 180 and
      270 degrees, as three more classes (the MAML convention).
    cache: whether to read and write the `.npz` cache.
    dtype: `np.float32` (`[0, 1]`) or `np.uint8` (`0..255`).

  Returns:
    A `ClassDataset` with `images` of shape `[num_characters * R, drawings,
    image_size, image_size, 1]` of `dtype` (R = 4 with `rotations`, else 1;
    drawings is 20 in the real data), `class_names`
    `'<alphabet>/<character>_rot<deg>'` and `name` `'omniglot/<split>'`.

  Raises:
    FileNotFoundError: `root` or the split's folder does not exist.
    ValueError: unknown `split`, bad `image_size` or `dtype`, a folder
      without alphabet or character folders, a character folder without
      pngs, a character with another number of drawings than the first one,
      an unreadable image (each naming the offending path).
  """
  if split not in _OMNIGLOT_FOLDERS:
    raise ValueError(f'split must be one of {sorted(_OMNIGLOT_FOLDERS)} for '
                     f'Omniglot, got {split!r}')
  image_size = _check_image_size(image_size)
  dtype = _check_dtype(dtype)
  if not os.path.isdir(root):
    raise FileNotFoundError(f'Omniglot root {root!r} is not a directory')
  parts, names, expected = [], [], None
  for folder_name in _OMNIGLOT_FOLDERS[split]:
    images, folder_names = _load_omniglot_folder(root, folder_name,
                                                 image_size, cache, expected)
    expected = images.shape[1]
    parts.append(images)
    names.extend(folder_names)
  images = parts[0] if len(parts) == 1 else np.concatenate(parts)
  images, class_names = _with_rotations(images, names, rotations)
  return ClassDataset(_from_uint8(images, dtype), class_names,
                      f'omniglot/{split}')


# --------------------------------------------------------------------------
# mini-ImageNet.


def _read_mini_csv(path: str, image_dir: str) -> Dict[str, List[str]]:
  """{label: image paths in CSV order} of a Ravi & Larochelle split CSV.

  Raises:
    FileNotFoundError: `image_dir` is missing.
    ValueError: wrong header, malformed row, missing image, no rows.
  """
  if not os.path.isdir(image_dir):
    raise FileNotFoundError(
        f'mini-ImageNet image folder {image_dir!r} not found (needed by '
        f'{path!r})')
  classes: Dict[str, List[str]] = {}
  with open(path, newline='', encoding='utf-8-sig') as f:
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None or [h.strip() for h in header] != _MINI_HEADER:
      raise ValueError(f'{path!r}: header must be "filename,label", got '
                       f'{header!r}')
    for row in reader:
      if not row:
        continue
      line = reader.line_num
      if len(row) != 2 or not row[0].strip() or not row[1].strip():
        raise ValueError(f'{path!r} line {line}: expected "filename,label", '
                         f'got {row!r}')
      filename, label = row[0].strip(), row[1].strip()
      image_path = os.path.join(image_dir, filename)
      if not os.path.isfile(image_path):
        raise ValueError(f'{path!r} line {line}: image {image_path!r} not '
                         f'found')
      classes.setdefault(label, []).append(image_path)
  if not classes:
    raise ValueError(f'{path!r}: no rows after the header')
  return classes


def _load_mini_csv(path: str, image_dir: str, image_size: int,
                   dtype: np.dtype) -> Tuple[np.ndarray, Tuple[str, ...]]:
  """Images `[C, E, S, S, 3]` of `dtype` and sorted labels from a CSV."""
  classes = _read_mini_csv(path, image_dir)
  labels = sorted(classes)
  per_class = min(len(classes[label]) for label in labels)
  out = np.empty((len(labels), per_class, image_size, image_size, 3), dtype)
  for i, label in enumerate(labels):
    for j, image_path in enumerate(classes[label][:per_class]):
      out[i, j] = _from_uint8(_read_image(image_path, 'RGB', image_size),
                              dtype)
  return out, tuple(labels)


def _load_mini_pickle(path: str, image_size: int, dtype: np.dtype
                      ) -> Tuple[np.ndarray, Tuple[str, ...]]:
  """Images `[C, E, S, S, 3]` of `dtype` and sorted labels from a pickle.

  Raises:
    ValueError: unreadable pickle, missing keys, wrong shapes or indices.
  """
  try:
    with open(path, 'rb') as f:
      # latin1 also reads the Python 2 pickles some copies circulate as.
      data = pickle.load(f, encoding='latin1')
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'Cannot unpickle mini-ImageNet cache {path!r}: {e}'
                     ) from e
  if not isinstance(data, dict) or not {'image_data', 'class_dict'} <= set(
      data):
    raise ValueError(f'{path!r}: expected a dict with keys "image_data" and '
                     f'"class_dict"')
  image_data, class_dict = data['image_data'], data['class_dict']
  if (not isinstance(image_data, np.ndarray) or image_data.dtype != np.uint8
      or image_data.ndim != 4 or image_data.shape[-1] != 3 or
      image_data.shape[0] == 0):
    raise ValueError(
        f'{path!r}: "image_data" must be uint8 of shape [N, H, W, 3], got '
        f'{getattr(image_data, "dtype", type(image_data))} '
        f'{getattr(image_data, "shape", None)}')
  if not isinstance(class_dict, dict) or not class_dict:
    raise ValueError(f'{path!r}: "class_dict" must be a non-empty dict '
                     f'{{label: row indices}}')
  labels = sorted(class_dict)
  rows = {}
  for label in labels:
    try:
      index = np.asarray(class_dict[label], np.int64)
    except (TypeError, ValueError) as e:
      raise ValueError(f'{path!r}: class_dict[{label!r}] is not a list of '
                       f'row indices') from e
    if index.ndim != 1 or index.size == 0 or index.min() < 0 or (
        index.max() >= image_data.shape[0]):
      raise ValueError(f'{path!r}: class_dict[{label!r}] must be a non-empty '
                       f'list of rows in [0, {image_data.shape[0]})')
    rows[label] = index
  per_class = min(index.size for index in rows.values())
  out = np.empty((len(labels), per_class, image_size, image_size, 3), dtype)
  resize = image_data.shape[1:3] != (image_size, image_size)
  for i, label in enumerate(labels):
    block = image_data[rows[label][:per_class]]
    if resize:
      block = np.stack([
          np.asarray(Image.fromarray(b).resize(
              (image_size, image_size), Image.Resampling.LANCZOS), np.uint8)
          for b in block])
    out[i] = _from_uint8(block, dtype)
  return out, tuple(str(label) for label in labels)


def load_miniimagenet(root: str, split: str, image_size: int = 84,
                      dtype=np.float32) -> ClassDataset:
  """mini-ImageNet (Ravi & Larochelle split) from either common layout.

  Layouts, detected per split (the pickle wins when both are present):

  a. CSV: `root/images/*.jpg` plus `root/<split>.csv` with header
     `filename,label` (label a WordNet id such as `n01532829`). Images are
     read as RGB and resized to `image_size` with PIL's LANCZOS filter when
     not already that size.
  b. Pickle: `root/mini-imagenet-cache-<split>.pkl`, a pickled dict with
     `'image_data'` (uint8 `[N, 84, 84, 3]`) and `'class_dict'` (`{label:
     list of row indices}`). Rows are resized like the JPEGs when
     `image_size` differs. Unpickling runs code: only load trusted files.

  Classes are sorted by label; examples keep the CSV / `class_dict` order.
  Every class is truncated to the smallest class's count (a no-op on the
  real data, which has exactly 600 images per class).

  Memory: the train split (64 classes x 600) is ~3.3 GB as float32 at 84x84;
  pass `dtype=np.uint8` (~0.8 GB) and convert per episode if that is too
  much. The output is allocated once and filled class by class.

  Args:
    root: directory holding either layout.
    split: `'train'` (64 classes), `'val'` (16) or `'test'` (20).
    image_size: side of the square output images, in pixels.
    dtype: `np.float32` (`[0, 1]`) or `np.uint8` (`0..255`).

  Returns:
    A `ClassDataset` with `images` of shape `[num_classes, per_class,
    image_size, image_size, 3]` of `dtype`, `class_names` the sorted labels
    and `name` `'miniimagenet/<split>'`.

  Raises:
    FileNotFoundError: `root` is missing, or neither layout is found for
      `split` (the message lists both expected paths).
    ValueError: unknown `split`, bad `image_size` or `dtype`, a malformed CSV
      (wrong header, bad row, missing image; names the file and line), an
      unreadable image, a malformed pickle (missing keys, wrong shape or
      indices; names the file).
  """
  if split not in _MINI_SPLITS:
    raise ValueError(f'split must be one of {list(_MINI_SPLITS)} for '
                     f'mini-ImageNet, got {split!r}')
  image_size = _check_image_size(image_size)
  dtype = _check_dtype(dtype)
  if not os.path.isdir(root):
    raise FileNotFoundError(
        f'mini-ImageNet root {root!r} is not a directory')
  pickle_path = os.path.join(root, f'mini-imagenet-cache-{split}.pkl')
  csv_path = os.path.join(root, f'{split}.csv')
  image_dir = os.path.join(root, 'images')
  if os.path.isfile(pickle_path):
    images, labels = _load_mini_pickle(pickle_path, image_size, dtype)
  elif os.path.isfile(csv_path):
    images, labels = _load_mini_csv(csv_path, image_dir, image_size, dtype)
  else:
    raise FileNotFoundError(
        f'No mini-ImageNet {split!r} split under root {root!r}: expected '
        f'either the pickle {pickle_path!r} or the CSV layout {csv_path!r} '
        f'with images in {image_dir!r}')
  return ClassDataset(images, labels, f'miniimagenet/{split}')


# --------------------------------------------------------------------------
# Dispatcher.

_LOADERS = {'digits': load_digits, 'omniglot': load_omniglot,
            'miniimagenet': load_miniimagenet}


def load(name: str, root: Optional[str], split: str,
         **kwargs) -> ClassDataset:
  """Loads a data set by name.

  Args:
    name: `'digits'`, `'omniglot'` or `'miniimagenet'`.
    root: the data set's directory; ignored for `'digits'` (may be None),
      required for the others.
    split: passed to the loader (see each loader for the valid values).
    **kwargs: further arguments of the loader (`rotations`, `image_size`,
      `cache`, `dtype`).

  Returns:
    The loader's `ClassDataset`.

  Raises:
    ValueError: unknown `name`, or `root` is None for a data set on disk;
      and whatever the loader raises.
  """
  if name not in _LOADERS:
    raise ValueError(f'name must be one of {sorted(_LOADERS)}, got {name!r}')
  if name == 'digits':
    return load_digits(split, **kwargs)
  if root is None:
    raise ValueError(f'root is required for {name!r} (the directory holding '
                     f'the data set), got None')
  return _LOADERS[name](root, split, **kwargs)
