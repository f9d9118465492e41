"""Reproduces the analyses of the AT + ALP paper with one command each.

    python analyze.py attention  --models=a.keras,b.keras --dataset=digits \\
        --num_images=4 --eps=0.2 --out=DIR
    python analyze.py iterations --model=target.keras \\
        --source_models=gray.keras,black.keras --source_labels=gray,black \\
        --eps=0.25,0.5 --iterations=10,20,50,100,200 --num_examples=500 --out=DIR
    python analyze.py landscape  --models=a.keras,b.keras --num_images=16 --out=DIR
    python analyze.py key_regions --models=a.keras,b.keras --images=DIR \\
        --masks=DIR [--eps=0.25] --out=DIR

``attention`` draws Figures 1/4 (attention maps of clean and adversarial
images per stage), ``iterations`` Figure 3 (accuracy against PGD-k, gray/black
box), ``landscape`` Figure 6 (loss surfaces) and ``key_regions`` Table 3 (mean
attention inside annotated key regions; with --eps also on PGD images). Each
run also writes ``flags.txt`` (replay with ``--flagfile``) and
``git_commit.txt`` into ``--out``.

Bad input (unknown subcommand, missing file, eps above 1, ...) prints one line
on stderr and exits with status 2.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import csv  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
SUBCOMMANDS = ("attention", "iterations", "landscape", "key_regions")
_FLAG_NAMES = []
_IMAGE_EXTENSIONS = (".png",)


def define_flags(flag_values=None):
    """Defines this entry point's flags (once; later calls do nothing).

    Args:
        flag_values: The ``FlagValues`` to define them in; None means the global
            ``absl.flags.FLAGS``. Tests pass a fresh ``flags.FlagValues()`` so
            that these flags cannot clash with another entry point's in the
            same process.
    """
    global FLAGS
    if _FLAG_NAMES:
        return
    FLAGS = flags.FLAGS if flag_values is None else flag_values

    def define(kind, name, default, help_text, **kwargs):
        getattr(flags, f"DEFINE_{kind}")(name, default, help=help_text,
                                         flag_values=FLAGS, **kwargs)
        _FLAG_NAMES.append(name)

    # Models and data.
    define("list", "models", [],
           "attention, landscape, key_regions: comma-separated classifiers to "
           "analyse, each a .keras file written by train.py (attention and "
           "key_regions need .keras: they read stage outputs) or, for "
           "landscape, also a SavedModel folder.")
    define("string", "model", None,
           "iterations: the evaluated (target) classifier, .keras or SavedModel.")
    define("list", "source_models", [],
           "iterations: comma-separated models the PGD attack runs on; their "
           "adversarial images are transferred to --model. Gray box: same "
           "architecture and method, another seed; black box: another "
           "architecture. Empty means white box (attack --model itself).")
    define("list", "source_labels", [],
           "iterations: names for --source_models in the plot and tables, one "
           "per source (e.g. gray,black). Default: the file names.")
    define("bool", "white_box", False,
           "iterations: also attack --model itself (white box) when "
           "--source_models is given.")
    define("string", "source_model", None,
           "attention, key_regions: make the adversarial images on this model "
           "for every --models entry (transfer, as in the paper's Figure 4). "
           "Default: each model is attacked itself (white box).")
    define("string", "dataset", "digits",
           "attention, iterations, landscape: data source, one of digits, "
           "tfds:<name>[:split], folder:<path>, idx:<path>; its test split is used.")
    define("string", "data_dir", None, "TFDS data folder (tfds: datasets only).")
    define("list", "image_size", [],
           "Resize dataset images to H,W (or one number for square images). "
           "Default: keep their size.")
    define("list", "stage_layers", [],
           "attention, key_regions: comma-separated names of the layers whose "
           "outputs are the stages. Default: the ResNet stage ends "
           "conv{2..5}_block{N}_out.")
    # Attack and analysis settings.
    define("list", "eps", [],
           "L-inf radius on the [0, 1] pixel scale; decimals or fractions "
           "(8/255, 64/256). attention: one value (default 0.25, the paper's "
           "Figure 4). iterations: a list (default 0.25,0.5, Figure 3). "
           "key_regions: optional, one value; also measures PGD adversarial "
           "images (default: clean images only).")
    define("string", "step_size", None,
           "PGD step on the [0, 1] scale (decimal or fraction). attention, "
           "key_regions: default 2.5 * eps / num_steps. iterations: default "
           "1/256 (the paper).")
    define("integer", "num_steps", 20,
           "attention, key_regions: PGD iterations of the attack.",
           lower_bound=1)
    define("list", "iterations", ["10", "20", "50", "100", "200"],
           "iterations: strictly increasing PGD step counts to evaluate; one PGD "
           "run per source is snapshotted at each.")
    define("integer", "restarts", 1,
           "iterations: PGD runs per example with different random starts; per "
           "example the worst on the attacking model is kept.", lower_bound=1)
    define("bool", "random_start", True,
           "attention, iterations, key_regions: start PGD at a uniform point of "
           "the eps-ball.")
    define("integer", "num_images", 4,
           "attention: test images shown (rows per model). landscape: test "
           "images the loss is averaged over.", lower_bound=1)
    define("integer", "num_examples", 500,
           "iterations: test examples evaluated (the first ones of the split).",
           lower_bound=1)
    define("string", "eps_max", "0.25",
           "landscape: half-width of the grid, a in [-eps_max, eps_max] along "
           "sign(grad) and b likewise along the Rademacher direction "
           "(decimal or fraction, [0, 1] scale).")
    define("integer", "grid_points", 21,
           "landscape: grid points per axis (odd counts include the clean input).",
           lower_bound=2)
    define("enum", "landscape_kind", "surface",
           "landscape: 3-D surface or filled contour plot.",
           enum_values=["surface", "contour"])
    define("string", "images", None,
           "key_regions: folder of PNG images in [0, 255] (resized to each "
           "model's input size when they differ).")
    define("string", "masks", None,
           "key_regions: folder of PNG masks named like the images; each "
           "binary (0 = background, 1 or 255 = key region), same size as its image.")
    # Run.
    define("string", "out", None, "Folder the figures, tables and flags are written to.")
    define("integer", "batch_size", 256, "Images per forward/attack pass.", lower_bound=1)
    define("integer", "seed", 0, "Seed of the data split, PGD starts and directions.")


# ----------------------------------------------------------------- helpers


def parse_fraction(text, name):
    """``"8/255"`` or ``"0.25"`` -> float in (0, 1] (``cli.parse_eps``)."""
    from atalp_keras.cli import parse_eps

    return parse_eps(text, name)


def _parse_int_list(values, name):
    try:
        return [int(v) for v in values]
    except ValueError:
        raise ValueError(
            f"--{name} must be comma-separated integers. Received: {name}={','.join(values)}"
        ) from None


def _image_size():
    if not FLAGS.image_size:
        return None
    sizes = _parse_int_list(FLAGS.image_size, "image_size")
    if len(sizes) not in (1, 2):
        raise ValueError(
            f"--image_size must be H,W or one number. Received: "
            f"image_size={','.join(FLAGS.image_size)}"
        )
    return tuple(sizes) * (2 // len(sizes))


def _require(value, flag):
    if not value:
        raise ValueError(f"--{flag} is required for this subcommand. Received: {flag}={value!r}")
    return value


def _check_exists(path, flag):
    if not os.path.exists(path):
        raise FileNotFoundError(f"--{flag}: no such file or folder: {path}")
    return path


def _model_name(path):
    base = os.path.basename(os.path.normpath(path))
    return os.path.splitext(base)[0] if base.endswith((".keras", ".h5")) else base


def _load_model(path, flag, need_stages=False):
    from atalp_keras.export import load_classifier

    model = load_classifier(_check_exists(path, flag))
    if getattr(model, "classifier", None) is not None and not getattr(model, "inputs", None):
        model = model.classifier  # A saved training wrapper: use its classifier.
    if need_stages and not getattr(model, "inputs", None):
        raise ValueError(
            f"--{flag}={path}: attention maps need the stage outputs, which only a "
            ".keras classifier has; a SavedModel exposes logits only."
        )
    return model


def _input_shape(model):
    shape = tuple(model.input_shape)
    return shape[1:] if len(shape) == 4 else shape


def _load_test_data(limit, models):
    from atalp_keras.data import load_dataset, to_numpy

    info = load_dataset(FLAGS.dataset, data_dir=FLAGS.data_dir,
                        image_size=_image_size(), seed=FLAGS.seed)
    x, y = to_numpy(info.test, limit=limit)
    for name, model in models:
        expected = _input_shape(model)
        if any(e is not None and e != a for e, a in zip(expected, x.shape[1:])):
            raise ValueError(
                f"Model {name} expects images of shape {tuple(expected)} but dataset "
                f"{FLAGS.dataset} has {tuple(x.shape[1:])}. Pass --image_size or "
                "another --dataset."
            )
    return info, x.astype(np.float32), y.astype(np.int32)


def _progress(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _out_dir():
    out = _require(FLAGS.out, "out")
    os.makedirs(out, exist_ok=True)
    return out


def _write_run_info(out, subcommand):
    """A replayable flagfile and the git commit, next to the outputs."""
    from atalp_keras.cli import flags_to_text

    with open(os.path.join(out, "flags.txt"), "w") as handle:
        handle.write(f"# python analyze.py {subcommand} --flagfile=flags.txt\n")
        handle.write(flags_to_text(FLAGS, _FLAG_NAMES))
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    with open(os.path.join(out, "git_commit.txt"), "w") as handle:
        handle.write(commit + "\n")


def _write_json(path, data):
    with open(path, "w") as handle:
        json.dump(data, handle, indent=2)
    return path


def _stage_names(classifier):
    from atalp_keras.features import resolve_stage_layers

    return resolve_stage_layers(classifier, FLAGS.stage_layers or None)


# ----------------------------------------------------------------- subcommands


def run_attention(out):
    from atalp_keras import analysis, plots
    from atalp_keras.attacks import PGDAttack

    paths = _require(FLAGS.models, "models")
    eps_list = FLAGS.eps or ["0.25"]
    if len(eps_list) != 1:
        raise ValueError(f"attention takes one --eps value. Received: eps={','.join(eps_list)}")
    eps = parse_fraction(eps_list[0], "eps")
    step = None if FLAGS.step_size is None else parse_fraction(FLAGS.step_size, "step_size")
    for path in paths + ([FLAGS.source_model] if FLAGS.source_model else []):
        _check_exists(path, "models")
    models = [(_model_name(p), _load_model(p, "models", need_stages=True)) for p in paths]
    for name, model in models:
        _stage_names(model)  # Fails early on unknown stage layers.
    source = _load_model(FLAGS.source_model, "source_model") if FLAGS.source_model else None
    checked = models + ([("source", source)] if source is not None else [])
    info, x, y = _load_test_data(FLAGS.num_images, checked)

    attack = PGDAttack(eps, step_size=step, num_steps=FLAGS.num_steps,
                       random_start=FLAGS.random_start, seed=FLAGS.seed)
    shared_adv = None
    if source is not None:
        _progress(f"PGD-{FLAGS.num_steps} eps={eps:.4g} on {_model_name(FLAGS.source_model)}")
        shared_adv = attack.perturb(source, x, y, batch_size=FLAGS.batch_size)
    panels, summary = [], []
    for name, model in models:
        if shared_adv is None:
            _progress(f"PGD-{FLAGS.num_steps} eps={eps:.4g} on {name} (white box)")
            x_adv = attack.perturb(model, x, y, batch_size=FLAGS.batch_size)
        else:
            x_adv = shared_adv
        stage_names = _stage_names(model)
        maps = analysis.attention_maps(model, x, stage_names, FLAGS.batch_size)
        maps_adv = analysis.attention_maps(model, x_adv, stage_names, FLAGS.batch_size)
        pred = np.argmax(np.asarray(model(x, training=False)), -1)
        pred_adv = np.argmax(np.asarray(model(x_adv, training=False)), -1)
        panels.append({"name": name, "images_adv": x_adv, "stage_names": stage_names,
                       "maps": maps, "maps_adv": maps_adv, "pred": pred,
                       "pred_adv": pred_adv})
        summary.append({"model": name, "stage_layers": stage_names,
                        "pred": pred.tolist(), "pred_adv": pred_adv.tolist()})
        _progress(f"{name}: clean correct {int(np.sum(pred == y))}/{len(y)}, "
                  f"adversarial correct {int(np.sum(pred_adv == y))}/{len(y)}")
    attack_source = _model_name(FLAGS.source_model) if source is not None else "each model"
    title = (f"{info.name}: PGD-{FLAGS.num_steps}, eps={eps:.4g}, step={attack.step_size:.4g}, "
             f"adversarials made on {attack_source}")
    png = plots.plot_attention_grid(x, panels, os.path.join(out, "attention.png"), labels=y,
                                    class_names=info.class_names, title=title)
    _write_json(os.path.join(out, "attention.json"), {
        "dataset": info.name, "labels": y.tolist(), "attack": attack.describe(),
        "adversarials_made_on": attack_source, "models": summary})
    return [png, os.path.join(out, "attention.json")]


def run_iterations(out):
    from atalp_keras import analysis, plots

    target_path = _require(FLAGS.model, "model")
    _check_exists(target_path, "model")
    for path in FLAGS.source_models:
        _check_exists(path, "source_models")
    labels = FLAGS.source_labels or [_model_name(p) for p in FLAGS.source_models]
    if len(labels) != len(FLAGS.source_models):
        raise ValueError(
            f"--source_labels needs one name per source model. Received: "
            f"{len(labels)} labels for {len(FLAGS.source_models)} source models"
        )
    eps_values = [parse_fraction(e, "eps") for e in (FLAGS.eps or ["0.25", "0.5"])]
    step = parse_fraction(FLAGS.step_size or "1/256", "step_size")
    iterations = _parse_int_list(FLAGS.iterations, "iterations")
    analysis.check_iterations(iterations)  # Before any model is loaded.
    target_name = _model_name(target_path)
    target = _load_model(target_path, "model")
    sources = [(label, _load_model(p, "source_models"))
               for label, p in zip(labels, FLAGS.source_models)]
    info, x, y = _load_test_data(FLAGS.num_examples, [(target_name, target)] + sources)

    settings = ([(target_name, None)] if FLAGS.white_box or not sources else []) + sources
    records = []
    for label, source in settings:
        _progress(f"PGD to {iterations[-1]} steps on {label}, evaluated on {target_name}, "
                  f"{len(x)} examples")
        records += analysis.robust_accuracy_vs_iterations(
            target, x, y, eps_values, iterations=iterations, step_size=step, source=source,
            seed=FLAGS.seed, random_start=FLAGS.random_start, restarts=FLAGS.restarts,
            batch_size=FLAGS.batch_size, target_name=target_name, source_name=label,
            progress=_progress)
    for record in records:
        record["dataset"] = info.name
    json_path = _write_json(os.path.join(out, "iterations.json"), records)
    csv_path = os.path.join(out, "iterations.csv")
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    png = plots.plot_accuracy_vs_iterations(
        records, os.path.join(out, "iterations.png"),
        title=f"{info.name}: accuracy of {target_name} against PGD-k (n={len(x)})")
    for record in records:
        print(f"eps={record['eps']:.4g} k={record['num_steps']:>4} "
              f"{record['setting']:>8} source={record['source']}: "
              f"accuracy {100 * record['accuracy']:.1f}%")
    return [png, csv_path, json_path]


def run_landscape(out):
    from atalp_keras import analysis, plots

    paths = _require(FLAGS.models, "models")
    for path in paths:
        _check_exists(path, "models")
    eps_max = parse_fraction(FLAGS.eps_max, "eps_max")
    grid = np.linspace(-eps_max, eps_max, FLAGS.grid_points)
    if FLAGS.grid_points % 2:
        grid[FLAGS.grid_points // 2] = 0.0  # The clean input exactly.
    models = [(_model_name(p), _load_model(p, "models")) for p in paths]
    info, x, y = _load_test_data(FLAGS.num_images, models)
    landscapes, summary, arrays = {}, [], {"grid": grid}
    for name, model in models:
        _progress(f"{name}: loss on a {len(grid)}x{len(grid)} grid, {len(x)} images")
        a, b, z = analysis.loss_landscape(model, x, y, grid=grid, seed=FLAGS.seed,
                                          batch_size=FLAGS.batch_size)
        landscapes[name] = (a, b, z)
        arrays[f"z_{name}"] = z
        summary.append({"model": name, "loss_min": float(z.min()), "loss_max": float(z.max()),
                        "loss_at_clean": float(z[len(a) // 2, len(b) // 2])
                        if len(grid) % 2 else None})
    png = plots.plot_loss_landscape(
        landscapes, os.path.join(out, "landscape.png"), kind=FLAGS.landscape_kind,
        title=f"{info.name}: mean CE over {len(x)} images, eps_max={eps_max:.4g}")
    npz = os.path.join(out, "landscape.npz")
    np.savez(npz, **arrays)
    json_path = _write_json(os.path.join(out, "landscape.json"), {
        "dataset": info.name, "num_images": int(len(x)), "eps_max": eps_max,
        "grid_points": len(grid), "models": summary})
    return [png, npz, json_path]


def _read_png(path, what):
    import tensorflow as tf

    try:
        data = tf.io.read_file(path)
        return tf.io.decode_png(data, channels=0, dtype=tf.uint8).numpy()
    except tf.errors.OpError as error:
        raise ValueError(f"Cannot read {what} '{path}' as PNG: "
                         f"{error.message.splitlines()[0]}") from None


def _read_key_region_files(image_dir, mask_dir):
    """Same-named PNG images and binary masks -> lists of arrays and names."""
    from atalp_keras.analysis import check_masks

    for folder, flag in ((image_dir, "images"), (mask_dir, "masks")):
        if not os.path.isdir(_check_exists(folder, flag)):
            raise ValueError(f"--{flag} must be a folder of PNG files. Received: {folder}")
    names = sorted(n for n in os.listdir(image_dir) if n.lower().endswith(_IMAGE_EXTENSIONS))
    if not names:
        raise ValueError(f"--images folder has no PNG files. Received: images={image_dir}")
    missing = [n for n in names if not os.path.isfile(os.path.join(mask_dir, n))]
    if missing:
        raise ValueError(
            f"No mask for {len(missing)} image(s) in --masks={mask_dir} (masks must have the "
            f"images' file names). Missing: {', '.join(missing[:5])}"
        )
    images, masks = [], []
    for name in names:
        image = _read_png(os.path.join(image_dir, name), "image")
        mask = _read_png(os.path.join(mask_dir, name), "mask")
        if mask.shape[-1] in (2, 4):
            mask = mask[..., :-1]  # drop alpha
        if not np.all(mask == mask[..., :1]):
            raise ValueError(f"Mask {name}: channels differ; a mask must be grayscale.")
        mask = mask[..., 0]
        values = np.unique(mask)
        if set(values.tolist()) <= {0, 255}:
            mask = (mask == 255).astype(np.uint8)
        try:
            check_masks(image[None], mask[None])
        except ValueError as error:
            raise ValueError(f"Mask {name}: {error}") from None
        if image.shape[-1] in (2, 4):
            image = image[..., :-1]
        images.append(image.astype(np.float32) / 255.0)
        masks.append(mask)
    return names, images, masks


def _fit_to_model(images, masks, shape):
    """Resizes images (bilinear) and masks (nearest) to ``shape = (H, W, C)``."""
    import tensorflow as tf

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
                raise ValueError(
                    f"Images have {image.shape[-1]} channels but the model expects "
                    f"{channels}. Received: image shape {image.shape}"
                )
        fitted_images.append(image)
        fitted_masks.append(mask)
    return np.stack(fitted_images).astype(np.float32), np.stack(fitted_masks)


def _short(name):
    return name.split("_block")[0] + "_x" if "_block" in name else name


def _key_region_adversarials(model, x):
    """PGD images for key_regions --eps: made on --source_model or the model."""
    from atalp_keras.attacks import PGDAttack

    eps_list = FLAGS.eps
    if len(eps_list) != 1:
        raise ValueError(f"key_regions takes one --eps value. Received: eps={','.join(eps_list)}")
    eps = parse_fraction(eps_list[0], "eps")
    step = None if FLAGS.step_size is None else parse_fraction(FLAGS.step_size, "step_size")
    attack = PGDAttack(eps, step_size=step, num_steps=FLAGS.num_steps,
                       random_start=FLAGS.random_start, seed=FLAGS.seed)
    attacker = model
    if FLAGS.source_model:
        attacker = _load_model(FLAGS.source_model, "source_model")
        if tuple(_input_shape(attacker)) != tuple(x.shape[1:]):
            raise ValueError(
                f"--source_model expects images of shape {tuple(_input_shape(attacker))} "
                f"but the analysed model takes {tuple(x.shape[1:])}."
            )
    # The key-region folder has no labels: attack the attacker's own predictions.
    labels = np.argmax(np.asarray(attacker(x, training=False)), axis=-1).astype(np.int32)
    return attack.perturb(attacker, x, labels, batch_size=FLAGS.batch_size), attack


def run_key_regions(out):
    from atalp_keras import analysis

    paths = _require(FLAGS.models, "models")
    for path in paths + ([FLAGS.source_model] if FLAGS.source_model else []):
        _check_exists(path, "models")
    if FLAGS.eps:
        parse_fraction(FLAGS.eps[0], "eps")  # Fail before any work.
    names, images, masks = _read_key_region_files(_require(FLAGS.images, "images"),
                                                  _require(FLAGS.masks, "masks"))
    models = [(_model_name(p), _load_model(p, "models", need_stages=True)) for p in paths]
    rows, attack = [], None
    for name, model in models:
        x, m = _fit_to_model(images, masks, _input_shape(model))
        stage_names = _stage_names(model)
        _progress(f"{name}: key-region activation on {len(x)} images")
        rows.append((name, "clean", analysis.key_region_activation(
            model, x, m, stage_names, batch_size=FLAGS.batch_size)))
        if FLAGS.eps:
            x_adv, attack = _key_region_adversarials(model, x)
            rows.append((name, "adversarial", analysis.key_region_activation(
                model, x_adv, m, stage_names, batch_size=FLAGS.batch_size)))
    columns = []
    for _, _, stages in rows:
        for stage in stages:
            if _short(stage) not in columns:
                columns.append(_short(stage))
    note = ""
    if attack is not None:
        made_on = _model_name(FLAGS.source_model) if FLAGS.source_model else "each model"
        note = (f"; adversarial = PGD-{attack.num_steps}, eps={attack.eps:.4g}, "
                f"made on {made_on} against its own predictions")
    lines = [
        f"Mean attention inside the key regions ({len(names)} images; maps upsampled "
        f"to the model input, scaled to max 1{note})",
        "",
        "| model | input | " + " | ".join(columns) + " |",
        "| --- | --- |" + " --- |" * len(columns),
    ]
    for name, kind, stages in rows:
        by_short = {_short(s): v for s, v in stages.items()}
        cells = [f"{by_short[c]:.3f}" if c in by_short else "-" for c in columns]
        lines.append(f"| {name} | {kind} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    md_path = os.path.join(out, "key_regions.md")
    with open(md_path, "w") as handle:
        handle.write(table)
    json_path = _write_json(os.path.join(out, "key_regions.json"), {
        "images": names,
        "attack": attack.describe() if attack is not None else None,
        "activation": [{"model": n, "input": k, "stages": v} for n, k, v in rows],
    })
    print(table, end="")
    return [md_path, json_path]


_RUNNERS = {
    "attention": run_attention,
    "iterations": run_iterations,
    "landscape": run_landscape,
    "key_regions": run_key_regions,
}


def _fail(message):
    from atalp_keras.cli import fail

    fail("analyze.py", message)


def parse_flags(argv):
    """absl ``flags_parser``: a flag error is one line on stderr and exit 2."""
    from atalp_keras.cli import parse_flags as parse

    define_flags()
    return parse(argv, FLAGS, "analyze.py")


def main(argv):
    from atalp_keras.cli import quiet_tensorflow_logs

    quiet_tensorflow_logs()
    positional = list(argv[1:])
    if len(positional) != 1 or positional[0] not in _RUNNERS:
        got = " ".join(positional) if positional else "nothing"
        _fail(f"expected one subcommand, one of {', '.join(SUBCOMMANDS)}. Received: {got}")
    subcommand = positional[0]
    try:
        out = _out_dir()
        written = _RUNNERS[subcommand](out)
        _write_run_info(out, subcommand)
    except (ValueError, FileNotFoundError) as error:
        _fail(error)
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=parse_flags)
