"""Moved to npunet/app/train.py; this old path stays importable and is that very module (sys.modules alias)."""
import sys

from .app import train as _module

sys.modules[__name__] = _module
