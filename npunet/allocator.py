"""Freed memory is kept for the next training step (glibc's malloc, Linux).

A training step allocates and frees the same large arrays every step: activations, their caches,
gradients.  By default glibc gives every array over 32 MiB its own ``mmap`` and returns the heap's
free top to the system (``trim``) once more than 64 MiB lie free there; both hand the memory back
at the end of a step, so the next step touches fresh pages, and the kernel zeroes each one in a page
fault (costly on a virtual machine).  Measured on a 2-core VM: a ResNet-34 U-Net step at 4x3x256^2
took ~3,600 page faults and ~0.2 s of system time per step; with the memory kept, ~0 and ~0.03 s.

``keep_freed_memory()`` (run once at ``import npunet``) sets glibc's ``M_MMAP_MAX`` to 0 (large arrays
come from the heap too, so a freed one is reused) and ``M_TRIM_THRESHOLD`` to 2 GiB (the free top
stays).  Measured whole training steps against glibc's defaults (alternating processes, same hour):
ResNet-34 U-Net batch 4 @ 256^2 0.75x the time, the 572 U-Net 0.86x; the classroom U-Net and
UNet 3+ (arrays of a few MiB, which glibc already reuses) unchanged within the noise (0.98-1.04x).
The price: the process keeps its high-water memory after large arrays are freed (its RSS does not
fall back), as PyTorch run with jemalloc or tcmalloc does; the 572 U-Net's peak grew ~7 %.

``release()`` hands the free memory back now (glibc's ``malloc_trim``): for a notebook that is done
training, and for measurements of a peak (npunet bench's ``peak_above``).

Left alone: not Linux/glibc; ``NPUNET_MALLOC=system`` (``keep``, the default, or ``system``; another
value gets one line on stderr and the default); or any ``MALLOC_*`` variable (or glibc.malloc
tunable in ``GLIBC_TUNABLES``) in the environment (the user's, or npunet bench's memory workers', which
want freed memory returned).
"""
import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4        # glibc's mallopt parameter numbers (malloc.h)
TRIM_THRESHOLD = 2 ** 31 - 1                 # mallopt takes an int: 2 GiB, in practice never

state = "not set"  # "kept" after keep_freed_memory() took effect, else why not


def _glibc():
    """The C library when it is glibc (Linux), else None."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return None
        return ctypes.CDLL("libc.so.6")
    except (AttributeError, ValueError, OSError):  # no confstr (Windows), no such name (macOS), no libc.so.6
        return None


def _user_tuned(env):
    """True when the environment tunes glibc's malloc itself: any MALLOC_* variable, or glibc.malloc.*
    in GLIBC_TUNABLES."""
    return any(k.startswith("MALLOC_") for k in env) or "glibc.malloc." in env.get("GLIBC_TUNABLES", "")


def keep_freed_memory():
    """Ask glibc to keep freed memory for reuse (see the module docstring); returns ``state``."""
    global state
    choice = os.environ.get("NPUNET_MALLOC", "keep")
    if choice not in ("keep", "system"):
        print(f"npunet: NPUNET_MALLOC must be 'keep' or 'system', got {choice!r}; keeping freed memory "
              f"(the default)", file=sys.stderr)
    if choice == "system":
        state = "left to the system allocator (NPUNET_MALLOC=system)"
    elif _user_tuned(os.environ):
        state = "left alone: a glibc MALLOC_* setting is in the environment"
    elif (libc := _glibc()) is None:
        state = "left alone: not glibc"
    else:
        try:
            ok = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        except AttributeError:
            ok = False
        state = "kept" if ok else "left alone: mallopt unavailable"
    return state


def release():
    """Return the heap's free memory to the system now (glibc ``malloc_trim(0)``: the free top and whole
    free pages inside the heap).  True when glibc released something; False where it did not or cannot."""
    libc = _glibc()
    try:
        return libc is not None and bool(libc.malloc_trim(0))
    except AttributeError:
        return False
