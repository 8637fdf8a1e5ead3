r"""Is a refactor behaviour-preserving? Short runs of every shipped gin file,
before and after, compared bit for bit.

    python benchmarks/behaviour_preserved.py --before=19d14ff \
      --out=results/behaviour

For each gin file under `gin/` (of the current tree), the script runs
`python -m pipelines.train` twice with the same short budget: once in a
temporary git worktree of `--before`, once in this tree (each process
imports its own tree's code). It then compares:

* `history.jsonl`: every row, every key except the wall-clock rates
  (`*_per_sec`), exactly;
* the latest checkpoint: the same variable names and bit-identical values.

The gin binding prefix of each tree is read from its gin file
(`run.experiment = @<module>.<function>`), so a renamed entry point is
compared under its new name. A gin file that only exists after is reported
as new. Writes `behaviour.json` and `behaviour.md` under `--out`; exits 1 if
any shared file differs.
"""

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))

# Short budgets per pipeline module: (binding suffix, value) pairs.
SHORT = {
    'two_colors': [('num_env_steps', 4096), ('log_every', 1024),
                   ('checkpoint_every', 2048), ('export', False)],
    'two_colors_q': [('num_env_steps', 3000), ('min_replay_size', 500),
                     ('log_every', 1000), ('checkpoint_every', 1500),
                     ('export', False)],
    'stacx': [('num_frames', 480), ('num_envs', 2), ('unroll_length', 6),
              ('asynchronous', False), ('log_every', 120),
              ('checkpoint_every', 240), ('export', False)],
    'toy_regression': [('num_meta_steps', 20), ('log_every', 5),
                       ('checkpoint_every', 10), ('export', False)],
}
EXPERIMENT = re.compile(r'^run\.experiment\s*=\s*@([\w.]+)\.(\w+)\s*$',
                        re.MULTILINE)


def entry_point(gin_path):
  """(module, function) named by `run.experiment` in a gin file."""
  with open(gin_path) as f:
    match = EXPERIMENT.search(f.read())
  if match is None:
    raise ValueError(f'{gin_path}: no run.experiment binding')
  return match.group(1), match.group(2)


def run(tree, gin_rel, root, extra=()):
  """Trains gin file `gin_rel` of `tree` in `root`; returns (ok, log).

  `extra`: more gin bindings, given to both trees.
  """
  gin_path = os.path.join(tree, gin_rel)
  module, function = entry_point(gin_path)
  prefix = f'{module}.{function}.'
  bindings = [f'{prefix}{k} = {v!r}' for k, v in SHORT[module]] + list(extra)
  cmd = [sys.executable, '-m', 'pipelines.train', f'--gin_file={gin_path}',
         f'--root_dir={root}'] + [f'--gin_bindings={b}' for b in bindings]
  proc = subprocess.run(
      cmd, cwd=tree, capture_output=True, text=True, check=False,
      env={**os.environ, 'TF_USE_LEGACY_KERAS': '1',
           'TF_CPP_MIN_LOG_LEVEL': '2'})
  return proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]


def history(root):
  """The rows of `history.jsonl` without wall-clock rates (None if none)."""
  path = os.path.join(root, 'history.jsonl')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    rows = [json.loads(line) for line in f]
  return [{k: v for k, v in row.items() if not k.endswith('per_sec')}
          for row in rows]


def checkpoint(root):
  """{variable name: value} of the latest checkpoint."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  path = tf.train.latest_checkpoint(os.path.join(root, 'checkpoints'))
  if path is None:
    return None
  reader = tf.train.load_checkpoint(path)
  return {name: reader.get_tensor(name)
          for name in reader.get_variable_to_shape_map()
          if name != '_CHECKPOINTABLE_OBJECT_GRAPH'}


def compare(before_root, after_root):
  """A dict of findings; 'identical' is True when nothing differs."""
  out = {}
  h0, h1 = history(before_root), history(after_root)
  if h0 is None:
    out['history'] = 'new after (no history before)'
  elif h0 == h1:
    out['history'] = f'identical ({len(h0)} rows)'
  else:
    out['history'] = 'DIFFERENT'
    out['history_before'], out['history_after'] = h0, h1
  c0, c1 = checkpoint(before_root), checkpoint(after_root)
  if c0 is None or c1 is None:
    out['checkpoint'] = 'MISSING'
  elif set(c0) != set(c1):
    out['checkpoint'] = 'DIFFERENT NAMES'
    out['only_before'] = sorted(set(c0) - set(c1))
    out['only_after'] = sorted(set(c1) - set(c0))
  else:
    differ = sorted(n for n in c0 if not np.array_equal(
        np.asarray(c0[n]), np.asarray(c1[n])))
    out['checkpoint'] = (f'identical ({len(c0)} variables)' if not differ
                         else f'DIFFERENT: {differ[:10]}')
  out['identical'] = (not out['history'].startswith('DIFFERENT') and
                      out['checkpoint'].startswith('identical'))
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--before', required=True, help='git ref to compare')
  parser.add_argument('--out', default=os.path.join(REPO, 'results',
                                                    'behaviour'))
  parser.add_argument('--configs', default='',
                      help='comma-separated gin paths (default: all)')
  parser.add_argument('--bindings', action='append', default=[],
                      help='an extra gin binding for both trees '
                      '(repeatable), e.g. MetaLearner.jit_compile=False')
  args = parser.parse_args()
  configs = ([c for c in args.configs.split(',') if c] or sorted(
      os.path.relpath(p, REPO)
      for p in glob.glob(os.path.join(REPO, 'gin', '**', '*.gin'),
                         recursive=True)))
  os.makedirs(args.out, exist_ok=True)
  scratch = tempfile.mkdtemp(prefix='behaviour_')
  before_tree = os.path.join(scratch, 'before')
  subprocess.run(['git', 'worktree', 'add', '--detach', before_tree,
                  args.before], cwd=REPO, check=True, capture_output=True)
  commit = subprocess.run(['git', 'rev-parse', args.before], cwd=REPO,
                          check=True, capture_output=True,
                          text=True).stdout.strip()
  results = {}
  try:
    for rel in configs:
      print(f'{rel} ...', flush=True)
      if not os.path.exists(os.path.join(before_tree, rel)):
        results[rel] = {'identical': None, 'note': 'new gin file'}
        continue
      roots = {}
      for name, tree in (('before', before_tree), ('after', REPO)):
        roots[name] = os.path.join(scratch, name + '_runs',
                                   rel.replace('/', '_'))
        ok, log = run(tree, rel, roots[name], args.bindings)
        if not ok:
          results[rel] = {'identical': False, 'note': f'{name} failed',
                          'log': log}
          break
      else:
        results[rel] = compare(roots['before'], roots['after'])
      print(f'  {results[rel]}', flush=True)
  finally:
    subprocess.run(['git', 'worktree', 'remove', '--force', before_tree],
                   cwd=REPO, check=False, capture_output=True)
    shutil.rmtree(scratch, ignore_errors=True)
  report = {'before': commit, 'short_budgets': SHORT,
            'extra_bindings': args.bindings, 'configs': results}
  with open(os.path.join(args.out, 'behaviour.json'), 'w') as f:
    json.dump(report, f, indent=1, default=str)
  lines = [f'# Behaviour before ({commit[:10]}) and after, short runs', '',
           '| gin file | history.jsonl | latest checkpoint | identical |',
           '|---|---|---|---|']
  for rel, r in results.items():
    lines.append(f'| {rel} | {r.get("history", r.get("note", ""))} | '
                 f'{r.get("checkpoint", "")} | {r["identical"]} |')
  with open(os.path.join(args.out, 'behaviour.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))
  if any(r['identical'] is False for r in results.values()):
    sys.exit(1)


if __name__ == '__main__':
  main()
