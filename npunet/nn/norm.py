"""Normalisation: BatchNorm2d (nn.Sequential runs it with a following ReLU as the backend's fused pair)."""
import numpy as np

from ..backends import current as ops
from .arguments import _int
from .module import Module, Parameter, check_array


class BatchNorm2d(Module):
    """Batch normalisation over (N, H, W) per channel, PyTorch semantics.

    weight (gamma), bias (beta), running_mean, running_var: (C,); num_batches_tracked: int64 scalar.
    Training: batch statistics (biased variance to normalise); running statistics updated with
    running <- (1 - momentum) * running + momentum * batch (unbiased variance).  Eval: running statistics.
    """

    _leaf = True

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = _int(num_features, "num_features", "BatchNorm2d"), float(eps), float(momentum)
        if self.num_features < 1:
            raise ValueError(f"BatchNorm2d: num_features must be >= 1, got {self.num_features}")
        self.weight = Parameter(np.ones(self.num_features, np.float32))
        self.bias = Parameter(np.zeros(self.num_features, np.float32))
        self.register_buffer("running_mean", np.zeros(self.num_features, np.float32))
        self.register_buffer("running_var", np.ones(self.num_features, np.float32))
        self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

    def _check(self, x):
        check_array(self, x, 4, self.num_features, self.weight.dtype)
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] < 2:
            raise ValueError(f"{self.label}: expected more than 1 value per channel when training, "
                             f"got input of shape {tuple(x.shape)}")
        return tuple(x.shape)

    def forward(self, x):
        self._check(x)
        return self._keep(x, *ops().batchnorm2d_forward(x, *self._arguments()))

    def backward(self, grad):
        backend, cache = self._restore(grad)
        return self._add_grads(*backend.batchnorm2d_backward(grad, cache))

    def _arguments(self):
        """What the backend's batchnorm2d pairs take after x."""
        return (self.weight.data, self.bias.data, self.running_mean, self.running_var, self.training,
                self.momentum, self.eps)

    def _keep(self, x, out, cache, running_mean, running_var):
        if self.training:
            self.running_mean, self.running_var = running_mean, running_var
            self.num_batches_tracked = self.num_batches_tracked + 1
        self._save(cache, out, watch=(x,))
        return out

    def _add_grads(self, dx, dgamma, dbeta):
        self.weight.accumulate(dgamma)
        self.bias.accumulate(dbeta)
        return dx

    def kept(self, inputs, out):
        return [inputs[0]], 0
