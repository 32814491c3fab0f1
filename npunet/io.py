"""Save and load arrays atomically: ``.npz`` (checkpoints, no pickle) and ``.safetensors`` (state_dict
tensors under PyTorch's key names and layouts, readable by ``safetensors.torch.load_file`` and so by
any PyTorch model with the same architecture)."""
import glob
import os
import tempfile

import numpy as np


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
    return load_safetensors(path) if os.fspath(path).endswith(".safetensors") else load_npz(path)


def save_state(path, state):
    """Write a state_dict to ``path``: .safetensors by its name, else .npz."""
    (save_safetensors if os.fspath(path).endswith(".safetensors") else save_npz)(path, state)


def atomic_write(path, write):
    """Call write(file) on a temp file in the same folder, fsync, os.replace onto ``path``.
    A crash mid-write leaves any previous file intact; the temp files a killed save left behind
    (``.<name>.tmp-*``) are removed by the next save.  The file gets the user's normal mode (umask)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path)) or "."
    prefix = f".{os.path.basename(path)}.tmp-"
    for stale in glob.glob(os.path.join(glob.escape(folder), glob.escape(prefix) + "*")):
        try:
            os.unlink(stale)
        except OSError:
            pass
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_npz(path):
    """Read an .npz written by save_npz into a dict; a truncated or foreign file gives a clear error."""
    try:
        with np.load(os.fspath(path), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except Exception as e:  # zipfile.BadZipFile, ValueError, EOFError ...
        raise ValueError(f"cannot read '{path}' as an npunet .npz file ({type(e).__name__}: {e}); "
                         f"it may be truncated or not written by npunet") from None
