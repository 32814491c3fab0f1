"""The parts of the U-Net Explainer page (npunet.viz.explain, which assembles them): encode (arrays as
base64 PNGs and float32), trace (the recorded forward and backward, the graph of blocks), ops (one
operation's window of numbers), page (the HTML, CSS and JavaScript)."""
