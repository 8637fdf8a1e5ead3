"""Shared pytest set-up: Keras 2 before TensorFlow, quiet logs."""

import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def pytest_collection_modifyitems(config, items):
  """Drops tf.test.TestCase's inherited `test_session`, which is not a test."""
  del config
  items[:] = [item for item in items
              if item.name != 'test_session']
