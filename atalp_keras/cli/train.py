"""``atalp-train`` / ``python train.py``: trains a classifier with AT+ALP (or
another preset), then exports it.

    atalp-train --flagfile=configs/digits_at_alp.flags
    atalp-train --flagfile=configs/cifar10_resnet18_at_alp.flags \\
        --data_dir=/data/tfds --distribution=mirrored

The flags are generated from `atalp_keras.training.TrainConfig` (one per
field, same name), plus the options of this command below. Writes into
--model_dir: run_config.json (the run's settings), flags.txt (replayable:
--flagfile=<model_dir>/flags.txt, with the git commit), model_card.json,
backup/ (an interrupted run started again with the same settings resumes from
its last finished epoch; only a longer --epochs and other --verbose,
--overwrite and --export* values are accepted, other settings are refused
with the list of differences), run.lock (while it trains: a second process
on the folder is refused), checkpoints/{last,best}.keras, logs/ (TensorBoard), history.{json,csv},
classifier.keras (the logits model), model.keras (the training model),
metrics.json. Exports a SavedModel for TF Serving to
--export_dir/<export_name>/<version>/.

Bad input (unknown dataset, missing folder, eps=8, a missing flagfile, ...)
exits with code 2 and one line on stderr.
"""

import dataclasses

from absl import flags

from atalp_keras.cli import common

PROGRAM = "train.py"


@dataclasses.dataclass
class CommandOptions:
    """Settings of the command itself, not of the run."""

    num_cpu_devices: int = dataclasses.field(default=0, metadata={
        "help": "Split the CPU into this many logical devices before "
                "TensorFlow starts (to test --distribution=mirrored without "
                "GPUs); 0 = leave.", "lower_bound": 0})


def define_flags(flag_values=flags.FLAGS):
    """Defines the command's flags in ``flag_values``; returns their names."""
    from atalp_keras.training import TrainConfig

    return (common.define_flags(TrainConfig, flag_values=flag_values)
            + common.define_flags(CommandOptions, flag_values=flag_values))


def config_from_flags(flag_values=flags.FLAGS):
    """The `TrainConfig` the parsed flags describe, with the replayable
    flagfile of every flag of this command."""
    from atalp_keras.training import TrainConfig

    fields = common.flag_fields(TrainConfig) + common.flag_fields(
        CommandOptions)
    text = common.flags_to_text(flag_values, [f.name for f in fields])
    return common.dataclass_from_flags(TrainConfig, flag_values,
                                       flags_text=text)


def summary(result):
    """The one line printed at the end of a run."""
    test = result["test"]
    line = f"Test accuracy {test['accuracy']:.4f}"
    if test["adv_accuracy"] is not None:
        attack = test["attack"]
        line += (f", PGD-{attack['num_steps']} (eps {attack['eps']:.4g}) "
                 f"accuracy {test['adv_accuracy']:.4f}")
    line += f" on {test['n']} examples."
    if result.get("export_path"):
        line += f" Exported to {result['export_path']}."
    return line


def _run(argv, flag_values=flags.FLAGS):
    if len(argv) > 1:
        common.fail(PROGRAM, f"Unexpected arguments: {' '.join(argv[1:])}")
    from atalp_keras import training

    options = common.dataclass_from_flags(CommandOptions, flag_values)
    if options.num_cpu_devices:
        training.configure_cpu_devices(options.num_cpu_devices)
    result = training.train(config_from_flags(flag_values))
    print(summary(result))
    return result


def _flag_names():
    from atalp_keras.training import TrainConfig

    return [f.name for f in common.flag_fields(TrainConfig)]


# Runs training with the parsed flags and returns the metrics dict (as in
# metrics.json); bad input exits 2 with one line, in the flags' spelling.
run = common.main_boundary(_run, PROGRAM, flag_names=_flag_names)


def main(argv=None):
    """The console entry point: quiets TensorFlow, defines the flags, runs."""
    common.quiet_tensorflow()
    define_flags()
    common.run(run, program=PROGRAM, quiet=False)


if __name__ == "__main__":
    main()
