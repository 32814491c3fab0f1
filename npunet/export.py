"""Moved to npunet/app/export.py; this old path stays importable and is that very module (sys.modules alias)."""
import sys

from .app import export as _module

sys.modules[__name__] = _module
