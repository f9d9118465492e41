"""analyze.py / atalp_keras.cli.analyze: each subcommand end to end, its
data from the model card, and its error boundary (user error: one line and
exit 2; bug: traceback)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from absl import flags

from analysis import helpers
from atalp_keras.analysis import attention_maps, upsample_to
from atalp_keras.cli import analyze as cli_analyze
from atalp_keras.data import load_dataset, to_numpy
from figure_checks import assert_lines, saved_figures, shown_image, surface_quad_means  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Its own FlagValues: no clash with other entry points' flags in this process.
FLAG_VALUES = flags.FlagValues()
cli_analyze.define_flags(FLAG_VALUES)


@pytest.fixture(scope="module")
def resnet(digits):
    return helpers.trained_resnet(digits)


@pytest.fixture(scope="module")
def model_files(digits, tmp_path_factory):
    return helpers.saved_model_files(digits, tmp_path_factory)


def _run(argv):
    """Parses ``argv`` with analyze.py's parser (from the defaults) and runs
    it inside its error boundary."""
    FLAG_VALUES.unparse_flags()
    cli_analyze.execute(["analyze.py"] + argv, FLAG_VALUES)


def test_cli_attention(model_files, tmp_path, capsys, saved_figures):
    out = tmp_path / "attention"
    _run(["attention", f"--models={model_files['target']},{model_files['gray']}",
          "--num_images=2", "--eps=0.2", "--num_steps=3", f"--out={out}"])
    assert (out / "attention.png").stat().st_size > 0
    summary = json.loads((out / "attention.json").read_text())
    assert [m["model"] for m in summary["models"]] == ["target", "gray"]
    assert len(summary["models"][0]["pred_adv"]) == 2
    # The figure: per model and image, the test image and its PGD twin (within
    # eps), each model's own maps of both, and its predictions of both.
    x, y = to_numpy(load_dataset("digits", seed=0).test, limit=2)
    assert summary["labels"] == y.tolist()
    axes = np.array(saved_figures["attention.png"].axes).reshape(4, 2 + 2 * 4)
    for m, name in enumerate(["target", "gray"]):
        model = keras.models.load_model(model_files[name])
        for i in range(2):
            row = axes[2 * m + i]
            np.testing.assert_array_equal(shown_image(row[0]), x[i, ..., 0])
            x_adv = np.asarray(shown_image(row[1]))[None, ..., None]
            assert 0 < np.max(np.abs(x_adv[0] - x[i])) <= 0.2 + 1e-6
            pred = np.argmax(model(np.stack([x[i], x_adv[0]]), training=False), -1)
            assert [pred[0], pred[1]] == [summary["models"][m]["pred"][i],
                                          summary["models"][m]["pred_adv"][i]]
            assert (row[0].get_title(), row[1].get_title()) == (
                f"clean: pred {pred[0]}", f"adv: pred {pred[1]}")
            for k, image in enumerate((x[i:i + 1], x_adv)):
                maps = attention_maps(model, image)
                for s, stage in enumerate(maps):
                    np.testing.assert_allclose(shown_image(row[2 + 2 * s + k], 1),
                                               upsample_to(stage, (8, 8))[0], atol=1e-5)
    assert "--eps=0.2" in (out / "flags.txt").read_text()
    assert (out / "git_commit.txt").exists()
    assert "wrote" in capsys.readouterr().out


def test_cli_iterations(model_files, tmp_path, saved_figures):
    out = tmp_path / "iterations"
    _run(["iterations", f"--model={model_files['target']}",
          f"--source_models={model_files['gray']},{model_files['black']}",
          "--source_labels=gray,black", "--white_box", "--eps=0.1,64/256",
          "--iterations=1,2,4", "--num_examples=40", f"--out={out}"])
    records = json.loads((out / "iterations.json").read_text())
    assert len(records) == 3 * 2 * 3
    assert {r["source"] for r in records} == {"target", "gray", "black"}
    assert {r["eps"] for r in records} == {0.1, 0.25}
    assert len((out / "iterations.csv").read_text().strip().splitlines()) == 1 + 18
    assert (out / "iterations.png").stat().st_size > 0
    # One panel per eps, one line per source: the accuracies of iterations.json.
    labels = {"target": "target (white-box)", "gray": "target <- gray",
              "black": "target <- black"}
    for ax, eps in zip(saved_figures["iterations.png"].axes, (0.1, 0.25)):
        assert ax.get_title().startswith(f"eps = {eps:g} ")
        assert_lines(ax, {labels[source]: ([1, 2, 4], [
            100 * r["accuracy"] for k in (1, 2, 4) for r in records
            if (r["eps"], r["source"], r["num_steps"]) == (eps, source, k)])
            for source in labels})


def test_cli_landscape_keras_and_saved_model(model_files, tmp_path, saved_figures):
    out = tmp_path / "landscape"
    _run(["landscape", f"--models={model_files['target']},{model_files['saved_model']}",
          "--num_images=2", "--grid_points=5", "--eps_max=0.2", f"--out={out}"])
    summary = json.loads((out / "landscape.json").read_text())
    keras_model, served = summary["models"]
    # The served export computes the same function as the .keras classifier.
    assert served["loss_at_clean"] == pytest.approx(keras_model["loss_at_clean"], rel=1e-4)
    arrays = np.load(out / "landscape.npz")
    assert arrays["z_target"].shape == (5, 5)
    assert (out / "landscape.png").stat().st_size > 0
    # One surface per model, its height the losses landscape.npz holds.
    names = [keras_model["model"], served["model"]]
    panels = saved_figures["landscape.png"].axes
    assert [ax.get_title() for ax in panels] == names
    for ax, name in zip(panels, names):
        np.testing.assert_allclose(ax.collections[0].get_array(),
                                   surface_quad_means(arrays[f"z_{name}"]), rtol=1e-6)
        np.testing.assert_allclose(ax.xy_dataLim.intervalx, arrays["grid"][[0, -1]])


def test_cli_key_regions(model_files, digits, tmp_path, capsys):
    images, masks = helpers.write_key_region_folders(tmp_path, digits)
    out = tmp_path / "key_regions"
    _run(["key_regions", f"--models={model_files['target']},{model_files['gray']}",
          f"--images={images}", f"--masks={masks}", "--eps=0.2", "--num_steps=3",
          f"--out={out}"])
    table = (out / "key_regions.md").read_text()
    assert "| model | input | conv2_x | conv3_x | conv4_x | conv5_x |" in table
    for row in ("| target | clean |", "| target | adversarial |", "| gray | clean |",
                "| gray | adversarial |"):
        assert row in table
    assert table in capsys.readouterr().out
    rows = json.loads((out / "key_regions.json").read_text())["activation"]
    assert len(rows) == 4
    assert all(0.0 <= v <= 1.0 for row in rows for v in row["stages"].values())


def test_cli_run_folder_uses_its_split_whatever_the_seed(resnet, tmp_path):
    # A run trained on split seed 0; --seed=1 seeds the attack only (before the
    # fix it also re-split digits, so most "test" images were training images).
    run = helpers.write_run_folder(tmp_path, resnet, "digits_run", data_seed=0)
    out = tmp_path / "out"
    _run(["attention", f"--models={run}", "--num_images=12", "--num_steps=1",
          "--seed=1", f"--out={out}"])
    summary = json.loads((out / "attention.json").read_text())
    _, y0 = to_numpy(load_dataset("digits", seed=0).test, limit=12)
    _, y1 = to_numpy(load_dataset("digits", seed=1).test, limit=12)
    assert summary["labels"] == y0.tolist() != y1.tolist()
    assert summary["data"]["data_seed"] == 0 and summary["data"]["from"] == run
    assert summary["models"][0]["model"] == "digits_run"
    assert summary["attack_seed"] == 1


@pytest.mark.parametrize("argv, message", [
    (["bogus"], "subcommand"),
    ([], "subcommand"),
    (["attention", "--models=/no/such/model.keras"], "no such file"),
    (["iterations", "--model={target}", "--eps=8"], "0-255"),
    (["iterations", "--model={target}", "--eps=abc"], "fraction"),
    (["landscape", "--models={target}", "--num_images=zero"], "num_images"),
    (["attention", "--models={saved_model}"], ".keras"),
    (["key_regions", "--models={target}", "--images={images}", "--masks={masks}"],
     "masks of 4x4"),
    (["attention", "--models={run}", "--data_seed=1"], "--data_seed=1 differs"),
    (["iterations", "--model={target}", "--iterations=5,2"], "increasing"),
    (["attention", "--models={target}", "--stage_layers=nope"], "--stage_layers"),
    (["attention", "--models={target}", "--eps=0.1,0.2"], "one --eps value"),
])
def test_cli_bad_input_exits_2_with_one_line(argv, message, model_files, resnet, digits,
                                             tmp_path, capsys):
    values = dict(model_files)
    if any("{images}" in a for a in argv):
        values["images"], values["masks"] = helpers.write_key_region_folders(
            tmp_path, digits, num=1, mask_size=4)
    if any("{run}" in a for a in argv):
        values["run"] = helpers.write_run_folder(tmp_path, resnet, "run", data_seed=0)
    argv = [a.format(**values) for a in argv] + [f"--out={tmp_path / 'out'}"]
    with pytest.raises(SystemExit) as exit_info:
        _run(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@keras.saving.register_keras_serializable(package="test_analyze")
class _Broken(keras.layers.Layer):
    """Builds and saves, but raises a ValueError when run: a bug, not bad input."""

    def compute_output_spec(self, x):
        return keras.KerasTensor(x.shape, x.dtype)

    def call(self, x):
        raise ValueError("a bug inside the model")


def test_cli_bug_keeps_its_traceback(tmp_path, capsys):
    inputs = keras.Input((8, 8, 1))
    logits = keras.layers.Dense(10)(keras.layers.Flatten()(_Broken()(inputs)))
    path = str(tmp_path / "broken.keras")
    keras.Model(inputs, logits).save(path)
    # Not swallowed into "error: ..." and exit 2 (analyze.py caught every
    # ValueError around whole commands before).
    with pytest.raises(ValueError, match="a bug inside the model"):
        _run(["landscape", f"--models={path}", "--num_images=1", "--grid_points=2",
              f"--out={tmp_path / 'out'}"])
    assert "error:" not in capsys.readouterr().err


def test_analyze_script_user_error_is_one_stderr_line(model_files, tmp_path):
    # The real program: TensorFlow is imported (the model is loaded) before the
    # error, and none of its start-up lines may come first.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "analyze.py"), "iterations",
         f"--model={model_files['black']}", "--num_examples=2",
         "--iterations=1", "--dataset=idx:/no/such/folder", f"--out={tmp_path}"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith("analyze.py: error: ") and "/no/such/folder" in result.stderr
