"""Segmentation losses with hand-written gradients.

Every loss is a pure pair ``loss_forward(z, target, weight) -> (value, cache)`` /
``loss_backward(cache) -> dL/dz`` (same shape and dtype as z), wrapped PyTorch-style as
``forward(z, target[, weight]) -> float`` and ``backward() -> dL/dz``.
Logits z: (N, C, H, W).  p = sigmoid(z) unless the mode says softmax.

Each loss declares what it takes:
  ``target``          "class": integer labels (N, H, W); "binary": {0, 1} of z's shape or (N, H, W)
  ``accepts_weight``  whether a per-pixel weight map (the U-Net paper's eq. 2) can be passed

One module per topic: base (the ``Loss`` base, input checks, softmax, reductions), pixel
(cross-entropy, BCE, focal), region (Dice, IoU), structure (SSIM, MS-SSIM), combined (weighted sums,
deep supervision).
"""
import warnings  # noqa: F401 - kept importable as before the split

import numpy as np  # noqa: F401

from ..functional import sigmoid  # noqa: F401
from .base import (_REDUCTIONS, Loss, _check_binary_target, _check_class_target, _check_logits,  # noqa: F401
                   _check_weight, _look_like_probabilities, _reduce, _reduction, _upstream, log_softmax, softmax)
from .combined import CombinedLoss, DeepSupervisionLoss
from .pixel import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, FocalLoss, _focal_terms  # noqa: F401
from .region import DiceLoss, IoULoss, JaccardLoss, _region_backward, _region_probs, _RegionLoss  # noqa: F401
from .structure import (MS_SSIM_WEIGHTS, MSSSIMLoss, _avgpool2, _avgpool2_backward, _Filter,  # noqa: F401
                        _filter_matrix, _ssim_backward, _ssim_forward, gaussian_window, ssim)
