"""Moved to npunet/app/bench.py (PyTorch's twins: npunet/app/torch_twins.py); this old path stays importable
and is that very module (sys.modules alias)."""
import sys

from .app import bench as _module

sys.modules[__name__] = _module
