"""Where Numba keeps npunet's compiled kernels, and the one line printed when they compile.

npunet's kernels are compiled by Numba on first use (``cache=True``) and the machine code is kept on
disk, so the cost is paid once per machine.  The cache lives outside the package directory, so a
read-only install works and ``pip uninstall`` leaves nothing behind in site-packages:

1. ``$NUMBA_CACHE_DIR`` when set (Numba's own variable),
2. else the per-user cache: ``$XDG_CACHE_HOME/npunet/numba`` (default ``~/.cache/npunet/numba``),
3. else, when that is not writable, ``<temp dir>/npunet-numba-<user>`` (one line says so).

Each kernel file gets a folder named after a hash of its contents, and that hash is the freshness
stamp Numba checks (instead of the file's modification time): reinstalling the same version finds its
compiled kernels again, and an edited file never reads another version's machine code.

Numba compiles in the calling thread, one kernel after another, so a cold start leaves the other cores
idle.  On the first real compilation this module starts one helper process, ``python -m
npunet.app.prefetch`` (a process, not an import: see that module), which compiles the kernels a run is
about to need from the other end of the list into the same cache; ``NPUNET_PREFETCH=0`` turns it off.
Two processes writing one kernel's cache entry take a file lock, so neither loses the other's entry.
"""
import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import threading

try:
    import fcntl
except ImportError:  # Windows: no helper process (and so no second writer to lock out)
    fcntl = None

PKG_DIR = os.path.dirname(os.path.abspath(__file__))
_lock = threading.Lock()
_state = {"root": None, "why": None, "announced": False, "quiet": 0, "helper": None}

# Numba compilation of a classroom training step's kernels on an empty cache, measured on a 2-core
# machine (whole-process wall of import + first step, which drifts by a third with the machine's speed):
# alone 12-14 s, with the prefetch helper compiling beside it 7.5-10 s.
COLD_SECONDS = 12
COLD_SECONDS_HELPER = 8


def _writable(d):
    try:
        os.makedirs(d, exist_ok=True)
        tempfile.TemporaryFile(dir=d).close()
        return True
    except OSError:
        return False


def _user_cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "npunet", "numba")


def _temp_cache_dir():
    try:
        user = str(os.getuid())
    except AttributeError:  # Windows
        user = os.environ.get("USERNAME", "user")
    return os.path.join(tempfile.gettempdir(), f"npunet-numba-{user}")


def choose_root(environ=None):
    """(folder, why): the first writable of $NUMBA_CACHE_DIR, the per-user cache, a temp folder;
    (None, why) when none is writable (then Numba's own locators are left to decide)."""
    env = os.environ if environ is None else environ
    tried = []
    if env.get("NUMBA_CACHE_DIR"):
        d = env["NUMBA_CACHE_DIR"]
        if _writable(d):
            return d, None
        tried.append(d)
    for d in (_user_cache_dir(), _temp_cache_dir()):
        if _writable(d):
            return d, (f"{' and '.join(tried)} not writable" if tried else None)
        tried.append(d)
    return None, f"none of {', '.join(tried)} is writable"


def cache_root():
    """The folder npunet's compiled kernels are cached in (None: no writable folder was found)."""
    return _state["root"]


_digests = {}


def _digest(path):
    d = _digests.get(path)
    if d is None:
        with open(path, "rb") as f:
            d = _digests[path] = hashlib.sha256(f.read()).hexdigest()[:20]
    return d


def _cache_folder(py_file, root):
    """root/<module path relative to the package, dotted>-<content hash>/: one kernel file's cache folder."""
    rel = os.path.relpath(os.path.splitext(py_file)[0], PKG_DIR).replace(os.sep, ".")
    return os.path.join(root, f"{rel}-{_digest(py_file)}")


@contextlib.contextmanager
def file_lock(path, wait=True):
    """An exclusive lock on the file ``path`` (created if missing) for the block; yields True, or False
    when ``wait`` is off and another process holds it (the block then runs without it)."""
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _make_locator():
    from numba.core import caching

    class NpunetCacheLocator(caching._CacheLocator):
        """Numba cache locator for npunet's own source files: cache_root()/<module>-<content hash>/."""

        def __init__(self, py_func, py_file):
            self._lineno = py_func.__code__.co_firstlineno
            self._stamp = _digest(py_file)
            self._cache_path = _cache_folder(py_file, _state["root"])

        def get_cache_path(self):
            return self._cache_path

        def get_source_stamp(self):
            return self._stamp

        def get_disambiguator(self):
            return str(self._lineno)

        @classmethod
        def from_function(cls, py_func, py_file):
            if _state["root"] is None or not os.path.abspath(py_file).startswith(PKG_DIR + os.sep):
                return None
            if not os.path.isfile(py_file):
                return None
            self = cls(py_func, py_file)
            try:
                self.ensure_cache_path()
            except OSError:
                return None
            return self

    return NpunetCacheLocator


def _locked_saves():
    """Numba saves a cache entry as: read the kernel's index, add the new signature, write the index, write
    the data file.  Two processes saving two signatures of one kernel at once could both pick data file 1
    and one index would point at the other's machine code; an exclusive lock per cache folder makes the
    read-modify-write one step.  Only npunet's folders are locked."""
    from numba.core import caching
    cls = caching.IndexDataCacheFile
    if fcntl is None or getattr(cls.save, "_npunet_locked", False):
        return
    plain = cls.save

    def save(self, key, data):
        root = _state["root"]
        if not root or not self._cache_path.startswith(root + os.sep):
            return plain(self, key, data)
        with file_lock(os.path.join(self._cache_path, ".lock")):
            return plain(self, key, data)

    save._npunet_locked = True
    cls.save = save


def has_index(module, kernel, root=None):
    """Whether the cache (default cache_root()) holds compiled code of ``module.kernel`` (an npunet module
    name such as "npunet.kernels.norm"), for some argument types: its index file is there."""
    root = root or _state["root"]
    if root is None or not module.startswith("npunet."):
        return False
    base = f"{module.rsplit('.', 1)[1]}.{kernel}-"  # Numba's index name: <module>.<kernel>-<line>.pyXY.nbi
    try:
        folder = _cache_folder(os.path.join(PKG_DIR, *module.split(".")[1:]) + ".py", str(root))
        return any(f.startswith(base) and f.endswith(".nbi") for f in os.listdir(folder))
    except OSError:
        return False


HELPER_MODULE = "npunet.app.prefetch"  # run as a process by start_helper (a command line, not an import)


def helper_wanted(environ=None):
    """Whether a cold compilation may start the prefetch helper: a writable cache, file locks, 2+ cores,
    not turned off (``NPUNET_PREFETCH=0``) and not the helper itself."""
    env = os.environ if environ is None else environ
    return (_state["root"] is not None and fcntl is not None and (os.cpu_count() or 1) >= 2
            and env.get("NPUNET_PREFETCH", "1") != "0" and not env.get("NPUNET_PREFETCH_PARENT"))


def start_helper(plan="classroom"):
    """Start ``python -m npunet.app.prefetch`` with that plan, once per process (later calls do nothing):
    it compiles into the same cache and exits when done or when this process has ended.  Its output is
    discarded; a helper that fails to start or dies costs only the time it would have saved.  Called on
    the first real compilation (the classroom plan), and by the demo and ``npunet warmup`` up front."""
    if _state["helper"] is not None:
        return _state["helper"] or None
    _state["helper"] = False
    if not helper_wanted():
        return None
    env = dict(os.environ, NUMBA_CACHE_DIR=os.path.abspath(_state["root"]),
               NPUNET_PREFETCH_PARENT=str(os.getpid()), NPUNET_PREFETCH_PLAN=plan)
    try:  # run from the folder holding this npunet, so `-m` imports this very copy, installed or not
        _state["helper"] = subprocess.Popen([sys.executable, "-m", HELPER_MODULE], env=env,
                                            cwd=os.path.dirname(PKG_DIR), stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None
    return _state["helper"]


def install():
    """Point Numba's cache for npunet's kernels at cache_root() and announce the first compilation.
    Called once by ``import npunet``, before any kernel module is imported."""
    if _state["root"] is not None or _state["why"] is not None:
        return
    root, why = choose_root()
    _state["root"], _state["why"] = root, why or ""
    if why:
        where = root if root else "Numba's default places (it may fail to cache)"
        print(f"npunet: caching compiled kernels in {where} ({why}; set NUMBA_CACHE_DIR to choose)",
              file=sys.stderr)
    if root is not None:
        from numba.core import caching
        impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
        locator = _make_locator()
        impl._locator_classes = [locator] + [c for c in impl._locator_classes
                                             if c.__name__ != "NpunetCacheLocator"]
        _locked_saves()
    from numba.core import event
    event.register("numba:compile", _Announce())


def _is_cold():
    """True when no npunet kernel has been cached yet (a first run on this machine)."""
    root = _state["root"]
    if root is None:
        return True
    try:
        for d in os.scandir(root):  # one folder per kernel file, created at import; an index once compiled
            if d.is_dir() and any(f.name.endswith(".nbi") for f in os.scandir(d.path)):
                return False
    except OSError:
        pass
    return True


def _announce_line(cold):
    where = _state["root"] or "memory only"
    if cold:
        seconds = COLD_SECONDS_HELPER if _state["helper"] else COLD_SECONDS
        return (f"npunet: compiling npunet's kernels for this machine, once: ~{seconds} s "
                f"(cached in {where}; `npunet warmup` does it ahead of time)")
    return f"npunet: compiling a kernel not cached yet, once: a few seconds (cached in {where})"


class quiet:
    """``with quiet():`` compiles without the announcement (``npunet warmup`` shows a progress bar)."""

    def __enter__(self):
        with _lock:
            _state["quiet"] += 1

    def __exit__(self, *exc):
        with _lock:
            _state["quiet"] -= 1


def _event_listener_base():
    from numba.core import event
    return event.Listener


class _Announce(_event_listener_base()):
    """On the first real compilation (not a cache load) of an npunet kernel: prints the announcement
    and starts the prefetch helper."""

    def on_start(self, ev):
        if _state["helper"] is not None and (_state["announced"] or _state["quiet"]):
            return
        f = getattr(ev.data.get("dispatcher"), "py_func", None)
        if f is None or not getattr(f, "__module__", "").startswith("npunet."):
            return
        with _lock:
            cold = _is_cold()
            start_helper()
            if _state["announced"] or _state["quiet"]:
                return
            _state["announced"] = True
        print(_announce_line(cold), file=sys.stderr, flush=True)

    def on_end(self, ev):
        pass
