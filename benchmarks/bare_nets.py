"""Plain MLPs for the bare in-graph loops (`bare_bmg.py`, `bare_q.py`).

The bare loops are written without the library, to measure its overhead;
this module is their only shared code: the environment (one stream of the
in-graph two-colours env) and Glorot-uniform MLPs as lists of
`tf.Variable`s. Import it after the script has
set `TF_USE_LEGACY_KERAS`.
"""

import math

import tensorflow as tf

from bmg_tf.envs import tf_two_colors

__all__ = ['env_and_rng', 'mlp', 'mlp_vars']


def env_and_rng():
  """One `TFTwoColors` stream (seed 0) and a generator (seed 0)."""
  return (tf_two_colors.TFTwoColors(batch_size=1, seed=0),
          tf.random.Generator.from_seed(0))


def mlp_vars(rng: tf.random.Generator, sizes):
  """`[w0, b0, w1, b1, ...]` variables of an MLP with layer sizes `sizes`."""
  params = []
  for n_in, n_out in zip(sizes[:-1], sizes[1:]):
    limit = math.sqrt(6.0 / (n_in + n_out))
    params += [tf.Variable(rng.uniform([n_in, n_out], -limit, limit)),
               tf.Variable(tf.zeros([n_out]))]
  return params


def mlp(params, x):
  """ReLU MLP on `x` `[..., n_in]`; linear output `[..., n_out]`."""
  for i in range(0, len(params), 2):
    x = tf.matmul(x, params[i]) + params[i + 1]
    if i + 2 < len(params):
      x = tf.nn.relu(x)
  return x
