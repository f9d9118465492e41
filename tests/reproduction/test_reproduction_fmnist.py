"""The Fashion-MNIST reproduction (experiments/reproduce.py --preset=fmnist)
end to end on tiny IDX files in Fashion-MNIST's layout (issue 22 item 7: it
ran only under --runslow before). Its own file, so pytest-xdist runs it beside
the digits pipeline test rather than after it (about 3 minutes of CPU).
"""

import os

from reproduce_command import run_reproduce as _run


def _write_idx(path, magic, array):
    import gzip
    import struct

    import numpy as np

    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + np.asarray(array, np.uint8).tobytes())


def _tiny_fashion_idx(folder):
    """28x28 images of 10 classes in Fashion-MNIST's file names (each class a
    brighter square at its own place, so a model can learn something)."""
    import numpy as np

    rng = np.random.RandomState(0)
    folder.mkdir()
    for prefix, count in (("train", 80), ("t10k", 30)):
        y = np.arange(count) % 10
        x = rng.randint(0, 60, (count, 28, 28))
        for i, label in enumerate(y):
            x[i, 2 * label:2 * label + 8, 4:12] += 180
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", 0x803, x)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", 0x801, y)
    return folder


def test_fmnist_preset_end_to_end_on_tiny_idx_files(tmp_path):
    """The fmnist pipeline's own parts: two radii, per-method seeds, sources for
    some methods only, stand-alone Square, the audit and the published table."""
    data_dir = _tiny_fashion_idx(tmp_path / "fashion")
    report = tmp_path / "docs" / "results_fmnist.md"
    args = ["--preset=fmnist", "--quick", f"--dataset=idx:{data_dir}", "--epochs=1",
            "--batch_size=16", "--tiny_widths=4,4,4,4", "--methods=pat,at_alp",
            "--more_seeds=1", "--more_seeds_methods=at_alp", "--source_methods=at_alp",
            "--also_eps=0.3",
            "--also_eps_methods=pat", "--longer_epochs=2", "--longer_methods=pat",
            "--at_weights=0.03", "--alp_weights=0.5",
            "--sweep_train_examples=40", "--val_fraction=0.25", "--max_val_examples=10",
            "--num_test=20", "--pgd_steps=2", "--pgd_restarts=1", "--square_queries=20",
            "--rays_queries=20", "--iterations=2,3", "--curve_eps=0.2", "--landscape_points=3",
            "--landscape_images=2", "--attention_images=1",
            f"--out={tmp_path / 'run_eps{eps}'}", f"--report={report}"]
    result = _run(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    text = report.read_text()
    assert "Beside the published numbers" in text and "78.5" in text and "24.3" in text
    assert "### eps = 0.3 (n = 20 test images)" in text and "clean (all test)" in text
    assert "Gradient-masking audit" in text and "Wilson" in text
    assert "AT+ALP against each method under AutoAttack at eps 0.1" in text
    assert sorted(os.listdir(tmp_path / "run_eps0.1" / "eval")) == [
        "at_alp_seed0.json", "at_alp_seed1.json", "pat_epochs2_seed0.json", "pat_seed0.json"]
    assert "## Longer training" in text and "after 1 epochs, " in text
    assert sorted(os.listdir(tmp_path / "run_eps0.3" / "eval")) == ["pat_seed0.json"]
    models = tmp_path / "run_eps0.1" / "models"
    # The preset's sources: at_alp's gray source is its other main seed
    # (--gray_from_seeds), and one pat model on fmnist_deep is every method's
    # black source (--blackbox_method=pat).
    assert sorted(os.listdir(models / "at_alp")) == ["seed0", "seed1"]
    assert sorted(os.listdir(models / "pat")) == ["black_fmnist_deep_seed100",
                                                  "epochs2_seed0", "seed0"]
