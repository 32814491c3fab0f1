"""Connected-component labelling and exact Euclidean distance transforms."""
import numpy as np
from numba import njit


@njit(cache=True)
def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving
        i = parent[i]
    return i


@njit(cache=True)
def label(mask, connectivity=4):
    """Two-pass union-find labelling of a 2-D bool mask -> (labels int32 (H, W), count).
    Labels are 1..count in raster order of each component's first pixel; 0 is background."""
    H, W = mask.shape
    lab = np.zeros((H, W), np.int32)
    parent = np.zeros(H * W // 2 + 2, np.int32)
    nxt = 1
    for h in range(H):
        for w in range(W):
            if not mask[h, w]:
                continue
            best = 0
            # already-visited neighbours: up, left (+ up-left, up-right for 8-connectivity)
            for dh, dw in ((-1, 0), (0, -1), (-1, -1), (-1, 1)):
                if connectivity == 4 and dh != 0 and dw != 0:
                    continue
                hh, ww = h + dh, w + dw
                if hh < 0 or ww < 0 or ww >= W:
                    continue
                l = lab[hh, ww]
                if l == 0:
                    continue
                if best == 0:
                    best = l
                else:
                    a, b = _find(parent, np.int64(best)), _find(parent, np.int64(l))  # one type: one compilation
                    if a != b:
                        if a < b:
                            parent[b] = a
                        else:
                            parent[a] = b
            if best == 0:
                if nxt >= parent.shape[0]:
                    grown = np.zeros(parent.shape[0] * 2, np.int32)
                    for i in range(parent.shape[0]):  # a loop: a slice assignment costs seconds to compile
                        grown[i] = parent[i]
                    parent = grown
                parent[nxt] = nxt
                best = nxt
                nxt += 1
            lab[h, w] = best
    # resolve roots and renumber 1..count in raster order
    remap = np.zeros(nxt, np.int32)
    count = 0
    for h in range(H):
        for w in range(W):
            l = lab[h, w]
            if l:
                r = _find(parent, np.int64(l))
                if remap[r] == 0:
                    count += 1
                    remap[r] = count
                lab[h, w] = remap[r]
    return lab, count


def label_ref(mask, connectivity=4):
    """Breadth-first flood fill twin of :func:`label` (same numbering)."""
    H, W = mask.shape
    lab = np.zeros((H, W), np.int32)
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 8:
        steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    count = 0
    for h in range(H):
        for w in range(W):
            if mask[h, w] and not lab[h, w]:
                count += 1
                lab[h, w] = count
                queue = [(h, w)]
                while queue:
                    a, b = queue.pop()
                    for dh, dw in steps:
                        p, q = a + dh, b + dw
                        if 0 <= p < H and 0 <= q < W and mask[p, q] and not lab[p, q]:
                            lab[p, q] = count
                            queue.append((p, q))
    return lab, count


@njit(cache=True)
def _edt_1d(f, out, v, z):
    """Felzenszwalb & Huttenlocher lower envelope: out[q] = min_p (q - p)^2 + f[p]."""
    n = f.shape[0]
    k = 0
    first = -1
    for q in range(n):
        if f[q] < np.inf:
            first = q
            break
    if first < 0:
        for q in range(n):
            out[q] = np.inf
        return
    v[0] = first
    z[0] = -np.inf
    z[1] = np.inf
    for q in range(first + 1, n):
        if f[q] == np.inf:
            continue
        s = ((f[q] + q * q) - (f[v[k]] + v[k] * v[k])) / (2.0 * q - 2.0 * v[k])
        while s <= z[k]:
            k -= 1
            s = ((f[q] + q * q) - (f[v[k]] + v[k] * v[k])) / (2.0 * q - 2.0 * v[k])
        k += 1
        v[k] = q
        z[k] = s
        z[k + 1] = np.inf
    k = 0
    for q in range(n):
        while z[k + 1] < q:
            k += 1
        d = q - v[k]
        out[q] = d * d + f[v[k]]


@njit(cache=True)
def edt_sq(mask):
    """Exact squared Euclidean distance from every pixel to the nearest True pixel of a 2-D mask
    (inf everywhere when the mask is empty).  Separable: columns, then rows."""
    H, W = mask.shape
    n = max(H, W)
    f = np.empty(n)
    out = np.empty(n)
    v = np.empty(n, np.int64)
    z = np.empty(n + 1)
    tmp = np.empty((H, W))
    for w in range(W):
        for h in range(H):
            f[h] = 0.0 if mask[h, w] else np.inf
        _edt_1d(f[:H], out[:H], v, z)
        for h in range(H):
            tmp[h, w] = out[h]
    res = np.empty((H, W))
    for h in range(H):
        for w in range(W):
            f[w] = tmp[h, w]
        _edt_1d(f[:W], out[:W], v, z)
        for w in range(W):
            res[h, w] = out[w]
    return res


def edt_sq_ref(mask):
    """Brute force twin: min over all True pixels of the squared distance."""
    H, W = mask.shape
    pts = np.argwhere(mask)
    if len(pts) == 0:
        return np.full((H, W), np.inf)
    hh, ww = np.mgrid[0:H, 0:W]
    d = (hh[..., None] - pts[:, 0]) ** 2 + (ww[..., None] - pts[:, 1]) ** 2
    return d.min(axis=-1).astype(np.float64)


@njit(cache=True)
def two_nearest(labels, n_labels):
    """d1, d2: distances from every pixel to the nearest and second-nearest instance (labels 1..n).
    One exact EDT per instance."""
    H, W = labels.shape
    d1 = np.full((H, W), np.inf)
    d2 = np.full((H, W), np.inf)
    m = np.empty((H, W), np.bool_)
    for k in range(1, n_labels + 1):
        for h in range(H):
            for w in range(W):
                m[h, w] = labels[h, w] == k
        d = edt_sq(m)
        for h in range(H):
            for w in range(W):
                dk = np.sqrt(d[h, w])
                if dk < d1[h, w]:
                    d2[h, w] = d1[h, w]
                    d1[h, w] = dk
                elif dk < d2[h, w]:
                    d2[h, w] = dk
    return d1, d2


def two_nearest_ref(labels, n_labels):
    """Twin of :func:`two_nearest`: the two smallest of the per-instance brute-force distances."""
    H, W = labels.shape
    d = np.stack([np.sqrt(edt_sq_ref(labels == k)) for k in range(1, n_labels + 1)] +
                 [np.full((H, W), np.inf)] * 2)                          # (n + 2, H, W)
    d.sort(axis=0)
    return d[0], d[1]
