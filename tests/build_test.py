"""The Bazel BUILD files mirror the imports exactly.

Each BUILD file is evaluated with stand-ins for the `build_defs.bzl` macros
(Starlark's syntax here is Python's), and each Python file's imports are
read with `ast`, including the ones inside functions. Checked:

* every Python file belongs to exactly one target (or is an exported data
  file, or an empty package `__init__.py`), and every `*_test.py` is a
  `bmg_py_test`;
* every first-party import of a target's sources is one of its `deps` (or
  its own source);
* a `bmg_py_library`'s first-party `deps` are exactly its imports, plus
  the targets owning its packages' `__init__.py` files (which run first:
  `//bmg_tf` sets TF_USE_LEGACY_KERAS, `//bmg_tf/envs:two_colors`
  registers the gymnasium env);
* every target's `pip_deps` are exactly its third-party imports, by PyPI
  name (pytest is implied for tests).

Runs under pytest from the source tree and under Bazel from the runfiles
(`//tests:build_test` has every package's sources as data).
"""

import ast
import os
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
PACKAGES = ['', 'benchmarks', 'bmg_tf', 'bmg_tf/agents', 'bmg_tf/core',
            'bmg_tf/envs', 'bmg_tf/few_shot', 'bmg_tf/networks', 'gin',
            'pipelines', 'tests', 'tests/agents', 'tests/core', 'tests/envs',
            'tests/few_shot', 'tests/networks', 'tests/pipelines',
            'tests/reliability', 'tests/tools']
# Folders with a BUILD file and Python files that are not packages of their
# own: the Bazel toolchain's test runner (exported to every test).
NOT_PACKAGES = ('bazel',)
# benchmarks/ modules that tests or other scripts import by name.
BENCHMARK_MODULES = ('study', 'bare_nets', 'q_churn', 'two_colors_q',
                     'two_colors_ceiling')
# tests/tools modules that tests import by name (with tests/tools on
# sys.path).
TEST_HELPERS = ('pipeline_runs',)
FIRST_PARTY = ('bmg_tf', 'pipelines') + BENCHMARK_MODULES + TEST_HELPERS
PYPI = {'gin': 'gin-config', 'absl': 'absl-py', 'ale_py': 'ale-py',
        'minatar': 'MinAtar', 'PIL': 'pillow', 'sklearn': 'scikit-learn',
        'tensorflow_probability': 'tensorflow-probability',
        'tf_agents': 'tf-agents', 'tf_keras': 'tf-keras'}
RULES = ('bmg_py_library', 'bmg_py_binary', 'bmg_py_test')


def _load_build(package):
  """Returns ({name: (rule, attrs)}, exported files) of one BUILD file."""
  targets, exported = {}, []

  def rule(kind):
    def record(name, **attrs):
      targets[name] = (kind, attrs)
    return record

  def glob(patterns, exclude=()):
    del patterns, exclude
    return []

  def exports_files(files, **kwargs):
    del kwargs
    exported.extend(files)

  scope = {'load': lambda *a, **k: None, 'package': lambda **k: None,
           'licenses': lambda *a: None, 'exports_files': exports_files,
           'filegroup': lambda **k: None, 'glob': glob}
  scope.update({kind: rule(kind) for kind in RULES})
  path = os.path.join(REPO, package, 'BUILD')
  with open(path) as f:
    exec(compile(f.read(), path, 'exec'), scope)  # pylint: disable=exec-used
  return targets, exported


def _label(package, dep):
  """Absolute label of `dep` as written in `package`'s BUILD file."""
  if dep.startswith(':'):
    return f'//{package}{dep}'
  if ':' not in dep:
    return f'{dep}:{dep.rsplit("/", 1)[-1]}'
  return dep


def _imports(path):
  """(first-party module names, third-party top-level names) of a file."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0:
      if node.module.split('.')[0] in FIRST_PARTY:
        names.update(f'{node.module}.{a.name}' for a in node.names)
      else:
        names.add(node.module)
  first = {n for n in names if n.split('.')[0] in FIRST_PARTY}
  third = {n.split('.')[0] for n in names} - set(FIRST_PARTY)
  third -= set(sys.stdlib_module_names) | {'__future__'}
  return first, third


@pytest.fixture(scope='module')
def build():
  targets, owner, exported = {}, {}, set()
  for package in PACKAGES:
    found, files = _load_build(package)
    exported.update(os.path.join(package, f) for f in files)
    for name, (kind, attrs) in found.items():
      label = f'//{package}:{name}'
      srcs = list(attrs.get('srcs', [])) + (
          [attrs['src']] if 'src' in attrs else [])
      targets[label] = (kind, attrs, package, srcs)
      for src in srcs:
        if src.startswith('//'):
          continue  # The shared test runner.
        path = os.path.join(package, src)
        assert path not in owner, f'{path}: in {owner[path]} and {label}'
        owner[path] = label
  return targets, owner, exported


def _module_owner(module, owner):
  """The label owning `bmg_tf.core.x` (or its package, for `from a import
  b` where b is a name, not a module)."""
  parts = module.split('.')
  if len(parts) == 1 and parts[0] in BENCHMARK_MODULES:
    parts = ['benchmarks'] + parts
  elif len(parts) == 1 and parts[0] in TEST_HELPERS:
    parts = ['tests', 'tools'] + parts
  while parts:
    for candidate in (os.path.join(*parts) + '.py',
                      os.path.join(*parts, '__init__.py')):
      if candidate in owner:
        return owner[candidate]
    parts = parts[:-1]
  return None


def _owned(label, owner):
  """Base names of the files `label` owns."""
  return {os.path.basename(p) for p, l in owner.items() if l == label}


def test_every_package_is_checked():
  """Each folder with a BUILD file and Python files is in PACKAGES."""
  unchecked = []
  for base, dirs, files in os.walk(REPO):
    rel = os.path.relpath(base, REPO)
    rel = '' if rel == '.' else rel
    dirs[:] = [d for d in dirs if not d.startswith(('.', 'bazel-'))
               and d not in ('results', 'runs', 'build', 'dist', 'docs')
               and not d.endswith('.egg-info')]
    if ('BUILD' in files and any(f.endswith('.py') for f in files)
        and rel not in PACKAGES and rel not in NOT_PACKAGES):
      unchecked.append(rel)
  assert not unchecked, f'add to PACKAGES (and //tests:build_test): {unchecked}'


def test_every_python_file_has_one_target(build):
  _, owner, exported = build
  for package in PACKAGES:
    for name in sorted(os.listdir(os.path.join(REPO, package))):
      path = os.path.join(package, name)
      if not name.endswith('.py') or path in owner or path in exported:
        continue
      if name == '__init__.py' or name == 'conftest.py' or name == (
          'setup.py'):
        with open(os.path.join(REPO, path)) as f:
          body = f.read()
        assert name != '__init__.py' or not body.strip(), (
            f'{path}: non-empty __init__.py must belong to a target')
        continue
      pytest.fail(f'{path}: not in any BUILD target')


def test_every_test_file_is_a_py_test(build):
  targets, owner, _ = build
  for path, label in owner.items():
    if path.endswith('_test.py'):
      assert targets[label][0] == 'bmg_py_test', (path, label)
  assert sum(1 for t in targets.values() if t[0] == 'bmg_py_test') >= 15


def test_deps_mirror_imports(build):
  targets, owner, _ = build
  problems = []
  for label, (kind, attrs, package, srcs) in sorted(targets.items()):
    deps = {_label(package, d) for d in attrs.get('deps', [])}
    first, third = set(), set()
    for src in srcs:
      if src.startswith('//'):
        continue
      f, t = _imports(os.path.join(REPO, package, src))
      first |= f
      third |= t
    needed = set()
    for module in first:
      dep = _module_owner(module, owner)
      if dep is None:
        problems.append(f'{label}: no target provides {module}')
      elif dep != label:
        needed.add(dep)
    # Importing a module first runs its packages' __init__.py files.
    parts = package.split('/') if package else []
    for i in range(1, len(parts) + 1):
      init = _module_owner('.'.join(parts[:i]), owner)
      if init is not None and init != label and '__init__.py' in (
          _owned(init, owner)):
        needed.add(init)
    missing = needed - deps
    if missing:
      problems.append(f'{label}: imports but does not depend on '
                      f'{sorted(missing)}')
    if kind == 'bmg_py_library' and deps - needed:
      problems.append(f'{label}: depends on {sorted(deps - needed)} but '
                      f'does not import them')
    pip = {PYPI.get(n, n) for n in third}
    declared = set(attrs.get('pip_deps', []))
    if kind == 'bmg_py_test':
      declared.add('pytest')
      pip.add('pytest')
    if pip != declared:
      problems.append(f'{label}: pip_deps {sorted(declared)} but imports '
                      f'{sorted(pip)}')
  assert not problems, '\n'.join(problems)
