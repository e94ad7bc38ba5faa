"""Evaluating a training workdir: the App. B.3 metrics on a split, active units, and image grids."""

import itertools
import json
import os
import time
from typing import Any, Dict, Optional

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from vaeprior_jax import interrupts
from vaeprior_jax import checkpoints
from vaeprior_jax import compiled
from vaeprior_jax import config as config_lib
from vaeprior_jax import data
from vaeprior_jax import files
from vaeprior_jax import hooks as hooks_lib
from vaeprior_jax import likelihoods
from vaeprior_jax import methods
from vaeprior_jax import models
from vaeprior_jax import nets
from vaeprior_jax import posteriors
from vaeprior_jax import priors
from vaeprior_jax import sharding
from vaeprior_jax.evaluation import estimators
from vaeprior_jax.evaluation import images
from vaeprior_jax.evaluation import records


CHECKPOINTS = checkpoints.CHECKPOINTS
resolve_checkpoint = checkpoints.resolve_checkpoint
restore_params = checkpoints.restore_params



def evaluation_hooks(config) -> list:
  """The `hooks.EvaluationHooks` of everything `config` names: its model's class, then the entries of
  model.net, model.prior, model.posterior, model.likelihood and the training method (those that
  registered hooks)."""
  mc = config.model
  entries = ((nets.REGISTRY, mc.net), (priors.REGISTRY, mc.prior),
             (posteriors.REGISTRY, mc.posterior), (likelihoods.REGISTRY, mc.likelihood),
             (methods.REGISTRY, methods.method_name(config.train)))
  found = [models.model_class(mc).evaluation_hooks]
  found += [table.info(name).get('evaluation_hooks') for table, name in entries]
  return [h for h in found if h is not None]


def _sample_kinds(hooks) -> dict:
  """{kind: (sampler, grid file)} of the hooks' extra sample kinds, in the hooks' order."""
  kinds = {}
  for h in hooks:
    kinds.update(h.sample_kinds())
  return kinds


# A paper config's numbers: `paper_{metric}` keys (paper_nll, paper_bits_per_dim, paper_fid), each a
# number or None, and `paper_setting`, the values they are for as a nested dict of config sections
# ({'model': {'net': 'dense', ...}, 'data': {'dataset': ...}, ...}).
PAPER_PREFIX = 'paper_'


def _leaves(tree, prefix=()):
  for key, value in tree.items():
    if hasattr(value, 'items'):
      yield from _leaves(value, prefix + (key,))
    else:
      yield prefix + (key,), value


def paper_metrics(config) -> Dict[str, float]:
  """{metric: the paper's number} of this config's table entry ({} if the run's settings differ
  from the entry's `paper_setting` (config overrides), or the config names no entry)."""
  setting = config.get('paper_setting')
  if setting is None:
    return {}
  for path, value in _leaves(setting):
    actual = config
    for key in path:
      actual = actual.get(key) if hasattr(actual, 'get') else None
    if actual != value:
      return {}
  return {k[len(PAPER_PREFIX):]: v for k, v in config.items()
          if k.startswith(PAPER_PREFIX) and k != 'paper_setting' and v is not None}


def paper_nll(config):
  """The paper's test NLL for this config's table entry, or None (see `paper_metrics`)."""
  return paper_metrics(config).get('nll')


def result_path(workdir: str, split: str, max_examples: Optional[int] = None, seed: int = 0) -> str:
  """Where `evaluate` writes: eval_{split}.json for a whole split, eval_{split}_subset{N}_seed{S}.json
  for a subset, so that a quick estimate never replaces a full-split result."""
  if max_examples is None:
    return os.path.join(workdir, f'eval_{split}.json')
  return os.path.join(workdir, f'eval_{split}_subset{max_examples}_seed{seed}.json')


def check_arguments(num_samples=None, max_examples=None, chunk_size=None, batch_size=None):
  """Raises ValueError naming the first bad value (each must be >= 1 when given)."""
  for name, value in (('num_samples', num_samples), ('max_examples', max_examples),
                      ('chunk_size', chunk_size), ('batch_size', batch_size)):
    if value is not None:
      config_lib.check_integer(value, name, 1, ' (or left out)')


def check_eval_overrides(config, overrides: Optional[Dict]) -> None:
  """One-line errors for `evaluate`'s eval_overrides: a key `config.eval` lacks, or one whose
  component is not part of this run (a pull-back prior's setting for a run without one)."""
  for key in overrides or {}:
    if key not in config.eval:
      raise ValueError(f'Unknown eval.{key}; allowed: {", ".join(sorted(config.eval))}.')
    owner = config_lib.owner_of(f'eval.{key}')
    if not config_lib.owner_active(config, owner):
      raise ValueError(f'eval.{key} is a setting of {owner}, which this run does not use.')


def _active_units(model, params, dataset, ec, batch_size, mesh, key, seed,
                  partial_file: Optional[str] = None, protocol: Optional[Dict] = None
                  ) -> Dict[str, int]:
  """{'active_units': ...} over the training split's posterior means (`ec.active_units_samples`
  samples each), and per latent level for the two-level models (Tomczak & Welling's Fig. 3:
  active_units_z1, ..._z2). Only the encoder runs, so the batches can be larger than the NLL's.
  The means are kept in `partial_file` as they come, whole once done (`estimators.
  kept_concatenation`: with a flow posterior each mean takes many samples through the flow)."""
  au_samples = ec.active_units_samples
  posterior_mean = compiled.jit(lambda p, x, k: model.apply(
      models.as_variables(p), x, k, au_samples, method=model.posterior_mean))
  au_batch_size = sharding.round_up_to_devices(ec.active_units_batch_size or batch_size, mesh)
  train_images = dataset.eval_images('train', seed)

  def parts_from(start):
    _, train_batches = data.eval_batches(train_images, au_batch_size,
                                         rows=sharding.process_slice(au_batch_size))
    for i, (x, mask) in enumerate(itertools.islice(train_batches, start, None), start):
      interrupts.check()
      mu = posterior_mean(params, sharding.shard_batch(x, mesh), jax.random.fold_in(key, i))
      yield {'means': sharding.to_host(mu)[mask]}

  means_z = estimators.kept_concatenation(
      parts_from, partial_file,
      dict(protocol or {}, samples=au_samples, batch_size=au_batch_size),
      remove_when_done=False)['means']
  result = {'active_units': estimators.active_units(means_z)}
  levels = model.latent_levels
  if len(levels) > 1:
    start = 0
    for name, size in levels:
      result[f'active_units_{name}'] = estimators.active_units(means_z[:, start:start + size])
      start += size
  return result


def _write_images(workdir, model, params, input_shape, hooks, encoder_view, split, batch_size,
                  max_examples, seed, key) -> None:
  """samples.png (100 of the model's samples), the grids of the components' sample kinds, and
  reconstructions_{split}.png: up to 5 pairs of rows, 10 of the evaluated examples above their
  reconstructions."""
  sample_key, recon_key = jax.random.split(key)
  samples = compiled.jit(
      lambda p, k: models.sample_images(model, p, k, 100, input_shape))(params, sample_key)
  images.save_grid(np.asarray(samples), os.path.join(workdir, 'samples.png'))
  for sampler, grid_file in _sample_kinds(hooks).values():  # E.g. baselines' samples.
    grid = compiled.jit(lambda p, k, sampler=sampler: model.apply(
        models.as_variables(p), k, 100, method=sampler))(params, sample_key)
    images.save_grid(np.asarray(grid), os.path.join(workdir, grid_file))
  indices, _ = data.eval_batches(encoder_view, batch_size, max_examples, seed)
  cols = min(10, len(indices))
  num_rows = min(5, len(indices) // cols)
  x = encoder_view[indices[:num_rows * cols]]
  recon = compiled.jit(
      lambda p, x_, k: model.apply(models.as_variables(p), x_, k, method=model.reconstruct))(
          params, jnp.asarray(x), recon_key)
  pairs = np.stack([x.reshape((num_rows, cols) + x.shape[1:]),
                    np.asarray(recon).reshape((num_rows, cols) + x.shape[1:])], axis=1)
  images.save_grid(pairs.reshape((-1,) + x.shape[1:]),
                   os.path.join(workdir, f'reconstructions_{split}.png'), num_cols=cols)


def evaluate(workdir: str, split: str = 'test', num_samples: Optional[int] = None,
             max_examples: Optional[int] = None, chunk_size: Optional[int] = None,
             batch_size: Optional[int] = None, seed: int = 0, active_units: bool = True,
             write_images: bool = True, checkpoint: str = 'auto',
             conv_backend: Optional[str] = None,
             eval_overrides: Optional[Dict] = None) -> Dict[str, float]:
  """Evaluates a checkpoint of `workdir` and writes `eval_{split}.json` (a subset:
  `eval_{split}_subset{N}_seed{S}.json`, see `result_path`) and PNG grids.

  checkpoint: 'auto' (the best one if the run used early stopping, else the latest), 'latest', 'best'.
  conv_backend: who computes the convolutions (a name of nets.CONV_BACKENDS; default: the training
  config's model.conv_backend); every backend takes the same parameters, so a run trained with a
  CPU-only backend can be evaluated with 'xla' elsewhere, and the other way round.
  eval_overrides: {key: value} replacing `config.eval` settings of the run for this evaluation
  (e.g. {'log_z_ais_temperatures': 1000} for a pull-back prior's AIS bounds).

  Two-stage runs (Dai & Wipf) are evaluated on their first stage; `samples.png` holds two-stage
  samples and `samples_first_stage.png` the first stage's from z ~ N(0, I).

  With `eval.proposal_input=grey` (VAEPP's code, for a run trained on grey levels of a grey-level
  dataset), the likelihood is that of the binarized split (the test split's fixed binarizations, the
  same images a binarized run is tested on) and the importance proposal q(z|e) reads the grey image e
  each binary image was drawn from; `proposal_input` is written to the result.

  Metrics are per example, in nats, averaged over the split (or over a seeded random subset of
  `max_examples`; grey-level splits binarized with `seed`, the test split of MNIST-like datasets is
  its 10 fixed binarizations): nll = -log p(x) (K-sample importance-weighted), elbo,
  reconstruction = E_q log p(x|z),
  kl = E_q[log q(z|x) - log p(z)], kl_z_given_x = log p(x) - elbo; active_units on the training split
  (of the two-level models: over Concat[z1, z2], and per level as active_units_z1, active_units_z2).
  """
  check_arguments(num_samples, max_examples, chunk_size, batch_size)
  config = checkpoints.load_config(workdir)
  if conv_backend is not None:
    config.model.conv_backend = conv_backend
  check_eval_overrides(config, eval_overrides)
  for key, value in (eval_overrides or {}).items():  # E.g. a component's eval.* setting.
    config.eval[key] = value
  ec = config.eval
  estimators.check_eval_config(ec)
  paired = ec.proposal_input == 'grey'
  hooks = evaluation_hooks(config)
  for h in hooks:
    h.check_config(config)
  if paired:
    data.check_grey_proposal(config.data)
    if not all(h.grey_proposal for h in hooks):
      raise ValueError('eval.proposal_input=grey is for one-level VAEs; got model.net='
                       f'{config.model.net} ({models.model_class(config.model).__name__}).')
  num_samples = num_samples or ec.num_samples
  chunk_size = chunk_size or ec.chunk_size
  mesh = sharding.make_mesh()
  batch_size = sharding.round_up_to_devices(batch_size or ec.batch_size, mesh)

  dataset = data.load(config.data)
  model = models.create(config.model, dataset.input_shape)
  checkpoint = resolve_checkpoint(workdir, checkpoint)
  # The variables: parameters, and batch statistics where the nets keep them.
  params, step = checkpoints.restore_variables(workdir, config, model, dataset.input_shape,
                                               checkpoint)
  eval_key = jax.random.fold_in(checkpoints.root_keys(config.seed)['eval'], seed)
  nll_key, au_key, image_key = jax.random.split(eval_key, 3)
  ctx = hooks_lib.EvaluationContext(config=config, dataset=dataset, mesh=mesh, key=eval_key,
                                    seed=seed, batch_size=batch_size, workdir=workdir,
                                    step=int(step), checkpoint=checkpoint)
  before = {}
  for h in hooks:  # E.g. a statistic the likelihood depends on (the pull-back prior's log Z).
    params, metrics = h.before_likelihood(model, params, ctx)
    before.update(metrics)

  start = time.time()
  if paired:  # Concat[binarized target, grey image]; the encoder's view is the second half.
    split_images = data.grey_proposal_pairs(dataset, config.data, split, seed)
    encoder_view = split_images[..., split_images.shape[-1] // 2:]
  else:
    split_images = encoder_view = dataset.eval_images(split, seed)
  batch_metrics = estimators.bounded_batch_metrics(
      model, num_samples, chunk_size, params, (batch_size,) + split_images.shape[1:], nll_key, mesh,
      ec.memory_budget_gb, paired, f'{num_samples}-sample evaluation')
  # Kept as it goes: a rerun of the same evaluation after a kill or a signal continues. Kept whole
  # once done, with the hooks' passes (`ctx.kept_file`), until the result is written: a stop in a
  # later step (AIS bounds, active units) does not redo them.
  likelihood_partial = result_path(workdir, split, max_examples, seed) + '.partial'
  protocol = dict(split=split, num_samples=num_samples, max_examples=max_examples, seed=seed,
                  batch_size=batch_size, chunk_size=batch_metrics.chunk_size, step=int(step),
                  checkpoint=checkpoint, conv_backend=config.model.conv_backend,
                  proposal_input=ec.proposal_input, devices=int(mesh.devices.size),
                  overrides=dict(eval_overrides or {}),
                  # What the numbers depend on: not how long a step before took.
                  before={k: v for k, v in before.items() if not k.endswith('_seconds')})
  preparation = time.time() - start
  result = estimators.split_metrics(batch_metrics, params, split_images, nll_key, mesh,
                                    batch_size, max_examples, seed,
                                    label=f'{num_samples}-sample evaluation on {split}',
                                    partial_file=likelihood_partial, protocol=protocol,
                                    remove_when_done=False)
  result.update(num_samples=num_samples, split=split, step=int(step), checkpoint=checkpoint,
                # Every process's share, where the pass continued from kept sums.
                eval_seconds=preparation + result.pop('seconds'),
                conv_backend=config.model.conv_backend,
                prior_parameters=prior_parameters(params))
  result.update(before)
  for h in hooks:
    result.update(h.after_likelihood(model, params, result, ctx, encoder_view))
  for h in hooks:  # E.g. bits per dimension.
    result.update(h.units(result, dataset.input_shape))
  reference = {f'{PAPER_PREFIX}{k}': v for k, v in paper_metrics(config).items() if k != 'fid'}
  if reference and split == 'test':  # (FIDs belong to the sample-quality report.)
    result.update(entry=config.get('entry', ''), **reference)

  if active_units:
    result.update(_active_units(model, params, dataset, ec, batch_size, mesh, au_key, seed,
                                ctx.kept_file('active_units.partial.npz'),
                                dict(step=int(step), checkpoint=checkpoint, seed=seed,
                                     devices=int(mesh.devices.size))))

  if paired:
    result['proposal_input'] = 'grey'
  if write_images and jax.process_index() == 0:
    _write_images(workdir, model, params, dataset.input_shape, hooks, encoder_view, split,
                  batch_size, max_examples, seed, image_key)

  if jax.process_index() == 0:
    with open(result_path(workdir, split, max_examples, seed), 'w') as f:
      json.dump(result, f, indent=2)
  per_epoch = data.steps_per_epoch(len(dataset.train), config.train.batch_size)
  records.append(
      workdir, 'likelihood', config, result,
      dict(protocol, estimator=f'{num_samples}-sample importance-weighted',
           active_units_samples=ec.active_units_samples if active_units else None),
      overrides=dict(eval_overrides or {}, **({'conv_backend': conv_backend} if conv_backend
                                                else {})),
      budget={'step': int(step), 'epochs': int(step) / per_epoch, 'checkpoint': checkpoint,
              'train_seconds': records.train_seconds(workdir, int(step))})
  if jax.process_index() == 0:
    for path in [likelihood_partial] + ctx.kept_files:
      if os.path.exists(path):
        os.remove(path)
  return result


def prior_parameters(variables) -> int:
  """How many numbers p(z) holds: the entries of the `prior` subtree of `variables['params']` (0
  for the standard normal). Fixed ones count too (vampprior_data's pseudo-inputs, training images
  behind a stop_gradient)."""
  tree = variables.get('params', {}).get('prior', {})
  return int(sum(np.size(leaf) for leaf in jax.tree.leaves(tree)))


# ------------------------------------------------------------------------------- sample quality

def to_uint8_rgb(images: np.ndarray) -> np.ndarray:
  """Images in [0, 1], [N, H, W, C] -> uint8 [N, H, W, 3] (round(255 x); grey repeated in 3
  channels), as external FID tools read them."""
  out = np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
  return np.repeat(out, 3, axis=-1) if out.shape[-1] == 1 else out


# Images per compiled call when a report makes its images.
GENERATION_BATCH = 500


def _generated(model, params, kind: str, num: int, key, images: np.ndarray, samplers=None,
               batch: Optional[int] = None):
  """`num` images of `kind`: 'samples' (the model's; two-stage for a two-stage model, MALA from its
  start points for a pull-back prior), 'reconstructions' (of `images`), or a kind of `samplers`
  ({kind: (sampler, grid file)}, the hooks' kinds, e.g. first-stage or base-prior samples), as numpy
  [num, H, W, C]."""
  batch = batch or GENERATION_BATCH
  method = {'samples': model.sample, 'reconstructions': model.reconstruct,
            **{k: fn for k, (fn, _) in (samplers or {}).items()}}[kind]
  if kind == 'reconstructions':
    fn = compiled.jit(lambda p, x, k: model.apply(models.as_variables(p), x, k, method=method))
    out = [np.asarray(fn(params, data.to_float(images[i:i + batch]), jax.random.fold_in(key, i)))
           for i in interrupts.checked(range(0, num, batch))]
  else:
    out = list(_draws(model, params, method, num, key, batch))
  return np.concatenate(out)[:num]


def _draws(model, params, method, num: int, key, batch: int, first: int = 0):
  """`method(model, key, batch)`'s outputs (on the host) for the keys fold_in(key, i), i = 0, batch,
  2 batch, ... < num, from the `first`-th batch on: one jitted call per batch, yielded as it ends."""
  fn = compiled.jit(lambda p, k: model.apply(models.as_variables(p), k, batch, method=method))
  for i in interrupts.checked(range(0, num, batch)[first:]):
    yield jax.device_get(fn(params, jax.random.fold_in(key, i)))


def _samples_with_report(model, params, sampler, record, num: int, key,
                         batch: Optional[int] = None, partial_file: Optional[str] = None,
                         protocol: Optional[Dict] = None):
  """`_generated`'s 'samples' drawn by a hook's `sampler` that also returns statistics (the same keys,
  so the same images), and `record` of its outputs (e.g. MALA chains' acceptance rate and adapted
  step size, each the mean over batches: each batch of chains adapts its own).

  Such samplers run chains per image, so each batch's outputs are kept in `partial_file` as they
  come, whole once done (`estimators.kept_concatenation`): a rerun after a signal goes on from
  them. The caller removes the file once the kind is scored."""
  batch = batch or GENERATION_BATCH

  def parts_from(first):
    for out in _draws(model, params, sampler, num, key, batch, first):
      yield {f'output{j}': np.asarray(v)[None] for j, v in enumerate(out)}

  kept = estimators.kept_concatenation(parts_from, partial_file,
                                       dict(protocol or {}, num=num, batch=batch),
                                       remove_when_done=False)
  leaves = [kept[f'output{j}'] for j in range(len(kept))]
  outputs = [tuple(leaf[b] for leaf in leaves) for b in range(len(leaves[0]))]
  return np.concatenate([o[0] for o in outputs])[:num], record(outputs)


def min_max_normalize(images: np.ndarray) -> np.ndarray:
  """Each image scaled to [0, 1] by its own min and max (Dai & Wipf's FID script does this to
  generated images and reconstructions; `hooks.QualityProtocol.normalize`)."""
  lo = images.min(axis=(1, 2, 3), keepdims=True)
  hi = images.max(axis=(1, 2, 3), keepdims=True)
  return (images - lo) / np.maximum(hi - lo, 1e-12)


def reference_cache_path(folder: str, dataset: str, split: str, num_images: int, seed: int,
                         weights_digest: str) -> str:
  """Where FID's reference statistics of a protocol are kept: one file per dataset, split, number of
  reference images, subset seed and Inception weights (any change gives another file)."""
  return os.path.join(folder, f'fid_reference_{dataset}_{split}_{num_images}_seed{seed}_'
                              f'{weights_digest}.npz')


def cached_statistics(path: str, compute):
  """(mean, cov) read from `path` if it exists, else `compute()`d and written there."""
  if os.path.exists(path):
    with np.load(path, allow_pickle=False) as stats:
      return stats['mean'], stats['cov']
  mean, cov = compute()
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  files.write_npz_atomically(path, mean=mean, cov=cov)
  return mean, cov


def check_sample_quality(workdir: str, classifier_dir: Optional[str] = None,
                         fid_weights: Optional[str] = None, protocol: Optional[str] = None,
                         num_images: Optional[int] = None,
                         settings: Optional[Dict[str, Dict[str, Any]]] = None,
                         bootstrap: int = 0) -> None:
  """Raises the errors `sample_quality` would raise on these arguments (an unknown protocol, fewer
  than 2 images, a missing or foreign FID weights file, a dataset with neither labels nor FID
  weights, a classifier folder holding another dataset's classifier, MALA settings for a run
  without a pull-back prior or out of range, a bootstrap of one resample) without loading data,
  weights or a model: `experiments.evaluate` calls it before the likelihood evaluation, which can
  take hours."""
  from vaeprior_jax.evaluation.sample_quality import classifier_distance  # pylint: disable=g-import-not-at-top
  config, _, _, _, _, use_cfd, _, _ = _quality_arguments(
      workdir, fid_weights, protocol, num_images, settings or {}, bootstrap)
  if use_cfd:
    classifier_distance.kept_classifier(classifier_dir or os.path.join(workdir, 'classifier'),
                                        data.identity(config.data))


def _quality_arguments(workdir, fid_weights, protocol, num_images, settings, bootstrap):
  """(config with the components' report `settings` applied, its hooks, protocol, number of
  generated images, the FID weights file's (path, SHA-256) or None without FID, whether CFD, what
  the report records of the components' settings, the report file's suffix), checked.
  `settings`: {group: {name: a value, or None for the run's config}}, e.g. {'mala': {'steps': 5}},
  each group read by the component whose hooks claim it (`hooks.EvaluationHooks.quality_settings`)."""
  from vaeprior_jax.evaluation.sample_quality import classifier_distance  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.evaluation.sample_quality import fid  # pylint: disable=g-import-not-at-top
  if protocol is not None:
    hooks_lib.QUALITY_PROTOCOLS.check(protocol)
  if bootstrap < 0 or bootstrap == 1:
    raise ValueError(f'bootstrap must be 0 (none) or >= 2 resamples, got {bootstrap}.')
  config = checkpoints.load_config(workdir)
  hooks = evaluation_hooks(config)
  given = {group: {k: v for k, v in values.items() if v is not None}
           for group, values in settings.items()}
  claimed = {h.quality_settings for h in hooks if h.quality_settings}
  for group, values in given.items():
    if values and group not in claimed:
      key, runs = hooks_lib.QUALITY_SETTINGS.get(group, ('model.prior', 'another kind of run'))
      raise ValueError(f'{group.upper()} settings ({", ".join(sorted(values))}) need {runs}; '
                       f'this run\'s {key} is {config_lib.value_at(config, key)!r}.')
  recorded, suffix = {}, ''
  for h in hooks:
    if h.quality_settings:
      record, more = h.apply_quality_settings(config, given.get(h.quality_settings, {}))
      recorded.update(record)
      suffix += more
  if protocol is None:  # The paper's of the run's components, else the default.
    protocol = next((h.quality_protocol for h in hooks if h.quality_protocol),
                    hooks_lib.default_quality_protocol())
  num_generated = num_images or hooks_lib.QUALITY_PROTOCOLS.get(protocol).num_generated
  if num_generated < 2:
    raise ValueError(f'num_images must be >= 2, got {num_generated}.')
  use_fid = bool(fid_weights or os.environ.get(fid.WEIGHTS_ENV))
  fid_file = fid.checked_weights(fid_weights) if use_fid else None
  dataset = config.data.dataset
  use_cfd = classifier_distance.num_classes(config.data) > 0
  if not (use_cfd or use_fid):
    raise ValueError(f'No distance to compute for {dataset}: the CFD needs labels (allowed: '
                     f'{", ".join(classifier_distance.LABELLED)}, or arrays with y_train and '
                     'y_test) and FID needs --fid_weights.')
  return config, hooks, protocol, num_generated, fid_file, use_cfd, recorded, suffix


def _quality_splits(data_config, use_cfd: bool, ref_split: str, num_ref: int, num_generated: int,
                    seed: int):
  """(the reference images, the test images to reconstruct, real images from outside the
  reference as many as the samples (seeded): the distance a perfect sampler would get at this
  sample size, the floor the others are read against).

  Whole splits as grey levels (or colours) in [0, 1], never binarized ('train': with the images
  `data.load` carves out for validation); a seeded subset of `num` images where asked (0: all).
  Without the CFD, uint8 splits (colour) stay uint8 here, read as k / 255 a batch at a time by the
  FID features and the reconstructions: CelebA's training split, VAEPP's reference, would take 8 GB
  as floats."""
  from vaeprior_jax.evaluation.sample_quality import classifier_distance  # pylint: disable=g-import-not-at-top

  def subset(images, num, subset_seed):
    return images[np.sort(np.random.default_rng(subset_seed).permutation(len(images))[:num])]

  files = {}  # Without the CFD: every split of one `data.whole_splits`, loaded at first use.

  def whole_split(split, num=0, subset_seed=seed):
    if use_cfd:
      images = classifier_distance.load_labelled(data_config, split)[0]
    else:
      if not files:
        files.update(data.whole_splits(data_config))
      images = files[split]
    return subset(images, num, subset_seed) if num else images

  reference = whole_split(ref_split, num_ref)
  test_images = reference if ref_split == 'test' else whole_split('test')
  held_out = (whole_split('train', num_generated, seed + 1) if ref_split == 'test' else
              subset(test_images, num_generated, seed + 1))
  return reference, test_images, held_out


def _export(folder: str, kind: str, images) -> str:
  """Writes `images` to folder/{kind}.npz (key 'images', `to_uint8_rgb`), atomically; its path."""
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, f'{kind}.npz')
  files.write_npz_atomically(path, images=to_uint8_rgb(np.asarray(images, np.float32)))
  return path


# Images per part of a kept feature pass: a multiple of every feature extractor's batch (FID's 200,
# the classifier's 500), so the batches are those of one pass over all images; only a last part of
# fewer than 200 images runs FID's network at its own size instead of a padded batch.
FEATURE_PART = 1000


def _kept_features(features_of, images, partial_file: str, protocol) -> np.ndarray:
  """features_of(images), computed FEATURE_PART images at a time and kept in `partial_file` as
  they come (`estimators.kept_concatenation`): a rerun after a signal or a kill goes on from the
  parts kept. The images must be the same on the rerun (each kind's come from its own key)."""
  protocol = dict(protocol, num_images=len(images), part=FEATURE_PART)
  starts = range(0, len(images), FEATURE_PART)
  return estimators.kept_concatenation(
      lambda first: ({'features': features_of(images[i:i + FEATURE_PART])}
                     for i in starts[first:]), partial_file, protocol)['features']


def _kept_kinds(partial_file: str, fingerprint, result):
  """(result, kinds done) of a partial report kept for this `fingerprint`, else (`result`, [])."""
  kept = files.read_kept_json(
      partial_file, lambda v: isinstance(v, dict) and isinstance(v.get('kinds'), list)
      and isinstance(v.get('result'), dict), 'partial report')
  if kept is not None and kept.get('fingerprint') == fingerprint:
    logging.info('Sample quality: continuing after %s from %s.', ', '.join(kept['kinds']),
                 partial_file)
    return kept['result'], list(kept['kinds'])
  if kept is not None:
    logging.info('Sample quality: starting over (%s was written for another protocol).',
                 partial_file)
  return result, []


def sample_quality(workdir: str, classifier_dir: Optional[str] = None,
                   fid_weights: Optional[str] = None, protocol: Optional[str] = None,
                   num_images: Optional[int] = None, seed: int = 0, checkpoint: str = 'auto',
                   normalize: Optional[bool] = None, classifier_steps: int = 2000,
                   settings: Optional[Dict[str, Dict[str, Any]]] = None, bootstrap: int = 0,
                   export: bool = False) -> Dict:
  """Fréchet distances to the data of a run's samples, first-stage samples (two-stage runs), base
  and latent-GAN samples (pull-back priors), reconstructions, and of as many real images from
  outside the reference ('data': the test split for 'vaepp', the training split for 'two_stage'),
  the floor a perfect sampler would reach with this many images; written to
  `sample_quality_{protocol}.json` in `workdir` (`..._mala{steps}_{size}_adapt{steps}.json` with
  MALA overrides, so that a run's default report is not overwritten).

  Always the classifier Fréchet distance (`classifier_distance`, CFD: an offline stand-in, not FID)
  on labelled datasets, with the classifier kept in `classifier_dir` (default: workdir/classifier;
  give runs that are compared the same folder). FID when `fid_weights` (or $VAEPRIOR_FID_WEIGHTS)
  names pytorch-fid's Inception file; its reference statistics are cached in `classifier_dir` per
  dataset, split, number of images and weights. protocol: a name of `hooks.QUALITY_PROTOCOLS`
  ('two_stage': 10,000 generated vs 10,000 test images; 'vaepp': 5,000 vs the training set); None:
  the one the run's components declare ('vaepp' for a pull-back prior), else the default
  ('two_stage'). num_images overrides the generated count (a pull-back prior's samples cost
  `model.pullback_mala_steps` decoder and critic gradients each).
  normalize: min-max normalise each generated image and reconstruction first (None: the
    protocol's `normalize`, on for 'two_stage' as the authors' FID script).
  classifier_steps: training steps of a new CFD classifier (an existing one is reused as it is).
  settings: {group: {name: value}}, settings of this report that a component of the run reads
  (`hooks.EvaluationHooks.quality_settings`), e.g. a pull-back prior's {'mala': {'steps': 150,
  'step_size': 1e-5, 'adapt_steps': 50}} (a value None, or a name left out: the run's config, here
  `model.pullback_mala_*`); what the component records of them goes into the result (the pull-back
  prior's 'mala': those used, the chains' mean acceptance rate, the step size after adaptation).
  bootstrap: with B >= 2, also `{metric}_{kind}_sd`, the bootstrap sd over B resamples of each
  distance's images (`frechet.bootstrap_sd`; the reference held fixed): the noise to read
  differences between kinds against.
  export: also write the scored images of each kind but 'data' (after any normalisation) to
  `exported_{protocol}{suffix}/{kind}.npz`, key 'images', uint8 [N, H, W, 3] (`to_uint8_rgb`), for
  FID with the original weights and tools (docs/dai2019.md shows how).
  """
  from vaeprior_jax.evaluation.sample_quality import classifier_distance  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.evaluation.sample_quality import fid  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.evaluation.sample_quality import frechet  # pylint: disable=g-import-not-at-top
  (config, hooks, protocol, num_generated, fid_file, use_cfd, records_of_settings,
   suffix) = _quality_arguments(workdir, fid_weights, protocol, num_images, settings or {},
                                bootstrap)
  use_fid = fid_file is not None
  spec = hooks_lib.QUALITY_PROTOCOLS.get(protocol)
  ref_split, num_ref = spec.reference_split, spec.num_reference
  if normalize is None:
    normalize = spec.normalize
  fid_params = fid.load_params(fid_file[0]) if use_fid else None
  classifier_dir = classifier_dir or os.path.join(workdir, 'classifier')

  reference, test_images, held_out = _quality_splits(config.data, use_cfd, ref_split, num_ref,
                                                      num_generated, seed)
  input_shape = reference.shape[1:]
  model = models.create(config.model, input_shape)
  params, step = checkpoints.restore_variables(workdir, config, model, input_shape, checkpoint)
  samplers = _sample_kinds(hooks)  # E.g. first-stage or base-prior samples, beside the model's.
  kinds = ['samples', *samplers, 'reconstructions', 'data']
  key = jax.random.fold_in(checkpoints.root_keys(config.seed)['eval'], 0x5a1 + seed)
  result = {'protocol': protocol, 'num_generated': num_generated, 'reference_split': ref_split,
            'num_reference': len(reference), 'num_data': len(held_out), 'step': int(step),
            'normalize': normalize, 'bootstrap': bootstrap}
  result.update(records_of_settings)  # The components' report settings (e.g. MALA's).
  with_report = next((r for r in (h.samples_with_report(config) for h in hooks) if r), None)
  if use_cfd:
    num_classes = classifier_distance.num_classes(config.data)
    cfd_params, info = classifier_distance.load_or_train(classifier_dir, config.data,
                                                             classifier_steps)
    result['classifier'] = dict(info, folder=os.path.abspath(classifier_dir))
    cfd_reference = frechet.gaussian_statistics(
        classifier_distance.features(cfd_params, num_classes, reference))
  if use_fid:
    fid_features = fid.features_fn()
    cache = reference_cache_path(classifier_dir, data.identity(config.data), ref_split,
                                 len(reference), seed,
                                 fid_file[1][:16])
    fid_reference = cached_statistics(
        cache, lambda: frechet.gaussian_statistics(fid_features(fid_params, reference)))
    result['fid_reference_cache'] = cache
  # Kept kind by kind: a rerun of the same report after a kill or a signal goes on from the kinds
  # done (each kind's images come from its own key, so skipping the others changes none).
  name = f'sample_quality_{protocol}{suffix}'
  partial_file = os.path.join(workdir, name + '.partial.json')
  fingerprint = json.loads(json.dumps(
      dict(result, checkpoint=checkpoint, seed=seed, export=bool(export),
           classifier=result.get('classifier'), fid=fid_file[1] if use_fid else None),
      default=float))
  result, done = _kept_kinds(partial_file, fingerprint, result)
  scorers = []  # (metric, features of images, reference statistics)
  if use_cfd:
    scorers.append(('cfd', lambda x: classifier_distance.features(cfd_params, num_classes, x),
                    cfd_reference))
  if use_fid:
    scorers.append(('fid', lambda x: fid_features(fid_params, x), fid_reference))
  images_partial = os.path.join(workdir, f'{name}.samples.images.partial.npz')
  for i, kind in enumerate(kinds):
    if kind in done:
      continue
    if kind == 'data':
      images = held_out
    elif kind == 'samples' and with_report:  # E.g. MALA's chains, with their acceptance rate.
      sampler, record_key, record = with_report
      images, stats = _samples_with_report(
          model, params, sampler, record, num_generated, jax.random.fold_in(key, i),
          partial_file=images_partial, protocol=dict(fingerprint, kind=kind))
      result[record_key].update(stats)
    else:
      images = _generated(model, params, kind, min(num_generated, len(test_images))
                          if kind == 'reconstructions' else num_generated,
                          jax.random.fold_in(key, i), test_images, samplers)
    if normalize and kind != 'data':
      images = min_max_normalize(images)
    if export and kind != 'data' and jax.process_index() == 0:
      result.setdefault('exported', {})[kind] = _export(
          os.path.join(workdir, f'exported_{protocol}{suffix}'), kind, images)
    for metric, features_of, reference_stats in scorers:
      features = _kept_features(features_of, images, os.path.join(
          workdir, f'{name}.{kind}.{metric}.partial.npz'), dict(fingerprint, kind=kind))
      result[f'{metric}_{kind}'] = frechet.frechet_distance(
          *frechet.gaussian_statistics(features), *reference_stats)
      if bootstrap:
        result[f'{metric}_{kind}_sd'] = frechet.bootstrap_sd(features, *reference_stats, bootstrap,
                                                             seed)
    done.append(kind)
    if jax.process_index() == 0:
      files.write_json_atomically(partial_file,
                                  {'fingerprint': fingerprint, 'kinds': done, 'result': result})
      if os.path.exists(images_partial):  # Scored and kept in the partial report.
        os.remove(images_partial)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, name + '.json'), 'w') as f:
      json.dump(result, f, indent=2)
    if os.path.exists(partial_file):
      os.remove(partial_file)
  records.append(
      workdir, 'sample_quality', config, result,
      {'protocol': protocol, 'num_generated': num_generated, 'reference_split': ref_split,
       'num_reference': len(reference), 'seed': seed, 'normalize': normalize,
       'bootstrap': bootstrap, 'checkpoint': checkpoint, 'settings': records_of_settings},
      overrides={k: v for k, v in (settings or {}).items() if v},
      budget={'step': int(step)})
  return result
