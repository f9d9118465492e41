"""atalp_keras.plots: each figure shows the values it is given, and the
plot_* functions write them as real image files."""

import matplotlib.image
import numpy as np
import pytest

from atalp_keras import plots
from atalp_keras.analysis.attention import upsample_to
from figure_checks import assert_lines, shown_image, surface_quad_means

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _eps_records():
    return [{"attack": attack, "eps": eps, "accuracy": acc, "model": "m"}
            for attack, eps, acc in [("pgd", 0.1, 0.6), ("pgd", 0.0, 0.97),
                                     ("pgd", 0.2, 0.1), ("fgsm", 0.1, 0.7)]]


def test_accuracy_vs_eps_shows_one_line_per_model_and_attack():
    fig = plots.accuracy_vs_eps_figure(_eps_records() + [
        {"attack": "pgd", "eps": 0.1, "accuracy": 0.25}], title="t")
    (ax,) = fig.axes
    # Sorted by eps, in percent; a record without a model is its own line.
    assert_lines(ax, {"m / pgd": ([0.0, 0.1, 0.2], [97, 60, 10]),
                      "m / fgsm": ([0.1], [70]), "pgd": ([0.1], [25])})
    assert ax.get_title() == "t" and ax.get_ylabel() == "accuracy (%)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["m / pgd", "m / fgsm", "pgd"]


def test_accuracy_vs_eps_keeps_transferred_attacks_apart():
    white = {"model": "m", "attack": "pgd", "threat_model": "white-box"}
    moved = dict(white, threat_model="transfer", source="g")
    fig = plots.accuracy_vs_eps_figure([dict(white, eps=0.1, accuracy=0.2),
                                        dict(moved, eps=0.1, accuracy=0.6),
                                        dict(white, eps=0.2, accuracy=0.1),
                                        dict(moved, eps=0.2, accuracy=0.5)])
    assert_lines(fig.axes[0], {"m / pgd": ([0.1, 0.2], [20, 10]),
                               "m / pgd (from g)": ([0.1, 0.2], [60, 50])})


def test_plot_accuracy_vs_eps_writes_the_figure(tmp_path):
    path = plots.plot_accuracy_vs_eps(_eps_records(), str(tmp_path / "sub" / "eps.png"))
    with open(path, "rb") as handle:
        assert handle.read(8) == PNG_MAGIC
    # The file is the figure, drawn: the same pixels as the builder's.
    again = tmp_path / "again.png"
    plots.accuracy_vs_eps_figure(_eps_records()).savefig(again, bbox_inches="tight")
    np.testing.assert_array_equal(matplotlib.image.imread(path), matplotlib.image.imread(again))
    with pytest.raises(ValueError, match="accuracy"):
        plots.plot_accuracy_vs_eps([{"attack": "pgd", "eps": 0.1}], str(tmp_path / "x.png"))


def test_accuracy_vs_iterations_shows_one_panel_per_eps_one_line_per_source():
    records = []
    for eps, shift in ((0.2, 0.0), (0.1, 0.3)):
        for source, setting, base in (("t", "white", 0.5), ("g", "transfer", 0.8)):
            records += [{"eps": eps, "num_steps": k, "accuracy": base - 0.01 * k + shift / 10,
                         "setting": setting, "source": source, "target": "t",
                         "step_size": 0.01} for k in (20, 1, 2)]
    fig = plots.accuracy_vs_iterations_figure(records, title="T")
    low, high = fig.axes
    assert low.get_title().startswith("eps = 0.1 ") and high.get_title().startswith("eps = 0.2 ")
    assert_lines(low, {"t (white-box)": ([1, 2, 20], [52, 51, 33]),
                       "t <- g": ([1, 2, 20], [82, 81, 63])})
    assert_lines(high, {"t (white-box)": ([1, 2, 20], [49, 48, 30]),
                        "t <- g": ([1, 2, 20], [79, 78, 60])})
    assert high.get_xscale() == "log" and fig.get_suptitle() == "T"


def _panel(name, images, stage_names, maps, pred, pred_adv):
    return {"name": name, "images_adv": 1.0 - images, "stage_names": stage_names,
            "maps": maps, "maps_adv": [m[:, ::-1] for m in maps], "pred": pred,
            "pred_adv": pred_adv}


def test_attention_grid_shows_the_images_maps_and_predictions():
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(2, 8, 8, 1)).astype(np.float32)
    maps = [rng.uniform(size=(2, 4, 4)).astype(np.float32),
            rng.uniform(size=(2, 2, 2)).astype(np.float32)]
    # The second model has one stage fewer: its last stage's cells stay empty.
    panels = [_panel("a", images, ["conv2_block1_out", "s2"], maps, [0, 1], [1, 1]),
              _panel("b", images, ["s1"], maps[:1], [1, 0], [0, 0])]
    fig = plots.attention_grid_figure(images, panels, labels=[0, 1],
                                      class_names=["zero", "one"], title="t")
    axes = np.array(fig.axes).reshape(4, 6)  # 2 models x 2 images, 2 + 2 x 2 stages
    for m, panel in enumerate(panels):
        for i in range(2):
            row = axes[2 * m + i]
            np.testing.assert_array_equal(shown_image(row[0]), images[i, ..., 0])
            np.testing.assert_allclose(shown_image(row[1]), 1.0 - images[i, ..., 0])
            for s in range(2):
                clean, adv = row[2 + 2 * s], row[3 + 2 * s]
                if s >= len(panel["maps"]):
                    assert not clean.axison and not clean.get_images()
                    continue
                np.testing.assert_array_equal(shown_image(clean), images[i, ..., 0])
                np.testing.assert_allclose(shown_image(clean, 1),
                                           upsample_to(panel["maps"][s], (8, 8))[i])
                np.testing.assert_allclose(shown_image(adv, 1),
                                           upsample_to(panel["maps_adv"][s], (8, 8))[i])
    # Predictions by class name, green when right, red when wrong.
    titles = [(ax.get_title(), ax.title.get_color()) for ax in axes[:, :2].reshape(-1)]
    assert titles == [("clean: pred zero", "green"), ("adv: pred one", "red"),
                      ("clean: pred one", "green"), ("adv: pred one", "green"),
                      ("clean: pred one", "red"), ("adv: pred zero", "green"),
                      ("clean: pred zero", "red"), ("adv: pred zero", "red")]
    assert [axes[0, c].get_title() for c in range(2, 6)] == [
        "conv2_x clean", "conv2_x adv", "s2 clean", "s2 adv"]
    assert [axes[r, 0].get_ylabel() for r in (0, 2)] == ["a\nlabel zero", "b\nlabel zero"]


def test_plot_attention_grid_writes_a_png(tmp_path):
    images = np.random.default_rng(0).uniform(size=(1, 8, 8, 1)).astype(np.float32)
    panel = _panel("a", images, ["s1"], [np.ones((1, 4, 4), np.float32)], [0], [1])
    path = plots.plot_attention_grid(images, [panel], str(tmp_path / "grid.png"))
    with open(path, "rb") as handle:
        assert handle.read(8) == PNG_MAGIC
    with pytest.raises(ValueError, match="at least one model"):
        plots.plot_attention_grid(images, [], str(tmp_path / "none.png"))


def _landscapes():
    a = b = np.array([-0.1, 0.0, 0.1])
    z_flat = np.add.outer(a, 2 * b) + 1.0
    return {"flat": (a, b, z_flat), "sharp": (a, b, 10 * z_flat ** 2)}


def test_loss_landscape_surfaces_show_each_models_losses_on_one_scale():
    landscapes = _landscapes()
    fig = plots.loss_landscape_figure(landscapes, kind="surface", title="T")
    z_min = min(z.min() for _, _, z in landscapes.values())
    z_max = max(z.max() for _, _, z in landscapes.values())
    assert [ax.get_title() for ax in fig.axes] == ["flat", "sharp"]
    for ax, (a, b, z) in zip(fig.axes, landscapes.values()):
        (surface,) = ax.collections
        np.testing.assert_allclose(surface.get_array(), surface_quad_means(z))
        np.testing.assert_allclose(ax.get_zlim(), (z_min, z_max))
        np.testing.assert_allclose(ax.xy_dataLim.intervalx, (a[0], a[-1]))
        np.testing.assert_allclose(ax.xy_dataLim.intervaly, (b[0], b[-1]))


def test_loss_landscape_contours_span_all_models_losses(tmp_path):
    landscapes = _landscapes()
    fig = plots.loss_landscape_figure(landscapes, kind="contour")
    z_min = min(z.min() for _, _, z in landscapes.values())
    z_max = max(z.max() for _, _, z in landscapes.values())
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["flat", "sharp"]
    for ax in panels:
        (filled,) = ax.collections
        np.testing.assert_allclose(filled.levels, np.linspace(z_min, z_max, 21))
    with pytest.raises(ValueError, match="kind"):
        plots.plot_loss_landscape(landscapes, str(tmp_path / "x.png"), kind="bars")
