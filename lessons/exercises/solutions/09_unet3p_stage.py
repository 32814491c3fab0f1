"""Solution to exercise 9 (../09_unet3p_stage.py): one UNet 3+ decoder stage with its five full-scale inputs."""
import numpy as np

from npunet import nn


def stage_forward(enc, dec, convs, fuse):
    i = len(enc)                                                        # the stage: X_De^i
    resamplers, parts = [], []
    for k, (x, conv) in enumerate(zip(list(enc) + list(dec), convs), start=1):
        if k < i:
            r = nn.MaxPool2d(2 ** (i - k))                              # shallower encoder map: pool down
        elif k > i:
            r = nn.Upsample(scale_factor=2 ** (k - i), mode="bilinear", align_corners=False)   # deeper: up
        else:
            r = nn.Identity()
        resamplers.append(r)
        parts.append(conv(r(x)))                                        # (N, cat_channels, H_i, W_i)
    return fuse(np.concatenate(parts, axis=1)), (resamplers, convs, fuse, [p.shape[1] for p in parts], i)


def stage_backward(dout, cache):
    resamplers, convs, fuse, sizes, i = cache
    pieces = np.split(fuse.backward(dout), np.cumsum(sizes)[:-1], axis=1)
    d = [r.backward(conv.backward(g)) for r, conv, g in zip(resamplers, convs, pieces)]
    return d[:i], d[i:]
