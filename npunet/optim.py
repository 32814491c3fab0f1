"""Optimisers and learning-rate schedules with PyTorch's update rules."""
import math

import numpy as np


class Optimizer:
    def __init__(self, params, lr):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got no parameters to optimise")
        self.lr = float(lr)
        self.base_lr = self.lr
        self.state = {}

    def zero_grad(self):
        for p in self.params:
            p.grad = np.zeros_like(p.data)

    def state_dict(self):
        """Arrays by 'slot/param_index' plus scalars; enough to resume exactly."""
        arrays = {f"{k}/{i}": v for (k, i), v in self.state.items()}
        return arrays, dict(lr=self.lr, base_lr=self.base_lr, **self._scalars())

    def load_state_dict(self, arrays, scalars):
        self.state = {}
        for key, v in arrays.items():
            slot, i = key.rsplit("/", 1)
            i = int(i)
            if i >= len(self.params) or np.shape(v) != self.params[i].data.shape:
                raise ValueError(f"{type(self).__name__}.load_state_dict: state '{key}' does not fit the parameters")
            self.state[slot, i] = np.array(v, dtype=self.params[i].data.dtype)
        self.lr, self.base_lr = scalars["lr"], scalars["base_lr"]
        self._load_scalars(scalars)

    def _scalars(self):
        return {}

    def _load_scalars(self, s):
        pass


class SGD(Optimizer):
    """PyTorch SGD: g = grad + wd * p; buf = momentum * buf + (1 - dampening) * g (buf = g at the first
    step); g = g + momentum * buf if nesterov else buf; p -= lr * g."""

    def __init__(self, params, lr=0.01, momentum=0.0, weight_decay=0.0, nesterov=False, dampening=0.0):
        super().__init__(params, lr)
        self.momentum, self.weight_decay, self.nesterov, self.dampening = momentum, weight_decay, nesterov, dampening

    def step(self):
        for i, p in enumerate(self.params):
            g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
            if self.momentum:
                buf = self.state.get(("momentum", i))
                buf = g.copy() if buf is None else self.momentum * buf + (1 - self.dampening) * g
                self.state["momentum", i] = buf
                g = g + self.momentum * buf if self.nesterov else buf
            p.data = (p.data - self.lr * g).astype(p.data.dtype)


class Adam(Optimizer):
    """PyTorch Adam: m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        self.betas, self.eps, self.weight_decay = tuple(betas), eps, weight_decay
        self.t = 0

    def step(self):
        self.t += 1
        b1, b2 = self.betas
        bc1, bc2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        for i, p in enumerate(self.params):
            g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
            m = self.state.get(("m", i), np.zeros_like(p.data))
            v = self.state.get(("v", i), np.zeros_like(p.data))
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            self.state["m", i], self.state["v", i] = m, v
            p.data = (p.data - (self.lr / bc1) * m / (np.sqrt(v) / math.sqrt(bc2) + self.eps)).astype(p.data.dtype)

    def _scalars(self):
        return dict(t=self.t)

    def _load_scalars(self, s):
        self.t = int(s["t"])


class StepLR:
    """lr = base_lr * gamma ** (epoch // step_size); call step() once per epoch."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.optimizer, self.step_size, self.gamma, self.last_epoch = optimizer, step_size, gamma, 0

    def get_lr(self):
        return self.optimizer.base_lr * self.gamma ** (self.last_epoch // self.step_size)

    def step(self):
        self.last_epoch += 1
        self.optimizer.lr = self.get_lr()

    def state_dict(self):
        return dict(last_epoch=self.last_epoch)

    def load_state_dict(self, s):
        self.last_epoch = int(s["last_epoch"])
        self.optimizer.lr = self.get_lr()


class CosineAnnealingLR(StepLR):
    """lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2 (PyTorch's closed form)."""

    def __init__(self, optimizer, T_max, eta_min=0.0):
        self.optimizer, self.T_max, self.eta_min, self.last_epoch = optimizer, T_max, eta_min, 0

    def get_lr(self):
        b = self.optimizer.base_lr
        return self.eta_min + (b - self.eta_min) * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
