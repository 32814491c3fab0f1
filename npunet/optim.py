"""Optimisers and learning-rate schedules with PyTorch's update rules, parameter groups and
``state_dict`` layout (``torch.optim``'s single-tensor code path, operation for operation).

    opt = optim.Adam([{"params": model.encoder.parameters(), "lr": 1e-4},
                      {"params": model.decoder.parameters()}], lr=1e-3)
    sched = optim.ReduceLROnPlateau(opt, patience=3)
    ...; opt.step(); sched.step(val_loss)

Frozen parameters (``requires_grad = False``) and parameters without a gradient (``grad is None``)
are skipped, as in PyTorch.
"""
import math
from bisect import bisect_right
from collections import Counter

import numpy as np

from .nn.module import Parameter

_required = object()


class Optimizer:
    """Base class: ``param_groups`` is a list of dicts, each with ``params`` (a list of Parameters),
    ``lr`` and the optimiser's hyperparameters (missing ones taken from ``defaults``);
    ``state`` maps a Parameter to its dict of buffers."""

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}
        self.param_groups = []
        if isinstance(params, Parameter):
            raise TypeError(f"{type(self).__name__}: params must be an iterable of Parameters or of dicts "
                            f"(model.parameters()), got one Parameter; wrap it in a list")
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__}: got no parameters to optimise")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, param_group):
        """Append a group ({"params": [...], "lr": ..., ...}); missing hyperparameters from the defaults."""
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(f"{name}.add_param_group: expected a dict with 'params', got {type(param_group).__name__}")
        g = dict(param_group)
        if "params" not in g:
            raise KeyError(f"{name}: a parameter group needs a 'params' entry, got keys {sorted(g)}")
        ps = g["params"]
        ps = [ps] if isinstance(ps, Parameter) else list(ps)
        for p in ps:
            if not isinstance(p, Parameter):
                raise TypeError(f"{name}: a parameter group's 'params' must hold Parameters "
                                f"(model.parameters()), got {type(p).__name__}")
        g["params"] = ps
        for k, v in self.defaults.items():
            if v is _required and k not in g:
                raise ValueError(f"{name}: parameter group {len(self.param_groups)} needs '{k}'")
            g.setdefault(k, v)
        unknown = [k for k in g if k not in self.defaults and k not in _GROUP_EXTRAS]
        if unknown:
            raise KeyError(f"{name}: unknown parameter group key(s) {unknown}; {name} takes "
                           f"{sorted(self.defaults)}")
        seen = {id(p) for grp in self.param_groups for p in grp["params"]}
        if any(id(p) in seen for p in ps):
            raise ValueError(f"{name}: some parameters appear in more than one parameter group")
        if len({id(p) for p in ps}) != len(ps):
            raise ValueError(f"{name}: a parameter group lists the same parameter twice")
        self.param_groups.append(g)

    # ---------------------------------------------------------------- compatibility with npunet < 0.2
    @property
    def params(self):
        """Every parameter, in group order."""
        return [p for g in self.param_groups for p in g["params"]]

    @property
    def lr(self):
        """The first group's learning rate (setting it sets every group's)."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value):
        for g in self.param_groups:
            g["lr"] = value

    # ---------------------------------------------------------------- PyTorch's surface
    def zero_grad(self, set_to_none=True):
        """Clear the gradients: None (PyTorch's default; the next backward creates them) or zeros."""
        for p in self.params:
            p.grad = None if set_to_none else np.zeros_like(p.data)

    def _live(self, group):
        """The group's parameters that take a step: trainable and with a gradient."""
        return [p for p in group["params"] if p.requires_grad and p.grad is not None]

    def state_dict(self):
        """PyTorch's structure: {"state": {index: {name: array or number}}, "param_groups": [{...,
        "params": [indices]}]}; indices count the parameters over the groups in order."""
        index = {id(p): i for i, p in enumerate(self.params)}
        state = {index[id(p)]: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
                 for p, s in self.state.items() if id(p) in index}
        groups = []
        for g in self.param_groups:
            d = {k: (list(v) if isinstance(v, tuple) and k == "betas" else v) for k, v in g.items() if k != "params"}
            d["betas"] = tuple(d["betas"]) if "betas" in d else None
            if d["betas"] is None:
                del d["betas"]
            d["params"] = [index[id(p)] for p in g["params"]]
            groups.append(d)
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict, scalars=None):
        """Restore a ``state_dict()`` (PyTorch's structure; one written by PyTorch's same optimiser
        with arrays in place of tensors loads too).  The two-argument form (arrays, scalars) of
        npunet < 0.2 checkpoints is still read."""
        name = type(self).__name__
        if scalars is not None:
            state_dict = self._from_old(state_dict, scalars)
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError(f"{name}.load_state_dict: expected a dict with 'state' and 'param_groups' "
                             f"(optimizer.state_dict()), got {type(state_dict).__name__}")
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: the state has {len(saved)} parameter groups, "
                             f"this optimiser {len(self.param_groups)}")
        for i, (s, g) in enumerate(zip(saved, self.param_groups)):
            if len(s["params"]) != len(g["params"]):
                raise ValueError(f"{name}.load_state_dict: parameter group {i} has {len(s['params'])} "
                                 f"parameters in the state, {len(g['params'])} here")
        params = {int(i): p for s, g in zip(saved, self.param_groups) for i, p in zip(s["params"], g["params"])}
        new_state = {}
        for i, buffers in state_dict["state"].items():
            p = params.get(int(i))
            if p is None:
                raise ValueError(f"{name}.load_state_dict: state for parameter {i}, which no group lists")
            d = {}
            for k, v in buffers.items():
                if np.ndim(v) == 0 and k == "step":
                    d[k] = float(np.asarray(v))
                    continue
                v = np.asarray(v)
                if v.shape != p.data.shape:
                    raise ValueError(f"{name}.load_state_dict: state '{k}' of parameter {i} has shape "
                                     f"{v.shape}, the parameter {p.data.shape}")
                d[k] = np.array(v, dtype=p.data.dtype)
            new_state[p] = d
        self.state = new_state
        for s, g in zip(saved, self.param_groups):
            for k, v in s.items():
                if k != "params":
                    g[k] = tuple(v) if k == "betas" else v

    def _from_old(self, arrays, scalars):
        """npunet < 0.2 checkpoints: arrays 'slot/index' (m, v, momentum) and scalars lr, base_lr, t."""
        slots = {"m": "exp_avg", "v": "exp_avg_sq", "momentum": "momentum_buffer"}
        state = {}
        for key, v in arrays.items():
            slot, i = key.rsplit("/", 1)
            if slot not in slots:
                raise ValueError(f"{type(self).__name__}.load_state_dict: unknown state '{key}' in an old checkpoint")
            state.setdefault(int(i), {})[slots[slot]] = v
            if "t" in scalars and slot in ("m", "v"):
                state[int(i)]["step"] = float(scalars["t"])
        n = 0
        groups = []
        for g in self.param_groups:
            d = {k: v for k, v in g.items() if k != "params"}
            d.update(lr=scalars["lr"], initial_lr=scalars.get("base_lr", scalars["lr"]))
            d["params"] = list(range(n, n + len(g["params"])))
            n += len(g["params"])
            groups.append(d)
        return {"state": state, "param_groups": groups}

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(g.items()) if k != "params"]
        return "\n".join(lines) + "\n)"


_GROUP_EXTRAS = ("params", "initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum")


def _grad(p, maximize):
    return -p.grad if maximize else p.grad


class SGD(Optimizer):
    """PyTorch's SGD: g = grad (negated with maximize) + weight_decay * p; with momentum
    buf = g at the first step, else momentum * buf + (1 - dampening) * g; g = g + momentum * buf
    (nesterov) or buf; p -= lr * g."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                 maximize=False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize))

    def step(self):
        for group in self.param_groups:
            lr, mom, damp, wd = group["lr"], group["momentum"], group["dampening"], group["weight_decay"]
            for p in self._live(group):
                g = _grad(p, group["maximize"])
                if wd != 0:
                    g = g + wd * p.data
                if mom != 0:
                    st = self.state.setdefault(p, {})
                    buf = st.get("momentum_buffer")
                    if buf is None:
                        buf = np.array(g, copy=True)
                    else:
                        buf = buf * mom + (1 - damp) * g
                    st["momentum_buffer"] = buf
                    g = g + mom * buf if group["nesterov"] else buf
                p.data = (p.data - lr * g).astype(p.data.dtype, copy=False)


class Adam(Optimizer):
    """PyTorch's Adam: m = lerp(m, g, 1 - b1); v = b2 v + (1 - b2) g^2 (v_max = max(v_max, v) with
    amsgrad); p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).  weight_decay adds
    wd * p to g (L2, Adam) or multiplies p by 1 - lr * wd first (decoupled, AdamW)."""

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 maximize=False):
        b1, b2 = betas
        if lr < 0 or eps < 0 or weight_decay < 0 or not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"{type(self).__name__}: need lr, eps, weight_decay >= 0 and betas in [0, 1), got "
                             f"lr={lr}, eps={eps}, weight_decay={weight_decay}, betas={betas}")
        super().__init__(params, dict(lr=lr, betas=(b1, b2), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize))

    @property
    def t(self):  # npunet < 0.2 read the step count here
        return max((int(s.get("step", 0)) for s in self.state.values()), default=0)

    def step(self):
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in self._live(group):
                g = _grad(p, group["maximize"])
                st = self.state.setdefault(p, {})
                if not st:
                    st.update(step=0.0, exp_avg=np.zeros_like(p.data), exp_avg_sq=np.zeros_like(p.data))
                    if group["amsgrad"]:
                        st["max_exp_avg_sq"] = np.zeros_like(p.data)
                st["step"] += 1
                data = p.data
                if wd != 0:
                    if self._decoupled:
                        data = data * (1 - lr * wd)
                    else:
                        g = g + wd * data
                m = st["exp_avg"]
                st["exp_avg"] = m = m + (1 - b1) * (g - m)          # torch.lerp for a weight < 0.5
                st["exp_avg_sq"] = v = st["exp_avg_sq"] * b2 + (1 - b2) * g * g   # addcmul's order
                t = st["step"]
                step_size = lr / (1 - b1 ** t)
                bc2_sqrt = math.sqrt(1 - b2 ** t)
                if group["amsgrad"]:
                    st["max_exp_avg_sq"] = v = np.maximum(st["max_exp_avg_sq"], v)
                denom = np.sqrt(v) / bc2_sqrt + eps
                p.data = (data + -step_size * m / denom).astype(p.data.dtype, copy=False)  # addcdiv's order


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): p *= 1 - lr * weight_decay before
    the Adam step; PyTorch's default weight_decay 0.01."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                 maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)


# ==================================================================== schedules

class LRScheduler:
    """Base class, PyTorch's protocol: the constructor records each group's ``initial_lr`` and takes
    step 0; ``step()`` (once per epoch, after ``optimizer.step()``) advances ``last_epoch`` and sets
    every group's lr; ``get_last_lr()`` -> list of the groups' lrs."""

    def __init__(self, optimizer, last_epoch=-1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an npunet.optim optimiser, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        if last_epoch == -1:
            for g in optimizer.param_groups:
                g.setdefault("initial_lr", g["lr"])
        elif any("initial_lr" not in g for g in optimizer.param_groups):
            raise KeyError(f"{type(self).__name__}: last_epoch={last_epoch} resumes a schedule, but the "
                           f"optimiser's groups have no 'initial_lr'; load the optimiser's state first")
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self._is_initial = True
        self.step()
        self._is_initial = False

    def get_lr(self):
        raise NotImplementedError

    def step(self):
        self._step_count += 1
        self.last_epoch += 1
        for g, lr in zip(self.optimizer.param_groups, self.get_lr()):
            g["lr"] = lr
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def get_last_lr(self):
        return list(self._last_lr)

    def state_dict(self):
        """Every attribute but the optimiser (PyTorch's choice), JSON-friendly."""
        return {k: (dict(v) if isinstance(v, Counter) else v) for k, v in self.__dict__.items()
                if k not in ("optimizer", "lr_lambdas")}

    def load_state_dict(self, state):
        """Restore ``state_dict()``; an npunet < 0.2 schedule state ({"last_epoch": n}) too."""
        state = dict(state)
        if set(state) == {"last_epoch"}:  # old checkpoints: replay the closed form
            self.last_epoch = int(state["last_epoch"])
            self._step_count = self.last_epoch + 1
            for g, lr in zip(self.optimizer.param_groups, self._closed_form()):
                g["lr"] = lr
            self._last_lr = [g["lr"] for g in self.optimizer.param_groups]
            return
        if "milestones" in state:
            state["milestones"] = Counter({int(k): v for k, v in state["milestones"].items()})
        self.__dict__.update(state)

    def _closed_form(self):
        return self.get_lr()


class LambdaLR(LRScheduler):
    """lr = initial_lr * lr_lambda(epoch) (one function, or one per group)."""

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        n = len(optimizer.param_groups)
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != n:
                raise ValueError(f"LambdaLR: expected {n} lr_lambdas (one per group), got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * n
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [b * f(self.last_epoch) for f, b in zip(self.lr_lambdas, self.base_lrs)]


class StepLR(LRScheduler):
    """lr *= gamma every step_size epochs (lr = initial_lr * gamma ** (epoch // step_size))."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        self.step_size, self.gamma = int(step_size), gamma
        if self.step_size < 1:
            raise ValueError(f"StepLR: step_size must be >= 1, got {step_size}")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return [g["lr"] for g in self.optimizer.param_groups]
        return [g["lr"] * self.gamma for g in self.optimizer.param_groups]

    def _closed_form(self):
        return [b * self.gamma ** (self.last_epoch // self.step_size) for b in self.base_lrs]


class MultiStepLR(LRScheduler):
    """lr *= gamma at each milestone epoch."""

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        self.milestones, self.gamma = Counter(int(m) for m in milestones), gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch not in self.milestones:
            return [g["lr"] for g in self.optimizer.param_groups]
        return [g["lr"] * self.gamma ** self.milestones[self.last_epoch] for g in self.optimizer.param_groups]

    def _closed_form(self):
        ms = sorted(self.milestones.elements())
        return [b * self.gamma ** bisect_right(ms, self.last_epoch) for b in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """lr_t = eta_min + (initial_lr - eta_min) (1 + cos(pi t / T_max)) / 2 (Loshchilov & Hutter 2017),
    computed as PyTorch does, recursively from the previous lr (so the numbers match its to the bit)."""

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        groups, e, T, lo = self.optimizer.param_groups, self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return [g["lr"] for g in groups]
        if self._step_count == 1 and e > 0:
            return self._closed_form()
        if (e - 1 - T) % (2 * T) == 0:
            return [g["lr"] + (b - lo) * (1 - math.cos(math.pi / T)) / 2 for b, g in zip(self.base_lrs, groups)]
        return [(1 + math.cos(math.pi * e / T)) / (1 + math.cos(math.pi * (e - 1) / T)) * (g["lr"] - lo) + lo
                for g in groups]

    def _closed_form(self):
        return [self.eta_min + (b - self.eta_min) * (1 + math.cos(self.last_epoch * math.pi / self.T_max)) / 2
                for b in self.base_lrs]


class OneCycleLR(LRScheduler):
    """Smith & Topin's one-cycle policy, PyTorch's: lr rises from max_lr / div_factor to max_lr over
    pct_start of total_steps, then anneals to initial_lr / final_div_factor; momentum (or Adam's beta1)
    cycles the other way between max_momentum and base_momentum.  step() once per batch."""

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None, pct_start=0.3,
                 anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85, max_momentum=0.95,
                 div_factor=25.0, final_div_factor=1e4, three_phase=False, last_epoch=-1):
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                raise ValueError("OneCycleLR: give total_steps, or epochs and steps_per_epoch")
            total_steps = epochs * steps_per_epoch
        if int(total_steps) != total_steps or total_steps <= 0:
            raise ValueError(f"OneCycleLR: total_steps must be a positive integer, got {total_steps}")
        self.total_steps = int(total_steps)
        if not 0 <= pct_start <= 1:
            raise ValueError(f"OneCycleLR: pct_start must be in [0, 1], got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"OneCycleLR: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy
        n, T = len(optimizer.param_groups), self.total_steps
        ph = [(float(pct_start * T) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum")]
        if three_phase:
            ph += [(float(2 * pct_start * T) - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum"),
                   (T - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum")]
        else:
            ph += [(T - 1, "max_lr", "min_lr", "base_momentum", "max_momentum")]
        self._phases = ph
        per = lambda v: list(v) if isinstance(v, (list, tuple)) else [v] * n
        if last_epoch == -1:
            for g, m in zip(optimizer.param_groups, per(max_lr)):
                g["initial_lr"] = m / div_factor
                g["max_lr"] = m
                g["min_lr"] = g["initial_lr"] / final_div_factor
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError("OneCycleLR: cycle_momentum needs an optimiser with momentum or betas")
            self.use_beta1 = "betas" in optimizer.defaults
            if last_epoch == -1:
                for g, mx, bs in zip(optimizer.param_groups, per(max_momentum), per(base_momentum)):
                    if self.use_beta1:
                        g["betas"] = (mx, *g["betas"][1:])
                    else:
                        g["momentum"] = mx
                    g["max_momentum"], g["base_momentum"] = mx, bs
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self):
        e = self.last_epoch
        if e > self.total_steps:
            raise ValueError(f"OneCycleLR: stepped {e} times; total_steps is {self.total_steps}")
        lrs = []
        for g in self.optimizer.param_groups:
            start = 0.0
            for i, (end, lr0, lr1, m0, m1) in enumerate(self._phases):
                if e <= end or i == len(self._phases) - 1:
                    pct = (e - start) / (end - start)
                    lr = self._anneal(g[lr0], g[lr1], pct)
                    mom = self._anneal(g[m0], g[m1], pct) if self.cycle_momentum else None
                    break
                start = end
            lrs.append(lr)
            if self.cycle_momentum:
                if self.use_beta1:
                    g["betas"] = (mom, *g["betas"][1:])
                else:
                    g["momentum"] = mom
        return lrs


class ReduceLROnPlateau:
    """Multiply the lr by ``factor`` when the metric passed to ``step(metric)`` has not improved
    (by ``threshold``, relative or absolute) for more than ``patience`` epochs; wait ``cooldown``
    epochs after a reduction; never below ``min_lr``; PyTorch's rules."""

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                 cooldown=0, min_lr=0, eps=1e-8):
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be < 1.0, got {factor}")
        if mode not in ("min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"ReduceLROnPlateau: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"ReduceLROnPlateau: expected an npunet.optim optimiser, got {type(optimizer).__name__}")
        self.optimizer, self.factor = optimizer, factor
        n = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n:
                raise ValueError(f"ReduceLROnPlateau: expected {n} min_lrs, got {len(min_lr)}")
            self.default_min_lr, self.min_lrs = None, list(min_lr)
        else:
            self.default_min_lr, self.min_lrs = min_lr, [min_lr] * n
        self.patience, self.cooldown, self.eps = patience, cooldown, eps
        self.mode, self.threshold, self.threshold_mode = mode, threshold, threshold_mode
        self.last_epoch = 0
        self._last_lr = [g["lr"] for g in optimizer.param_groups]
        self.best = math.inf if mode == "min" else -math.inf
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    def _is_better(self, a, best):
        if self.mode == "min":
            return a < best * (1.0 - self.threshold) if self.threshold_mode == "rel" else a < best - self.threshold
        return a > best * (self.threshold + 1.0) if self.threshold_mode == "rel" else a > best + self.threshold

    def step(self, metrics):
        current = float(metrics)
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best, self.num_bad_epochs = current, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            if len(self.min_lrs) != len(self.optimizer.param_groups):
                if self.default_min_lr is None:
                    raise RuntimeError("ReduceLROnPlateau: the optimiser gained parameter groups; set min_lrs to match")
                self.min_lrs = [self.default_min_lr] * len(self.optimizer.param_groups)
            for g, lo in zip(self.optimizer.param_groups, self.min_lrs):
                old = float(g["lr"])
                new = max(old * self.factor, lo)
                if old - new > self.eps:
                    g["lr"] = new
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def get_last_lr(self):
        return list(self._last_lr)

    def state_dict(self):
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state):
        self.__dict__.update(state)
