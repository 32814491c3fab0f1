"""Figures with matplotlib (Agg backend: works without a screen)."""
from .plots import plot_history, plot_predictions, overlay, save_figure
from .architecture import draw_architecture, block_graph

__all__ = ["plot_history", "plot_predictions", "overlay", "save_figure", "draw_architecture", "block_graph"]
