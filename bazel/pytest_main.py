"""Runs one pytest file as a Bazel py_test: `pytest_main.py <test file>`.

The project's pytest settings (pytest.ini) are passed explicitly, since the
runfiles tree holds only the declared files.
"""

import os
import sys

os.environ['TF_USE_LEGACY_KERAS'] = '1'
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pytest  # pylint: disable=g-import-not-at-top


def main(argv):
  if len(argv) < 2:
    sys.exit('usage: pytest_main.py <test file> [pytest args]')
  root = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
  path = os.path.join(root, argv[1])
  args = [path, f'--rootdir={root}', '-c', os.devnull, '-p',
          'no:cacheprovider', '--import-mode=importlib', '-o',
          'python_files=*_test.py', '-q', *argv[2:]]
  if os.environ.get('XML_OUTPUT_FILE'):
    args.append(f'--junitxml={os.environ["XML_OUTPUT_FILE"]}')
  sys.exit(pytest.main(args))


if __name__ == '__main__':
  main(sys.argv)
