"""Your own images: read image and mask files, pair them, and turn any mask encoding into class
indices 0..K-1 with a mapping that is printed, stored in the checkpoint and applied back by predict.

Data sources (``npunet train --data PATH``):
  * a folder with ``images/`` + ``masks/`` (or ``image/`` + ``label/``) whose files pair by stem:
    ``a.png`` <-> ``a.png`` or ``a_mask.png`` (also ``_masks``, ``_label``, ``_labels``);
  * two multi-page TIFF stacks ``images.tif:masks.tif`` (ISBI 2012's train-volume / train-labels),
    or a folder holding exactly one such pair (the mask stack's name contains "label" or "mask").
Images: grey, grey+alpha, RGB, RGBA, palette, 8/16-bit, float .npy (H, W), (C, H, W) or channel-last
(H, W, C); read as raw values (C, H, W) float32.  Masks: values (binary or K grey levels / palette
indices, mapped to 0..K-1 in sorted order) or RGB colours (a colour -> class table from the data).
Every bad file gives one :class:`DataError` line naming the file.
"""
import os

import numpy as np

from ..io import ConfigError

IMAGE_EXTS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".npy")
FOLDER_NAMES = (("images", "masks"), ("image", "label"), ("images", "labels"), ("image", "mask"))
MASK_SUFFIXES = ("_mask", "_masks", "_label", "_labels")
_IGNORED = ("thumbs.db", "desktop.ini")


class DataError(ConfigError):
    """A data file or folder that cannot be used; the message names the file."""


# ------------------------------------------------------------------ reading files
def _open_pages(path):
    """PIL pages of an image file (several for a multi-page TIFF), or [array] for .npy."""
    from ..io import InputError, check_input_file, load_npy
    try:
        check_input_file(path, "image")          # missing, a folder, a symlink loop, unreadable, empty
        a = load_npy(path, "image") if path.lower().endswith(".npy") else None   # an .npz renamed .npy, pickles
    except InputError as e:
        raise DataError(str(e)) from None
    if a is not None:
        if a.dtype.kind not in "buif":
            raise DataError(f"'{path}': holds {a.dtype} values; expected a numeric image")
        return [a]
    from PIL import Image
    try:
        img = Image.open(path)
        n = getattr(img, "n_frames", 1)
    except Exception as e:  # PIL raises many types for non-images (UnidentifiedImageError, SyntaxError, ...)
        raise DataError(f"'{path}': cannot be read as an image ({type(e).__name__}: {e})") from None
    pages = []
    for i in range(n):
        try:
            img.seek(i)
            img.load()
            pages.append(img.copy())
        except Exception as e:
            where = f"page {i + 1} of {n}" if n > 1 else "the image data"
            raise DataError(f"'{path}': {where} cannot be read (corrupt or truncated file? {type(e).__name__}: {e})") \
                from None
    return pages


def image_to_chw(page, path, notes=None):
    """One image page (PIL image or array) as raw values (C, H, W) float32.  ``notes`` (a set)
    collects what was done, e.g. the alpha channel dropped, said once per run."""
    notes = set() if notes is None else notes
    if isinstance(page, np.ndarray):
        a = page
        if a.ndim == 4 and a.shape[0] == 1:
            a = a[0]
            notes.add("dropped the batch axis of (1, C, H, W) .npy images")
        if a.ndim == 2:
            a = a[None]
        elif a.ndim == 3 and a.shape[0] > 4 and a.shape[-1] <= 4:
            a = a.transpose(2, 0, 1)
            notes.add(f"channel-last (H, W, {a.shape[0]}) .npy images read as ({a.shape[0]}, H, W)")
        elif not (a.ndim == 3 and a.shape[0] <= 4):
            raise DataError(f"'{path}': array of shape {a.shape}; expected an image (H, W), (C, H, W) or "
                            f"channel-last (H, W, C) with C <= 4")
    else:
        mode = page.mode
        if mode in ("LA", "La", "PA", "RGBA", "RGBa") or (mode == "P" and "transparency" in page.info):
            notes.add("alpha channel dropped (images are read without transparency)")
        if mode in ("LA", "La"):
            page = page.convert("L")
        elif mode == "1":
            page = page.convert("L")
        elif mode not in ("L", "I", "F", "RGB") and not mode.startswith("I;16"):
            page = page.convert("RGB")  # palette, RGBA, CMYK, YCbCr, ...
        a = np.asarray(page)
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    if a.dtype.kind not in "buif":
        raise DataError(f"'{path}': holds {a.dtype} values; expected a numeric image")
    if not np.isfinite(a).all():
        raise DataError(f"'{path}': contains NaN/Inf values")
    # float32's limit as a Python float: compared with the float32 scalar, 1e308 would overflow in the cast
    if a.dtype.kind == "f" and a.size and float(np.abs(a).max()) > float(np.finfo(np.float32).max):
        raise DataError(f"'{path}': values up to {float(np.abs(a).max()):.3g} do not fit float32 (|x| <= 3.4e38), "
                        f"the precision npunet computes in; rescale the image before saving it")
    a = np.asarray(a, np.float32)
    if min(a.shape[1:]) < 2:
        raise DataError(f"'{path}': image of {a.shape[1]}x{a.shape[2]} pixels; an image needs at least 2x2")
    return np.ascontiguousarray(a)


def read_image(path, notes=None):
    """All pages of an image file as a list of (C, H, W) float32 raw-value arrays."""
    return [image_to_chw(p, path, notes) for p in _open_pages(path)]


def _mask_page(page, path):
    """(kind, array, palette): kind "values" with (H, W) int64, or "colors" with (H, W) int64 codes
    r*65536 + g*256 + b; palette (list of 768 ints) for palette PNGs."""
    palette = None
    if isinstance(page, np.ndarray):
        a = page
        if a.ndim == 3 and a.shape[-1] in (3, 4) and a.shape[0] > 4:
            a = a[..., :3]
        elif a.ndim != 2:
            raise DataError(f"'{path}': mask array of shape {a.shape}; expected (H, W) class values or "
                            f"(H, W, 3) colours")
    else:
        mode = page.mode
        if mode == "P":
            palette = page.getpalette()
            a = np.asarray(page)
        elif mode in ("RGB", "RGBA", "RGBX"):
            a = np.asarray(page)[..., :3]
        elif mode in ("L", "1", "I", "F") or mode.startswith("I;16"):
            a = np.asarray(page)
        elif mode in ("LA", "La"):
            a = np.asarray(page.convert("L"))
        else:
            a = np.asarray(page.convert("RGB"))
    if a.dtype.kind == "f":
        if not np.isfinite(a).all() or (a != np.round(a)).any():
            raise DataError(f"'{path}': the mask holds non-integer values; a mask holds class values "
                            f"(0/1, 0/255, 0..K-1) or colours")
    elif a.dtype.kind not in "bui":
        raise DataError(f"'{path}': the mask holds {a.dtype} values; expected class values or colours")
    if a.ndim == 3:
        a = a.astype(np.int64)
        if (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all():
            return "values", a[..., 0], None  # a grey picture saved as RGB
        return "colors", (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2], None
    return "values", a.astype(np.int64), palette


def read_mask(path):
    """All pages of a mask file as a list of (kind, (H, W) int64, palette); see :func:`_mask_page`."""
    out = []
    for p in _open_pages(path):
        kind, a, pal = _mask_page(p, path)
        n = len(np.unique(a))
        if n > 255:
            raise DataError(f"'{path}': the mask holds {n} different values, more than the 255 classes a mask can "
                            f"have (instance labels? save the mask as labels > 0)")
        out.append((kind, a, pal))
    return out


# ------------------------------------------------------------------ the class mapping
def class_mapping(raw_masks, paths):
    """The value/colour -> class table of a set of masks: sorted distinct values (or colours) ->
    0..K-1.  raw_masks: list of (kind, array, palette).  Returns the mapping record
    {"kind": "values", "values": [...]} or {"kind": "colors", "colors": [[r, g, b], ...]}
    (+ "palette" when the masks are palette PNGs)."""
    colors = any(k == "colors" for k, _, _ in raw_masks)
    codes = set()
    for kind, a, _ in raw_masks:
        if colors and kind == "values":
            a = (a << 16) | (a << 8) | a
        codes.update(np.unique(a).tolist())
    codes = sorted(codes)
    if len(codes) < 2:
        raise DataError(f"'{os.path.dirname(paths[0]) or '.'}': every mask holds the single "
                        f"{'colour' if colors else 'value'} {codes[0]}; nothing to segment")
    if len(codes) > 255:
        raise DataError(f"'{os.path.dirname(paths[0]) or '.'}': the masks together hold {len(codes)} different "
                        f"values, more than 255 classes (instance labels? save the masks as labels > 0)")
    if colors:
        return {"kind": "colors", "colors": [[c >> 16, (c >> 8) & 255, c & 255] for c in codes]}
    m = {"kind": "values", "values": [int(c) for c in codes]}
    pal = next((p for k, _, p in raw_masks if p is not None), None)
    if pal is not None:
        m["palette"] = [int(v) for v in pal]
    return m


def _codes(mapping):
    if mapping["kind"] == "colors":
        return np.array([(r << 16) | (g << 8) | b for r, g, b in mapping["colors"]], np.int64)
    return np.array(mapping["values"], np.int64)


def to_classes(raw, mapping):
    """(kind, array, palette) of one mask -> class indices (H, W) uint8 under ``mapping``."""
    kind, a, _ = raw
    if mapping["kind"] == "colors" and kind == "values":
        a = (a << 16) | (a << 8) | a
    codes = _codes(mapping)
    idx = np.clip(np.searchsorted(codes, a), 0, len(codes) - 1)
    return idx.astype(np.uint8)


def from_classes(classes, mapping):
    """Class indices (H, W) -> a mask like the training masks, as a PIL image: binary 0/255, grey
    values, the palette PNG, or RGB colours."""
    from PIL import Image
    classes = np.asarray(classes)
    if mapping is None or (mapping["kind"] == "values" and len(mapping["values"]) == 2 and "palette" not in mapping):
        return Image.fromarray((classes > 0).astype(np.uint8) * 255)
    if mapping["kind"] == "colors":
        rgb = np.array(mapping["colors"], np.uint8)[classes]
        return Image.fromarray(rgb, "RGB")
    vals = np.array(mapping["values"], np.int64)[classes]
    if "palette" in mapping:
        img = Image.fromarray(vals.astype(np.uint8), "P")
        img.putpalette(mapping["palette"])
        return img
    return Image.fromarray(vals.astype(np.uint8 if vals.max(initial=0) < 256 else np.uint16))


def describe_mapping(mapping):
    """One line: what the mask values mean."""
    if mapping["kind"] == "colors":
        pairs = ", ".join(f"{tuple(c)} -> {i}" for i, c in enumerate(mapping["colors"][:12]))
        more = " ..." if len(mapping["colors"]) > 12 else ""
        return f"masks: RGB colours, {len(mapping['colors'])} classes: {pairs}{more}"
    v = mapping["values"]
    what = "palette indices" if "palette" in mapping else "values"
    if len(v) == 2:
        return (f"masks: binary, {what} {{{v[0]}, {v[1]}}}: {v[1]} = foreground (class 1), "
                f"{v[0]} = background (class 0)")
    pairs = ", ".join(f"{x} -> {i}" for i, x in enumerate(v[:16]))
    hint = "; many classes: if these are instance labels, save masks as labels > 0" if len(v) > 20 else ""
    return f"masks: {len(v)} classes from the {what} in sorted order: {pairs}{' ...' if len(v) > 16 else ''}{hint}"


# ------------------------------------------------------------------ finding the files
def _listing(folder):
    """Image files of a folder (sorted); a non-image file is an error naming it."""
    out = []
    for f in sorted(os.listdir(folder)):
        p = os.path.join(folder, f)
        if f.startswith(".") or f.lower() in _IGNORED or os.path.isdir(p):
            continue
        if not f.lower().endswith(IMAGE_EXTS):
            raise DataError(f"'{p}': not an image file (npunet reads {' '.join(IMAGE_EXTS)}); move it out of the folder")
        out.append(p)
    return out


def _stem(p):
    return os.path.splitext(os.path.basename(p))[0]


def _by_stem(files, what):
    d = {}
    for p in files:
        s = _stem(p)
        if s in d:
            raise DataError(f"'{p}' and '{d[s]}': two {what} with the stem '{s}'; keep one")
        d[s] = p
    return d


def find_pairs(folder):
    """[(image path, mask path), ...] of a folder with images/ + masks/ (or image/ + label/)."""
    for a, b in FOLDER_NAMES:
        di, dm = os.path.join(folder, a), os.path.join(folder, b)
        if os.path.isdir(di) and os.path.isdir(dm):
            break
    else:
        raise DataError(f"'{folder}': expected sub-folders images/ and masks/ (or image/ and label/), or exactly "
                        f"one pair of TIFF stacks (volume.tif + labels.tif); found "
                        f"{sorted(os.listdir(folder))[:8] or 'an empty folder'}")
    imgs, masks = _by_stem(_listing(di), "images"), _by_stem(_listing(dm), "masks")
    if not imgs:
        raise DataError(f"'{di}': no image files (npunet reads {' '.join(IMAGE_EXTS)})")
    pairs, used = [], set()
    for s, p in imgs.items():
        m = masks.get(s) or next((masks[s + suf] for suf in MASK_SUFFIXES if s + suf in masks), None)
        if m is not None:
            pairs.append((p, m))
            used.add(m)
    lone_i = [s for s, p in imgs.items() if p not in {q for q, _ in pairs}]
    lone_m = [s for s, p in masks.items() if p not in used]
    if lone_i:
        raise DataError(f"'{di}': {len(lone_i)} image(s) without a mask in '{dm}': {', '.join(lone_i[:5])}"
                        f"{' ...' if len(lone_i) > 5 else ''} (a mask is named like its image, or <stem>_mask)")
    if lone_m:
        raise DataError(f"'{dm}': {len(lone_m)} mask(s) without an image in '{di}': {', '.join(lone_m[:5])}"
                        f"{' ...' if len(lone_m) > 5 else ''}")
    return pairs


def _stack_pair(folder):
    """The (volume, labels) TIFF pair of a folder holding exactly one, or None."""
    tifs = [f for f in sorted(os.listdir(folder)) if f.lower().endswith((".tif", ".tiff")) and not f.startswith(".")]
    if len(tifs) != 2 or any(os.path.isdir(os.path.join(folder, n)) for n, _ in FOLDER_NAMES):
        return None
    lab = [f for f in tifs if "label" in f.lower() or "mask" in f.lower()]
    if len(lab) != 1:
        return None
    img = [f for f in tifs if f != lab[0]][0]
    return os.path.join(folder, img), os.path.join(folder, lab[0])


def is_file_source(data):
    """Whether a config 'data' value names files this module reads (not synthetic/nuclei/.npz)."""
    if data in ("synthetic", "nuclei") or data.lower().endswith(".npz"):
        return False
    return True


def check_source(data):
    """'' if ``data`` names something that exists, else why not (for the config check)."""
    if os.path.isdir(data):
        return ""
    if ":" in data and not os.path.exists(data):
        a, b = data.rsplit(":", 1)
        missing = [p for p in (a, b) if not os.path.isfile(p)]
        return f"no such file {missing[0]!r}" if missing else ""
    return "" if os.path.isfile(data) else "no such file or folder"


def load_folder(data, log=print):
    """Read a folder / TIFF-stack data source.  Returns dict(images=[(C, H, W) float32 raw values],
    masks=[(H, W) uint8 classes], names=[str], mapping, in_channels, num_classes).  Prints (``log``)
    what was found and decided, once."""
    if os.path.isdir(data):
        pair = _stack_pair(data)
        pairs = [pair] if pair else find_pairs(data)
        source = f"'{data}'" + (f" (TIFF stacks {os.path.basename(pair[0])} + {os.path.basename(pair[1])})"
                                if pair else "")
    elif ":" in data and not os.path.exists(data):
        pairs = [tuple(data.rsplit(":", 1))]
        source = f"TIFF stacks '{pairs[0][0]}' + '{pairs[0][1]}'"
    else:
        raise DataError(f"'{data}': expected a folder with images/ and masks/, a pair of TIFF stacks "
                        f"'images.tif:masks.tif', an .npz, 'synthetic' or 'nuclei'")
    notes = set()
    images, raw, names, mask_paths = [], [], [], []
    for ip, mp in pairs:
        ims, ms = read_image(ip, notes), read_mask(mp)
        if len(ims) != len(ms):
            raise DataError(f"'{mp}': {len(ms)} page(s) but its image '{ip}' has {len(ims)}")
        for k, (im, m) in enumerate(zip(ims, ms)):
            where = f"'{mp}'" + (f" page {k + 1}" if len(ms) > 1 else "")
            if m[1].shape != im.shape[1:]:
                raise DataError(f"{where}: mask is {m[1].shape[0]}x{m[1].shape[1]} but its image '{ip}' is "
                                f"{im.shape[1]}x{im.shape[2]}")
            images.append(im)
            raw.append(m)
            names.append(_stem(ip) + (f"#{k + 1}" if len(ms) > 1 else ""))
            mask_paths.append(mp)
    chans = {im.shape[0] for im in images}
    if len(chans) > 1:
        c0 = images[0].shape[0]
        j = next(i for i, im in enumerate(images) if im.shape[0] != c0)
        raise DataError(f"'{pairs[min(j, len(pairs) - 1)][0]}': {images[j].shape[0]} channel(s) but "
                        f"'{pairs[0][0]}' has {c0}; give all images the same channels (all grey or all RGB)")
    mapping = class_mapping(raw, mask_paths)
    masks = [to_classes(r, mapping) for r in raw]
    sizes = {im.shape[1:] for im in images}
    size_txt = (f"{images[0].shape[1]}x{images[0].shape[2]}" if len(sizes) == 1 else
                f"sizes {min(s[0] for s in sizes)}..{max(s[0] for s in sizes)} x "
                f"{min(s[1] for s in sizes)}..{max(s[1] for s in sizes)}")
    if log:
        log(f"data: {len(images)} image/mask pairs from {source}, {images[0].shape[0]} channel(s), {size_txt}")
        for n in sorted(notes):
            log(f"data: {n}")
        log(describe_mapping(mapping))
    ncls = len(mapping["colors"] if mapping["kind"] == "colors" else mapping["values"])
    return dict(images=images, masks=masks, names=names, mapping=mapping, in_channels=images[0].shape[0],
                num_classes=ncls)
