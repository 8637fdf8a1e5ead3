"""Environments for bmg_tf.

Importing this package registers the gymnasium id `'bmg_tf/TwoColors-v0'`
(`bmg_tf.envs.two_colors.TwoColors`, no `max_episode_steps`). The TensorFlow
modules (`gym_adapter`, `tf_two_colors`) are not imported here, so that
importing `bmg_tf.envs` does not import TensorFlow.
"""

import gymnasium as _gymnasium

from bmg_tf.envs.two_colors import TwoColors

TWO_COLORS_ID = 'bmg_tf/TwoColors-v0'

if TWO_COLORS_ID not in _gymnasium.registry:
  _gymnasium.register(
      id=TWO_COLORS_ID,
      entry_point='bmg_tf.envs.two_colors:TwoColors',
      max_episode_steps=None,
  )

__all__ = ['TWO_COLORS_ID', 'TwoColors']
