"""The PyTorch peer of the benchmarks: Xu et al.'s DenseVAE and ResnetVAE (App. B.2) with the standard
or the RealNVP prior, the same one-sample warm-up ELBO step with L2 and Adam, and the same chunked
K-sample importance-weighted estimator, written the way a PyTorch user would (eager mode, NCHW).

Benchmarks only (`pip install torch`, the CPU build): nothing in the library imports it. Shapes follow
`vaeprior_jax.nets` and `vaeprior_jax.flows`: Dense[500, 500]; the Conv/Resnet stacks 28x28x32 ->
14x14x64 -> 7x7x16 and back with pre-activation residual blocks, transposed convolutions to upsample;
RealNVP blocks of InvertibleDense -> affine coupling (Dense[256], sigmoid(s + 2) scale) -> ActNorm.
"""

import math

import torch
from torch import nn
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)
SLOPE = 0.2
ENCODER_STACK = ((32, 1), (32, 1), (64, 2), (64, 1), (64, 2), (16, 1))
DECODER_STACK = ((64, 1), (64, 2), (64, 1), (32, 2), (32, 1))


def act(x):
  return F.leaky_relu(x, SLOPE)


class Heads(nn.Module):

  def __init__(self, features, latent_dim):
    super().__init__()
    self.mean = nn.Linear(features, latent_dim)
    self.log_std = nn.Linear(features, latent_dim)

  def forward(self, h):
    return self.mean(h), self.log_std(h)


class DenseEncoder(nn.Module):

  def __init__(self, latent_dim, input_size=784):
    super().__init__()
    self.hidden = nn.ModuleList([nn.Linear(input_size, 500), nn.Linear(500, 500)])
    self.heads = Heads(500, latent_dim)

  def forward(self, x):
    h = x.flatten(1)
    for layer in self.hidden:
      h = act(layer(h))
    return self.heads(h)


class DenseDecoder(nn.Module):

  def __init__(self, latent_dim, output_size=784):
    super().__init__()
    self.hidden = nn.ModuleList([nn.Linear(latent_dim, 500), nn.Linear(500, 500)])
    self.logits = nn.Linear(500, output_size)

  def forward(self, z):
    h = z
    for layer in self.hidden:
      h = act(layer(h))
    return self.logits(h).view(-1, 1, 28, 28)


class ResidualBlock(nn.Module):
  """Pre-activation: shortcut(x) + Conv(act(Conv_s(act(x)))), as vaeprior_jax.nets.ResidualBlock."""

  def __init__(self, cin, cout, stride, transpose):
    super().__init__()
    if transpose and stride > 1:
      make = lambda i, o, k: nn.ConvTranspose2d(i, o, k, stride, padding=k // 2,
                                                output_padding=stride - 1)
    else:
      make = lambda i, o, k: nn.Conv2d(i, o, k, stride, padding=k // 2)
    self.shortcut = make(cin, cout, 1) if stride != 1 or cin != cout else None
    self.conv_0 = make(cin, cout, 3)
    self.conv_1 = nn.Conv2d(cout, cout, 3, 1, padding=1)

  def forward(self, x):
    shortcut = x if self.shortcut is None else self.shortcut(x)
    return shortcut + self.conv_1(act(self.conv_0(act(x))))


class ResnetEncoder(nn.Module):

  def __init__(self, latent_dim, channels=1):
    super().__init__()
    blocks, cin = [], channels
    for cout, stride in ENCODER_STACK:
      blocks.append(ResidualBlock(cin, cout, stride, False))
      cin = cout
    self.hidden = nn.ModuleList(blocks)
    self.heads = Heads(7 * 7 * 16, latent_dim)

  def forward(self, x):
    h = x
    for block in self.hidden:
      h = block(h)
    return self.heads(act(h).flatten(1))


class ResnetDecoder(nn.Module):

  def __init__(self, latent_dim, channels=1):
    super().__init__()
    self.hidden_dense = nn.Linear(latent_dim, 7 * 7 * 16)
    blocks, cin = [], 16
    for cout, stride in DECODER_STACK:
      blocks.append(ResidualBlock(cin, cout, stride, True))
      cin = cout
    self.hidden = nn.ModuleList(blocks)
    self.logits = nn.Conv2d(32, channels, 1)

  def forward(self, z):
    h = act(self.hidden_dense(z)).view(-1, 16, 7, 7)
    for block in self.hidden:
      h = block(h)
    return self.logits(act(h))


class RealNVPBlock(nn.Module):

  def __init__(self, dim, hidden=256, scale_bias=2.0):
    super().__init__()
    self.kernel = nn.Parameter(torch.linalg.qr(torch.randn(dim, dim))[0])
    self.d_l = dim // 2
    self.hidden = nn.Linear(self.d_l, hidden)
    self.scale = nn.Linear(hidden, dim - self.d_l)
    self.shift = nn.Linear(hidden, dim - self.d_l)
    nn.init.zeros_(self.scale.weight)
    nn.init.zeros_(self.shift.weight)
    self.scale_bias = scale_bias
    self.bias = nn.Parameter(torch.zeros(dim))
    self.log_scale = nn.Parameter(torch.zeros(dim))

  def forward(self, z):
    log_det = torch.linalg.slogdet(self.kernel)[1]
    z = z @ self.kernel
    u_l, u_r = z[..., :self.d_l], z[..., self.d_l:]
    h = act(self.hidden(u_l))
    log_s = F.logsigmoid(self.scale(h) + self.scale_bias)
    z = torch.cat([u_l, u_r * torch.exp(log_s) + self.shift(h)], dim=-1)
    z = (z + self.bias) * torch.exp(self.log_scale)
    return z, log_det + log_s.sum(-1) + self.log_scale.sum()


class RealNVPPrior(nn.Module):

  def __init__(self, dim, depth):
    super().__init__()
    self.blocks = nn.ModuleList([RealNVPBlock(dim) for _ in range(depth)])

  def log_prob(self, z):
    log_det = torch.zeros(z.shape[:-1])
    for block in self.blocks:
      z, ld = block(z)
      log_det = log_det + ld
    return -0.5 * (z.square() + LOG_2PI).sum(-1) + log_det


class StandardPrior(nn.Module):

  def log_prob(self, z):
    return -0.5 * (z.square() + LOG_2PI).sum(-1)


class VAE(nn.Module):

  def __init__(self, net: str, prior: str, latent_dim: int = 40, flow_depth: int = 20):
    super().__init__()
    if net == 'dense':
      self.encoder, self.decoder = DenseEncoder(latent_dim), DenseDecoder(latent_dim)
    elif net == 'resnet':
      self.encoder, self.decoder = ResnetEncoder(latent_dim), ResnetDecoder(latent_dim)
    else:
      raise ValueError(f'Unknown net {net!r}; allowed: dense, resnet.')
    self.prior = RealNVPPrior(latent_dim, flow_depth) if prior == 'realnvp' else StandardPrior()

  def log_weight_terms(self, x, mean, log_std, eps):
    """eps [S, B, d] -> (log p(x|z), log p(z), log q(z|x)), each [S, B]."""
    z = mean + torch.exp(log_std) * eps
    log_qz = -0.5 * (eps.square() + LOG_2PI).sum(-1) - log_std.sum(-1)
    s, b, d = z.shape
    logits = self.decoder(z.reshape(s * b, d)).reshape((s, b) + x.shape[1:])
    log_px_z = (x * logits - F.softplus(logits)).flatten(2).sum(-1)
    return log_px_z, self.prior.log_prob(z), log_qz

  def l2(self):
    total = 0.0
    for name, p in self.named_parameters():
      if name.endswith('weight') and ('hidden' in name):
        total = total + 0.5 * p.square().sum()
    return total


def make_train_step(model: VAE, lr: float = 1e-3, l2_weight: float = 1e-4, beta: float = 0.5):
  """One-sample warm-up ELBO + L2 on the hidden kernels, Adam: step(x) -> loss."""
  optimizer = torch.optim.Adam(model.parameters(), lr=lr)

  def step(x):
    optimizer.zero_grad(set_to_none=True)
    mean, log_std = model.encoder(x)
    eps = torch.randn((1,) + mean.shape)
    log_px_z, log_pz, log_qz = model.log_weight_terms(x, mean, log_std, eps)
    loss = -(log_px_z - beta * (log_qz - log_pz)).mean() + l2_weight * model.l2()
    loss.backward()
    optimizer.step()
    return loss

  return step


@torch.no_grad()
def importance_weighted_log_likelihood(model: VAE, x, num_samples: int = 1000,
                                       chunk_size: int = 100):
  """K-sample estimate of log p(x) per example, chunk by chunk with a running logsumexp."""
  mean, log_std = model.encoder(x)
  running = None
  for start in range(0, num_samples, chunk_size):
    s = min(chunk_size, num_samples - start)
    eps = torch.randn((s,) + mean.shape)
    log_px_z, log_pz, log_qz = model.log_weight_terms(x, mean, log_std, eps)
    chunk = torch.logsumexp(log_px_z + log_pz - log_qz, dim=0)
    running = chunk if running is None else torch.logaddexp(running, chunk)
  return running - math.log(num_samples)


def _nchw(images):
  """NHWC float32 NumPy images -> an NCHW tensor."""
  return torch.from_numpy(images.transpose(0, 3, 1, 2).copy())


def train_window(net: str, prior: str, images, steps: int):
  """A timing window for the benchmarks: () -> `steps` train steps of a fresh peer (seed 0) on the
  NHWC `images`."""
  torch.manual_seed(0)
  step = make_train_step(VAE(net, prior))
  x = _nchw(images)
  return lambda: [step(x) for _ in range(steps)]


def nll_window(net: str, prior: str, images, num_samples: int, chunk_size: int):
  """A timing window: () -> the peer's (seed 0) `num_samples`-sample estimate on the NHWC
  `images`."""
  torch.manual_seed(0)
  model = VAE(net, prior).eval()
  x = _nchw(images)
  return lambda: importance_weighted_log_likelihood(model, x, num_samples, chunk_size)
