"""What a component adds to a workdir's evaluation, without the evaluation naming it.

A prior, likelihood, posterior, net or training method registers an `EvaluationHooks` with its entry
(`REGISTRY.register(name, builder, evaluation_hooks=...)`); `evaluation.report` calls the hooks of
every entry a run's config names, in the order model.net, model.prior, model.posterior,
model.likelihood, then the method. Each method's default adds nothing, so a hook class overrides only
what its component needs: the pull-back prior refreshes its log Z before the likelihood and adds
baseline sample kinds; the discretized logistic reports bits per dimension; the two-stage method adds
first-stage samples.
"""

import dataclasses
import os
from typing import Any, Callable, Dict, Optional, Tuple

from vaeprior_jax import registry

# A kind of generated images: (bound model, key, number) -> images [number, H, W, C].
Sampler = Callable[[Any, Any, int], Any]


class EvaluationHooks:
  """The defaults: nothing added. `ctx` is an `EvaluationContext` (the config, the dataset, the mesh,
  a key, the seed, the batch size)."""

  # The sample-quality protocol of this component's paper (a name of `QUALITY_PROTOCOLS`): the
  # default of `report.sample_quality` for runs that use it.
  quality_protocol: Optional[str] = None

  # Whether the likelihood of runs with this component can use eval.proposal_input=grey (a one-level
  # VAE whose encoder reads the grey image).
  grey_proposal: bool = True

  def check_config(self, config) -> None:
    """One-line ValueErrors for this component's `config.eval` settings, before any data is loaded
    or anything compiled."""
    del config

  def before_likelihood(self, model, variables, ctx) -> Tuple[Any, Dict[str, float]]:
    """(variables, metrics) before the likelihood is estimated (e.g. a statistic it depends on)."""
    del model, ctx
    return variables, {}

  def after_likelihood(self, model, variables, result: Dict[str, float], ctx,
                       encoder_view) -> Dict[str, float]:
    """Metrics added to the result once the likelihood is in it (`encoder_view`: the evaluated
    images as the encoder reads them)."""
    del model, variables, result, ctx, encoder_view
    return {}

  def units(self, result: Dict[str, float], input_shape) -> Dict[str, float]:
    """The result's numbers in other units (e.g. bits per dimension)."""
    del result, input_shape
    return {}

  def sample_kinds(self) -> Dict[str, Tuple[Sampler, str]]:
    """Kinds of generated images beside the model's own samples, {kind: (sampler, grid file)}: each is
    written as a 100-image grid by `report.evaluate` and scored by `report.sample_quality` (e.g. a
    baseline's samples), in this order."""
    return {}

  # The group of sample-quality report settings this component reads (the report's arguments
  # `{group}_{name}`, e.g. 'mala'), or None. `QUALITY_SETTINGS` says which runs have them.
  quality_settings: Optional[str] = None

  def apply_quality_settings(self, config, settings: Dict[str, Any]) -> Tuple[Dict[str, Any], str]:
    """Checks this component's report `settings` ({name: value}, those given), writes them into
    `config`, and returns (what the report records about its settings, a suffix for the report's
    file name when any was given, so that it does not replace the default report)."""
    del config, settings
    return {}, ''

  def samples_with_report(self, config) -> Optional[Tuple[Callable, str, Callable]]:
    """None, or (sampler, key, record) for the sample-quality report's 'samples' of this run: the
    sampler returns (images, *statistics) per batch, and record(list of those outputs) a dict merged
    into the report's `key` entry (e.g. MALA's acceptance rate)."""
    del config
    return None


# Who reads a group of sample-quality settings: group -> (config key, the runs that have them), for
# the error a run without them gets (e.g. 'mala' -> ('model.prior', 'a run with a pull-back prior')).
QUALITY_SETTINGS: Dict[str, Tuple[str, str]] = {}


@dataclasses.dataclass(frozen=True)
class QualityProtocol:
  """How a paper scores generated images (`report.sample_quality`): `num_generated` samples against
  `num_reference` images of the `reference_split` (0: all of it); `normalize`: whether each generated
  image and reconstruction is min-max normalised to [0, 1] first (the paper's FID script)."""
  num_generated: int
  reference_split: str
  num_reference: int = 0
  normalize: bool = False
  description: str = ''


# Sample-quality protocols by name (`report.sample_quality(protocol=...)`, `quality_protocol` of the
# hooks). The one registered with `default=True` scores runs whose components declare none.
QUALITY_PROTOCOLS = registry.Registry('quality protocol')


def default_quality_protocol() -> str:
  """The name of the protocol registered with default=True."""
  found = [n for n in QUALITY_PROTOCOLS if QUALITY_PROTOCOLS.info(n).get('default')]
  if len(found) != 1:
    raise ValueError(f'Exactly one sample-quality protocol must be the default; got {found}.')
  return found[0]


class EvaluationContext:
  """What hooks get besides the model: attributes config, dataset, mesh, key, seed, batch_size,
  and the workdir, step and checkpoint ('latest' or 'best') evaluated (where a hook keeps its
  partial work, and what that work depends on).

  A hook keeps a long pass in `kept_file(name)`, whole once done (`remove_when_done=False`): if a
  later step of the evaluation is stopped, the rerun reads the pass back at once. The evaluation
  removes these files when its result is written."""

  def __init__(self, **fields):
    self.kept_files = []
    self.__dict__.update(fields)

  def kept_file(self, name: str) -> str:
    """workdir/name, removed when the evaluation's result is written."""
    path = os.path.join(self.workdir, name)
    self.kept_files.append(path)
    return path
