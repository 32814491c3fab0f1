"""Moved to npunet.teach.lesson; this name stays so that `from npunet.lesson import Lesson` in the
lessons keeps working."""
import sys

from .teach import lesson as _lesson

sys.modules[__name__] = _lesson
