"""bench/step_jax_28x28.py (the JAX speed numbers of docs/benchmarks.md) runs
end to end at a tiny scale under KERAS_BACKEND=jax and writes its raw rounds:
the hand-written jitted JAX step against the library's `pat` step."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from script_checks import assert_one_round_pair, run  # noqa: E402


def test_step_jax_script_writes_its_rounds_at_tiny_scale(tmp_path, capsys):
    data = run("step_jax_28x28", tmp_path, "--model", "tiny", "--rounds", "1", "--steps", "1",
               "--variants", "ref,pat")
    assert data["settings"]["backend"] == "jax"
    assert_one_round_pair(data, "pat", "ref")
    printed = capsys.readouterr().out
    assert "JAX, tiny; 1 rounds x 1 steps of 128 images" in printed
    assert f"{data['images_per_second']['pat']:7.0f}" in printed
