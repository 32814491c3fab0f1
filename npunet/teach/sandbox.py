"""The student's side of the checker: the student's functions run in a forked child process (time
limit, memory cap, exits turned into exceptions) or, where there is no fork, in this process; what
comes back is plain float64 data and one-line explanations of whatever the student's code raised."""
import os
import runpy
import signal
import sys
import sysconfig
import traceback
import warnings
from types import SimpleNamespace

import numpy as np

TIMEOUT = 20.0        # seconds per case (forward + backward) and per finite-difference probe
MEMORY = 1 << 30      # bytes the student's code may allocate above what its process holds at the start
_loading = False      # True while an exercise file is loaded: its own check(...) cell is skipped


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

    def __init__(self, ex, path, namespace, timeout, memory=None):
        import multiprocessing as mp
        self.timeout = timeout
        ctx = mp.get_context("fork")
        self.conn, child_end = ctx.Pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)     # fork with threads: the child runs NumPy only
            self.proc = ctx.Process(target=_child_entry, args=(child_end, ex, path, namespace, timeout, memory),
                                    daemon=True)
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


def _child_entry(conn, ex, path, namespace, timeout, memory=None):
    global MEMORY
    if memory is not None:                         # the checker's setting (this is the child's copy)
        MEMORY = memory
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
