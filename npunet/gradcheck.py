"""Finite-difference gradient checks (float64 central differences of a VJP).

For a random upstream gradient g, the analytic input gradient is backward(g) and
the numerical one, element by element, is

    d_i = sum(g * (f(x + h e_i) - f(x - h e_i))) / (2h).

The difference f(x+) - f(x-) is taken output by output *before* the sum with g,
so outputs that do not depend on x_i cancel exactly and add no rounding noise.

Error measure, per checked tensor:  max_i |a_i - n_i| / max(max|a|, max|n|, floor)
(the relative error in the max-norm; ``where`` names the element where it peaks).
floor = 1e-3 x the largest gradient in the whole check: a tensor whose true
gradient is exactly zero (a conv bias followed by BatchNorm) would otherwise
turn pure rounding noise (~1e-10) into a "relative error" of 1.

Kinks: ReLU and max-pool are not differentiable where a pre-activation is 0 or a
window has a tie.  Layers that branch expose ``kink_signature()`` (their mask / argmax);
when a +-h step changes any branch, the difference quotient straddles a kink and
that element is skipped and counted in ``skipped`` (tests bound that count).
"""
from dataclasses import dataclass, field

import numpy as np


@dataclass
class GradcheckResult:
    max_rel_error: float
    where: str                      # "input 0[1, 2, 3, 4]" or "down1.conv1.weight[...]"
    errors: dict = field(default_factory=dict)   # tensor name -> rel error
    checked: int = 0                # elements compared
    skipped: int = 0                # elements whose +-h step crossed a kink (see below)

    def ok(self, tol=1e-6):
        return self.max_rel_error <= tol

    def __str__(self):
        lines = [f"max relative error {self.max_rel_error:.2e} at {self.where} "
                 f"({self.checked} elements checked, {self.skipped} skipped at kinks)"]
        lines += [f"  {k:40s} {v:.2e}" for k, v in self.errors.items()]
        return "\n".join(lines)


def _as_list(y):
    return list(y) if isinstance(y, (list, tuple)) else [y]


def _flatten(y):
    """Nested lists/tuples of arrays (deep supervision, CGM) -> flat list."""
    if isinstance(y, (list, tuple)):
        return [a for item in y for a in _flatten(item)]
    return [y]


def _unflatten(flat, template):
    """Rebuild ``template``'s nesting from a flat list (consumed from the front)."""
    if isinstance(template, (list, tuple)):
        return type(template)(_unflatten(flat, t) for t in template)
    return flat.pop(0)


def _scale(a, n):
    return max(np.max(np.abs(a)) if a.size else 0.0, np.max(np.abs(n)) if n.size else 0.0)


def _rel_error(a, n, floor):
    if a.size == 0:
        return 0.0, 0
    scale = max(_scale(a, n), floor)
    diff = np.abs(a - n)
    i = int(np.argmax(diff)) if diff.size else 0
    if scale == 0:
        return 0.0, i
    return float(diff.flat[i] / scale), i


def _pick(size, limit, rng):
    if limit is None or size <= limit:
        return np.arange(size)
    return np.sort(rng.choice(size, limit, replace=False))


def _check(run, backward, inputs, params, eps, seed, max_per_tensor, signature=lambda: None):
    """run(): the forward on the current inputs/params -> list of float64 outputs.
    signature(): the branches taken by the last run (None: no kink tracking)."""
    rng = np.random.default_rng(seed)
    ys = run()
    base_sig = signature()
    gs = [rng.standard_normal(y.shape) if np.ndim(y) else rng.standard_normal() for y in ys]
    analytic = backward(gs)
    tensors = [(f"input {i}", x, a) for i, (x, a) in enumerate(zip(inputs, analytic)) if a is not None]
    tensors += [(name, p.data, p.grad.copy()) for name, p in params]
    checked, n_checked, n_skipped = [], 0, 0
    for name, arr, a in tensors:
        idx = _pick(arr.size, max_per_tensor, rng)
        flat = arr.reshape(-1)
        num = np.empty(len(idx))
        keep = np.ones(len(idx), bool)
        for k, i in enumerate(idx):
            old = flat[i]
            flat[i] = old + eps
            yp = run()
            sp = signature()
            flat[i] = old - eps
            ym = run()
            sm = signature()
            flat[i] = old
            if sp != base_sig or sm != base_sig:
                keep[k] = False
                continue
            num[k] = sum(np.sum(g * (p - m)) for g, p, m in zip(gs, yp, ym)) / (2 * eps)
        n_checked += int(keep.sum())
        n_skipped += int((~keep).sum())
        checked.append((name, arr, idx[keep], a.reshape(-1)[idx][keep], num[keep]))
    floor = 1e-3 * max([_scale(a, n) for *_, a, n in checked] + [0.0])
    errors, worst = {}, (0.0, "nothing checked")
    for name, arr, idx, a, num in checked:
        e, j = _rel_error(a, num, floor)
        errors[name] = e
        if e >= worst[0]:
            where = np.unravel_index(idx[j], arr.shape) if arr.ndim and idx.size else ()
            worst = (e, f"{name}[{', '.join(str(int(v)) for v in where)}]")
    return GradcheckResult(worst[0], worst[1], errors, n_checked, n_skipped)


def gradcheck(module, inputs, eps=1e-6, seed=0, max_per_tensor=None):
    """Check ``module.backward`` against central differences for every input and parameter.

    module: an npunet Module already in float64 (``.to(np.float64)``).
    inputs: one array or a tuple of arrays (float64).
    max_per_tensor: check at most this many random elements of each tensor (None: all).
    Dropout masks are replayed identically for every evaluation; BatchNorm buffers
    are restored afterwards.
    """
    inputs = tuple(np.array(x, dtype=np.float64) for x in _as_list(inputs))
    for name, p in module.named_parameters():
        if p.data.dtype != np.float64:
            raise TypeError(f"gradcheck: parameter '{name}' is {p.data.dtype}; call module.to(np.float64) first")
    rngs = [m._rng for m in module.modules() if hasattr(m, "_rng")]
    rng_states = [r.bit_generator.state for r in rngs]
    saved = module.state_dict()

    template = [None]

    def run():
        for r, s in zip(rngs, rng_states):
            r.bit_generator.state = s
        out = module(*inputs)
        template[0] = out
        return [np.array(y, dtype=np.float64) for y in _flatten(out)]

    def backward(gs):
        module.zero_grad()
        d = module.backward(_unflatten(list(gs), template[0]))
        return _as_list(d) if len(inputs) > 1 else [d]

    try:
        branchy = [m for m in module.modules() if hasattr(m, "kink_signature")]
        return _check(run, backward, inputs, list(module.named_parameters()), eps, seed, max_per_tensor,
                      lambda: tuple(m.kink_signature() for m in branchy))
    finally:
        module.load_state_dict({k: v for k, v in saved.items()})


def gradcheck_fn(forward, backward, inputs, eps=1e-6, seed=0, max_per_tensor=None):
    """Gradcheck for plain functions (losses, functional pairs).

    forward(*inputs) -> array or float; backward(g) -> gradient(s) w.r.t. inputs (None to skip one).
    """
    inputs = tuple(np.array(x, dtype=np.float64) for x in _as_list(inputs))

    def run():
        return [np.asarray(forward(*inputs), dtype=np.float64)]

    def bwd(gs):
        g = gs[0]
        d = backward(g)
        return list(d) if isinstance(d, (list, tuple)) else [d]

    return _check(run, bwd, inputs, [], eps, seed, max_per_tensor)
