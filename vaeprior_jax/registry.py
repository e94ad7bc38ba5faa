"""Name -> constructor tables that user code can extend.

Priors, posteriors, nets, likelihoods and training methods are looked up by the names that configs
give (`model.prior`, `model.net`, `model.likelihood`, `train.method`, ...). Each kind has one
`Registry`; the library registers its own entries at import, and user code registers more the same
way, before building a model or starting a run:

    @vp.priors.REGISTRY.register('my_prior')
    def _build(model_config, input_shape):
      return MyPrior(model_config.latent_dim)

After that, `model.prior=my_prior` works in `models.create` and in the binaries (import the module
that registers it first, e.g. from your own launcher script).

An entry may come with facts about itself, given as keywords to `register` and read back with
`info(name)`; the library reads these (entries without them get the defaults):

  validate             (model_config) -> None: raises a one-line ValueError for a bad setting of this
                       entry, before any data is loaded (`models.validate`).
  evaluation_hooks     a `hooks.EvaluationHooks`: what this entry adds to a workdir's evaluation.
  levels               nets: 2 for a two-level net (`models.HierarchicalVAE`), else 1.
  autoregressive       nets: whether the decoder reads x (PixelCNN): no decoder mean without it.
  diagonal_gaussian    posteriors: q(z|x) is the encoder's diagonal Gaussian (a closed-form KL).
  standard_normal      priors: p(z) is N(0, I) (a closed-form KL, `train.kl_estimate=closed_form`).
  binary_data          likelihoods: models 0/1 values (your own arrays of levels need data.binarize).
"""

from typing import Any, Callable, Dict, Iterator, Tuple


class Registry:
  """A table of named entries of one kind (e.g. 'model.prior'), with a one-line error for a bad name."""

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: Dict[str, Any] = {}
    self._info: Dict[str, Dict[str, Any]] = {}

  def register(self, name: str, entry: Any = None, *, replace: bool = False, **info):
    """Registers `entry` under `name`, with the facts `info` (see the module docstring); without
    `entry`, returns a decorator that does.

    A name registered twice raises, unless `replace` (e.g. to swap in your own build of a library
    entry).
    """
    if not isinstance(name, str) or not name:
      raise ValueError(f'A {self.kind} name must be a non-empty string, got {name!r}.')

    def add(value):
      if name in self._entries and not replace:
        raise ValueError(f'{self.kind} {name!r} is registered already (pass replace=True to '
                         'replace it).')
      self._entries[name] = value
      self._info[name] = dict(info)
      return value

    return add if entry is None else add(entry)

  def get(self, name: str) -> Any:
    try:
      return self._entries[name]
    except (KeyError, TypeError):
      raise ValueError(f'Unknown {self.kind} {name!r}; allowed: {", ".join(self.names())}.') from None

  def info(self, name: str) -> Dict[str, Any]:
    """The facts `name` was registered with ({} for none); an unknown name raises as `get`."""
    self.get(name)
    return dict(self._info[name])

  def check(self, name: str) -> None:
    """Raises the one-line ValueError of `get` for an unknown name."""
    self.get(name)

  def names(self) -> Tuple[str, ...]:
    return tuple(self._entries)

  def __contains__(self, name) -> bool:
    return name in self._entries

  def __iter__(self) -> Iterator[str]:
    return iter(self._entries)


Builder = Callable[..., Any]
