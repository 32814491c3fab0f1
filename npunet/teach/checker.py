"""The exercise checker: the student writes a forward and its backward; ``check`` runs them on small
float64 cases and compares them with npunet's reference ops.

    npunet check conv2d                     # lessons/exercises/01_conv2d.py here, else the installed copy
    npunet check conv2d my_attempt.py       # any file, checked against the named exercise
    npunet check path/to/01_conv2d.py       # the exercise is read off the file's name
    npunet check conv2d --solution          # the teacher's solution (installed with npunet)
    check("conv2d", globals())              # from the exercise notebook itself

For every case the checker
  1. computes the expected outputs and gradients from npunet's reference ops in its own process
     (relative error max|a - e| / max(max|a|, max|e|, floor) <= 1e-6; the floor, 1e-8 of the case's
     largest value, keeps rounding noise on a gradient that is zero in exact arithmetic from counting);
  2. runs the student's forward and backward in a separate process (forked), with a time limit per
     case (20 s, ``timeout``) and a memory cap (1 GiB above what the process holds, Linux), and
     takes back plain float64 arrays: nothing the student's file does (patching npunet, this module,
     the report; ``sys.exit``; ``os._exit``; an endless loop; a huge allocation) changes the verdict;
  3. checks that nothing was written into the inputs or into dout.
A failure names the output or gradient, the element where the error peaks, both values, what the
numbers show (a constant factor, a transpose, a shift by one, only the border, one image of the
batch, only the cases with padding, ...), the formula, and whether the backward at least matches
finite differences of the student's own forward.
What cannot be told apart: a forward that calls npunet's own op passes.
"""
import os
import runpy
import signal
import sys
import sysconfig
import traceback
import warnings
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from .exercises import EXERCISES

TOL = 1e-6
FLOOR = 1e-8          # of the case's largest expected value: the smallest denominator of a relative error
TIMEOUT = 20.0        # seconds per case (forward + backward) and per finite-difference probe
MEMORY = 1 << 30      # bytes the student's code may allocate above what its process holds at the start
_loading = False      # True while an exercise file is loaded: its own check(...) cell is skipped


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


# ================================================================== the student's side (a child process)

class _TimeLimit(BaseException):
    pass


class _Exited(BaseException):
    pass


def _library_dirs():
    import numpy
    dirs = {os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(os.path.abspath(numpy.__file__))}
    for k in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(k)
        if p:
            dirs.add(os.path.abspath(p))
    return tuple(d + os.sep for d in dirs)


def _student_frames(tb, files=None):
    libs = _library_dirs()
    out = []
    for t in traceback.extract_tb(tb):
        f = os.path.abspath(t.filename) if not t.filename.startswith("<") else t.filename
        if files is not None and f not in files:
            continue
        if f.startswith("<frozen") or f.startswith(libs):
            continue
        out.append(t)
    return out


def _line(frames):
    t = frames[-1]
    code = (t.line or "").strip()
    where = os.path.basename(t.filename) if not t.filename.startswith("<") else t.filename
    return f"line {t.lineno} of {where}: {code}" if code else f"line {t.lineno} of {where}"


def _explain(e, timeout=TIMEOUT, files=None):
    """One line for whatever the student's code raised, at the student's line (not NumPy's)."""
    from .spec import ShapeError
    if isinstance(e, NotImplementedError):
        return f"not written yet: {e}" if str(e) else "not written yet (NotImplementedError)"
    if isinstance(e, ShapeError):
        return str(e)
    mine = _student_frames(e.__traceback__, files) or _student_frames(e.__traceback__)
    at = f" ({_line(mine)})" if mine else ""
    fn = mine[0].name if mine else "code"
    if isinstance(e, _TimeLimit):
        return f"your {fn} did not return within {timeout:g} s{at}"
    if isinstance(e, MemoryError):
        return f"your {fn} asked for more memory than the check allows ({MEMORY / 2**30:g} GiB){at}"
    if isinstance(e, _Exited):
        return f"your {fn} tried to end the process ({e}){at}: the check counts that as a failure"
    if isinstance(e, SystemExit):
        return f"your {fn} called sys.exit({e.code!r}){at}: the check counts that as a failure"
    if isinstance(e, KeyboardInterrupt):
        return f"your {fn} was interrupted (KeyboardInterrupt){at}"
    return f"raised {type(e).__name__}: {e}{at}"


def describe(v):
    """What the parent gets back for one result: plain float64 data, whatever type the student returned."""
    if v is None:
        return {"kind": "none"}
    if np.isscalar(v) or isinstance(v, (list, tuple)):
        try:
            v = np.asarray(v)
        except Exception:  # noqa: BLE001 - a ragged list: report its type
            return {"kind": "type", "type": type(v).__name__}
    if not isinstance(v, np.ndarray):
        return {"kind": "type", "type": type(v).__name__}
    try:
        data = np.array(np.asarray(v, dtype=np.float64), dtype=np.float64, copy=True)
    except Exception:  # noqa: BLE001
        return {"kind": "type", "type": f"{type(v).__name__} of {v.dtype}"}
    return {"kind": "array", "shape": tuple(int(s) for s in np.shape(v)), "dtype": str(v.dtype), "data": data}


def _copy(v):
    if isinstance(v, np.ndarray):
        return v.copy()
    if isinstance(v, list):
        return [_copy(a) for a in v]
    return v


def _same(a, b):
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, list):
        return all(_same(x, y) for x, y in zip(a, b))
    return True


def _arrays(inp):
    """(name, array) for every array input, lists unrolled as name[k]."""
    for k, v in inp.items():
        if isinstance(v, np.ndarray):
            yield k, v
        elif isinstance(v, list):
            for i, a in enumerate(v):
                if isinstance(a, np.ndarray):
                    yield f"{k}[{i}]", a


def _grad_input(gname, inp):
    """The input array a gradient name belongs to ("dx" -> x, "d_enc[1]" -> enc[1]), or None."""
    arrays = dict(_arrays(inp))
    for key in (gname[1:], gname[2:]):
        if key in arrays:
            return key
    return None


def _fd_agreement(ex, impl, case, seed, douts, key, index, h=1e-6):
    """Central difference of sum(dout * forward) of impl with respect to input `key` at `index`."""
    def value(sign):
        inp = ex.make(np.random.default_rng(seed), **case)
        arr = dict(_arrays(inp))[key]
        arr.flat[index] += sign * h
        outs, _ = ex.forward(impl, inp, case)
        return sum(float((np.asarray(outs[n], dtype=np.float64) * douts[n]).sum()) for n in outs)
    return (value(1) - value(-1)) / (2 * h)


class _Student:
    """Runs the student's functions on request; the same code in the child process and, where there is
    no fork, in the checker's own process."""

    def __init__(self, ex, impl, files, timeout):
        self.ex, self.impl, self.files, self.timeout = ex, impl, files, timeout

    def _timed(self, fn):
        use_alarm = hasattr(signal, "setitimer") and _main_thread()
        if use_alarm:
            def ring(*_):
                raise _TimeLimit()
            old = signal.signal(signal.SIGALRM, ring)
            signal.setitimer(signal.ITIMER_REAL, self.timeout)
        try:
            return fn()
        finally:
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)

    def case(self, c, seed, douts):
        ex, case = self.ex, self.ex.cases[c]
        inp = ex.make(np.random.default_rng(seed), **case)
        before = {k: _copy(v) for k, v in inp.items()}
        res = {}
        try:
            with np.errstate(all="ignore"):
                outs, state = self._timed(lambda: ex.forward(self.impl, inp, case))
        except BaseException as e:  # noqa: BLE001 - the student's code: report whatever it raised
            res["forward_error"] = _explain(e, self.timeout, self.files)
            return res
        res["outs"] = {k: describe(v) for k, v in outs.items()}
        res["wrote_inputs"] = not all(_same(before[k], inp[k]) for k in inp)
        mine = {k: v.copy() for k, v in douts.items()}
        try:
            with np.errstate(all="ignore"):
                grads = self._timed(lambda: ex.backward(self.impl, state, mine))
        except BaseException as e:  # noqa: BLE001
            res["backward_error"] = _explain(e, self.timeout, self.files)
            return res
        res["wrote_dout"] = not all(np.array_equal(douts[k], mine[k]) for k in douts)
        res["grads"] = {k: describe(v) for k, v in grads.items()}
        return res

    def fd(self, c, seed, douts, key, index):
        try:
            with np.errstate(all="ignore"):
                return float(self._timed(lambda: _fd_agreement(self.ex, self.impl, self.ex.cases[c], seed, douts,
                                                               key, index)))
        except BaseException:  # noqa: BLE001 - no finite-difference remark then
            return None


def _main_thread():
    import threading
    return threading.current_thread() is threading.main_thread()


def _load(ex, path, namespace):
    """The student's functions: from the namespace, or by running the file. (impl, error message)."""
    global _loading
    if namespace is None:
        _loading = True
        try:
            namespace = runpy.run_path(path, run_name="__npunet_exercise__")
        except BaseException as e:  # noqa: BLE001 - a syntax error, a failing top-level cell, sys.exit
            if isinstance(e, SyntaxError):
                return None, f"the file did not run: SyntaxError: {e.msg} (line {e.lineno} of {os.path.basename(path)})"
            return None, "the file did not run: " + _explain(e, files={os.path.abspath(path)})
        finally:
            _loading = False
    ns = namespace if isinstance(namespace, dict) else vars(namespace)
    missing = [f for f in ex.functions if not callable(ns.get(f))]
    if missing:
        return None, f"define {', '.join(missing)} (the exercise's functions, with these names)"
    return SimpleNamespace(**{f: ns[f] for f in ex.functions}), None


def _child_main(conn, ex, path, namespace, timeout):
    """The forked child: cap memory, turn exits into exceptions, load the student's code, serve requests."""
    try:
        import resource
        with open("/proc/self/statm") as f:
            held = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = held + MEMORY
        if hard == resource.RLIM_INFINITY or cap < hard:
            resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ImportError, OSError, ValueError):
        pass

    def no_exit(code=0):
        raise _Exited(f"os._exit({code})")
    os._exit = no_exit
    from .. import backends
    backends.set_backend("reference")          # NumPy only in the child: no Numba threads after a fork
    files = {os.path.abspath(path)} if path else None
    impl, error = _load(ex, path, namespace)
    conn.send(("loaded", error))
    if error:
        return
    student = _Student(ex, impl, files, timeout)
    while True:
        msg = conn.recv()
        if msg[0] == "case":
            conn.send(("case", student.case(*msg[1:])))
        elif msg[0] == "fd":
            conn.send(("fd", student.fd(*msg[1:])))
        else:
            return


class _Child:
    """The checker's end: a forked process running the student's code, or None where fork is missing."""

    def __init__(self, ex, path, namespace, timeout):
        import multiprocessing as mp
        self.timeout = timeout
        ctx = mp.get_context("fork")
        self.conn, child_end = ctx.Pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)     # fork with threads: the child runs NumPy only
            self.proc = ctx.Process(target=_child_entry, args=(child_end, ex, path, namespace, timeout), daemon=True)
            self.proc.start()
        child_end.close()

    def ask(self, msg, wait):
        """The child's answer, or ("dead", why)."""
        if msg is not None:
            try:
                self.conn.send(msg)
            except (BrokenPipeError, OSError):
                return ("dead", self._why())
        if not self.conn.poll(wait):
            self.proc.kill()
            self.proc.join()
            return ("hung", None)
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            return ("dead", self._why())

    def _why(self):
        self.proc.join(5)
        code = self.proc.exitcode
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            return f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
        return f"exit status {code}"

    def close(self):
        try:
            self.conn.send(("stop",))
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def _child_entry(conn, ex, path, namespace, timeout):
    real_exit = os._exit
    for s in ("stdout", "stderr"):                 # not a notebook's stream objects, which live in the parent
        setattr(sys, s, getattr(sys, "__" + s + "__") or open(os.devnull, "w"))
    try:
        _child_main(conn, ex, path, namespace, timeout)
    except BaseException:  # noqa: BLE001 - the parent sees the pipe close and reports it
        pass
    finally:
        os._exit = real_exit
        conn.close()


class _InProcess:
    """Where fork is missing (Windows): the same requests, answered in this process (no isolation)."""

    def __init__(self, ex, path, namespace, timeout):
        self.impl, self.error = _load(ex, path, namespace)
        self.student = _Student(ex, self.impl, {os.path.abspath(path)} if path else None, timeout) if self.impl else None

    def ask(self, msg, wait):
        if msg is None:
            return ("loaded", self.error)
        return (msg[0], getattr(self.student, msg[0])(*msg[1:]))

    def close(self):
        pass


# ================================================================== the checker's side

def _random_douts(outs, rng):
    return {k: (rng.standard_normal(np.shape(v)) if np.ndim(v) else np.float64(rng.standard_normal()))
            for k, v in outs.items()}


def _expected(ex, case, seed):
    """Reference outputs, douts and gradients of one case, and a function for per-image parts."""
    from .. import backends
    with backends.backend("reference"), np.errstate(all="ignore"):
        ref = ex.reference()
        outs, state = ex.forward(ref, ex.make(np.random.default_rng(seed), **case), case)
        douts = _random_douts(outs, np.random.default_rng(seed + 1))
        grads = ex.backward(ref, state, douts)
    outs = {k: np.asarray(v, dtype=np.float64) for k, v in outs.items()}
    grads = {k: np.asarray(v, dtype=np.float64) for k, v in grads.items()}

    def parts(name):
        """The expected gradient `name` from each image alone (dout zero elsewhere): the backward is
        linear in dout, so these add up to the expected value."""
        N = case.get("N", 1)
        if N < 2 or not all(np.ndim(d) == 4 and np.shape(d)[0] == N for d in douts.values()):
            return ()
        out = []
        for n in range(N):
            d = {k: np.zeros_like(v) for k, v in douts.items()}
            for k in d:
                d[k][n] = douts[k][n]
            with backends.backend("reference"), np.errstate(all="ignore"):
                o, s = ex.forward(ref, ex.make(np.random.default_rng(seed), **case), case)
                out.append(np.asarray(ex.backward(ref, s, d)[name], dtype=np.float64))
        return out
    return outs, douts, grads, parts


def _in_notebook():
    ip = sys.modules.get("IPython")
    try:
        return ip is not None and ip.get_ipython() is not None and "IPKernelApp" in ip.get_ipython().config
    except Exception:  # noqa: BLE001
        return False


def _run(ex, path, namespace, source, timeout, isolate=True):
    report = Report(ex.name, ex.title, source)
    expected = [(1000 + c, *_expected(ex, case, 1000 + c)) for c, case in enumerate(ex.cases)]
    fork = isolate and "fork" in _start_methods()
    runner = (_Child if fork else _InProcess)(ex, path, namespace, timeout)
    try:
        kind, error = runner.ask(None, timeout + 60)            # loading the file (its imports) may take a while
        if kind != "loaded":
            report.add("loading", False, "the file did not run: " + _death(kind, error, "while loading", timeout))
            return report
        if error:
            report.add("definitions" if error.startswith("define ") else "loading", False, error)
            return report
        for c, (case, (seed, ref_outs, douts, ref_grads, parts)) in enumerate(zip(ex.cases, expected)):
            report.case = f"case {c + 1}: " + ", ".join(f"{k}={v}" for k, v in case.items() if k != "seed")
            if not _check_case(ex, runner, report, c, case, seed, ref_outs, douts, ref_grads, parts, timeout):
                break
    finally:
        runner.close()
    _case_notes(report, ex)
    return report


def _start_methods():
    import multiprocessing as mp
    return mp.get_all_start_methods() if sys.platform.startswith("linux") else ()


def _death(kind, why, when, timeout):
    if kind == "hung":
        return f"your code did not return within {timeout:g} s {when} (stuck inside a NumPy call; the process was stopped)"
    return f"the process running your code ended {when} ({why}): os._exit, a crash or the memory cap"


def _check_case(ex, runner, report, c, case, seed, ref_outs, douts, ref_grads, parts, timeout):
    """One case; False when the child is gone (the remaining cases are skipped)."""
    kind, res = runner.ask(("case", c, seed, douts), 2 * timeout + 10)
    if kind != "case":
        report.add("forward and backward", False, _death(kind, res, "during this case", timeout))
        return False
    for part in ("forward", "backward"):
        msg = res.get(part + "_error")
        if msg and "did not return within" in msg:           # the next cases would wait as long: skip them
            report.add(part, False, msg + "; the remaining cases were skipped")
            return False
    if "forward_error" in res:
        report.add("forward", False, res["forward_error"])
        return True
    scale = max([float(np.abs(v).max(initial=0.0)) for v in list(ref_outs.values()) + list(ref_grads.values())] + [0.0])
    floor = FLOOR * scale
    fwd_ok = True
    for name, want in ref_outs.items():
        fwd_ok &= _compare(report, f"forward {name}", name, res["outs"].get(name), want, _hint(ex, name), case, floor)
    if res["wrote_inputs"]:
        fwd_ok = report.add("forward", False, "your forward wrote into its inputs: build new arrays instead")
    if "backward_error" in res:
        report.add("backward", False, res["backward_error"])
        return True
    if res["wrote_dout"]:
        report.add("backward", False, "your backward wrote into dout: in a U-Net one tensor's gradient "
                                      "arrives from two consumers and must be added, so never modify dout")
    inp = ex.make(np.random.default_rng(seed), **case)
    for name, want in ref_grads.items():
        got = res["grads"].get(name)
        if (got is None or got["kind"] == "none") and "." in name:
            report.add(f"backward {name}", False, f"no gradient in {name}: its module's backward was never called")
            continue
        lazy = _LazyParts(parts, name)
        if _compare(report, f"backward {name}", name, got, want, _hint(ex, name), case, floor, lazy):
            continue
        key = _grad_input(name, inp)
        if key is None or got is None or got["kind"] != "array" or tuple(got["shape"]) != want.shape:
            continue
        a = np.asarray(got["data"], dtype=np.float64)
        i = int(np.argmax(np.abs(a - want)))
        kind, fd = runner.ask(("fd", c, seed, douts, key, i), 3 * timeout + 10)
        if kind != "fd":
            report.add("finite differences", False, _death(kind, fd, "while probing your forward", timeout))
            return False
        if fd is None:
            continue
        g = float(a.flat[i])
        agree = abs(fd - g) <= 1e-5 * max(abs(fd), abs(g), 1e-8)
        f = report.findings[-1]
        if fwd_ok and not agree:
            f.message += (f" Finite differences of your forward give {num(fd)} there: the forward is right, "
                          f"the backward is what needs fixing.")
        elif agree and not fwd_ok:
            f.message += (f" Your backward is the exact gradient of your forward (finite differences give "
                          f"{num(fd)} there): fix the forward first.")
        elif not agree:
            f.message += f" It does not match finite differences of your own forward either ({num(fd)})."
    return True


class _LazyParts:
    """The per-image parts, computed only when a diagnosis looks at them."""

    def __init__(self, parts, name):
        self.parts, self.name, self.value = parts, name, None

    def __iter__(self):
        if self.value is None:
            self.value = self.parts(self.name)
        return iter(self.value)

    def __len__(self):
        if self.value is None:
            self.value = self.parts(self.name)
        return len(self.value)


# ================================================================== the entry points

def check_namespace(name, namespace, source="your code", verbose=True, timeout=TIMEOUT):
    """Check the functions of exercise `name` found in `namespace` (a dict or module). Returns a Report."""
    report = _run(_exercise(name), None, namespace, source, timeout)
    if verbose and not _in_notebook():
        print(report)
    return report


def _exercise(name):
    key = os.path.basename(str(name))
    key = key[:-3] if key.endswith(".py") else key
    for ex in EXERCISES.values():
        if key in (ex.name, ex.file[:-3], ex.file[:2], ex.file[:2].lstrip("0")):
            return ex
    raise KeyError(f"no exercise {name!r}; the exercises are: {', '.join(EXERCISES)}")


def find_file(name, solution=False):
    """The exercise's file: lessons/exercises/NN_name.py (or exercises/, or here) under the working
    directory, else the copy installed with npunet; with solution=True the installed solution."""
    from . import course
    if os.path.isfile(str(name)) and not solution:
        return os.path.abspath(name)
    ex = _exercise(name)
    installed = os.path.join(course.root(), "exercises")
    if solution:
        path = os.path.join(installed, "solutions", ex.file)
        if os.path.isfile(path):
            return path
        raise FileNotFoundError(f"solution {ex.file} not found in {os.path.dirname(path)}")
    places = [os.path.join(os.getcwd(), "lessons", "exercises"), os.path.join(os.getcwd(), "exercises"), os.getcwd(),
              installed]
    for p in places:
        if os.path.isfile(os.path.join(p, ex.file)):
            return os.path.join(p, ex.file)
    raise FileNotFoundError(f"exercise file {ex.file} not found in: {', '.join(places)}")


def check(name, namespace=None, path=None, solution=False, verbose=True, timeout=TIMEOUT):
    """Check an exercise. check("conv2d", globals()) in the exercise's own notebook checks the functions
    defined there; check("conv2d") or check("conv2d", path=...) loads a file and checks its functions.
    Returns the Report (report.ok; a notebook shows it), or None while the file is being loaded by
    another check."""
    if _loading:
        return None
    ex = _exercise(name)
    if namespace is not None:
        return check_namespace(ex.name, namespace, "the functions defined here", verbose, timeout)
    path = os.path.abspath(path or find_file(name, solution))
    source = os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
    report = _run(ex, path, None, source, timeout)
    if verbose and not _in_notebook():
        print(report)
    return report


def main(exercise, file=None, solution=False, timeout=TIMEOUT):
    """`npunet check EXERCISE [FILE] [--solution] [--timeout S]`: exit status 0 when every check passes,
    1 when one fails, 2 when the exercise or the file is not found."""
    try:
        if file is None and os.path.isfile(exercise) and not solution:
            try:
                _exercise(exercise)
            except KeyError:
                raise KeyError(f"cannot tell the exercise from the file name {os.path.basename(exercise)!r}: name it, "
                               f"as in `npunet check conv2d {exercise}` (the exercises are: {', '.join(EXERCISES)})")
        if file is not None and not os.path.isfile(file):
            raise FileNotFoundError(f"no file {file}")
        report = check(exercise, path=file, solution=solution, timeout=timeout)
        from . import course
        if (file is None and not solution and not os.path.isfile(exercise)
                and os.path.basename(course.root()) == "course"          # an install, not a clone's lessons/
                and os.path.abspath(find_file(exercise)).startswith(os.path.abspath(course.root()) + os.sep)
                and not os.path.abspath(os.getcwd()).startswith(os.path.abspath(course.root()))):
            print("(that was npunet's own untouched copy: `npunet lessons --copy DIR` gives you one to edit, "
                  "then `npunet check NAME DIR/exercises/NN_name.py`)", file=sys.stderr)
    except (KeyError, FileNotFoundError) as e:
        print(f"npunet check: {e.args[0]}", file=sys.stderr)
        return 2
    return 0 if report.ok else 1
