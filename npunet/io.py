"""Save and load arrays as .npz (no pickle), atomically."""
import os
import tempfile

import numpy as np


def save_npz(path, arrays):
    """Write a dict of arrays to ``path`` atomically: temp file in the same folder,
    fsync, os.replace.  A crash mid-write leaves any previous file intact."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path)) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
            f.flush()
            os.fsync(f.fileno())
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
