r"""Soak test of the runner: faults injected into one run, which must survive.

    python benchmarks/soak.py --kills=20 --out=results/reliability

One two-colours BMG run (`gin/two_colors/ac_bmg.gin`, tiny networks, no
XLA, so that a restart costs seconds) is trained to `--steps` env steps
through `bmg-train` while faults are injected between and during its
processes:

* `--kills` SIGKILLs at random moments; about half are aimed at a
  checkpoint save (the process is killed as soon as a `ckpt-N_temp`
  directory appears);
* a divergence: one resume with `inner/create_optimizer.learning_rate =
  1e30` and no clip, which must stop with an error and change no file;
* a full disk: the run directory is moved onto a tmpfs just large enough
  for what it holds, so that the next save fails with ENOSPC (skipped
  where tmpfs cannot be mounted);
* a deleted `checkpoints/checkpoint` index;
* a corrupt newest checkpoint (bytes overwritten).

After every fault the script checks that no checkpoint was lost (the newest
readable checkpoint is not older than before the fault; a checkpoint that
TensorFlow was writing when the process died may be left half-written, and
is counted apart: the runner skips it), then resumes. At the end
it compares every variable of the final checkpoint with an uninterrupted
run of the same config. Writes `soak.json` and `soak.md` under `--out`:
"N faults injected, N survived, 0 checkpoints lost, final state equal to an
uninterrupted run" when all is well.
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
GIN = os.path.join(REPO, 'gin', 'two_colors', 'ac_bmg.gin')
TINY = ['BootstrapConfig.k_steps = 2', 'BootstrapConfig.l_steps = 3',
        'ActorCritic.hidden_sizes = (16, 16)',
        'ContextualMetaParameters.hidden_sizes = (8,)',
        'MetaLearner.jit_compile = False']


def _cmd(root, args, extra=()):
  bindings = TINY + [
      f'two_colors.build.num_env_steps = {args.steps}',
      f'two_colors.build.checkpoint_every = {args.checkpoint_every}',
      f'two_colors.build.log_every = {args.checkpoint_every}',
      'two_colors.build.export = False', *extra]
  return [sys.executable, '-m', 'pipelines.train', f'--gin_file={GIN}',
          f'--root_dir={root}'] + [f'--gin_bindings={b}' for b in bindings]


def _env():
  return {**os.environ, 'TF_USE_LEGACY_KERAS': '1'}


def _checkpoints(root):
  """(newest readable step or -1, [unreadable ckpt names])."""
  # Imported here: the parent process only needs TF to read checkpoints.
  from bmg_tf import training  # pylint: disable=g-import-not-at-top
  newest, bad = -1, []
  for prefix in training.checkpoint_files(os.path.join(root, 'checkpoints')):
    try:
      training.read_checkpoint(prefix)
    except Exception:  # pylint: disable=broad-except
      bad.append(os.path.basename(prefix))
      continue
    newest = max(newest, int(prefix.rsplit('-', 1)[1]))
  return newest, bad


def _variables(root):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  reader = tf.train.load_checkpoint(
      tf.train.latest_checkpoint(os.path.join(root, 'checkpoints')))
  return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
          if '_CHECKPOINTABLE' not in n}


def _finished(root, steps):
  path = os.path.join(root, 'result.json')
  if not os.path.exists(path):
    return False
  with open(path) as f:
    return json.load(f)['env_steps'] >= steps


def _kill(root, args, rng, at_save):
  """Starts the run, SIGKILLs it; returns whether the kill hit a save."""
  proc = subprocess.Popen(_cmd(root, args), cwd=REPO, env=_env(),
                          stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  ckpt_dir = os.path.join(root, 'checkpoints')
  # A save-aimed kill waits longer for a save to start.
  deadline = time.time() + rng.uniform(4.0, args.max_kill_seconds) * (
      2 if at_save else 1)
  during_save = False
  while time.time() < deadline and proc.poll() is None:
    if at_save and os.path.isdir(ckpt_dir) and any(
        '_temp' in n for n in os.listdir(ckpt_dir)):
      during_save = True
      break
    time.sleep(0.002 if at_save else 0.05)
  if proc.poll() is not None:  # It finished before the kill.
    return None
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  return during_save


def _run(root, args, extra=()):
  return subprocess.run(_cmd(root, args, extra), cwd=REPO, env=_env(),
                        capture_output=True, text=True, timeout=1800)


def _tree(root):
  out = {}
  for base, _, names in os.walk(root):
    for name in names:
      path = os.path.join(base, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, root)] = hash(f.read())
  return out


def _mount_tmpfs(path, size_kb):
  os.makedirs(path, exist_ok=True)
  proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size_kb}k',
                         'tmpfs', path], capture_output=True, text=True,
                        check=False)
  return proc.returncode == 0


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--kills', type=int, default=20)
  parser.add_argument('--steps', type=int, default=200000)
  parser.add_argument('--checkpoint_every', type=int, default=256)
  parser.add_argument('--max_kill_seconds', type=float, default=12.0)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--out', default=os.path.join(REPO, 'results',
                                                    'reliability'))
  args = parser.parse_args()
  rng = random.Random(args.seed)
  scratch = tempfile.mkdtemp(prefix='soak_')
  root = os.path.join(scratch, 'run')
  reference = os.path.join(scratch, 'reference')
  faults = []
  corrupted = set()  # Checkpoints corrupted on purpose (not losses).

  def check(kind, newest_before, detail=None):
    newest, bad = _checkpoints(root)
    bad = [b for b in bad if b not in corrupted]
    if kind == 'corrupt_newest':
      newest_before = newest  # The corrupted one is the fault itself.
    # Lost: a checkpoint that was readable before the fault and has no
    # readable successor after it. A kill inside TensorFlow's save can
    # leave the checkpoint being written half-done (its files are not
    # written atomically); restore skips it, and that is no loss.
    lost = newest < newest_before
    faults.append({'fault': kind, 'newest_before': newest_before,
                   'newest_after': newest, 'half_written': bad,
                   'checkpoint_lost': lost, **(detail or {})})
    print(f'{kind}: newest readable checkpoint {newest_before} -> {newest}'
          f'{"; LOST" if lost else ""} {detail or ""}', flush=True)

  start = time.time()
  proc = _run(reference, args)
  if proc.returncode != 0:
    sys.exit(f'reference run failed: {proc.stderr[-2000:]}')
  print(f'reference run: {time.time() - start:.0f}s', flush=True)

  kills = 0
  specials = {args.kills // 4: 'divergence', args.kills // 2: 'disk_full',
              (3 * args.kills) // 4: 'deleted_index',
              args.kills - 1: 'corrupt_newest'}
  while kills < args.kills:
    before, _ = _checkpoints(root) if os.path.isdir(root) else (-1, [])
    at_save = kills % 2 == 1
    hit = _kill(root, args, rng, at_save)
    if hit is None:
      break  # The run finished: too few steps for the kills asked.
    kills += 1
    check('sigkill', before, {'during_save': hit})
    special = specials.get(kills)
    before, _ = _checkpoints(root)
    if special == 'divergence':
      tree = _tree(os.path.join(root, 'checkpoints'))
      proc = _run(root, args, ['inner/create_optimizer.learning_rate = 1e30',
                               'create_optimizer.clip_global_norm = None'])
      unchanged = tree == _tree(os.path.join(root, 'checkpoints'))
      check('divergence', before, {
          'exit_code': proc.returncode, 'checkpoints_unchanged': unchanged,
          'error': proc.stderr.strip().splitlines()[-1:]})
      faults[-1]['survived'] = proc.returncode != 0 and unchanged
    elif special == 'disk_full':
      # tmpfs counts whole 4 KiB pages per file and directory.
      pages = sum(-(-os.path.getsize(os.path.join(b, n)) // 4096) or 1
                  for b, _, ns in os.walk(root) for n in ns)
      pages += sum(1 + len(ds) for _, ds, _ in os.walk(root))
      mount = os.path.join(scratch, 'small')
      if _mount_tmpfs(mount, 4 * pages + 16):
        small = os.path.join(mount, 'run')
        shutil.copytree(root, small)
        proc = _run(small, args)
        error = proc.stderr.strip().splitlines()[-1:]
        newest, bad = _checkpoints(small)
        faults.append({'fault': 'disk_full', 'newest_before': before,
                       'newest_after': newest, 'half_written': bad,
                       'exit_code': proc.returncode, 'error': error,
                       'checkpoint_lost': newest < before})
        faults[-1]['survived'] = (proc.returncode != 0 and
                                  not faults[-1]['checkpoint_lost'])
        print(f'disk_full: {error} newest {before} -> {newest}', flush=True)
        # Back on the big disk, with what the full one kept.
        shutil.rmtree(root)
        shutil.copytree(small, root)
        subprocess.run(['umount', mount], check=False)
      else:
        faults.append({'fault': 'disk_full', 'skipped': 'cannot mount tmpfs'})
    elif special == 'deleted_index':
      os.remove(os.path.join(root, 'checkpoints', 'checkpoint'))
      check('deleted_index', before)
    elif special == 'corrupt_newest':
      newest, _ = _checkpoints(root)
      data = [n for n in os.listdir(os.path.join(root, 'checkpoints'))
              if n.startswith(f'ckpt-{newest}.data')]
      with open(os.path.join(root, 'checkpoints', data[0]), 'r+b') as f:
        f.seek(64)
        f.write(b'\xff' * 64)
      corrupted.add(f'ckpt-{newest}')
      # Its loss is the fault itself; what matters is that the older one is
      # used and the run ends where an uninterrupted one does.
      check('corrupt_newest', before, {'corrupted': f'ckpt-{newest}'})

  proc = _run(root, args)
  finished = proc.returncode == 0 and _finished(root, args.steps)
  got, want = _variables(root), _variables(reference)
  equal = sorted(got) == sorted(want) and all(
      (got[k] == want[k]).all() for k in want)
  injected = [f for f in faults if 'skipped' not in f]
  survived = [f for f in injected
              if f.get('survived', not f['checkpoint_lost'])]
  lost = sum(bool(f.get('checkpoint_lost')) for f in injected)
  during_save = sum(bool(f.get('during_save')) for f in faults)
  half = sorted({b for f in faults for b in f.get('half_written', [])})
  summary = (f'{len(injected)} faults injected ({kills} SIGKILLs, '
             f'{during_save} aimed at a save), {len(survived)} survived, '
             f'{lost} checkpoints lost, final state '
             f'{"equal" if equal else "NOT EQUAL"} to an uninterrupted run'
             f'{"" if finished else " (the run did NOT finish)"}; '
             f'{len(half)} half-written checkpoints left by faults inside a '
             f'save, skipped on restore')
  print(summary, flush=True)
  os.makedirs(args.out, exist_ok=True)
  report = {'summary': summary, 'args': vars(args), 'faults': faults,
            'finished': finished, 'final_state_equal': equal,
            'wall_seconds': time.time() - start}
  with open(os.path.join(args.out, 'soak.json'), 'w') as f:
    json.dump(report, f, indent=1, default=str)
  lines = ['# Soak test of the runner (`benchmarks/soak.py`)', '',
           f'**{summary}.**', '',
           f'Command: `python benchmarks/soak.py --kills={args.kills} '
           f'--steps={args.steps} --checkpoint_every={args.checkpoint_every} '
           f'--seed={args.seed}`', '',
           '| # | fault | newest readable checkpoint before -> after | '
           'detail |', '|---|---|---|---|']
  for i, f in enumerate(faults):
    detail = {k: v for k, v in f.items() if k not in (
        'fault', 'newest_before', 'newest_after', 'checkpoint_lost')}
    lines.append(f'| {i + 1} | {f["fault"]} | {f.get("newest_before")} -> '
                 f'{f.get("newest_after")} | {json.dumps(detail)} |')
  with open(os.path.join(args.out, 'soak.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  shutil.rmtree(scratch, ignore_errors=True)
  if lost or not equal or not finished or len(survived) != len(injected):
    sys.exit(1)


if __name__ == '__main__':
  main()
