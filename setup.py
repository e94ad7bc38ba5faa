"""vaeprior_jax: variational auto-encoders with learned priors, in JAX/Flax."""

import setuptools

# The range of versions the library supports: the lower bounds are the oldest set `make
# compat-oldest` tests (.ci/oldest.txt), the upper bounds exclude the next major/minor releases, whose
# API changes nobody has tested yet (`make compat-newest` installs the newest releases within them).
# Colab ships its own jax, jaxlib and (on TPU) libtpu: any version in range is kept as it is.
INSTALL_REQUIRES = [
    'jax>=0.8.0,<0.11',
    'flax>=0.11.0,<0.13',
    'optax>=0.2.5,<0.3',
    'chex>=0.1.90',
    'orbax-checkpoint>=0.11.20,<0.13',
    'absl-py>=2.1',
    'ml_collections>=1.0.0',
    'numpy>=2.0',
    # Input pipelines run on the CPU build of TensorFlow (Linux); elsewhere the regular build.
    'tensorflow-cpu>=2.21,<2.22; sys_platform == "linux"',
    'tensorflow>=2.21,<2.22; sys_platform != "linux"',
    'tensorboard>=2.21,<2.22',  # tf.summary needs it; tensorflow-cpu 2.21 does not pull it in.
    'tensorflow-datasets>=4.9.10,<4.10',
    'pillow>=10.0',
    'importlib_resources>=6.0',  # Needed by tfds' builders, not declared by tfds.
    'scipy>=1.11',  # Reads Omniglot's chardata.mat.
    'matplotlib>=3.8',  # The analyses' figures.
    'blackjax>=1.7.1,<1.8',  # MALA transitions and R-hat/ESS of the AIS bounds on log Z.
]

LINUX_X86_64 = 'sys_platform == "linux" and platform_machine == "x86_64"'
ONEDNN = [f'{name}==2023.2.0; {LINUX_X86_64}' for name in ('onednn-cpu-gomp', 'onednn-devel-cpu-gomp')]

setuptools.setup(
    name='vaeprior_jax',
    version='0.1.0',
    description='Variational auto-encoders with learned priors (RealNVP, VampPrior, ...) in JAX/Flax.',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=setuptools.find_packages(include=['vaeprior_jax', 'vaeprior_jax.*', 'experiments',
                                               'experiments.*']),
    # The oneDNN backend's custom calls, compiled at first use (vaeprior_jax/cpu/onednn.py).
    package_data={'vaeprior_jax': ['cpu/csrc/*.cc']},
    python_requires='>=3.11',
    install_requires=INSTALL_REQUIRES,
    extras_require={
        # The tests cover the oneDNN backend too, where its wheels exist.
        # nbclient, nbformat, ipykernel: tests/e2e/notebooks_test.py runs the notebooks in a kernel.
        'dev': ['pytest>=8.0', 'pytest-xdist>=3.5', 'nbclient>=0.10', 'nbformat>=5.10',
                'ipykernel>=6.29'] + ONEDNN,
        # The PyTorch peer of benchmarks/ (prefer the CPU build: see benchmarks/README.md).
        'bench': ['torch>=2.0'],
        # tests/evaluation/fid_test.py's comparison with pytorch-fid (prefer CPU builds: docs/dai2019.md).
        'fidcheck': ['torch>=2.0', 'torchvision', 'pytorch-fid==0.3.0'],
        # model.conv_backend='onednn' (CPU): libdnnl built with GNU OpenMP, and its headers; the
        # custom calls are compiled with $CXX (default g++) at first use.
        'onednn': ONEDNN,
    },
)
