r"""Calls every serving signature of SavedModels in a TensorFlow-only process.

    python fresh_signatures.py INPUTS.npz OUTPUTS.npz DIR [DIR ...]

Imports nothing but TensorFlow and NumPy (never bmg_tf), so it shows that an
export is self-contained. For each DIR (index i) and each signature S it
feeds the arrays of INPUTS.npz named like the signature's inputs
('observation', 'seed', 'context', 'x') and saves every output as
'i/S/<output>' in OUTPUTS.npz. It then feeds each input with a wrong last
dimension ('shape'), an extra leading axis ('rank') and a wrong dtype
('dtype'), and records what the signature raised. The last stdout line is
JSON: {'modules': bmg_tf modules loaded (must be []), 'signatures':
[{S: {'inputs': {name: [shape, dtype]}, 'outputs': {name: [shape,
dtype]}}}], 'errors': {'i/S/input/kind': 'ErrorType: message'}}.
"""

import json
import sys

import numpy as np
import tensorflow as tf


def _wrong(value, kind):
  if kind == 'shape':
    return np.concatenate([value, value[..., :1]], axis=-1)
  if kind == 'rank':
    return value[None]
  return value.astype(np.float64 if value.dtype.kind == 'i' else np.int32)


def main(inputs_path, outputs_path, *dirs):
  inputs = dict(np.load(inputs_path))
  outputs, report = {}, {'signatures': [], 'errors': {}}
  for i, export_dir in enumerate(dirs):
    loaded = tf.saved_model.load(export_dir)
    described = {}
    for name in sorted(loaded.signatures):
      fn = loaded.signatures[name]
      specs = fn.structured_input_signature[1]
      feed = {k: tf.constant(inputs[k], spec.dtype)
              for k, spec in specs.items()}
      result = fn(**feed)
      described[name] = {
          'inputs': {k: [spec.shape.as_list(), spec.dtype.name]
                     for k, spec in specs.items()},
          'outputs': {k: [v.shape.as_list(), v.dtype.name]
                      for k, v in result.items()}}
      for k, v in result.items():
        value = v.numpy()
        if v.dtype == tf.string:  # Saved as unicode, not pickled bytes.
          value = np.array(value.decode())
        outputs[f'{i}/{name}/{k}'] = value
      for k in specs:
        for kind in ('shape', 'rank', 'dtype'):
          bad = {**{j: inputs[j] for j in specs}, k: _wrong(inputs[k], kind)}
          try:
            fn(**{j: tf.constant(v) for j, v in bad.items()})
            message = 'accepted'
          except Exception as e:  # pylint: disable=broad-except
            message = f'{type(e).__name__}: {" ".join(str(e).split())}'
          report['errors'][f'{i}/{name}/{k}/{kind}'] = message[:400]
    report['signatures'].append(described)
  np.savez(outputs_path, **outputs)
  report['modules'] = sorted(m for m in sys.modules if m.startswith('bmg_tf'))
  print(json.dumps(report))


if __name__ == '__main__':
  main(*sys.argv[1:])
