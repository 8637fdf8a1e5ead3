"""Shared pytest set-up: Keras 2 before TensorFlow, quiet logs, clean gin."""

import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import gin  # pylint: disable=g-import-not-at-top
import pytest


def pytest_collection_modifyitems(config, items):
  """Drops tf.test.TestCase's inherited `test_session`, which is not a test."""
  del config
  items[:] = [item for item in items
              if item.name != 'test_session']


@pytest.fixture(autouse=True)
def _clean_gin_config():
  """Every test starts and ends with no gin bindings (they configure the
  pipelines' objects, so one test's bindings must not leak into another)."""
  gin.clear_config()
  yield
  gin.clear_config()
