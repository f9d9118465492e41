"""atalp_keras.plots: the figures write real image files."""

import numpy as np
import pytest

from atalp_keras import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plot_accuracy_vs_eps_writes_png(tmp_path):
    records = [{"attack": attack, "eps": eps, "accuracy": acc, "model": "m"}
               for attack, eps, acc in [("pgd", 0.0, 0.97), ("pgd", 0.1, 0.6),
                                        ("pgd", 0.2, 0.1), ("fgsm", 0.1, 0.7)]]
    path = plots.plot_accuracy_vs_eps(records, str(tmp_path / "sub" / "eps.png"))
    with open(path, "rb") as handle:
        assert handle.read(8) == PNG_MAGIC
    with pytest.raises(ValueError, match="accuracy"):
        plots.plot_accuracy_vs_eps([{"attack": "pgd", "eps": 0.1}], str(tmp_path / "x.png"))


def test_plot_attention_grid_with_a_missing_stage(tmp_path):
    # The second model has one stage fewer: its last stage cells stay empty.
    images = np.random.default_rng(0).uniform(size=(2, 8, 8, 1)).astype(np.float32)
    maps = [np.ones((2, 4, 4), np.float32), np.ones((2, 2, 2), np.float32)]
    panel = {"name": "a", "images_adv": images, "stage_names": ["conv2_block1_out", "s2"],
             "maps": maps, "maps_adv": maps, "pred": [0, 1], "pred_adv": [1, 1]}
    short = dict(panel, name="b", stage_names=["s1"], maps=maps[:1], maps_adv=maps[:1])
    path = plots.plot_attention_grid(images, [panel, short], str(tmp_path / "grid.png"),
                                     labels=[0, 1], class_names=["zero", "one"], title="t")
    with open(path, "rb") as handle:
        assert handle.read(8) == PNG_MAGIC
    with pytest.raises(ValueError, match="at least one model"):
        plots.plot_attention_grid(images, [], str(tmp_path / "none.png"))
