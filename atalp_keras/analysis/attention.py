"""Stage attention maps of a classifier (Figures 1 and 4 of the paper) and
their upsampling onto the image."""

import numpy as np
import tensorflow as tf

from atalp_keras.analysis.checks import check_batch_size, check_functional, check_images
from atalp_keras.attention import attention_map
from atalp_keras.features import build_feature_model, resolve_stage_layers


def _stage_spatial_sizes(classifier, names):
    sizes = [tuple(classifier.get_layer(n).output.shape[1:3]) for n in names]
    for name, (height, width) in zip(names, sizes):
        if height is None or width is None:  # Models accepting any size.
            raise ValueError(
                f"Stage {name!r} has no fixed spatial size, so its map "
                "cannot be reshaped. Build the classifier with a fixed "
                "input shape."
            )
    return sizes


def attention_maps(classifier, x, stage_layers=None, batch_size=256):
    """Spatial attention maps (p = 2) of each stage, for Figures 1 and 4.

    Args:
        classifier: Functional ``keras.Model`` from ``[0, 1]`` images to logits
            (a ``.keras`` classifier; a SavedModel has no stage outputs).
        x: Images, ``(N, H, W, C)`` in ``[0, 1]``.
        stage_layers: Names of the stage layers; None finds the ResNet stage
            ends ``conv{2..5}_block{N}_out`` (see ``resolve_stage_layers``).
        batch_size: Images per forward pass.

    Returns:
        A list with one ``(N, h, w)`` float32 array per stage: the normalised
        map ``q_hat`` of METHOD.md (unit L2 norm over its ``h * w`` cells)
        reshaped to the stage's spatial size. Use ``upsample_to`` to overlay it
        on the image.
    """
    check_functional(classifier, "attention_maps")
    x = check_images(x)
    batch_size = check_batch_size(batch_size)
    names = resolve_stage_layers(classifier, stage_layers)
    feature_model = build_feature_model(classifier, names)
    spatial = _stage_spatial_sizes(classifier, names)

    @tf.function(input_signature=[
        tf.TensorSpec((None,) + tuple(x.shape[1:]), tf.float32)])
    def maps_of(batch):
        stages = feature_model(batch, training=False)["stages"]
        return [attention_map(stage) for stage in stages]

    chunks = [[] for _ in names]
    for start in range(0, len(x), batch_size):
        for i, flat in enumerate(maps_of(x[start:start + batch_size])):
            chunks[i].append(np.asarray(flat).reshape((-1,) + spatial[i]))
    return [np.concatenate(c, axis=0) if c else np.zeros((0,) + s, np.float32)
            for c, s in zip(chunks, spatial)]


def upsample_to(maps, image_size):
    """Resizes attention maps to the image size and scales each to max 1.

    Bilinear resizing (half-pixel centres, no antialiasing) of non-negative
    maps keeps them non-negative; each map is then divided by its maximum, so
    it reads as "fraction of the strongest activation" (METHOD.md, Table 3).
    An all-zero map stays zero.

    Args:
        maps: ``(N, h, w)`` array, one stage of ``attention_maps``.
        image_size: ``(H, W)`` or one int for square images.

    Returns:
        ``(N, H, W)`` float32 with each map's maximum equal to 1.
    """
    maps = np.asarray(maps, np.float32)
    if maps.ndim != 3:
        raise ValueError(
            f"`maps` must have shape (N, h, w). Received: maps.shape={maps.shape}"
        )
    if isinstance(image_size, (int, np.integer)):
        image_size = (int(image_size), int(image_size))
    image_size = tuple(int(s) for s in image_size)
    if len(image_size) != 2 or min(image_size) < 1:
        raise ValueError(
            f"`image_size` must be (H, W) of positive ints. Received: "
            f"image_size={image_size!r}"
        )
    if maps.shape[1:] == image_size:
        resized = maps.copy()
    else:
        resized = tf.image.resize(maps[..., None], image_size, method="bilinear",
                                  antialias=False).numpy()[..., 0]
    peak = resized.reshape(len(resized), -1).max(axis=1, initial=0.0)
    return (resized / np.maximum(peak, 1e-12)[:, None, None]).astype(np.float32)


def short_stage_name(name):
    """``conv2_block2_out`` -> ``conv2_x`` (the paper's stage names); other
    names unchanged."""
    return name.split("_block")[0] + "_x" if "_block" in name else name
