"""Package definition for bmg_tf.

Install with `make install` (see README): it installs the pinned stack from
requirements/lock.txt with `pip --no-deps`, then this package with
`--no-deps`. A plain dependency-resolving `pip install .` of the whole stack
cannot work: tf-agents 0.19 pins tensorflow-probability~=0.23 and gym<=0.23,
and tf-keras depends on the full `tensorflow` wheel instead of
`tensorflow-cpu` (../shared/STACK.md, traps 1 and 2). So `install_requires`
lists only the dependencies that resolve cleanly; the lock file is the
source of truth for the rest (tensorflow-cpu 2.21, tf-keras 2.21,
tensorflow-probability 0.25, tf-agents 0.19, tensorboard 2.21).
"""

import setuptools

setuptools.setup(
    name='bmg_tf',
    version='0.1.0',
    description=('Bootstrapped Meta-Gradients (Flennerhag et al., ICLR 2022) '
                 'in TensorFlow / Keras.'),
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10,<3.14',
    packages=setuptools.find_packages(
        include=['bmg_tf', 'bmg_tf.*', 'pipelines', 'pipelines.*']),
    install_requires=[
        'absl-py>=2.0',
        'gin-config>=0.5',
        'gymnasium>=1.0',
        'numpy>=2.0,<2.4',
    ],
    entry_points={
        'console_scripts': [
            'bmg-train=pipelines.train:run_main',
            'bmg-export=pipelines.export:run_main',
        ],
    },
    classifiers=[
        'Programming Language :: Python :: 3.11',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
)
