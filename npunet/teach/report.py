"""The checker's report and what it reads off the numbers: one finding per output or gradient, the
relative error, a diagnosis of a wrong array (a factor, a transpose, a shift by one, the border, one
image of the batch, ...), the exercise's formula as a hint, and patterns across the cases."""
from dataclasses import dataclass, field

import numpy as np

from .exercises import EXERCISES

TOL = 1e-6           # the largest relative error that passes


def num(v):
    """A number for a message: 6 significant digits, never "-0"."""
    v = float(v)
    s = f"{v + 0.0:.6g}"
    return "0" if s in ("-0", "0") else s


def _err(v):
    return f"{v:.1e}"


# ================================================================== the report

@dataclass
class Finding:
    case: str           # "case 1: N=2, C=3, ..." or "" for the whole file
    name: str           # "forward out", "backward dw"
    ok: bool
    message: str


@dataclass(repr=False)
class Report:
    exercise: str
    title: str
    source: str
    findings: list = field(default_factory=list)
    notes: list = field(default_factory=list)   # patterns across cases
    case: str = ""      # the case the next findings belong to

    @property
    def ok(self):
        return bool(self.findings) and all(f.ok for f in self.findings)

    def add(self, name, ok, message=""):
        self.findings.append(Finding(self.case, name, ok, message))
        return ok

    def __str__(self):
        bad = [f for f in self.findings if not f.ok]
        lines = [f"check {self.exercise}, {self.title} ({self.source}): " +
                 ("all checks passed" if self.ok else f"{len(bad)} of {len(self.findings)} checks failed")]
        case = None
        for f in self.findings:
            if f.case != case:
                case = f.case
                if case:
                    lines.append(f"  {case}")
            lines.append(f"    {'ok   ' if f.ok else 'WRONG'}  {f.name}" + (f": {f.message}" if f.message else ""))
        lines += [f"  note: {n}" for n in self.notes]
        if not self.ok:
            lines.append(f"  (the solution is exercises/solutions/{EXERCISES[self.exercise].file} of the course, "
                         f"`npunet lessons --copy DIR --solutions` copies it: try on your own first)")
        return "\n".join(lines)

    def __repr__(self):
        bad = sum(not f.ok for f in self.findings)
        return f"<check {self.exercise}: " + ("all checks passed>" if self.ok else f"{bad} checks failed>")

    def _repr_markdown_(self):
        return "```text\n" + str(self) + "\n```"

    def _repr_html_(self):
        import html
        return "<pre>" + html.escape(str(self)) + "</pre>"


# ================================================================== what the numbers show

def _close(a, b, scale):
    return a.shape == b.shape and float(np.abs(a - b).max(initial=0.0)) <= 1e-6 * scale


def _factor_words(c, case):
    N = case.get("N")
    if abs(c + 1) < 1e-6:
        return "your values are exactly -1 x the expected ones: the sign is flipped"
    if N and N > 2 and abs(c * N - 1) < 1e-6:
        return f"your values are exactly 1/{N} x the expected ones: divided by the batch size N={N} (a mean where a sum belongs)"
    if N and N > 2 and abs(c - N) < 1e-6:
        return f"your values are exactly {N} x the expected ones: multiplied by the batch size N={N}"
    return f"your values are exactly {c:.4g} x the expected ones: a missing or extra factor (or sign)"


def diagnose(got, want, case, parts=()):
    """What is wrong, read off the numbers: got and want float64 arrays of one shape; parts: the
    expected value's per-image contributions (a gradient summed over the batch). Returns text or ''."""
    scale = max(float(np.abs(want).max(initial=0.0)), 1e-300)
    if not np.any(got) and np.any(want):
        return "yours is all zeros: nothing was written into it (a missing assignment or return)"
    ee = float((want * want).sum())
    if ee > 0:
        c = float((got * want).sum()) / ee
        if abs(c - 1) > 1e-3 and _close(got, c * want, scale):
            return _factor_words(c, case)
    for n, p in enumerate(parts):
        if _close(got, p, scale):
            last = n == len(parts) - 1
            return (f"yours equals image {n}'s contribution alone: sum over the whole batch (every image used the "
                    f"same parameters)" + ("; an `=` where `+=` belongs inside a loop over the batch?" if last else ""))
    if got.ndim >= 2 and got.shape[-1] == got.shape[-2] and _close(np.swapaxes(got, -1, -2), want, scale):
        return "your values are the expected ones with the last two axes swapped (rows and columns, or w transposed)"
    if got.ndim >= 2:
        gs, ws = got, want
        if got.ndim == 4:                        # the channels that are wrong (a concat's other part is right)
            wc = (np.abs(got - want) > 1e-6 * scale).any(axis=(0, 2, 3))
            gs, ws = got[:, wc], want[:, wc]
        for ax, axname in ((-1, "columns (W)"), (-2, "rows (H)")):
            if gs.shape[ax] < 3:
                continue
            a, b = np.moveaxis(gs, ax, -1), np.moveaxis(ws, ax, -1)
            for d in (1, -1):
                x, y = (a[..., d:], b[..., :-d]) if d > 0 else (a[..., :d], b[..., -d:])
                if _close(x, y, scale) and not _close(a, b, scale):
                    return (f"your values are the expected ones shifted by one along the {axname}: an off-by-one in "
                            f"an index, an offset or the padding")
    wrong = np.abs(got - want) > 1e-6 * scale
    if got.ndim == 4 and min(got.shape[2:]) > 2 and wrong.any():
        inner = wrong[:, :, 1:-1, 1:-1].any()
        border = wrong.any() and (wrong.sum() > wrong[:, :, 1:-1, 1:-1].sum())
        if not inner:
            return "only the border rows/columns are wrong: look at the padding, the crop offsets or the edge weights"
        if not border:
            return "the border is right but the interior is wrong: look at where neighbouring windows overlap or add"
    if wrong.any() and wrong.mean() <= 0.25:
        i = np.unravel_index(int(np.argmax(wrong)), got.shape)
        return (f"only {int(wrong.sum())} of {wrong.size} values are wrong (the first at [{', '.join(map(str, i))}]): "
                f"look at what is special there (ties, overlaps, edges)")
    return ""


def _where(name, shape, i):
    return f"{name}[{', '.join(str(int(k)) for k in np.unravel_index(i, shape))}]" if shape else name


def _hint(ex, name):
    """The formula for an output or gradient: by its name ("d_enc[1]" -> "d_enc"), or the parameters' one."""
    base = name.split("[")[0]
    if base in ex.hints:
        return ex.hints[base]
    return ex.hints.get("param", "the gradient of a parameter: the module's backward adds it into .grad")


def _compare(report, label, name, got, want, hint, case, floor, parts=()):
    """One output or gradient: got is the child's description {kind, shape, dtype, data}."""
    if got is None or got["kind"] == "none":
        return report.add(label, False, f"got None for {name}. Hint: {hint}")
    if got["kind"] != "array":
        return report.add(label, False, f"{name} should be a NumPy array, got {got['type']}")
    shape, dtype = tuple(got["shape"]), got["dtype"]
    want = np.asarray(want, dtype=np.float64)
    if shape != want.shape:
        return report.add(label, False, f"{name} has shape {shape}, expected {want.shape}. Hint: {hint}")
    if want.ndim and dtype != "float64":
        return report.add(label, False, f"{name} is {dtype} for float64 inputs: keep the input's dtype "
                                        f"(float64 here, for the check)")
    a = np.asarray(got["data"], dtype=np.float64)
    if not np.all(np.isfinite(a)):
        return report.add(label, False, f"{name} holds NaN or Inf at {_where(name, shape, int(np.argmin(np.isfinite(a))))}")
    diff = np.abs(a - want)
    i = int(np.argmax(diff)) if diff.size else 0
    denom = max(float(np.abs(a).max(initial=0.0)), float(np.abs(want).max(initial=0.0)), floor)
    err = float(diff.flat[i]) / denom if diff.size and denom > 0 else 0.0
    if err <= TOL:
        return report.add(label, True, f"relative error {_err(err)}")
    seen = diagnose(a, want, case, parts)
    return report.add(label, False, f"relative error {_err(err)} at {_where(name, shape, i)}: yours {num(a.flat[i])}, "
                                    f"expected {num(want.flat[i])}." + (f" What the numbers show: {seen}." if seen else "")
                                    + f" Hint: {hint}.")


def _case_notes(report, ex):
    """Which parameter values the failing cases share and the passing ones do not."""
    names = {}
    for f in report.findings:
        if f.case.startswith("case "):
            names.setdefault(f.name, {})[int(f.case.split(":")[0][5:]) - 1] = f.ok
    for name, res in names.items():
        bad = [c for c, ok in res.items() if not ok]
        good = [c for c, ok in res.items() if ok]
        if not bad or not good:
            continue
        only, other = [], []
        for k in ex.cases[0]:
            if k in ("seed", "part"):
                continue
            vb = {str(ex.cases[c].get(k)) for c in bad}
            vg = {str(ex.cases[c].get(k)) for c in good}
            if not vb & vg:
                only.append(f"{k}={' or '.join(sorted(vb))}")
                other.append(f"{k}={' or '.join(sorted(vg))}")
        if only:
            report.notes.append(f"{name} fails only in the cases with {', '.join(only)} "
                                f"(it passes with {', '.join(other)})")
