"""Trains a classifier with AT+ALP (or another preset), then exports it.

    python train.py --flagfile=configs/digits_at_alp.flags
    python train.py --flagfile=configs/cifar10_resnet18_at_alp.flags \\
        --data_dir=/data/tfds --distribution=mirrored

Writes into --model_dir: flags.txt (replayable: --flagfile=<model_dir>/flags.txt,
with the git commit), backup/ (an interrupted run started again with the same
flags resumes from its last finished epoch), checkpoints/{last,best}.keras,
logs/ (TensorBoard), history.{json,csv}, classifier.keras (the logits model),
model.keras (the training model), metrics.json. Exports a SavedModel for TF
Serving to --export_dir/<export_name>/<version>/.

Bad input (unknown dataset, missing folder, eps=8, a missing flagfile, ...)
exits with code 2 and one line on stderr.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __name__ == "__main__":
    from atalp_keras.cli.common import import_tensorflow_quietly

    import_tensorflow_quietly()

from absl import app, flags  # noqa: E402

from atalp_keras import cli, methods, training  # noqa: E402

PROGRAM = "train.py"
_FLAG_NAMES = []


def define_flags(flag_values=flags.FLAGS):
    """Defines train.py's flags in ``flag_values``; returns their names."""
    fv = flag_values
    names = []

    def add(define, name, *args, **kwargs):
        define(name, *args, flag_values=fv, **kwargs)
        names.append(name)

    def add_eps(name, default, help_text):
        flags.DEFINE(cli.EpsParser(name), name, default, help_text,
                     flag_values=fv, serializer=flags.ArgumentSerializer())
        names.append(name)

    # Data.
    add(flags.DEFINE_string, "dataset", "digits",
        "Training data: 'digits' (sklearn's 8x8 digits, bundled), "
        "'tfds:<name>[:test_split]' (a TFDS set prepared in --data_dir), "
        "'folder:<path>' (class subfolders, optionally under train/ and test/) "
        "or 'idx:<path>' (MNIST-format IDX files).")
    add(flags.DEFINE_string, "data_dir", None,
        "TFDS data folder for 'tfds:' datasets (default: ~/tensorflow_datasets).")
    add(flags.DEFINE_list, "image_size", [],
        "Resize images to H,W (or one number for square); empty keeps them.")
    add(flags.DEFINE_integer, "data_seed", 0,
        "Seed of the train/test split of 'digits' and 'folder:' data. Keep it "
        "fixed across models that are compared.", lower_bound=0)
    add(flags.DEFINE_integer, "max_train_examples", 0,
        "Train on a fixed random subset of this many examples; 0 = all.",
        lower_bound=0)
    add(flags.DEFINE_integer, "max_test_examples", 0,
        "Evaluate on a fixed random subset of this many test examples; "
        "0 = all.", lower_bound=0)
    add(flags.DEFINE_enum, "augment", "none", list(training.AUGMENTATIONS),
        "Training augmentation: none; crop (random shift: zero-pad then "
        "crop); crop_flip (shift plus horizontal flip, the CIFAR standard).")
    # Model.
    add(flags.DEFINE_string, "model", "tiny",
        f"Classifier: one of {', '.join(training.MODEL_NAMES)}, or a path to "
        "a .keras file holding a functional logits classifier (or a saved "
        "training model.keras).")
    add(flags.DEFINE_list, "stage_layers", [],
        "Comma-separated names of the layers whose attention maps are paired; "
        "empty = ResNet stage ends conv{2..5}_block{N}_out.")
    add(flags.DEFINE_list, "tiny_widths", ["8", "16", "16", "32"],
        "Filters of the 4 stages of --model=tiny.")
    add(flags.DEFINE_enum, "weights", "none", list(training.WEIGHTS),
        "Initial weights: none (random) or imagenet (resnet50/101/152; "
        "downloads once, needs network).")
    # Method.
    add(flags.DEFINE_enum, "method", "at_alp", list(methods.METHODS),
        "Training preset (METHOD.md): standard, pat (Madry), alp (Kannan), "
        "at (attention pairing), at_alp (the paper), trades, fast (Wong).")
    add_eps("eps", 8 / 255,
        "L-inf radius of the training attack on the [0, 1] pixel scale; "
        "8/255 and 0.0314 both work. Also the radius of the per-epoch "
        "validation attack.")
    add_eps("step_size", None,
        "Step of the training attack, same scale; default eps/4.")
    add(flags.DEFINE_integer, "num_steps", None,
        "Steps of the training attack; default 7 (trades: 10). 'fast' "
        "always takes one step of 1.25*eps.", lower_bound=1)
    for name, what in (("natural_weight", "clean cross-entropy"),
                       ("adv_weight", "adversarial cross-entropy"),
                       ("alp_weight", "logit pairing (ALP)"),
                       ("at_weight", "attention pairing (AT)"),
                       ("trades_beta", "TRADES KL")):
        add(flags.DEFINE_float, name, None,
            f"Weight of the {what} term; default: the preset's.",
            lower_bound=0.0)
    add(flags.DEFINE_integer, "eval_pgd_steps", 10,
        "Steps of the PGD attack (at --eps, --step_size) that measures test "
        "adv_accuracy after every epoch and at the end; 0 = clean only.",
        lower_bound=0)
    # Optimisation.
    add(flags.DEFINE_integer, "epochs", 10, "Number of epochs.",
        lower_bound=1)
    add(flags.DEFINE_integer, "steps_per_epoch", 0,
        "Batches per epoch; 0 = one pass over the training set.",
        lower_bound=0)
    add(flags.DEFINE_integer, "batch_size", 128,
        "GLOBAL batch size: the sum over all replicas (each of R replicas "
        "gets batch_size/R examples).", lower_bound=1)
    add(flags.DEFINE_enum, "optimizer", "sgd", list(training.OPTIMIZERS),
        "Optimizer: sgd (with --momentum) or adam.")
    add(flags.DEFINE_float, "learning_rate", 0.1, "Initial learning rate.",
        lower_bound=0.0)
    add(flags.DEFINE_float, "momentum", 0.9, "SGD momentum.",
        lower_bound=0.0, upper_bound=1.0)
    add(flags.DEFINE_boolean, "nesterov", False, "Nesterov momentum (SGD).")
    add(flags.DEFINE_enum, "lr_schedule", "constant",
        list(training.LR_SCHEDULES),
        "constant; piecewise (times --lr_decay at each epoch in "
        "--lr_boundaries); cosine (decays to 0 at the last epoch).")
    add(flags.DEFINE_list, "lr_boundaries", [],
        "Epochs at which the piecewise schedule decays, e.g. 75,90.")
    add(flags.DEFINE_float, "lr_decay", 0.1,
        "Factor applied at each piecewise boundary.", lower_bound=0.0,
        upper_bound=1.0)
    add(flags.DEFINE_float, "weight_decay", 0.0,
        "L2 weight decay on all conv/dense kernels, PyTorch-style (adds "
        "wd*W to each kernel's gradient; 5e-4 = the CIFAR standard).",
        lower_bound=0.0)
    add(flags.DEFINE_integer, "seed", 0,
        "Seed of the initial weights, shuffling, augmentation and attacks.",
        lower_bound=0)
    # Outputs.
    add(flags.DEFINE_string, "model_dir", "runs/default",
        "Folder of the run's files. Starting again with the same folder "
        "resumes an interrupted run; a finished run is refused unless "
        "--overwrite.")
    add(flags.DEFINE_boolean, "overwrite", False,
        "Start over in a --model_dir that holds a finished run.")
    add(flags.DEFINE_boolean, "export", True,
        "Export a SavedModel for TF Serving at the end.")
    add(flags.DEFINE_string, "export_dir", "saved_models",
        "Folder of exports: <export_dir>/<export_name>/<version>/.")
    add(flags.DEFINE_string, "export_name", "",
        "Model name under --export_dir; empty = <dataset>_<model>_<method>.")
    add(flags.DEFINE_integer, "export_version", 0,
        "Export version; 0 = the next free one. Existing versions are never "
        "overwritten.", lower_bound=0)
    # Execution.
    add(flags.DEFINE_boolean, "jit_compile", False,
        "XLA-compile the train/test steps (ignored with a warning for "
        "several replicas on CPU devices, where TensorFlow fails).")
    add(flags.DEFINE_enum, "mixed_precision", "none",
        list(training.PRECISIONS),
        "none (float32); mixed_float16 (GPU, with dynamic loss scaling); "
        "mixed_bfloat16 (TPU / recent CPUs and GPUs).")
    add(flags.DEFINE_enum, "distribution", "default",
        list(training.DISTRIBUTIONS),
        "default (no strategy); one_device; mirrored (all local GPUs, or "
        "--devices; all CPU devices if there is no GPU); multi_worker "
        "(MultiWorkerMirroredStrategy from the TF_CONFIG variable).")
    add(flags.DEFINE_list, "devices", [],
        "Devices for one_device/mirrored, e.g. /gpu:0,/gpu:1.")
    add(flags.DEFINE_integer, "num_cpu_devices", 0,
        "Split the CPU into this many logical devices before TensorFlow "
        "starts (to test --distribution=mirrored without GPUs); 0 = leave.",
        lower_bound=0)
    add(flags.DEFINE_integer, "steps_per_execution", 1,
        "Batches run per compiled call.", lower_bound=1)
    add(flags.DEFINE_integer, "verbose", 1,
        "0 silent, 1 progress bars, 2 one line per epoch.", lower_bound=0,
        upper_bound=2)
    _FLAG_NAMES[:] = names
    return names


def _ints(values, name):
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        raise training.ConfigError(
            f"`{name}` must be comma-separated integers. Received: "
            f"{name}={','.join(values)}") from None


def _numbers(values, name):
    try:
        return tuple(float(v) for v in values)
    except ValueError:
        raise training.ConfigError(
            f"`{name}` must be comma-separated numbers. Received: "
            f"{name}={','.join(values)}") from None


def config_from_flags(fv=flags.FLAGS):
    """The `training.TrainConfig` the parsed flags describe."""
    return training.TrainConfig(
        dataset=fv.dataset,
        data_dir=fv.data_dir,
        image_size=_ints(fv.image_size, "image_size") or None,
        data_seed=fv.data_seed,
        max_train_examples=fv.max_train_examples,
        max_test_examples=fv.max_test_examples,
        augment=fv.augment,
        model=fv.model,
        stage_layers=tuple(fv.stage_layers),
        tiny_widths=_ints(fv.tiny_widths, "tiny_widths"),
        weights=fv.weights,
        method=fv.method,
        eps=fv.eps,
        step_size=fv.step_size,
        num_steps=fv.num_steps,
        natural_weight=fv.natural_weight,
        adv_weight=fv.adv_weight,
        alp_weight=fv.alp_weight,
        at_weight=fv.at_weight,
        trades_beta=fv.trades_beta,
        eval_pgd_steps=fv.eval_pgd_steps,
        epochs=fv.epochs,
        steps_per_epoch=fv.steps_per_epoch,
        batch_size=fv.batch_size,
        optimizer=fv.optimizer,
        learning_rate=fv.learning_rate,
        momentum=fv.momentum,
        nesterov=fv.nesterov,
        lr_schedule=fv.lr_schedule,
        lr_boundaries=_numbers(fv.lr_boundaries, "lr_boundaries"),
        lr_decay=fv.lr_decay,
        weight_decay=fv.weight_decay,
        seed=fv.seed,
        model_dir=fv.model_dir,
        overwrite=fv.overwrite,
        export=fv.export,
        export_dir=fv.export_dir,
        export_name=fv.export_name,
        export_version=fv.export_version,
        jit_compile=fv.jit_compile,
        mixed_precision=fv.mixed_precision,
        distribution=fv.distribution,
        devices=tuple(fv.devices),
        steps_per_execution=fv.steps_per_execution,
        verbose=fv.verbose,
        flags_text=cli.flags_to_text(fv, _FLAG_NAMES),
    )


def main(argv, flag_values=flags.FLAGS):
    """Runs training with the parsed flags; bad input exits 2 (one line)."""
    cli.quiet_tensorflow_logs()
    run(argv, flag_values)


def run(argv, flag_values=flags.FLAGS):
    """`main`, returning the run's metrics dict (as in metrics.json)."""
    if len(argv) > 1:
        cli.fail(PROGRAM, f"Unexpected arguments: {' '.join(argv[1:])}")
    fv = flag_values
    try:
        if fv.num_cpu_devices:
            training.configure_cpu_devices(fv.num_cpu_devices)
        result = training.train(config_from_flags(fv))
    except training.ConfigError as error:
        cli.fail(PROGRAM, error)
    test = result["test"]
    summary = f"Test accuracy {test['accuracy']:.4f}"
    if test["adv_accuracy"] is not None:
        attack = test["attack"]
        summary += (f", PGD-{attack['num_steps']} (eps {attack['eps']:.4g}) "
                    f"accuracy {test['adv_accuracy']:.4f}")
    summary += f" on {test['n']} examples."
    if result.get("export_path"):
        summary += f" Exported to {result['export_path']}."
    print(summary)
    return result


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=lambda argv: cli.parse_flags(
        argv, flags.FLAGS, PROGRAM))
