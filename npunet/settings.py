"""npunet's run-time settings, all in one object: ``npunet.settings.settings``.

    settings.backend         "fast" or "reference": whose op pairs the layers call    (npunet.set_backend, npunet.backend)
    settings.check_finite    the NaN/Inf scan: True, "every" or False                (npunet.nn.set_checks)
    settings.grad            False inside no_grad(): forwards keep no caches         (npunet.no_grad, inference_mode)
    settings.meta, .trace    shape-only passes and the list of leaf calls they record (npunet.nn.module.shape_only)
    settings.depth           how many module calls are running (0: the next one is the outermost)
    settings.fast            the fast backend's tuning knobs, a FastOptions          (npunet.fast_options)
                             (defined, documented and put here by npunet/backends/fast/options.py)

Read it freely; change it through the functions named on the right, which restore what they changed.
Every field but ``fast`` belongs to the thread (a new thread starts from the defaults below), so that
a selection persists across notebook cells yet two threads can run different backends.  ``fast`` is one
object for the whole process: set it around a block, not from threads that run models at the same time.

This module imports nothing from npunet: nn and backends read it, so it sits below both in the import graph.
"""
import threading


class Settings(threading.local):
    """The fields and their defaults (see the module docstring).  Class attributes: each thread starts
    from them; ``fast`` is shared by every thread (one FastOptions object)."""

    backend = "fast"
    check_finite = True
    grad = True
    meta = False
    trace = None
    depth = 0
    fast = None  # backends/fast/options.py sets Settings.fast = its FastOptions when it loads (npunet's import)


settings = Settings()
