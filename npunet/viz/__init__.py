"""Figures with matplotlib (Agg backend: works without a screen)."""
from .plots import plot_history, plot_predictions, overlay, save_figure

__all__ = ["plot_history", "plot_predictions", "overlay", "save_figure"]
