"""The models, built from a `config.model` section: the one-level VAE (encoder, posterior, Bernoulli
decoder, prior) and Tomczak & Welling's two-level HierarchicalVAE."""

from typing import Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vaeprior_jax import config as config_lib
from vaeprior_jax import dai_nets
from vaeprior_jax import distributions
from vaeprior_jax import hvae_nets
from vaeprior_jax import likelihoods
from vaeprior_jax import nets
from vaeprior_jax import posteriors
from vaeprior_jax import priors
from vaeprior_jax import vaepp_nets

Array = jax.Array


class LatentVariableModel(nn.Module):
  """What the one-level `VAE` and the two-level `HierarchicalVAE` share: the ELBO, the importance
  weights, reconstructions, samples and the prior, from each model's `log_weight_terms`,
  `sample_posterior`, `decode` and `prior_encoder`.

  A model's latent z is one vector [..., latent_size] (for the two-level model, Concat[z1, z2]):
  `sample_posterior`, `sample_prior`, `prior_log_prob`, `posterior_mean` and `decode` all speak of it.
  """

  @property
  def autoregressive(self) -> bool:
    """Whether p(x|z) is autoregressive in x (PixelCNN decoders): its logits need x itself."""
    return getattr(self.decoder, 'autoregressive', False)

  @property
  def latent_levels(self) -> Tuple[Tuple[str, int], ...]:
    """(name, size) of the latent levels, in the order they are concatenated in z."""
    raise NotImplementedError

  def _likelihood(self) -> nn.Module:
    """The model's likelihood module; None stands for Bernoulli logits over [H, W, C]."""
    if self.likelihood is not None:
      return self.likelihood
    return likelihoods.Bernoulli(parent=None)  # Stateless; unbound, so not adopted as a submodule.

  def observation_log_prob(self, x: Array, out: Array) -> Array:
    """log p(x|z) from the decoder's output, [...], by the model's `likelihood`."""
    return self._likelihood().log_prob(x, out)

  def observation_mean(self, out: Array) -> Array:
    """E[x|z] from the decoder's output (Bernoulli: sigmoid of the logits)."""
    return self._likelihood().mean(out)

  def elbo(self, x: Array, rng: Array, beta: float = 1.0) -> Array:
    """Warm-up ELBO, one sample: log p(x|z) + beta (log p(z) - log q(z|x)), [B]."""
    t = self.log_weight_terms(x, rng)
    return t['log_px_z'] + beta * (t['log_pz'] - t['log_qz'])

  __call__ = elbo

  def log_importance_weight(self, x: Array, rng: Array) -> Array:
    """log p(x|z) + log p(z) - log q(z|x) with z ~ q(z|x), [B]."""
    t = self.log_weight_terms(x, rng)
    return t['log_px_z'] + t['log_pz'] - t['log_qz']

  def reconstruct(self, x: Array, rng: Array) -> Array:
    """Means of p(x|z), z ~ q(z|x): [B, H, W, C]."""
    return self.observation_mean(self.decode(self.sample_posterior(x, rng), x))

  def sample(self, rng: Array, num_samples: int) -> Array:
    """Means of p(x|z), z ~ p(z): [num_samples, H, W, C] (non-autoregressive decoders)."""
    return self.observation_mean(self.decode(self.sample_prior(rng, num_samples)))

  def prior_context(self) -> priors.PriorContext:
    """What this model offers its prior (see `priors.PriorContext`)."""
    decode_mean = None
    if not self.autoregressive:
      decode_mean = lambda z: self.observation_mean(self.decode(z))
    return priors.PriorContext(encoder=self.prior_encoder, decode_mean=decode_mean, model=self)

  def top_prior_log_prob(self, z: Array) -> Array:
    """log p(z) of the prior module, given this model's context, [...]."""
    return self.prior.log_prob(z, self.prior_context())

  def sample_top_prior(self, rng: Array, num_samples: int) -> Array:
    return self.prior.sample(rng, num_samples, self.prior_context())


def call_net(net: nn.Module, *args, train: bool = False):
  """net(*args), with `train=train` for nets that have a training mode (`has_train_mode`: batch norm,
  spectral normalisation); the others have none."""
  if getattr(net, 'has_train_mode', False):
    return net(*args, train=train)
  return net(*args)


def as_variables(params) -> Dict:
  """The variables to apply a model with: `params` (the parameter tree) as {'params': params}, or
  `params` itself where it is already a variables dict ({'params', 'batch_stats', ...}: models whose
  nets keep statistics). A parameter tree never has a top-level 'params' key."""
  if isinstance(params, dict) and 'params' in params:
    return params
  return {'params': params}


def _check_decoder_input(autoregressive: bool, x):
  if autoregressive and x is None:
    raise ValueError('An autoregressive decoder needs x: sample with models.sample_images.')


class VAE(LatentVariableModel):
  """p(x, z) = p_theta(x|z) p_lambda(z) with q_phi(z|x), for images x [B, H, W, C] (Bernoulli unless
  `likelihood` says otherwise).

  Initialise through `elbo` (the default `__call__`) on a data batch: the flows' ActNorm layers take
  their initial values from it.
  """
  encoder: nn.Module
  decoder: nn.Module
  prior: nn.Module
  posterior: nn.Module
  likelihood: Optional[nn.Module] = None  # None: Bernoulli logits over [H, W, C]

  @property
  def prior_encoder(self) -> nn.Module:
    return self.encoder

  @property
  def latent_levels(self) -> Tuple[Tuple[str, int], ...]:
    return (('z', self.prior.latent_dim),)

  def decode(self, z: Array, x: Optional[Array] = None, train: bool = False,
             dropout_rng: Optional[Array] = None) -> Array:
    """Bernoulli logits of p(x|z) [..., H, W, C]; autoregressive decoders read x (teacher forcing) and
    use dropout when `train`."""
    if not self.autoregressive:
      return call_net(self.decoder, z, train=train)
    _check_decoder_input(True, x)
    return self.decoder(z, x, deterministic=not train, dropout_rng=dropout_rng if train else None)

  def log_weight_terms(self, x: Array, rng: Array, return_latent: bool = False,
                       train: bool = False, encoder_input: Optional[Array] = None
                       ) -> Dict[str, Array]:
    """One z ~ q(z|x) per example: {'log_px_z', 'log_pz', 'log_qz'}, each [B] (and 'z' [B, d]).

    `train` puts the nets in training mode: the decoder's dropout (PixelCNN), with a key derived
    from rng, and batch statistics (nets with `has_train_mode`). `encoder_input`: what the encoder
    reads instead of x (VAEPP's code: the grey image e a binary x was drawn from; the weights then
    estimate p(x) with the proposal q(z|e)).
    """
    mean, log_std = call_net(self.encoder, x if encoder_input is None else encoder_input,
                             train=train)
    z, log_qz = self.posterior.sample_and_log_prob(mean, log_std, rng)
    logits = self.decode(z, x, train, jax.random.fold_in(rng, 1))
    terms = {
        'log_px_z': self.observation_log_prob(x, logits),
        'log_pz': self.prior_log_prob(z),
        'log_qz': log_qz,
    }
    if return_latent:
      terms['z'] = z
    return terms

  def sample_posterior(self, x: Array, rng: Array) -> Array:
    """z ~ q(z|x), [B, latent_dim]."""
    mean, log_std = self.encoder(x)
    return self.posterior.sample_and_log_prob(mean, log_std, rng)[0]

  def posterior_mean(self, x: Array, rng: Array, num_samples: int = 1000) -> Array:
    """E_q[z|x], [B, latent_dim] (Monte Carlo with `num_samples` where it has no closed form)."""
    mean, log_std = self.encoder(x)
    return self.posterior.mean(mean, log_std, rng, num_samples)

  def prior_log_prob(self, z: Array) -> Array:
    """log p(z), [...] for z [..., d] (the VampPrior through this VAE's encoder)."""
    return self.top_prior_log_prob(z)

  def sample_prior(self, rng: Array, num_samples: int) -> Array:
    """z ~ p(z), [num_samples, d]."""
    return self.sample_top_prior(rng, num_samples)


class HierarchicalVAE(LatentVariableModel):
  """Tomczak & Welling's two-level VAE (Eqs. 10-15), for images x [B, H, W, C] (Bernoulli unless
  `likelihood` says otherwise):

    q(z1, z2 | x) = q_phi(z1 | x, z2) q_psi(z2 | x),   p(x, z1, z2) = p_theta(x | z1, z2) p(z1 | z2) p(z2),

  all Gaussian with diagonal covariances but p(z2), which is `prior` (standard, MoG, VampPrior over
  q_psi(z2|u_k), or RealNVP). The latent z of the shared interface is Concat[z1, z2] [.., M1 + M2], and
  log_weight_terms gives log p(z) = log p(z1|z2) + log p(z2) and log q(z|x) = log q(z1|x,z2) +
  log q(z2|x), so the ELBO, the importance-weighted estimator and the trainers are those of `VAE`.
  """
  encoder_z2: nn.Module
  encoder_z1: nn.Module
  conditional_prior: nn.Module
  decoder: nn.Module
  prior: nn.Module
  z1_dim: int
  likelihood: Optional[nn.Module] = None  # None: Bernoulli logits over [H, W, C]

  @property
  def prior_encoder(self) -> nn.Module:
    return self.encoder_z2

  @property
  def latent_levels(self) -> Tuple[Tuple[str, int], ...]:
    return (('z1', self.z1_dim), ('z2', self.prior.latent_dim))

  def _split(self, z: Array) -> Tuple[Array, Array]:
    return z[..., :self.z1_dim], z[..., self.z1_dim:]

  def decode(self, z: Array, x: Optional[Array] = None, train: bool = False,
             dropout_rng: Optional[Array] = None) -> Array:
    """Bernoulli logits of p(x|z1, z2) [..., H, W, C] for z = Concat[z1, z2]."""
    z1, z2 = self._split(z)
    if not self.autoregressive:
      return self.decoder(z1, z2)
    _check_decoder_input(True, x)
    return self.decoder(z1, z2, x, deterministic=not train,
                        dropout_rng=dropout_rng if train else None)

  def _sample_z2_z1(self, x: Array, rng: Array):
    """z2 ~ q(z2|x), z1 ~ q(z1|x, z2), with their log-densities."""
    # Keys 2 and 3 (key 1 is the decoder's dropout key in log_weight_terms).
    z2_key, z1_key = jax.random.fold_in(rng, 2), jax.random.fold_in(rng, 3)
    mean2, log_std2 = self.encoder_z2(x)
    z2, log_q2 = posteriors.gaussian_sample(mean2, log_std2, z2_key)
    mean1, log_std1 = self.encoder_z1(x, z2)
    z1, log_q1 = posteriors.gaussian_sample(mean1, log_std1, z1_key)
    return z1, z2, log_q1 + log_q2

  def log_weight_terms(self, x: Array, rng: Array, return_latent: bool = False,
                       train: bool = False) -> Dict[str, Array]:
    """One (z1, z2) ~ q per example: {'log_px_z' = log p(x|z1,z2), 'log_pz' = log p(z1|z2) + log p(z2),
    'log_qz' = log q(z1|x,z2) + log q(z2|x)}, each [B] (and 'z' = Concat[z1, z2] [B, M1 + M2])."""
    z1, z2, log_qz = self._sample_z2_z1(x, rng)
    z = jnp.concatenate([z1, z2], axis=-1)
    logits = self.decode(z, x, train, jax.random.fold_in(rng, 1))
    terms = {
        'log_px_z': self.observation_log_prob(x, logits),
        'log_pz': self.prior_log_prob(z),
        'log_qz': log_qz,
    }
    if return_latent:
      terms['z'] = z
    return terms

  def sample_posterior(self, x: Array, rng: Array) -> Array:
    """Concat[z1, z2] ~ q(z1|x, z2) q(z2|x), [B, M1 + M2]."""
    z1, z2, _ = self._sample_z2_z1(x, rng)
    return jnp.concatenate([z1, z2], axis=-1)

  def posterior_mean(self, x: Array, rng: Array, num_samples: int = 1000) -> Array:
    """Concat[E_q[z1|x], E_q[z2|x]]: E_q[z2|x] exact, E_q[z1|x] = E_{z2 ~ q(z2|x)}[mean of q(z1|x, z2)]
    by Monte Carlo with `num_samples`."""
    mean2, log_std2 = self.encoder_z2(x)
    keys = jax.random.split(rng, num_samples)
    z2 = jax.vmap(lambda k: posteriors.gaussian_sample(mean2, log_std2, k)[0])(keys)
    mean1 = jnp.mean(self.encoder_z1(x, z2)[0], axis=0)
    return jnp.concatenate([mean1, mean2], axis=-1)

  def prior_log_prob(self, z: Array) -> Array:
    """log p(z1|z2) + log p(z2) for z = Concat[z1, z2] [..., M1 + M2]."""
    z1, z2 = self._split(z)
    mean1, log_std1 = self.conditional_prior(z2)
    return distributions.diag_normal_log_prob(z1, mean1, log_std1) + self.top_prior_log_prob(z2)

  def sample_prior(self, rng: Array, num_samples: int) -> Array:
    """Concat[z1, z2] with z2 ~ p(z2), z1 ~ p(z1|z2): [num_samples, M1 + M2]."""
    z2_key, z1_key = jax.random.split(rng)
    z2 = self.sample_top_prior(z2_key, num_samples)
    mean1, log_std1 = self.conditional_prior(z2)
    z1 = posteriors.gaussian_sample(mean1, log_std1, z1_key)[0]
    return jnp.concatenate([z1, z2], axis=-1)


class TwoStageVAE(nn.Module):
  """Dai & Wipf's two-stage VAE: `first`, a VAE on the data with the standard-normal prior, and
  `second`, a VAE on the first stage's latents z = mu(x) + sigma(x) eps, with a Gaussian decoder
  whose learned scale is gamma_z.

  The shared interface (ELBO, importance weights, posterior, reconstructions, decode) is the first
  stage's, so the estimators and `evaluate` report the first stage's likelihood. Generation is
  two-stage: u ~ N(0, I), z = (second-stage decoder mean)(u) + gamma_z eps, x = first-stage decoder
  mean (`sample_prior`, `sample`); `first_stage_sample` is the baseline z ~ N(0, I). Initialise
  through `elbo` (the default `__call__`): it creates both stages' parameters.
  """
  first: LatentVariableModel
  second: LatentVariableModel

  autoregressive = False

  @property
  def prior(self) -> nn.Module:
    return self.first.prior

  @property
  def encoder(self) -> nn.Module:
    return self.first.encoder

  @property
  def latent_levels(self) -> Tuple[Tuple[str, int], ...]:
    return self.first.latent_levels

  def elbo(self, x: Array, rng: Array, beta: float = 1.0) -> Array:
    """The first stage's ELBO, [B] (at init, the second stage's parameters are created too)."""
    out = self.first.elbo(x, rng, beta)
    if self.is_initializing():
      self.second_stage_terms(x, rng)
    return out

  __call__ = elbo

  def log_weight_terms(self, x: Array, rng: Array, return_latent: bool = False,
                       train: bool = False) -> Dict[str, Array]:
    return self.first.log_weight_terms(x, rng, return_latent, train)

  def log_importance_weight(self, x: Array, rng: Array) -> Array:
    return self.first.log_importance_weight(x, rng)

  def second_stage_inputs(self, x: Array, rng: Array) -> Array:
    """z = mu(x) + sigma(x) eps from the first stage's encoder (inference mode, no gradient), a fresh
    eps per call: the second stage's training data, [B, latent_dim]."""
    mean, log_std = jax.lax.stop_gradient(self.first.encoder(x))
    return mean + jnp.exp(log_std) * jax.random.normal(rng, mean.shape, mean.dtype)

  def second_stage_terms(self, x: Array, rng: Array, return_latent: bool = False,
                         train: bool = False) -> Dict[str, Array]:
    """The second stage's `log_weight_terms` on `second_stage_inputs(x)` (keys folded from rng)."""
    z = self.second_stage_inputs(x, jax.random.fold_in(rng, 7))
    return self.second.log_weight_terms(z, jax.random.fold_in(rng, 8), return_latent, train)

  def sample_posterior(self, x: Array, rng: Array) -> Array:
    return self.first.sample_posterior(x, rng)

  def posterior_mean(self, x: Array, rng: Array, num_samples: int = 1000) -> Array:
    return self.first.posterior_mean(x, rng, num_samples)

  def decode(self, z: Array, x: Optional[Array] = None, train: bool = False,
             dropout_rng: Optional[Array] = None) -> Array:
    return self.first.decode(z, x, train, dropout_rng)

  def observation_mean(self, out: Array) -> Array:
    return self.first.observation_mean(out)

  def reconstruct(self, x: Array, rng: Array) -> Array:
    return self.first.reconstruct(x, rng)

  def prior_log_prob(self, z: Array) -> Array:
    """The first stage's log p(z) (N(0, I)): what its ELBO and NLL use."""
    return self.first.prior_log_prob(z)

  def sample_prior(self, rng: Array, num_samples: int) -> Array:
    """Two-stage: z = (second-stage decoder mean)(u) + gamma_z eps, u ~ N(0, I): [num_samples, d]."""
    second_key, noise_key = jax.random.split(rng)
    z_mean = self.second.sample(second_key, num_samples)
    gamma_z = self.second.likelihood.gamma()
    return z_mean + gamma_z * jax.random.normal(noise_key, z_mean.shape, z_mean.dtype)

  def sample(self, rng: Array, num_samples: int) -> Array:
    """Two-stage samples: means of the first stage's p(x|z) at z from `sample_prior`."""
    return self.first.observation_mean(self.first.decode(self.sample_prior(rng, num_samples)))

  def first_stage_sample(self, rng: Array, num_samples: int) -> Array:
    """The baseline: means of p(x|z) at z ~ N(0, I)."""
    return self.first.sample(rng, num_samples)


def decode_images(model: LatentVariableModel, params, z: Array, rng: Array,
                  image_shape: Tuple[int, int, int]) -> Array:
  """Images [N, H, W, C] of Bernoulli means for latents z [N, d].

  Non-autoregressive decoders: the means of p(x|z). Autoregressive (PixelCNN) decoders: pixels are
  drawn one at a time in raster order, x_i ~ p(x_i | x_<i, z) (H*W*C decoder passes), and the image
  returned holds each pixel's mean p(x_i = 1 | x_<i, z) given the pixels drawn before it.
  """
  if not model.autoregressive:
    return model.apply(as_variables(params), z,
                       method=lambda m, z_: m.observation_mean(m.decode(z_)))
  num_samples = z.shape[0]
  shape = (num_samples,) + tuple(image_shape)
  size = int(np.prod(image_shape))
  uniforms = jax.random.uniform(rng, (num_samples, size))

  def body(i, carry):
    x, means = carry
    probs = jax.nn.sigmoid(model.apply(as_variables(params), z, x, method='decode'))
    p_i = probs.reshape(num_samples, size)[:, i]
    x = x.reshape(num_samples, size).at[:, i].set((uniforms[:, i] < p_i).astype(x.dtype))
    means = means.at[:, i].set(p_i)
    return x.reshape(shape), means

  _, means = jax.lax.fori_loop(0, size, body, (jnp.zeros(shape, jnp.float32),
                                               jnp.zeros((num_samples, size), jnp.float32)))
  return means.reshape(shape)


def sample_images(model: LatentVariableModel, params, rng: Array, num_samples: int,
                  image_shape: Tuple[int, int, int]) -> Array:
  """Samples x ~ p(x): z ~ p(z), then `decode_images` (autoregressive decoders draw pixels)."""
  prior_key, pixel_key = jax.random.split(rng)
  z = model.apply(as_variables(params), prior_key, num_samples, method='sample_prior')
  return decode_images(model, params, z, pixel_key, image_shape)


# The library's own nets; `nets.REGISTRY.names()` also lists those user code registered.
NETS = nets.NETS + hvae_nets.NETS + dai_nets.NETS + vaepp_nets.NETS


def is_hierarchical(model_config) -> bool:
  """Whether `config.model.net` is one of Tomczak & Welling's two-level models."""
  return model_config.net in hvae_nets.NETS


def validate(model_config):
  """Raises ValueError naming the first bad value of `config.model` and what is allowed."""
  model_config = config_lib.complete_section(model_config, 'model')
  for key, table in (('net', nets.REGISTRY), ('prior', priors.REGISTRY),
                     ('posterior', posteriors.REGISTRY)):
    table.check(model_config[key])
  likelihoods.REGISTRY.check(model_config.likelihood)
  uses_flow = 'realnvp' in (model_config.prior, model_config.posterior)
  if uses_flow and model_config.latent_dim < 2:
    raise ValueError(f'A RealNVP needs model.latent_dim >= 2, got {model_config.latent_dim}.')
  if uses_flow and model_config.flow_depth < 1:
    raise ValueError(f'model.flow_depth must be >= 1 with a RealNVP, got {model_config.flow_depth}.')
  if model_config.latent_dim < 1:
    raise ValueError(f'model.latent_dim must be >= 1, got {model_config.latent_dim}.')
  if model_config.z1_dim < 0:
    raise ValueError(f'model.z1_dim must be >= 0 (0: model.latent_dim), got {model_config.z1_dim}.')
  if model_config.prior in ('mog', 'vampprior', 'vampprior_data'):
    if model_config.num_components < 1:
      raise ValueError(f'model.num_components must be >= 1 with model.prior={model_config.prior}, '
                       f'got {model_config.num_components}.')
  if model_config.prior.startswith('vampprior') and model_config.posterior != 'gaussian':
    raise ValueError(f'model.prior={model_config.prior} is a mixture of the Gaussian posteriors '
                     f'q(z|u_k); it needs model.posterior=gaussian, got {model_config.posterior!r}.')
  if model_config.prior == 'pullback' and (is_hierarchical(model_config)
                                           or model_config.net == 'pixel'):
    raise ValueError(f'model.prior=pullback needs a one-level model with a non-autoregressive '
                     f'decoder (its density reads the decoder mean G(z)); got model.net='
                     f'{model_config.net}.')
  if is_hierarchical(model_config) and model_config.posterior != 'gaussian':
    raise ValueError(f'model.net={model_config.net} has Gaussian posteriors q(z1|x, z2) q(z2|x); it '
                     f'needs model.posterior=gaussian, got {model_config.posterior!r}.')
  backend = model_config.conv_backend
  if backend not in nets.CONV_BACKENDS:
    raise ValueError(f'Unknown model.conv_backend {backend!r}; allowed: '
                     f'{", ".join(nets.CONV_BACKENDS.names())}.')
  reason = nets.CONV_BACKENDS.get(backend).unavailable_reason()
  if reason:
    raise ValueError(f'model.conv_backend={backend} cannot run here: {reason}')


def create(model_config, input_shape: Tuple[int, ...]) -> LatentVariableModel:
  """Builds the model described by `config.model`, its parts looked up by name in the registries
  (user code may register more: see `registry`).

  Keys: net (`nets.REGISTRY`: dense|conv|resnet|pixel|gated_mlp|infogan|dai_resnet give a `VAE`;
  hvae|convhvae|pixelhvae a `HierarchicalVAE`), prior (`priors.REGISTRY`: standard|realnvp|mog|vampprior|vampprior_data; of z2
  in the two-level models), posterior (`posteriors.REGISTRY`: gaussian|realnvp), likelihood
  (`likelihoods.REGISTRY`: bernoulli (default)|gaussian), latent_dim (of z, or of z2), flow_depth, and
  optionally z1_dim (0: latent_dim), num_components (500: mixture components or pseudo-inputs),
  flow_hidden_units (256), flow_unroll (1: RealNVP blocks per scan iteration; flow_depth unrolls the
  loop entirely), coupling_scale_bias (2.0), negative_slope (0.2), pixelcnn_layers (3),
  pixelcnn_features (0: C + 32), conv_backend (`nets.CONV_BACKENDS`: 'xla', or a CPU-only one of
  `vaeprior_jax.cpu`), and for the Gaussian likelihood learn_gamma (True), log_gamma (0.0) and
  mean_activation ('identity').
  """
  model_config = config_lib.complete_section(model_config, 'model')
  validate(model_config)
  input_shape = tuple(int(s) for s in input_shape)
  if model_config.two_stage:
    return _two_stage(model_config, input_shape)
  parts = dict(nets.REGISTRY.get(model_config.net)(model_config, input_shape))
  prior = priors.from_config(model_config, input_shape)
  likelihood = likelihoods.create(model_config, input_shape)
  if 'encoder_z2' in parts:  # A two-level net.
    return HierarchicalVAE(prior=prior, likelihood=likelihood, **parts)
  return VAE(prior=prior, posterior=posteriors.from_config(model_config), likelihood=likelihood,
             **parts)



def second_stage_config(model_config):
  """The `config.model` of the second stage of a two-stage model: `second_stage` nets on latent
  vectors, the standard-normal prior, a Gaussian decoder with a learned gamma_z (log 0 at the start),
  `second_stage_latent_dim` latents (0: the first stage's latent_dim)."""
  mc = config_lib.complete_section(model_config, 'model')
  return config_lib.complete_section(dict(
      net='second_stage', prior='standard', posterior='gaussian', likelihood='gaussian',
      learn_gamma=True, log_gamma=0.0, mean_activation='identity',
      latent_dim=mc.second_stage_latent_dim or mc.latent_dim,
      second_stage_units=mc.second_stage_units, second_stage_layers=mc.second_stage_layers), 'model')


def _two_stage(model_config, input_shape) -> TwoStageVAE:
  if model_config.prior != 'standard' or model_config.posterior != 'gaussian':
    raise ValueError(f'model.two_stage=True trains the first stage with the standard prior and the '
                     f'Gaussian posterior; got model.prior={model_config.prior!r}, '
                     f'model.posterior={model_config.posterior!r}.')
  if is_hierarchical(model_config):
    raise ValueError(f'model.two_stage=True needs a one-level first stage; model.net='
                     f'{model_config.net} is a two-level model.')
  first_config = config_lib.complete_section(dict(model_config.to_dict(), two_stage=False), 'model')
  first = create(first_config, input_shape)
  second = create(second_stage_config(model_config), (first_config.latent_dim,))
  return TwoStageVAE(first=first, second=second)
