"""Figures with matplotlib.  npunet never chooses matplotlib's backend: without a screen matplotlib
falls back to Agg by itself, and notebooks keep their inline figures."""
from .plots import plot_history, plot_predictions, overlay, save_figure, finish  # noqa: F401
from .architecture import draw_architecture, block_graph
from .unet_figure import draw_unet_figure
from .explain import explain

__all__ = ["plot_history", "plot_predictions", "overlay", "save_figure", "draw_architecture", "block_graph",
           "draw_unet_figure", "explain"]
