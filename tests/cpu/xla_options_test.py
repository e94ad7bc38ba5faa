"""The library's XLA options: when they apply, and that they leave results unchanged."""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vaeprior_jax.cpu import xla_options
from vaeprior_jax import models


def test_cpu_options_apply_unless_the_user_decides(monkeypatch):
  monkeypatch.delenv(xla_options.ENV_SWITCH, raising=False)
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=4')
  assert xla_options.compiler_options('cpu') == xla_options.CPU_OPTIONS
  assert xla_options.compiler_options('gpu') == {}
  monkeypatch.setenv(xla_options.ENV_SWITCH, '0')
  assert xla_options.compiler_options('cpu') == {}
  monkeypatch.delenv(xla_options.ENV_SWITCH)
  (name,) = xla_options.CPU_OPTIONS
  monkeypatch.setenv('XLA_FLAGS', f'--{name}=dot')  # The user's own value of the same flag wins.
  assert xla_options.compiler_options('cpu') == {}


def test_an_option_this_jaxlib_does_not_know_is_dropped(monkeypatch):
  monkeypatch.delenv(xla_options.ENV_SWITCH, raising=False)
  monkeypatch.setattr(xla_options, 'CPU_OPTIONS', {'xla_cpu_no_such_option_anywhere': ''})
  xla_options._supported.cache_clear()
  try:
    assert xla_options.compiler_options('cpu') == {}
    f = xla_options.jit(lambda v: v * 2)
    np.testing.assert_array_equal(f(jnp.arange(3.0)), [0.0, 2.0, 4.0])
  finally:
    xla_options._supported.cache_clear()


def test_the_options_change_kernels_not_results(monkeypatch):
  """A ResnetVAE's log-weights and their gradients, compiled with and without the options."""
  monkeypatch.delenv(xla_options.ENV_SWITCH, raising=False)
  assert xla_options.compiler_options()  # The tests run on the CPU, where the options apply.
  config = ml_collections.ConfigDict(dict(net='resnet', prior='standard', posterior='gaussian',
                                          latent_dim=8, flow_depth=2, flow_hidden_units=16))
  model = models.create(config, (28, 28, 1))
  x = (jax.random.uniform(jax.random.key(0), (4, 28, 28, 1)) < 0.3).astype(jnp.float32)
  params = model.init(jax.random.key(1), x, jax.random.key(2))['params']

  def value_and_grad(p):
    f = lambda p_: jnp.sum(model.apply({'params': p_}, x, jax.random.key(3),
                                       method=model.log_importance_weight))
    return jax.value_and_grad(f)(p)

  (value, grads), (plain_value, plain_grads) = (xla_options.jit(value_and_grad)(params),
                                                jax.jit(value_and_grad)(params))
  np.testing.assert_allclose(value, plain_value, rtol=1e-6)
  # The gradients agree to float32 rounding except where rounding moves a pre-activation across the
  # leaky ReLU's kink: that switches one activation's slope between 1 and 0.2, a rank-one change of
  # one kernel (seen here on 4 simulated devices: 0.15 on one kernel tap whose gradient is up to 42).
  # Hence a global relative error, which one such switch keeps near 1e-4 and a wrong kernel does not.
  diff = jnp.sqrt(sum(jnp.sum((a - b) ** 2) for a, b in zip(jax.tree.leaves(grads),
                                                             jax.tree.leaves(plain_grads))))
  norm = jnp.sqrt(sum(jnp.sum(b ** 2) for b in jax.tree.leaves(plain_grads)))
  assert diff / norm < 1e-3, float(diff / norm)


def test_a_library_jit_can_be_traced_inside_the_callers_own_jit(monkeypatch):
  monkeypatch.delenv(xla_options.ENV_SWITCH, raising=False)
  f = xla_options.jit(lambda a, b: a @ b)
  a, b = jnp.ones((3, 4)), jnp.ones((4, 2))
  np.testing.assert_array_equal(f(a, b), jnp.full((3, 2), 4.0))
  np.testing.assert_array_equal(jax.jit(lambda a_: f(a_, b) * 2)(a), jnp.full((3, 2), 8.0))
  np.testing.assert_array_equal(jax.vmap(f, in_axes=(0, None))(a[:, None], b), jnp.full((3, 1, 2), 4.0))
  assert 'dot_general' in str(jax.make_jaxpr(f)(a, b))
  assert f.lower(a, b).compile() is not None


def test_host_memory_advice_only_where_the_tunable_would_help():
  madvise = 'madvise'
  advice = xla_options.host_memory_advice(madvise, {}, (2, 36))
  assert advice is not None and 'GLIBC_TUNABLES=glibc.malloc.hugetlb=1' in advice
  # The user's GLIBC_TUNABLES already asks for huge pages (alone or among other tunables).
  assert xla_options.host_memory_advice(madvise, {'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=1'},
                                        (2, 36)) is None
  assert xla_options.host_memory_advice(
      madvise, {'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=2'},
      (2, 40)) is None
  # Other tunables alone do not.
  assert xla_options.host_memory_advice(
      madvise, {'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2'}, (2, 36)) is not None
  # 'always' gives large mappings huge pages anyway, 'never' gives none; glibc < 2.35 lacks the
  # tunable, and a C library that is not glibc reports (0, 0).
  assert xla_options.host_memory_advice('always', {}, (2, 36)) is None
  assert xla_options.host_memory_advice('never', {}, (2, 36)) is None
  assert xla_options.host_memory_advice(madvise, {}, (2, 34)) is None
  assert xla_options.host_memory_advice(madvise, {}, (0, 0)) is None
  assert xla_options.host_memory_advice('', {}, (2, 36)) is None  # No THP file (not Linux).


def test_transparent_hugepage_mode_parsing():
  assert xla_options.transparent_hugepage_mode('always [madvise] never\n') == 'madvise'
  assert xla_options.transparent_hugepage_mode('[always] madvise never\n') == 'always'
  assert xla_options.transparent_hugepage_mode('always madvise [never]\n') == 'never'
  assert xla_options.transparent_hugepage_mode('') == ''


def test_glibc_version_parsing(monkeypatch):
  for text, expected in (('glibc 2.36', (2, 36)), ('glibc 2.35.1', (2, 35)), ('musl 1.2', (0, 0)),
                         ('', (0, 0)), ('glibc two', (0, 0))):
    monkeypatch.setattr(os, 'confstr', lambda name, t=text: t)
    assert xla_options._glibc_version() == expected, text

  def unsupported(name):
    raise ValueError(name)

  monkeypatch.setattr(os, 'confstr', unsupported)
  assert xla_options._glibc_version() == (0, 0)


def test_host_memory_settings_report_the_environment(monkeypatch):
  monkeypatch.setenv('GLIBC_TUNABLES', 'glibc.malloc.hugetlb=1')
  settings = xla_options.host_memory_settings()
  assert settings['glibc_tunables'] == 'glibc.malloc.hugetlb=1'
  assert settings['transparent_hugepage'] in ('always', 'madvise', 'never', '')
  monkeypatch.delenv('GLIBC_TUNABLES')
  assert xla_options.host_memory_settings()['glibc_tunables'] == ''
