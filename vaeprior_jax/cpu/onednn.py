"""Convolutions computed by oneDNN inside compiled JAX steps: the CPU's `model.conv_backend='onednn'`.

On the CPU, XLA's convolutions are what keep the ResnetVAE train step behind PyTorch's, which calls
oneDNN (benchmarks/LOG.md). This module calls the same library from the compiled step: three XLA
FFI custom calls (forward; input gradient; kernel and bias gradients) in `csrc/onednn_conv.cc`, under
a `custom_vjp`. `conv` computes what `lax.conv_general_dilated` (NHWC, HWIO) plus a bias computes, and
`Conv` is a drop-in for the `nn.Conv` layers of this library's nets, with the same parameters: a
checkpoint trained with one backend loads and evaluates with the other.

Opt-in, Linux x86_64 CPUs only. It needs oneDNN's wheels (`pip install 'vaeprior_jax[onednn]'`:
onednn-cpu-gomp and onednn-devel-cpu-gomp 2023.2.0) and a C++17 compiler (`$CXX`, default g++): the
first use compiles the custom calls against them and jaxlib's FFI headers, into a cache folder
(`$VAEPRIOR_JAX_CACHE_DIR`, else `$XDG_CACHE_HOME/vaeprior_jax`, else ~/.cache/vaeprior_jax), keyed by
the source, jaxlib's version and the oneDNN found; later processes load the cached library, only from
a folder that belongs to the user and nobody else can write to, and only if its SHA-256 is the one
recorded when it was built (otherwise it is built again).

Devices and transformations:
- Sharding: each custom call is a `custom_partitioning` op. Under `jax.jit` over a mesh, a batch
  sharded along its leading axes stays sharded: each device convolves its own images, and the
  kernel gradient is summed over the devices (one all-reduce). XLA could not partition the custom
  calls by itself (it would gather the whole batch on every device).
- vmap: the mapped axis becomes one more leading batch axis of the images (one call, not a loop);
  per-example kernel gradients (vmap of grad) loop over the mapped axis. Mapping over kernels is not
  supported (use conv_backend='xla').
- Threads: oneDNN runs its own OpenMP pool (OMP_NUM_THREADS, default all cores) beside XLA's.
- Float32 only; no dilation, no feature groups.
"""

import functools
import hashlib
import importlib.metadata
import os
import platform as platform_lib
import shutil
import subprocess
import sys
import tempfile
import threading
from typing import Optional, Sequence, Tuple, Union

import flax.linen as nn
import jax
from jax.experimental.custom_partitioning import custom_partitioning
import jax.numpy as jnp
import numpy as np

from vaeprior_jax import data

Array = jax.Array
Padding = Union[str, Sequence[Tuple[int, int]]]

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'csrc', 'onednn_conv.cc')
ONEDNN_VERSION = '2023.2.0'
INSTALL_HINT = (f"pip install 'vaeprior_jax[onednn]' (or: pip install onednn-cpu-gomp=={ONEDNN_VERSION} "
                f'onednn-devel-cpu-gomp=={ONEDNN_VERSION})')
_FWD = 'vaeprior_jax_onednn_conv_fwd'
_BWD_DATA = 'vaeprior_jax_onednn_conv_bwd_data'
_BWD_WEIGHTS = 'vaeprior_jax_onednn_conv_bwd_weights'


# ----------------------------------------------------------------------------- build and register

def _compiler() -> str:
  """The C++ compiler that builds the custom calls: $CXX, default g++."""
  return os.environ.get('CXX', 'g++')


def _dist_file(dist: str, suffix: str) -> str:
  """The installed file of distribution `dist` whose path ends with `suffix`."""
  try:
    files = importlib.metadata.files(dist) or []
  except importlib.metadata.PackageNotFoundError:
    raise RuntimeError(f'conv_backend=onednn needs the {dist} package, which is not installed: '
                       f'{INSTALL_HINT}.') from None
  for f in files:
    if str(f).replace(os.sep, '/').endswith(suffix):
      path = os.path.realpath(str(f.locate()))
      if os.path.exists(path):
        return path
  raise RuntimeError(f'The {dist} package has no {suffix} (a broken install?): reinstall it, '
                     f'{INSTALL_HINT}.')


def unavailable_reason(backend: Optional[str] = None) -> Optional[str]:
  """Why conv_backend='onednn' cannot run here (None: it can). `backend`: JAX's platform (default:
  jax.default_backend()). Checks the machine, the platform, the packages and the compiler; not the
  build itself (see `load`)."""
  backend = jax.default_backend() if backend is None else backend
  if sys.platform != 'linux' or platform_lib.machine() != 'x86_64':
    return (f'conv_backend=onednn runs on Linux x86_64 only, not {sys.platform} '
            f'{platform_lib.machine()}; use conv_backend=xla.')
  if backend != 'cpu':
    return (f'conv_backend=onednn runs on the CPU only, and JAX runs on {backend!r}; use '
            'conv_backend=xla.')
  try:
    onednn_dirs()
  except RuntimeError as e:
    return str(e)
  compiler = _compiler()
  if shutil.which(compiler) is None:
    return (f'conv_backend=onednn compiles its custom calls at first use, and the C++ compiler '
            f'{compiler!r} ($CXX, default g++) is not on the PATH.')
  return None


def onednn_dirs() -> Tuple[str, str]:
  """(the folder holding oneapi/dnnl/dnnl.hpp, the folder holding libdnnl.so) of the installed
  wheels."""
  header = _dist_file('onednn-devel-cpu-gomp', 'oneapi/dnnl/dnnl.hpp')
  return (os.path.dirname(os.path.dirname(os.path.dirname(header))),
          os.path.dirname(_dist_file('onednn-cpu-gomp', 'libdnnl.so')))


def cache_dir() -> str:
  """The folder of compiled libraries (created if missing)."""
  root = os.environ.get('VAEPRIOR_JAX_CACHE_DIR') or os.path.join(
      os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache'),
      'vaeprior_jax')
  path = os.path.join(root, 'onednn')
  try:
    os.makedirs(path, mode=0o700, exist_ok=True)
  except OSError as e:
    raise RuntimeError(f'conv_backend=onednn compiles its custom calls into {path}, which cannot be '
                       f'created ({e}); set VAEPRIOR_JAX_CACHE_DIR to a writable folder.') from None
  check_private(path)
  return path


def check_private(path: str):
  """Raises RuntimeError unless `path` belongs to this user and nobody else may write to it: code is
  loaded from there, so a folder others can write to could hand us their library."""
  info = os.stat(path)
  if info.st_uid != os.getuid():
    raise RuntimeError(f'{path} belongs to user id {info.st_uid}, not to this user ({os.getuid()}); '
                       'the oneDNN backend loads compiled code only from a folder of your own: set '
                       'VAEPRIOR_JAX_CACHE_DIR.')
  if info.st_mode & 0o022:
    raise RuntimeError(f'{path} can be written by other users (mode {oct(info.st_mode & 0o777)}); '
                       'the oneDNN backend loads compiled code only from a folder nobody else can '
                       f'write to: chmod go-w {path}, or set VAEPRIOR_JAX_CACHE_DIR.')


def verified(library: str) -> bool:
  """Whether `library` is the one this process built: private (`check_private`) and with the
  SHA-256 recorded beside it (`<library>.sha256`) when it was compiled."""
  record = library + '.sha256'
  if not (os.path.exists(library) and os.path.exists(record)):
    return False
  check_private(library)
  with open(record) as f:
    return f.read().strip() == data.file_sha256(library)


def _build(include: str, lib_dir: str) -> str:
  """Compiles SOURCE (once per source, jaxlib and oneDNN) into cache_dir(); returns the .so path."""
  compiler = _compiler()
  flags = ['-O2', '-std=c++17', '-shared', '-fPIC', '-w', f'-I{jax.ffi.include_dir()}',
           f'-I{include}']
  with open(SOURCE, 'rb') as f:
    source = f.read()
  key = hashlib.sha256(b'\0'.join(
      [source, importlib.metadata.version('jaxlib').encode(),
       importlib.metadata.version('onednn-cpu-gomp').encode(), include.encode(), lib_dir.encode(),
       compiler.encode()] + [x.encode() for x in flags])).hexdigest()[:16]
  folder = cache_dir()
  out = os.path.join(folder, f'onednn_conv-{key}.so')
  if verified(out):
    return out  # Else missing, or not what was built (damaged, replaced): built again.
  # Compile beside the target and rename: concurrent processes each write their own file, and
  # whichever renames last leaves a complete library.
  fd, tmp = tempfile.mkstemp(prefix='.onednn_conv-', suffix='.so', dir=folder)
  os.close(fd)
  command = [compiler] + flags + [SOURCE, f'-L{lib_dir}', '-ldnnl', f'-Wl,-rpath,{lib_dir}', '-o',
                                  tmp]
  try:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
      raise RuntimeError(f'Compiling the oneDNN custom calls failed (exit {done.returncode}):\n'
                         f'{" ".join(command)}\n{done.stderr[-4000:]}')
    os.chmod(tmp, 0o700)
    digest = data.file_sha256(tmp)
    os.replace(tmp, out)
    with open(out + '.sha256.tmp', 'w') as f:
      f.write(digest + '\n')
    os.replace(out + '.sha256.tmp', out + '.sha256')
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return out


_lock = threading.Lock()
_loaded: Optional[str] = None


def load() -> str:
  """Builds (first time) and loads the custom calls and registers them with XLA, once per process;
  returns the library's path. Raises RuntimeError saying what is missing where it cannot run."""
  global _loaded
  with _lock:
    if _loaded is None:
      reason = unavailable_reason()
      if reason:
        raise RuntimeError(reason)
      import ctypes  # pylint: disable=g-import-not-at-top
      path = _build(*onednn_dirs())
      library = ctypes.cdll.LoadLibrary(path)
      for name in (_FWD, _BWD_DATA, _BWD_WEIGHTS):
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(library, name)),
                                    platform='cpu')
      _loaded = path
    return _loaded


# ------------------------------------------------------------------------------ custom calls

# (strides (sh, sw), padding ((pt, pb), (pl, pr))), all non-negative: one compiled op per geometry.
Geometry = Tuple[Tuple[int, int], Tuple[Tuple[int, int], Tuple[int, int]]]


def _attrs(geometry: Geometry):
  (sh, sw), ((pt, pb), (pl, pr)) = geometry
  return {k: np.int64(v) for k, v in dict(sh=sh, sw=sw, pt=pt, pb=pb, pl=pl, pr=pr).items()}


def _out_spatial(h: int, w: int, kh: int, kw: int, geometry: Geometry) -> Tuple[int, int]:
  (sh, sw), ((pt, pb), (pl, pr)) = geometry
  return (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1


def _batch_spec(sharding, rank: int) -> Tuple:
  """The PartitionSpec entries of an images operand's leading (batch) axes."""
  spec = tuple(sharding.spec) + (None,) * (rank - len(sharding.spec))
  return spec[:rank - 3]


def _mesh_axes(entries) -> Tuple[str, ...]:
  axes = []
  for e in entries:
    if e is not None:
      axes.extend(e if isinstance(e, tuple) else (e,))
  return tuple(axes)


# Shardy's view of each custom call ({n}: the leading batch factors n0, n1, ...): the batch passes
# through (or, for the kernel gradient, is reduced); every other factor must stay unsharded.
_RULES = {
    'forward': '{n} h w c, kh kw c f -> {n} i j f',  # (x, kernel) -> y
    'input_grad': '{n} i j f, kh kw c f -> {n} h w c',  # (dy, kernel) -> dx
    'kernel_grad': '{n} h w c, {n} i j f -> kh kw c f, f',  # (x, dy) -> (dkernel, dbias)
}


def _partitioned(call, kind: str):
  """`call` (a custom call of `kind`, a key of _RULES) as a custom_partitioning op: the image
  operands keep the sharding of operand 0's leading (batch) axes, the kernel is replicated; the
  kernel gradient's outputs are replicated and summed over the mesh axes of the batch (one
  all-reduce). Without a mesh, just `call`."""
  op = custom_partitioning(call)
  num_images = 2 if kind == 'kernel_grad' else 1
  reduce = kind == 'kernel_grad'
  spec = jax.sharding.PartitionSpec

  def shardings(mesh, arg_shapes, result_shape):
    rank = len(arg_shapes[0].shape)
    batch = _batch_spec(arg_shapes[0].sharding, rank)
    images = jax.sharding.NamedSharding(mesh, spec(*batch, None, None, None))
    replicated = jax.sharding.NamedSharding(mesh, spec())
    args = tuple(images if i < num_images else replicated for i in range(len(arg_shapes)))
    out = tuple(replicated for _ in result_shape) if reduce else images
    return batch, args, out

  def infer(mesh, arg_shapes, result_shape):
    return shardings(mesh, arg_shapes, result_shape)[2]

  def partition(mesh, arg_shapes, result_shape):
    batch, args, out = shardings(mesh, arg_shapes, result_shape)
    axes = _mesh_axes(batch)

    def lower(*operands):
      result = call(*operands)
      return jax.lax.psum(result, axes) if reduce and axes else result

    return mesh, lower, out, args

  def rule(mesh, value_types, result_types):
    """Shardy's view: the batch factors n0.. pass through (or are reduced); the rest must not be
    sharded."""
    del mesh, result_types
    batch = tuple(f'n{i}' for i in range(len(value_types[0].shape) - 3))
    rule = _RULES[kind].format(n=' '.join(batch))
    # Shardy wants each kind of factor listed in order of first appearance.
    ordered = dict.fromkeys(rule.replace('->', ' ').replace(',', ' ').split())
    factors = dict(need_replication_factors=tuple(f for f in ordered if f not in batch))
    if reduce:
      factors['reduction_factors'] = batch
    return rule, factors

  op.def_partition(partition, infer_sharding_from_operands=infer, sharding_rule=rule)
  return op


def _unbatched_kernel_only(name: str):
  return NotImplementedError(
      f'oneDNN convolution ({name}): vmap over kernels is not supported (only over images); use '
      "conv_backend='xla'.")


@functools.lru_cache(maxsize=None)
def _forward_op(geometry: Geometry):
  """(x [..., H, W, C], k) -> y [..., OH, OW, F]."""
  attrs = _attrs(geometry)

  def call(x, k):
    oh, ow = _out_spatial(x.shape[-3], x.shape[-2], k.shape[0], k.shape[1], geometry)
    out = jax.ShapeDtypeStruct(x.shape[:-3] + (oh, ow, k.shape[-1]), jnp.float32)
    return jax.ffi.ffi_call(_FWD, out)(x, k, **attrs)

  return _batch_images(_partitioned(call, 'forward'), 'forward')


@functools.lru_cache(maxsize=None)
def _input_grad_op(geometry: Geometry, x_spatial: Tuple[int, int]):
  """(dy [..., OH, OW, F], k) -> dx [..., H, W, C]."""
  attrs = _attrs(geometry)

  def call(dy, k):
    out = jax.ShapeDtypeStruct(dy.shape[:-3] + tuple(x_spatial) + (k.shape[2],), jnp.float32)
    return jax.ffi.ffi_call(_BWD_DATA, out)(dy, k, **attrs)

  return _batch_images(_partitioned(call, 'input_grad'), 'input gradient')


def _batch_images(op, name: str):
  """`op`(images, kernel) under vmap: the mapped axis is one more leading batch axis."""
  batched = jax.custom_batching.custom_vmap(lambda images, kernel: op(images, kernel))

  @batched.def_vmap
  def _(axis_size, in_batched, images, kernel):
    del axis_size
    images_batched, kernel_batched = in_batched
    if kernel_batched:
      raise _unbatched_kernel_only(name)
    assert images_batched
    return batched(images, kernel), True

  return batched


@functools.lru_cache(maxsize=None)
def _kernel_grad_op(geometry: Geometry, kernel_spatial: Tuple[int, int]):
  """(x [..., H, W, C], dy [..., OH, OW, F]) -> (dk [kh, kw, C, F], db [F]), summed over the batch.
  Under vmap (per-example gradients) it loops over the mapped axis."""
  attrs = _attrs(geometry)

  def call(x, dy):
    out = (jax.ShapeDtypeStruct(tuple(kernel_spatial) + (x.shape[-1], dy.shape[-1]), jnp.float32),
           jax.ShapeDtypeStruct((dy.shape[-1],), jnp.float32))
    return jax.ffi.ffi_call(_BWD_WEIGHTS, out)(x, dy, **attrs)

  op = _partitioned(call, 'kernel_grad')
  batched = jax.custom_batching.custom_vmap(lambda x, dy: op(x, dy))

  @batched.def_vmap
  def _(axis_size, in_batched, x, dy):
    x_batched, dy_batched = in_batched
    x = x if x_batched else jnp.broadcast_to(x, (axis_size,) + x.shape)
    dy = dy if dy_batched else jnp.broadcast_to(dy, (axis_size,) + dy.shape)
    return jax.lax.map(lambda a: batched(*a), (x, dy)), (True, True)

  return batched


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _conv(x, kernel, bias, geometry):
  return _forward_op(geometry)(x, kernel) + bias


def _conv_fwd(x, kernel, bias, geometry):
  return _conv(x, kernel, bias, geometry), (x, kernel)


def _conv_bwd(geometry, residuals, dy):
  x, kernel = residuals
  dx = _input_grad_op(geometry, tuple(x.shape[-3:-1]))(dy, kernel)
  dk, db = _kernel_grad_op(geometry, tuple(kernel.shape[:2]))(x, dy)
  return dx, dk, db


_conv.defvjp(_conv_fwd, _conv_bwd)


def _pairs(padding: Padding, x_spatial, kernel_spatial, strides):
  if isinstance(padding, str):
    if padding.upper() not in ('SAME', 'VALID'):
      raise ValueError(f"Unknown padding {padding!r}; allowed: 'SAME', 'VALID' or "
                       '((top, bottom), (left, right)).')
    return tuple(tuple(int(v) for v in p) for p in jax.lax.padtype_to_pads(
        x_spatial, kernel_spatial, strides, padding.upper()))
  try:
    pairs = tuple((int(lo), int(hi)) for lo, hi in padding)
  except (TypeError, ValueError):
    pairs = ()
  if len(pairs) != 2:
    raise ValueError(f"padding must be 'SAME', 'VALID' or ((top, bottom), (left, right)), got "
                     f'{padding!r}.')
  return pairs


def conv(x: Array, kernel: Array, bias: Optional[Array] = None, strides: Sequence[int] = (1, 1),
         padding: Padding = 'SAME') -> Array:
  """lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=('NHWC', 'HWIO',
  'NHWC')) + bias, computed by oneDNN, with its gradients.

  x [..., H, W, C] (any leading batch axes), kernel [kh, kw, C, F], bias [F] or None; float32.
  padding: 'SAME', 'VALID' or ((top, bottom), (left, right)); negative amounts crop. The first call
  in a process builds or loads the custom calls (`load`).
  """
  x, kernel = jnp.asarray(x), jnp.asarray(kernel)
  bias = jnp.zeros(kernel.shape[-1:], jnp.float32) if bias is None else jnp.asarray(bias)
  for name, a in (('x', x), ('kernel', kernel), ('bias', bias)):
    if a.dtype != jnp.float32:
      raise TypeError(f'oneDNN convolution: {name} must be float32, got {a.dtype}.')
  if x.ndim < 3 or kernel.ndim != 4 or kernel.shape[2] != x.shape[-1] or bias.shape != (
      kernel.shape[-1],):
    raise ValueError(f'oneDNN convolution needs x [..., H, W, C], kernel [kh, kw, C, F] and bias '
                     f'[F]; got x {x.shape}, kernel {kernel.shape}, bias {bias.shape}.')
  strides = (strides, strides) if isinstance(strides, int) else tuple(int(s) for s in strides)
  if len(strides) != 2 or min(strides) < 1:
    raise ValueError(f'strides must be two positive integers, got {strides}.')
  pads = _pairs(padding, x.shape[-3:-1], kernel.shape[:2], strides)
  # oneDNN pads with zeros only: crop explicitly where an amount is negative.
  for axis, (lo, hi) in zip((x.ndim - 3, x.ndim - 2), pads):
    if lo < 0 or hi < 0:
      x = jax.lax.slice_in_dim(x, max(-lo, 0), x.shape[axis] - max(-hi, 0), axis=axis)
  pads = tuple((max(lo, 0), max(hi, 0)) for lo, hi in pads)
  out = _out_spatial(x.shape[-3], x.shape[-2], kernel.shape[0], kernel.shape[1], (strides, pads))
  if min(out) < 1:
    raise ValueError(f'oneDNN convolution: no output for x {x.shape}, kernel {kernel.shape}, '
                     f'strides {strides}, padding {pads}.')
  load()
  return _conv(x, kernel, bias, (strides, pads))


class Conv(nn.Module):
  """nn.Conv(features, kernel_size, strides, padding) for NHWC inputs, computed by `conv`: the same
  parameters ('kernel' [kh, kw, C, F], lecun-normal; 'bias' [F], zeros) and initial values."""
  features: int
  kernel_size: Sequence[int]
  strides: Union[int, Sequence[int]] = 1
  padding: Padding = 'SAME'
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param('kernel', nn.linear.default_kernel_init,
                        tuple(self.kernel_size) + (x.shape[-1], self.features), jnp.float32)
    bias = (self.param('bias', nn.initializers.zeros_init(), (self.features,), jnp.float32)
            if self.use_bias else None)
    return conv(x, kernel, bias, self.strides or 1, self.padding)
