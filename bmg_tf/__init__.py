"""bmg_tf: Bootstrapped Meta-Gradients (Flennerhag et al., ICLR 2022) in TensorFlow.

Importing this package sets ``TF_USE_LEGACY_KERAS=1`` before TensorFlow is
imported, so that ``tf.keras`` is Keras 2 (``tf_keras``), which TF-Agents
needs. If TensorFlow was already imported with Keras 3, a warning is issued.
"""

import os as _os
import sys as _sys
import warnings as _warnings

if 'tensorflow' in _sys.modules and _os.environ.get('TF_USE_LEGACY_KERAS') != '1':
  _warnings.warn(
      'bmg_tf: TensorFlow was imported before bmg_tf without '
      'TF_USE_LEGACY_KERAS=1; tf.keras may be Keras 3, which TF-Agents cannot '
      'use. Set TF_USE_LEGACY_KERAS=1 before importing TensorFlow.')
_os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

__version__ = '0.1.0'

__all__ = ['__version__']
