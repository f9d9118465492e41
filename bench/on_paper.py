"""Expected epoch time on GPUs from arithmetic alone (issue 11, item 5).

MACs are counted per layer (speedlib/costmodel.py) on the config's model; the
passes per image come from the cost model; the device rate is an assumption
given on the command line. Nothing is measured. Example:

    python bench/on_paper.py --model resnet18 --train_images 50000 --val_images 2000
"""

import dataclasses
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from absl import flags  # noqa: E402

from atalp_keras.cli import common  # noqa: E402
from speedlib import config, costmodel, tables  # noqa: E402
from speedlib.config import _flag  # noqa: E402


@dataclasses.dataclass
class PaperSettings:
    model: str = _flag("resnet18", "Backbone registry name.")
    input_shape: str = _flag("32,32,3", "H,W,C of the images.")
    train_images: int = _flag(50000, "Training images per epoch.", lower_bound=1)
    val_images: int = _flag(2000, "Validation images per epoch (PGD-val_steps).", lower_bound=0)
    val_steps: int = _flag(10, "PGD steps of the per-epoch validation.", lower_bound=0)
    pgd_steps: int = _flag(7, "K, steps of the training attack.", lower_bound=1)
    peak_tflops: float = _flag(312.0, "Peak dense TFLOP/s of one GPU at the training precision "
                               "(A100: 312 for float16/bfloat16 tensor cores, 19.5 float32).")
    utilisation: float = _flag(0.25, "Fraction of the peak the step sustains.", lower_bound=0.0,
                               upper_bound=1.0)
    devices: int = _flag(8, "GPUs of the MirroredStrategy row.", lower_bound=1)
    scaling: float = _flag(0.85, "Per-device efficiency with MirroredStrategy.", lower_bound=0.0,
                           upper_bound=1.0)


common.define_flags(PaperSettings)


def estimate(s):
    """``(MACs per image, rows)``: per preset, passes and epoch seconds on 1 and N GPUs."""
    from atalp_keras.backbones import build_backbone

    shape = tuple(int(d) for d in s.input_shape.split(","))
    macs = costmodel.count_macs(build_backbone(s.model, shape, 10))["total"]
    rows = []
    for method in list(config.PRESETS) + ["reference"]:
        passes = costmodel.training_passes(method, s.pgd_steps)
        seconds = [costmodel.epoch_seconds_on_paper(
            macs, passes, s.train_images, s.peak_tflops, s.utilisation, devices=n,
            scaling=s.scaling, val_images=s.val_images, val_steps=s.val_steps)
            for n in (1, s.devices)]
        rows.append([method, tables.fmt(passes["forward_equivalents"], ".0f"),
                     tables.fmt(costmodel.flops_per_image(macs, passes) / 1e9, ".1f"),
                     tables.fmt(seconds[0], ".1f"), tables.fmt(seconds[1], ".1f")])
    return macs, rows


def main(argv):
    s = common.dataclass_from_flags(PaperSettings, flags.FLAGS)
    macs, rows = estimate(s)
    print(f"{s.model} {s.input_shape}: {macs / 1e6:,.1f} M MACs per image forward; "
          f"{s.peak_tflops} TFLOP/s peak x {s.utilisation} utilisation; "
          f"{s.devices} GPUs at {s.scaling} scaling\n")
    print("\n".join(tables.table(
        ["preset", "forward-equivalents per image", "GFLOP per image per step",
         "epoch s, 1 GPU", f"epoch s, {s.devices} GPUs"], rows)))


if __name__ == "__main__":
    common.run(main, program="bench/on_paper.py")
