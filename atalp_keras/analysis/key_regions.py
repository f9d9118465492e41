"""Mean attention inside human-annotated key regions (Table 3 of the paper):
the measure, its mask checks, reading image/mask folders and the table."""

import os

import numpy as np
import tensorflow as tf

from atalp_keras.analysis.attention import attention_maps, short_stage_name, upsample_to
from atalp_keras.analysis.checks import check_functional, check_images
from atalp_keras.errors import UsageError
from atalp_keras.features import resolve_stage_layers

IMAGE_EXTENSIONS = (".png",)


def _check_mask_shapes(images, masks):
    if images.ndim != 4:
        raise UsageError(
            f"Images must have shape (N, H, W, C). Received: images.shape={images.shape}"
        )
    if masks.ndim != 3:
        raise UsageError(
            "Masks must have shape (N, H, W) or (N, H, W, 1), one binary mask per "
            f"image. Received: masks.shape={masks.shape}"
        )
    if masks.shape[0] != images.shape[0]:
        raise UsageError(
            f"Need one mask per image. Received: {images.shape[0]} images and "
            f"{masks.shape[0]} masks"
        )
    if masks.shape[1:] != images.shape[1:3]:
        raise UsageError(
            "Masks must have the images' height and width. Received: images of "
            f"{images.shape[1]}x{images.shape[2]}, masks of {masks.shape[1]}x{masks.shape[2]}"
        )


def check_masks(images, masks):
    """Validates key-region masks against their images.

    Args:
        images: ``(N, H, W, C)`` images.
        masks: ``(N, H, W)`` or ``(N, H, W, 1)`` binary masks (bool, or numbers
            that are all 0 or 1), one per image, each with at least one 1.

    Returns:
        ``(N, H, W)`` float32 masks of 0s and 1s.

    Raises:
        UsageError: naming the received shapes or values when the masks do not
            match the images or are not binary.
    """
    images = np.asarray(images)
    masks = np.asarray(masks)
    if masks.ndim == 4 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    _check_mask_shapes(images, masks)
    if masks.dtype != bool:
        values = np.unique(masks)
        if not np.all(np.isin(values, (0, 1))):
            shown = ", ".join(f"{v:g}" for v in values[:8])
            more = f" ... ({len(values)} distinct)" if len(values) > 8 else ""
            raise UsageError(
                "Masks must be binary (0 = background, 1 = key region). Received "
                f"values: {shown}{more}"
            )
    masks = masks.astype(np.float32)
    empty = np.flatnonzero(masks.reshape(len(masks), -1).sum(axis=1) == 0)
    if empty.size:
        raise UsageError(
            "Every mask needs at least one key-region pixel (a 1). Received empty "
            f"masks at indices: {empty[:10].tolist()}"
        )
    return masks


def key_region_activation(classifier, images, masks, stage_layers=None,
                          batch_size=256):
    """Mean attention inside the key regions, per stage (Table 3 of the paper).

    For each image and stage the attention map (``attention_maps``) is
    upsampled to the image size and scaled to max 1 (``upsample_to``); its
    mean over the mask's pixels is then averaged over the images.

    Args:
        classifier: Functional ``keras.Model`` (a ``.keras`` classifier).
        images: ``(N, H, W, C)`` images in ``[0, 1]``.
        masks: ``(N, H, W)`` or ``(N, H, W, 1)`` binary masks (see
            ``check_masks``); 1 marks a discriminative part.
        stage_layers: Stage layer names; None finds ResNet stage ends.
        batch_size: Images per forward pass.

    Returns:
        A dict ``stage layer name -> mean activation in [0, 1]``, in stage order.
    """
    check_functional(classifier, "key_region_activation")
    masks = check_masks(images, masks)
    images = check_images(images, "images")
    names = resolve_stage_layers(classifier, stage_layers)
    maps = attention_maps(classifier, images, names, batch_size=batch_size)
    result = {}
    area = masks.reshape(len(masks), -1).sum(axis=1)
    for name, stage_maps in zip(names, maps):
        upsampled = upsample_to(stage_maps, images.shape[1:3])
        inside = (upsampled * masks).reshape(len(masks), -1).sum(axis=1) / area
        result[name] = float(np.mean(inside))
    return result


# ------------------------------------------------- image and mask folders


def _read_png(path, what):
    try:
        data = tf.io.read_file(path)
        return tf.io.decode_png(data, channels=0, dtype=tf.uint8).numpy()
    except tf.errors.OpError as error:
        raise UsageError(f"Cannot read {what} '{path}' as PNG: "
                         f"{error.message.splitlines()[0]}") from None


def _image_names(image_dir, mask_dir):
    for folder, flag in ((image_dir, "images"), (mask_dir, "masks")):
        if not os.path.isdir(folder):
            raise UsageError(f"--{flag} must be a folder of PNG files. Received: {folder}")
    names = sorted(n for n in os.listdir(image_dir) if n.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
        raise UsageError(f"--images folder has no PNG files. Received: images={image_dir}")
    missing = [n for n in names if not os.path.isfile(os.path.join(mask_dir, n))]
    if missing:
        raise UsageError(
            f"No mask for {len(missing)} image(s) in --masks={mask_dir} (masks must have the "
            f"images' file names). Missing: {', '.join(missing[:5])}"
        )
    return names


def _binary_mask(mask, name):
    """A decoded PNG mask -> ``(H, W)`` of 0/1 (255 read as 1)."""
    if mask.shape[-1] in (2, 4):
        mask = mask[..., :-1]  # drop alpha
    if not np.all(mask == mask[..., :1]):
        raise UsageError(f"Mask {name}: channels differ; a mask must be grayscale.")
    mask = mask[..., 0]
    if set(np.unique(mask).tolist()) <= {0, 255}:
        mask = (mask == 255).astype(np.uint8)
    return mask


def read_key_region_folders(image_dir, mask_dir):
    """Same-named PNG images and binary masks.

    Args:
        image_dir: Folder of PNG images in ``[0, 255]``.
        mask_dir: Folder of PNG masks with the images' file names; each
            grayscale and binary (0 background; 1 or 255 key region).

    Returns:
        ``(names, images, masks)``: sorted file names, float32 ``(H, W, C)``
        images in ``[0, 1]`` (alpha dropped) and ``(H, W)`` 0/1 masks.
    """
    names = _image_names(image_dir, mask_dir)
    images, masks = [], []
    for name in names:
        image = _read_png(os.path.join(image_dir, name), "image")
        mask = _binary_mask(_read_png(os.path.join(mask_dir, name), "mask"), name)
        try:
            check_masks(image[None], mask[None])
        except UsageError as error:
            raise UsageError(f"Mask {name}: {error}") from None
        if image.shape[-1] in (2, 4):
            image = image[..., :-1]
        images.append(image.astype(np.float32) / 255.0)
        masks.append(mask)
    return names, images, masks


def fit_to_model(images, masks, shape):
    """Resizes images (bilinear) and masks (nearest) to ``shape = (H, W, C)``;
    grayscale images are repeated to 3 channels when the model wants them."""
    height, width, channels = shape
    fitted_images, fitted_masks = [], []
    for image, mask in zip(images, masks):
        if image.shape[:2] != (height, width):
            image = tf.image.resize(image, (height, width), method="bilinear",
                                    antialias=True).numpy().clip(0.0, 1.0)
            mask = tf.image.resize(mask[..., None], (height, width),
                                   method="nearest").numpy()[..., 0]
        if image.shape[-1] != channels:
            if image.shape[-1] == 1 and channels == 3:
                image = np.repeat(image, 3, axis=-1)
            else:
                raise UsageError(
                    f"Images have {image.shape[-1]} channels but the model expects "
                    f"{channels}. Received: image shape {image.shape}"
                )
        fitted_images.append(image)
        fitted_masks.append(mask)
    return np.stack(fitted_images).astype(np.float32), np.stack(fitted_masks)


# ------------------------------------------------------------------ table


def key_region_table(rows, num_images, note=""):
    """The Markdown table of Table 3.

    Args:
        rows: ``(model name, "clean" | "adversarial", {stage: activation})``.
        num_images: Images the activations are averaged over.
        note: Extra text for the caption (e.g. how adversarials were made).

    Returns:
        The table as text, ending in a newline.
    """
    columns = []
    for _, _, stages in rows:
        for stage in stages:
            if short_stage_name(stage) not in columns:
                columns.append(short_stage_name(stage))
    lines = [
        f"Mean attention inside the key regions ({num_images} images; maps upsampled "
        f"to the model input, scaled to max 1{note})",
        "",
        "| model | input | " + " | ".join(columns) + " |",
        "| --- | --- |" + " --- |" * len(columns),
    ]
    for name, kind, stages in rows:
        by_short = {short_stage_name(s): v for s, v in stages.items()}
        cells = [f"{by_short[c]:.3f}" if c in by_short else "-" for c in columns]
        lines.append(f"| {name} | {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
