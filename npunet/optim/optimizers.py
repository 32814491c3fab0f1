"""Optimisers with PyTorch's update rules, parameter groups and ``state_dict`` layout: the
``Optimizer`` base, SGD, Adam, AdamW."""
import math

import numpy as np

from ..nn.module import Parameter

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
