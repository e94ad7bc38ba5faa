"""Applying Linen modules: the variables a model is applied with, and calling a net in or out of its
training mode. Below every other part of the library, so that estimators and components can use
them without importing the models."""

from typing import Dict

import flax.linen as nn


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
