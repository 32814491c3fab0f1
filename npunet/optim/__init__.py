"""Optimisers and learning-rate schedules with PyTorch's update rules, parameter groups and
``state_dict`` layout (``torch.optim``'s single-tensor code path, operation for operation).

    opt = optim.Adam([{"params": model.encoder.parameters(), "lr": 1e-4},
                      {"params": model.decoder.parameters()}], lr=1e-3)
    sched = optim.ReduceLROnPlateau(opt, patience=3)
    ...; opt.step(); sched.step(val_loss)

Frozen parameters (``requires_grad = False``) and parameters without a gradient (``grad is None``)
are skipped, as in PyTorch.  The optimisers live in optimizers.py, the schedules in schedulers.py.
"""
import math  # noqa: F401 - kept importable as before the split
from bisect import bisect_right  # noqa: F401
from collections import Counter  # noqa: F401

import numpy as np  # noqa: F401

from ..nn.module import Parameter  # noqa: F401
from .optimizers import _GROUP_EXTRAS, SGD, Adam, AdamW, Optimizer, _grad, _required  # noqa: F401
from .schedulers import (CosineAnnealingLR, LambdaLR, LRScheduler, MultiStepLR, OneCycleLR,  # noqa: F401
                         ReduceLROnPlateau, StepLR)
