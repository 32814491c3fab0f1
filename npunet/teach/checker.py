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

The parts: report.py (the report, the diagnosis, the hints), sandbox.py (the student's side: the
child process), this module (the reference side, the comparisons, the entry points).
"""
import os
import sys

import numpy as np

from . import sandbox
from .exercises import EXERCISES
from .report import (TOL, Finding, Report, _case_notes, _close, _compare, _err, _factor_words, _hint,  # noqa: F401
                     _where, diagnose, num)
from .sandbox import (TIMEOUT, _arrays, _Child, _copy, _explain, _fd_agreement, _grad_input, _InProcess,  # noqa: F401
                      _load, _Student, describe)

FLOOR = 1e-8          # of the case's largest expected value: the smallest denominator of a relative error
MEMORY = sandbox.MEMORY   # bytes the student's code may allocate above what its process holds (read at each check)


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
    runner = _Child(ex, path, namespace, timeout, MEMORY) if fork else _InProcess(ex, path, namespace, timeout)
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
    if sandbox._loading:
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
