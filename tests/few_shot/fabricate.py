"""Tiny fake few-shot data sets in the exact on-disk layouts of the real ones.

For tests of `bmg_tf.few_shot.datasets`: content is random but deterministic
(a fixed seed per image), and the default sizes write in well under a second.

*   `write_omniglot`: `images_background` and `images_evaluation` folders of
    `<alphabet>/<character>/NNNN_MM.png` greyscale drawings (black strokes
    on white, like Omniglot).
*   `write_miniimagenet`: the Ravi & Larochelle CSV + JPEG layout or the
    pickled `mini-imagenet-cache-<split>.pkl` layout.
"""

import csv
import os
import pickle
from typing import Sequence

import numpy as np
from PIL import Image
from PIL import ImageDraw

__all__ = ['MINI_SPLITS', 'OMNIGLOT_FOLDERS', 'mini_label', 'mini_pixels',
           'omniglot_drawing', 'write_miniimagenet', 'write_omniglot']

OMNIGLOT_FOLDERS = ('images_background', 'images_evaluation')
MINI_SPLITS = ('train', 'val', 'test')


def omniglot_drawing(seed: int, size: int) -> np.ndarray:
  """One fake Omniglot drawing: uint8 `[size, size]`, 255 background, black
  (0) random strokes and dots; the same for the same `(seed, size)`."""
  rng = np.random.default_rng(seed)
  image = Image.new('L', (size, size), 255)
  draw = ImageDraw.Draw(image)
  for _ in range(int(rng.integers(2, 5))):
    points = [tuple(int(v) for v in rng.integers(0, size, 2))
              for _ in range(3)]
    draw.line(points, fill=0, width=max(1, size // 30))
  for _ in range(3):
    row, col = rng.integers(0, size, 2)
    draw.point((int(col), int(row)), fill=0)
  return np.asarray(image, np.uint8)


def write_omniglot(root: str, alphabets: int = 2, characters: int = 3,
                   drawings: int = 20, size: int = 105) -> str:
  """Writes a fake Omniglot in the layout of the unzipped original zips.

  `root/<folder>/Alphabet_<a>/character<cc>/<NNNN>_<MM>.png` for both
  folders of `OMNIGLOT_FOLDERS`, with `alphabets` alphabets of `characters`
  characters of `drawings` drawings each. Alphabets are numbered on across
  the folders (the evaluation set's start at `alphabets`), characters from
  01 within an alphabet, NNNN is the character's global number (from 0001)
  and MM the drawer (from 01), as in the real data. Pngs are mode 'L',
  `size` x `size`, see `omniglot_drawing` (seeded by the global drawing
  index).

  Args:
    root: directory to write into (created if missing).
    alphabets: alphabets per folder.
    characters: characters per alphabet.
    drawings: pngs per character.
    size: side of the pngs, in pixels.

  Returns:
    `root`.
  """
  number = 0
  for f, folder in enumerate(OMNIGLOT_FOLDERS):
    for a in range(alphabets):
      alphabet = f'Alphabet_{f * alphabets + a}'
      for c in range(characters):
        number += 1
        path = os.path.join(root, folder, alphabet, f'character{c + 1:02d}')
        os.makedirs(path, exist_ok=True)
        for d in range(drawings):
          pixels = omniglot_drawing(number * 1000 + d, size)
          Image.fromarray(pixels, 'L').save(
              os.path.join(path, f'{number:04d}_{d + 1:02d}.png'))
  return root


def mini_label(split_index: int, class_index: int) -> str:
  """WordNet-like label of a fake mini-ImageNet class, e.g. 'n01000002'."""
  return f'n{(split_index + 1) * 1_000_000 + class_index:08d}'


def mini_pixels(seed: int, size: int) -> np.ndarray:
  """One fake mini-ImageNet image: uint8 `[size, size, 3]`.

  Smooth (random colours on a 4x4 grid, upsampled bilinearly) so that JPEG
  at quality 95 stays within a few grey levels of the pixels.
  """
  rng = np.random.default_rng(seed)
  coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
  image = Image.fromarray(coarse, 'RGB').resize(
      (size, size), Image.Resampling.BILINEAR)
  return np.asarray(image, np.uint8)


def write_miniimagenet(root: str, layout: str = 'csv',
                       classes_per_split: Sequence[int] = (5, 3, 3),
                       per_class: int = 6, size: int = 84) -> str:
  """Writes a fake mini-ImageNet in one of the two common layouts.

  Split `s` (train, val, test) has `classes_per_split[s]` classes labelled
  `mini_label(s, c)`, each with `per_class` images `mini_pixels(seed, size)`
  (seed `1000 * (100 * s + c) + k` for image k), identical in both layouts.

  *   `'csv'`: `root/images/<label><k:08d>.jpg` (JPEG, quality 95) and
      `root/<split>.csv` with header `filename,label`, rows class by class.
  *   `'pickle'`: `root/mini-imagenet-cache-<split>.pkl`, a dict with
      `'image_data'` (uint8 `[N, size, size, 3]`) and `'class_dict'`
      (`{label: list of row indices}`).

  Args:
    root: directory to write into (created if missing).
    layout: `'csv'` or `'pickle'`.
    classes_per_split: classes of the train, val and test splits.
    per_class: images per class.
    size: side of the images, in pixels.

  Returns:
    `root`.

  Raises:
    ValueError: unknown `layout`.
  """
  if layout not in ('csv', 'pickle'):
    raise ValueError(f"layout must be 'csv' or 'pickle', got {layout!r}")
  os.makedirs(root, exist_ok=True)
  if layout == 'csv':
    os.makedirs(os.path.join(root, 'images'), exist_ok=True)
  for s, (split, num_classes) in enumerate(zip(MINI_SPLITS,
                                               classes_per_split)):
    rows, images, class_dict = [], [], {}
    for c in range(num_classes):
      label = mini_label(s, c)
      class_dict[label] = []
      for k in range(per_class):
        pixels = mini_pixels(1000 * (100 * s + c) + k, size)
        if layout == 'csv':
          filename = f'{label}{k:08d}.jpg'
          Image.fromarray(pixels, 'RGB').save(
              os.path.join(root, 'images', filename), quality=95)
          rows.append([filename, label])
        else:
          class_dict[label].append(len(images))
          images.append(pixels)
    if layout == 'csv':
      with open(os.path.join(root, f'{split}.csv'), 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['filename', 'label'])
        writer.writerows(rows)
    else:
      data = {'image_data': np.stack(images).astype(np.uint8),
              'class_dict': class_dict}
      with open(os.path.join(root, f'mini-imagenet-cache-{split}.pkl'),
                'wb') as f:
        pickle.dump(data, f)
  return root
