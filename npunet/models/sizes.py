"""Which input sizes a U-Net-family model can take, and the shape trace along one side.

Valid (unpadded) U-Net of depth D: each level's two 3x3 convs take 4 px, every
pool needs an even size, every up-convolution doubles.  Working back from the
bottleneck's output size b: S = 2^D * b + 2^(D+3) - 4, and the decoder (o -> 2o - 4)
must stay positive, so b >= 4 for D = 4: S = 16k + 124, k >= 4 (188, 204, ..., 572;
output S - 184).  Same-padded models: multiples of 2^D.
"""


def unet_trace(size, depth=4, padding="valid"):
    """Sizes along one side: [(label, size), ...] or raise ValueError naming the failing step."""
    shrink = 4 if padding == "valid" else 0
    trace = [("input", size)]
    s = size
    for level in range(1, depth + 1):
        s -= shrink
        trace.append((f"down{level}", s))
        if s <= 0:
            raise ValueError(f"level {level}: the convolutions leave {s} px")
        if s % 2:
            raise ValueError(f"level {level}: max-pool needs an even size, got {s}")
        s //= 2
        trace.append((f"pool{level}", s))
    s -= shrink
    trace.append((f"down{depth + 1}", s))
    if s <= 0:
        raise ValueError(f"the bottleneck convolutions leave {s} px")
    for level in range(1, depth + 1):
        s = 2 * s
        trace.append((f"up{level}.up", s))
        s -= shrink
        trace.append((f"up{level}", s))
        if s <= 0:
            raise ValueError(f"decoder step {level}: the convolutions leave {s} px")
    return trace


def is_legal(size, depth=4, padding="valid"):
    try:
        unet_trace(size, depth, padding)
        return True
    except ValueError:
        return False


def output_size(size, depth=4, padding="valid"):
    return unet_trace(size, depth, padding)[-1][1]


def valid_input_sizes(depth=4, padding="valid", up_to=1024):
    """All legal input sizes <= up_to (e.g. depth 4 valid: 188, 204, ..., 572, ...)."""
    return [s for s in range(1, up_to + 1) if is_legal(s, depth, padding)]


def nearest_legal(size, depth=4, padding="valid"):
    """(largest legal size below, smallest legal size above) ``size`` (None where there is none)."""
    lo = next((s for s in range(size - 1, 0, -1) if is_legal(s, depth, padding)), None)
    hi = next((s for s in range(size + 1, size + 2 ** (depth + 3) + 400) if is_legal(s, depth, padding)), None)
    return lo, hi


def check_input_size(model_name, shape, depth, padding):
    """Raise a clear error at model entry when (H, W) does not tile."""
    for axis, s in zip(("height", "width"), shape[2:]):
        try:
            unet_trace(s, depth, padding)
        except ValueError as e:
            lo, hi = nearest_legal(s, depth, padding)
            rule = ("S = 16k + 124, k >= 4" if depth == 4 else f"see valid_input_sizes(depth={depth})") \
                if padding == "valid" else f"multiples of {2 ** depth}"
            near = " or ".join(str(v) for v in (lo, hi) if v is not None)
            raise ValueError(f"{model_name}: input {axis} {s} does not tile a depth-{depth} {padding} network "
                             f"({e}); legal sizes: {rule}; nearest: {near}") from None
