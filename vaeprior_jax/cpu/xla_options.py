"""XLA compiler options for the library's compiled steps (`jit`: jax.jit plus these options).

On the CPU, XLA (jax 0.10) hands convolutions and matrix products to YNNPACK fusions by default. For
this library's workloads XLA's own kernels were faster on the x86 machine we measured: ResnetVAE
training and the DenseVAE 1,000-sample estimator gained most, DenseVAE training was unchanged
(benchmarks/LOG.md has the A/B). `jit` therefore compiles with YNNPACK fusions off on the CPU,
per compiled function: nothing process-wide changes, and other JAX code in the process keeps XLA's
defaults.

The options only ever change which kernels compute the same operations: results agree to float32
rounding. They are left out
  - on other platforms;
  - where the environment's XLA_FLAGS already sets the same flag (the user's choice wins);
  - where VAEPRIOR_JAX_XLA_DEFAULTS=0 is set (for A/B timings, e.g. of `python -m benchmarks.run`);
  - where this jaxlib does not know the option (probed once per platform, with a warning).

`host_memory_advice` is about the process, not the compiler. Where transparent huge pages are in
'madvise' mode, glibc's malloc (which XLA:CPU allocates through) hands out 4 KiB pages unless
GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (glibc >= 2.35) asks for huge pages, which makes
convolutional train steps faster where they were timed (benchmarks/LOG.md has the figures). It has
to be in the environment when the process starts, so the library only says so; the Makefile sets
it.
"""

import functools
import os
import re
from typing import Dict, Mapping, Optional, Tuple

from absl import logging
import jax
import jax.numpy as jnp

CPU_OPTIONS = {'xla_cpu_experimental_ynn_fusion_type': ''}
ENV_SWITCH = 'VAEPRIOR_JAX_XLA_DEFAULTS'


@functools.lru_cache(maxsize=None)
def _supported(platform: str, names: tuple) -> bool:
  options = {name: CPU_OPTIONS[name] for name in names}
  try:
    x = jax.device_put(jnp.zeros((), jnp.float32), jax.local_devices(backend=platform)[0])
    jax.jit(lambda v: v + 1, compiler_options=options).lower(x).compile()
    return True
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('This jaxlib rejects the XLA options %s (%s); compiling with its defaults.',
                    options, e)
    return False


def compiler_options(platform: str = '') -> Dict[str, str]:
  """The options `jit` adds for `platform` (default: JAX's default backend); {} where none apply."""
  platform = platform or jax.default_backend()
  if platform != 'cpu' or os.environ.get(ENV_SWITCH, '1') == '0':
    return {}
  user_flags = os.environ.get('XLA_FLAGS', '')
  names = tuple(n for n in CPU_OPTIONS if f'--{n}' not in user_flags)
  if not names or not _supported(platform, names):
    return {}
  return {n: CPU_OPTIONS[n] for n in names}


HUGETLB_TUNABLE = 'glibc.malloc.hugetlb'
THP_MODE_FILE = '/sys/kernel/mm/transparent_hugepage/enabled'


def transparent_hugepage_mode(text: Optional[str] = None) -> str:
  """The kernel's THP mode ('always', 'madvise' or 'never'; '' where unknown), from `text` or from
  /sys/kernel/mm/transparent_hugepage/enabled (which brackets the mode in force)."""
  if text is None:
    try:
      with open(THP_MODE_FILE) as f:
        text = f.read()
    except OSError:
      return ''
  match = re.search(r'\[(\w+)\]', text)
  return match.group(1) if match else ''


def host_memory_settings() -> Dict[str, str]:
  """What decides this process's page sizes: GLIBC_TUNABLES and the kernel's THP mode (for benchmark
  records)."""
  return {'glibc_tunables': os.environ.get('GLIBC_TUNABLES', ''),
          'transparent_hugepage': transparent_hugepage_mode()}


def _glibc_version() -> Tuple[int, int]:
  try:
    name, version = os.confstr('CS_GNU_LIBC_VERSION').split()
    major, minor = version.split('.')[:2]
    return (int(major), int(minor)) if name == 'glibc' else (0, 0)
  except (ValueError, OSError, AttributeError):
    return (0, 0)


def host_memory_advice(thp_mode: Optional[str] = None, environ: Optional[Mapping[str, str]] = None,
                       glibc: Optional[Tuple[int, int]] = None) -> Optional[str]:
  """A one-line hint when CPU steps would run faster with glibc's huge-page tunable, else None.

  It applies where glibc >= 2.35 is the C library, transparent huge pages are in 'madvise' mode (in
  'always' mode large mappings get them anyway; in 'never' mode nothing helps) and GLIBC_TUNABLES
  does not set glibc.malloc.hugetlb. The arguments default to this process's own.
  """
  thp_mode = transparent_hugepage_mode() if thp_mode is None else thp_mode
  environ = os.environ if environ is None else environ
  glibc = _glibc_version() if glibc is None else glibc
  if glibc < (2, 35) or thp_mode != 'madvise':
    return None
  if HUGETLB_TUNABLE in environ.get('GLIBC_TUNABLES', ''):
    return None
  return (f'CPU speed: transparent huge pages are in madvise mode and GLIBC_TUNABLES does not set '
          f'{HUGETLB_TUNABLE}, so malloc hands out 4 KiB pages; starting the process with '
          f'GLIBC_TUNABLES={HUGETLB_TUNABLE}=1 (as the Makefile does) made convolutional train '
          'steps ~1.1x faster where measured (benchmarks/LOG.md).')


def jit(fun, platform: str = '', **jit_kwargs):
  """jax.jit(fun, **jit_kwargs) compiled with `compiler_options(platform)`.

  JAX accepts compiler options on top-level jits only: called on traced values (inside the caller's
  own jit, grad, vmap or make_jaxpr), the function is the plain jax.jit(fun), which the enclosing
  computation compiles with its own options. `.lower` lowers the top-level (optioned) version.
  """
  plain = jax.jit(fun, **jit_kwargs)
  options = compiler_options(platform)
  if not options:
    return plain
  tuned = jax.jit(fun, compiler_options=options, **jit_kwargs)

  @functools.wraps(fun)
  def call(*args, **kwargs):
    if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves((args, kwargs))):
      return plain(*args, **kwargs)
    return tuned(*args, **kwargs)

  call.lower = tuned.lower
  return call


def mesh_platform(mesh) -> str:
  """The platform of a mesh's devices ('cpu', 'gpu', 'tpu')."""
  return mesh.devices.flat[0].platform
