"""Moved to npunet/app/runs.py; this old path stays importable and is that very module (sys.modules alias)."""
import sys

from .app import runs as _module

sys.modules[__name__] = _module
