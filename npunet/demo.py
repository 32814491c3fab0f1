"""Moved to npunet/app/demo.py; this old path stays importable and is that very module (sys.modules alias)."""
import sys

from .app import demo as _module

sys.modules[__name__] = _module
