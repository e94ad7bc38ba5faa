"""How the library compiles its functions (train steps, the on-device loop, the estimators, the
analyses): `jit`, which is jax.jit plus the compiler options of the platform it runs on (on the CPU,
those of `vaeprior_jax.cpu.xla_options`; none elsewhere)."""

from vaeprior_jax.cpu import xla_options


def jit(fun, platform: str = '', **jit_kwargs):
  """jax.jit(fun, **jit_kwargs) with the compiler options of `platform` (default: JAX's default
  backend). Called on traced values (inside your own jit, grad or vmap) it is the plain jax.jit."""
  return xla_options.jit(fun, platform, **jit_kwargs)


def mesh_platform(mesh) -> str:
  """The platform of a mesh's devices ('cpu', 'gpu', 'tpu')."""
  return mesh.devices.flat[0].platform
