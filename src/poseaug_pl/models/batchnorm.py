"""BatchNorm helpers shared by training and the figure callbacks."""

from __future__ import annotations

from contextlib import contextmanager

from torch import nn


@contextmanager
def frozen_bn_statistics(module: nn.Module):
    """BatchNorm layers normalise with batch statistics but leave running statistics unchanged."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum


@contextmanager
def as_in_training(module: nn.Module):
    """Training mode (dropout on, BatchNorm batch statistics) with the running statistics left
    unchanged (`frozen_bn_statistics`); the module's mode restored after."""
    was_training = module.training
    module.train()
    try:
        with frozen_bn_statistics(module):
            yield module
    finally:
        module.train(was_training)
