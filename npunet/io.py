"""Save and load arrays atomically: ``.npz`` (checkpoints, no pickle) and ``.safetensors`` (state_dict
tensors under PyTorch's key names and layouts, readable by ``safetensors.torch.load_file`` and so by
any PyTorch model with the same architecture)."""
import errno
import glob
import json
import os
import tempfile

import numpy as np


class InputError(ValueError):
    """A file or folder given by the user that cannot be used; the message names it and says why."""


class ConfigError(ValueError):
    """A config key with a wrong type, range or name; the message names the key.  (The training config is
    npunet.app.config's; the class is here so that data/ can raise it without importing the app.)"""


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_npz(path, arrays):
    """Write a dict of arrays to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()}))


def save_safetensors(path, arrays):
    """Write a dict of arrays as a .safetensors file, atomically (the safetensors package's NumPy API)."""
    from safetensors.numpy import save
    data = save({k: np.array(v, order="C", copy=True) for k, v in arrays.items()})  # keeps 0-d arrays 0-d
    atomic_write(path, lambda f: f.write(data))


def load_safetensors(path):
    """Read a .safetensors file into a dict of NumPy arrays (a clear error for a foreign or broken file)."""
    from safetensors.numpy import load_file
    try:
        return dict(load_file(os.fspath(path)))
    except FileNotFoundError:
        raise
    except Exception as e:  # SafetensorError, OSError ...
        raise ValueError(f"cannot read '{path}' as a .safetensors file ({type(e).__name__}: {e})") from None


def load_state(path):
    """The state_dict stored in ``path`` (.safetensors or .npz), as a dict of arrays."""
    kind = sniff(path)  # by content, not by name (.NPZ, a renamed file)
    if kind == "safetensors":
        return load_safetensors(path)
    if kind == "npz":
        return load_npz(path, "a state_dict file")
    if os.fspath(path).lower().endswith(".safetensors"):
        raise InputError(f"cannot read '{path}' as a .safetensors file: it is {KINDS.get(kind, kind)}")
    raise InputError(f"cannot read '{path}' as a state_dict: it is {KINDS.get(kind, kind)}, "
                     f"not a .safetensors or .npz file")


def save_state(path, state):
    """Write a state_dict to ``path``: .safetensors by its name (any case), else .npz."""
    (save_safetensors if os.fspath(path).lower().endswith(".safetensors") else save_npz)(path, state)


def process_start(pid):
    """The start time of process ``pid`` (clock ticks since boot, from /proc), or None if it is not
    running.  With the pid it names one process: a reused pid has another start time."""
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        if not os.path.isdir("/proc"):  # no /proc (macOS): liveness only
            try:
                os.kill(int(pid), 0)
                return 0
            except PermissionError:
                return 0
            except (OSError, ValueError):
                return None
        return None


def _alive(pid, start):
    now = process_start(pid)
    return now is not None and (now == start or now == 0 or start == 0)


def _writer_alive(temp_name, prefix):
    """A temp file is named <prefix><pid>-<start>-<random>: is the process that writes it alive?"""
    try:
        pid, start = temp_name[len(prefix):].split("-")[:2]
        return _alive(int(pid), int(start))
    except ValueError:
        return False  # an old-style temp name: from a dead writer


def atomic_write(path, write):
    """Call write(file) on a temp file in the same folder, fsync, os.replace onto ``path``.
    A crash mid-write leaves any previous file intact; the temp files a killed save left behind
    (``.<name>.tmp-<pid>-<start>-*``) are removed by the next save, but only those of writers that are
    no longer running.  The file gets the user's normal mode (umask).  A full disk or a file-size
    limit raises OSError with one line naming the file (the previous file is still intact)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path)) or "."
    prefix = f".{os.path.basename(path)}.tmp-"
    for stale in glob.glob(os.path.join(glob.escape(folder), glob.escape(prefix) + "*")):
        if _writer_alive(os.path.basename(stale), prefix):
            continue  # another live process is writing it
        try:
            os.unlink(stale)
        except OSError:
            pass
    me = f"{prefix}{os.getpid()}-{process_start(os.getpid()) or 0}-"
    fd, tmp = tempfile.mkstemp(prefix=me, dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            old = " (the previous file is intact)" if os.path.exists(path) else ""
            raise OSError(f"cannot write '{path}': {os.strerror(e.errno)}{old}; free disk space "
                          f"or raise the file-size limit, then run again") from None
        raise


def load_npz(path, what="an npunet .npz file"):
    """Read an .npz written by save_npz into a dict; a missing, truncated or foreign file (safetensors,
    text, .npy) gives one line naming it.  The arrays' headers are read first: an archive whose arrays
    would not fit in the available memory (a zip bomb) is refused before anything is inflated."""
    path = os.fspath(path)
    kind = sniff(path)
    if kind != "npz":
        raise InputError(f"cannot read '{path}' as {what}: it is {KINDS.get(kind, kind)}")
    check_npz_fits(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except Exception as e:  # zipfile.BadZipFile, ValueError, EOFError ...
        raise InputError(f"cannot read '{path}' as {what} ({type(e).__name__}: {_flat(e)}); "
                         f"it may be truncated or not written by npunet") from None


KINDS = {"npz": "an .npz archive", "npy": "a .npy array", "safetensors": "a .safetensors file",
         "text": "a text file", "empty": "an empty file", "unknown": "not a NumPy file",
         "png": "a PNG image", "tiff": "a TIFF image", "jpeg": "a JPEG image"}


def check_input_file(path, what="file"):
    """Raise InputError (one line) unless ``path`` is an existing, readable, non-empty regular file;
    says which: missing, a folder, a broken symlink, a symlink loop, unreadable, empty."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError(f"{what} '{path}' is a symlink loop") from None
        if os.path.islink(path):
            raise InputError(f"{what} '{path}' is a broken symlink (to '{os.readlink(path)}')") from None
        if e.errno == errno.ENOENT:
            raise InputError(f"{what} '{path}' does not exist") from None
        raise InputError(f"{what} '{path}' cannot be read ({os.strerror(e.errno)})") from None
    import stat
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{what} '{path}' is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{what} '{path}' is not a regular file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{what} '{path}' is not readable (permission denied)")
    if st.st_size == 0:
        raise InputError(f"{what} '{path}' is empty (0 bytes)")
    return path


def sniff(path):
    """What a file holds, by its first bytes (not its name): 'npz', 'npy', 'safetensors', 'png', 'tiff',
    'jpeg', 'text', 'empty' or 'unknown'.  Missing files and folders raise InputError."""
    check_input_file(path)
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "npz"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"\x89PNG"):
        return "png"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head.startswith(b"\xff\xd8"):
        return "jpeg"
    if len(head) >= 9 and head[8:9] == b"{" :  # safetensors: 8-byte header length, then JSON
        return "safetensors"
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "unknown"


def check_npz_fits(path):
    """Bytes of an .npz's arrays once inflated (from the headers); InputError if they exceed the memory
    available (a zip bomb: a small file whose members inflate to gigabytes)."""
    need = npz_nbytes(path)
    free = available_memory()
    if free is not None and need > free:
        raise InputError(f"'{path}' holds arrays of {_gib(need)} once inflated, more than the {_gib(free)} of "
                         f"memory available; refusing to load it")
    return need


def npz_nbytes(path):
    """Bytes the arrays of an .npz take once loaded, from the .npy headers of its members (nothing inflated)."""
    import zipfile
    total = 0
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                        np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(f)
                n = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if n > info.file_size:  # a header that promises more than the member holds
                    raise InputError(f"'{path}': member '{info.filename}' declares {shape} {dtype} "
                                     f"({_gib(n)}) but holds {info.file_size} bytes; the file is corrupt")
                total += n
    except InputError:
        raise
    except Exception as e:  # BadZipFile, a member that is not .npy ...
        raise InputError(f"cannot read '{path}' as an .npz archive ({type(e).__name__}: {_flat(e)}); it may be truncated "
                         f"or not written by npunet") from None
    return total


def available_memory():
    """Bytes this process may still allocate: the smaller of the system's available memory
    (/proc/meminfo MemAvailable) and the address-space limit left (RLIMIT_AS); None if unknown."""
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        import resource
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            used = 0
            with open("/proc/self/statm") as f:
                used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            left = max(0, soft - used)
            free = left if free is None else min(free, left)
    except (ImportError, OSError, ValueError):
        pass
    return free


def _flat(e):
    """An exception's message on one line."""
    return " ".join(str(e).split())


def _gib(n):
    return f"{n / 2 ** 30:.1f} GiB" if n >= 2 ** 30 else f"{n / 2 ** 20:.1f} MiB"


def load_npy(path, what="input"):
    """A plain numeric .npy array: missing/folder/empty files, an .npz (or any other file) renamed .npy,
    pickled or non-numeric arrays and arrays larger than the available memory give one line."""
    path = os.fspath(path)
    kind = sniff(path)
    if kind != "npy":
        raise InputError(f"{what} '{path}' is named .npy but is {KINDS.get(kind, kind)}")
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
        except Exception as e:
            raise InputError(f"{what} '{path}' has a broken .npy header ({_flat(e)})") from None
    if dtype.kind not in "uif":
        raise InputError(f"{what} '{path}' holds {dtype} values; expected a numeric image")
    n = int(np.prod(shape, dtype=object)) * dtype.itemsize
    free = available_memory()
    if free is not None and n > free:
        raise InputError(f"{what} '{path}' is a {shape} {dtype} array of {_gib(n)}, more than the {_gib(free)} "
                         f"of memory available")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:
        raise InputError(f"cannot read {what} '{path}' as a .npy array ({type(e).__name__}: {_flat(e)})") from None


def check_out_path(path, kind="folder", exts=None, what="--out"):
    """Check an output path before any work: ``kind`` 'folder' (may exist as a folder, or be created)
    or 'file' (its folder must exist and be writable; ``exts`` the allowed extensions, case-insensitive).
    Raises InputError naming the path: a file where a folder is wanted, a path under a file, a missing
    or unwritable folder, an unknown extension, a folder where a file is wanted."""
    path = os.fspath(path)
    if not path:
        raise InputError(f"{what}: empty path")
    absp = os.path.abspath(path)
    # the nearest existing ancestor must be a folder we can write into
    parent = absp if kind == "folder" else os.path.dirname(absp)
    probe = parent
    while not os.path.lexists(probe):
        probe = os.path.dirname(probe)
    if os.path.isfile(probe) or (os.path.lexists(probe) and not os.path.isdir(probe)):
        if probe == absp:
            raise InputError(f"{what} '{path}' is a file, not a folder")
        raise InputError(f"{what} '{path}' is under '{probe}', which is a file, not a folder")
    if kind == "file":
        if os.path.isdir(absp):
            raise InputError(f"{what} '{path}' is a folder; give a file name")
        if probe != parent:
            raise InputError(f"{what} '{path}': the folder '{os.path.dirname(path) or '.'}' does not exist")
        if exts is not None and os.path.splitext(path)[1].lower() not in exts:
            raise InputError(f"{what} '{path}': unknown extension {os.path.splitext(path)[1]!r}; "
                             f"use {', '.join(exts)}")
    try:  # a real write: os.access says yes to root on read-only mounts and /proc
        fd, tmp = tempfile.mkstemp(prefix=".npunet-write-test-", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise InputError(f"{what} '{path}': cannot write into the folder '{probe}' ({e.strerror})") from None
    return path


def loads_json(text, where):
    """json.loads that refuses a key given twice in one object (JSON keeps the last silently)."""
    def pairs(items):
        seen = {}
        for k, v in items:
            if k in seen:
                raise InputError(f"{where}: the key {k!r} is given twice; keep one")
            seen[k] = v
        return seen
    try:
        return json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: not valid JSON ({e})") from None


def read_json(path, what="file"):
    """A JSON file, with duplicate keys refused; any problem gives one line naming the file."""
    check_input_file(path, what)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{what} '{path}' cannot be read ({e})") from None
    return loads_json(text, f"{what} '{path}'")


# ---------------------------------------------------------------- one owner per run folder

LOCK_NAME = ".npunet.lock"
_held = {}  # realpath of a folder -> open lock file (this process owns the folder)


class FolderBusy(InputError):
    """The run folder is owned by another running process."""


def lock_folder(folder, what="run folder", log=None):
    """Make this process the owner of ``folder`` (created if missing) until it exits or
    :func:`unlock_folder`: an OS lock (``fcntl.flock``) on ``<folder>/.npunet.lock``, which records the
    owner's pid and start time.  Another live owner -> FolderBusy naming its pid (nothing else, not
    even --force, overrides it).  A lock file left by a dead process is taken over, with a note to ``log``.
    Re-locking a folder this process owns is a no-op."""
    import fcntl
    key = os.path.realpath(folder)
    if key in _held:
        return _held[key]
    created = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_NAME)
    f = open(path, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        owner = f.read().strip()
        f.close()
        raise FolderBusy(f"{what} '{folder}' is in use by another npunet process ({owner or 'pid unknown'}); "
                         f"wait for it to finish or choose another folder (--force does not override a running owner)")
    f.seek(0)
    old = f.read().strip()
    if old and log is not None:
        log(f"note: taking over '{folder}' from a process that is no longer running ({old})")
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}, started {process_start(os.getpid()) or 0}\n")
    f.flush()
    _held[key] = f
    _created[key] = created
    return f


_created = {}


def unlock_folder(folder, cleanup=False):
    """Give up the ownership taken by :func:`lock_folder` (the lock file is emptied, then released).
    cleanup: if the folder holds nothing but the lock file, remove the lock file, and the folder
    too when :func:`lock_folder` created it (a run refused before it wrote anything leaves no trace)."""
    key = os.path.realpath(folder)
    f = _held.pop(key, None)
    created = _created.pop(key, False)
    if f is None:
        return
    f.seek(0)
    f.truncate()
    try:
        if cleanup and os.listdir(folder) == [LOCK_NAME]:
            os.unlink(os.path.join(folder, LOCK_NAME))
            if created:
                os.rmdir(folder)
    except OSError:
        pass
    f.close()


def _unlock_all():
    for k in list(_held):
        unlock_folder(k)


import atexit  # noqa: E402

atexit.register(_unlock_all)
