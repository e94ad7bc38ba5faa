"""VAEPP's pull-back prior p(z) = p_base(z) exp(-beta D(G(z))) / Z and what only it needs:

  prior       the module and its builder (`model.prior=pullback`)
  normalizer  log Z, estimated from the base prior's or the posterior's samples
  mala        Metropolis-adjusted Langevin sampling from it
  latent_gan  the latent WGAN whose samples start the chains
  penalties   the WGAN-GP / WGAN-div gradient penalties of its critic
"""
