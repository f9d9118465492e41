"""square_recheck: which images AutoAttack's Square stage broke, read from a
real resume file (finished, or stopped inside Square), attacked again by
stronger gradient attacks, with a control of images that held."""

import os
import subprocess
import sys

import numpy as np
import pytest

from atalp_keras import artifacts
from atalp_keras.attacks import AutoAttack, PGDAttack
from atalp_keras.attacks.square import SquareAttack
from atalp_keras.errors import UsageError
from atalp_keras.evaluation import square_recheck

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EPS = 0.03  # small enough that some digits hold against the tiny budgets
BUDGETS = dict(num_steps=3, n_target_classes=2, n_queries=30, seed=0)


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def points(digits):
    return digits[2][:40], digits[3][:40]


def _relabelled(path, images, stage="square"):
    """The file with ``images`` credited to ``stage``: which stage breaks
    which digit is up to the model, the reading of the file is not."""
    with np.load(path, allow_pickle=False) as saved:
        fields = {key: saved[key] for key in saved.files}
    broken_by = fields["broken_by"].astype("<U16")
    broken_by[images] = stage
    robust = fields["robust"].copy()
    robust[images] = False
    fields.update(broken_by=broken_by, robust=robust)
    np.savez_compressed(path, **fields)


def test_a_finished_run_s_square_images_and_a_control_that_held(undefended_model, points,
                                                               tmp_path):
    x, y = points
    path = tmp_path / "aa.npz"
    result = AutoAttack(EPS, resume_file=path, **BUDGETS).run(undefended_model, x, y)
    held = np.flatnonzero(result.extras["robust"])
    broken = np.flatnonzero(result.success)
    assert len(held) >= 3 and len(broken) >= 3
    _relabelled(path, broken[:3])
    state = square_recheck.read_state(path)
    np.testing.assert_array_equal(np.flatnonzero(state["broken_by"] == "square"), broken[:3])
    # Square ran to the end: it attacked every image that was correct before it.
    np.testing.assert_array_equal(np.flatnonzero(state["square_done"]),
                                  np.sort(np.r_[held, broken[:3]]))
    square, control = square_recheck.choose_images(state)
    np.testing.assert_array_equal(square, broken[:3])
    assert len(control) == 3 and set(control) <= set(held)
    assert len(square_recheck.choose_images(state, control=100)[1]) == len(held)

    # An attack that breaks everything it can: the 3 relabelled digits were
    # broken by AutoAttack's gradient stages, so PGD-20 with restarts breaks
    # them again; the held digits held against all of AutoAttack.
    strong = [("pgd", PGDAttack(EPS, num_steps=20, restarts=2, seed=0))]
    lines = []
    found = square_recheck.recheck(undefended_model, x, y, state, EPS, strong,
                                   batch_size=16, echo=lines.append)
    assert found["square"] == {"n": 3, "images": broken[:3].tolist(), "pgd": 3, "any": 3}
    assert found["control"]["n"] == 3 and 0 <= found["control"]["pgd"] \
        == found["control"]["any"] <= 3
    assert lines[0] == "square: pgd broke 3 of 3"
    # experiments/square_recheck.py --keep_current keeps a file made from
    # these Square images with these settings, and only such a file.
    out = tmp_path / "recheck.json"
    current = dict(eps=EPS, attacks=["pgd"], seed=0)
    assert not square_recheck.made_from(out, state, **current)
    artifacts.write_json(out, {"square_attacked": int(state["square_done"].sum()), "eps": EPS,
                               "attacks": ["pgd"], "seed": 0, **found})
    assert square_recheck.made_from(out, state, **current)
    for other in (dict(eps=2 * EPS), dict(attacks=["pgd x50"]), dict(seed=1), dict(control=2)):
        assert not square_recheck.made_from(out, state, **dict(current, **other)), other
    # Evaluated again: Square broke one more image, or as many other ones.
    assert len(broken) >= 4
    _relabelled(path, broken[3:4])
    assert not square_recheck.made_from(out, square_recheck.read_state(path), **current)
    swapped = dict(state, broken_by=state["broken_by"].copy())
    swapped["broken_by"][broken[:1]] = "apgd-ce"
    swapped["broken_by"][broken[3:4]] = "square"
    assert not square_recheck.made_from(out, swapped, **current)
    unfinished = dict(state, square_done=state["square_done"] & (np.arange(len(y)) < 20))
    assert unfinished["square_done"].sum() < state["square_done"].sum()
    assert not square_recheck.made_from(out, unfinished, **current)  # Square still going
    out.write_text("{")
    assert not square_recheck.made_from(out, state, **current)
    # The stronger attacks the script uses by default, at tiny budgets.
    attacks = square_recheck.stronger_attacks(EPS, 7, 2, 3)
    labels = [label for label, _ in attacks]
    assert labels == ["apgd-ce 2x7", "apgd-dlr 2x7", "apgd-t 3 targets x7"]
    assert labels == square_recheck.attack_labels(7, 2, 3)
    assert [(a.num_steps, a.restarts) for _, a in attacks] == [(7, 2), (7, 2), (7, 1)]
    assert attacks[2][1].n_target_classes == 3
    # The report names a recheck's attacks when they are not these defaults.
    assert square_recheck.attack_labels() == [
        label for label, _ in square_recheck.stronger_attacks(EPS)]


def test_a_run_stopped_inside_square_counts_the_pieces_it_finished(undefended_model, points,
                                                                  tmp_path, monkeypatch):
    x, y = points
    path = tmp_path / "aa.npz"
    original = SquareAttack._generate
    pieces = []

    def second_piece_killed(self, model, xs, ys, batch_size, jit_compile, ids, verbose):
        if pieces:
            raise Killed()
        pieces.append(np.asarray(ids))
        return original(self, model, xs, ys, batch_size, jit_compile, ids, verbose)

    monkeypatch.setattr(SquareAttack, "_generate", second_piece_killed)
    with pytest.raises(Killed):
        AutoAttack(EPS, resume_file=path, save_every=2, **BUDGETS).run(undefended_model, x, y)
    state = square_recheck.read_state(path)
    np.testing.assert_array_equal(np.flatnonzero(state["square_done"]), pieces[0])
    # Killed before Square (in FAB-T): Square attacked nothing yet.
    from atalp_keras.attacks.fab import FABAttack

    monkeypatch.setattr(SquareAttack, "_generate", original)
    monkeypatch.setattr(FABAttack, "_generate", lambda *a, **k: (_ for _ in ()).throw(Killed()))
    early = tmp_path / "early.npz"
    with pytest.raises(Killed):
        AutoAttack(EPS, resume_file=early, save_every=2, **BUDGETS).run(undefended_model, x, y)
    assert not square_recheck.read_state(early)["square_done"].any()


def test_other_data_and_unreadable_files_are_refused(undefended_model, points, tmp_path):
    x, y = points
    path = tmp_path / "aa.npz"
    AutoAttack(EPS, version="fast", resume_file=path, **BUDGETS).run(undefended_model, x, y)
    state = square_recheck.read_state(path)
    with pytest.raises(UsageError, match="holds 40 images; the data has 39"):
        square_recheck.recheck(undefended_model, x[:39], y[:39], state, EPS, [])
    with pytest.raises(UsageError, match="clean predictions differ"):
        square_recheck.recheck(undefended_model, x[::-1], y[::-1], state, EPS, [])
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"no")
    with pytest.raises(UsageError, match="Not an AutoAttack resume file"):
        square_recheck.read_state(bad)


def test_the_command_refuses_a_missing_flag_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "experiments", "square_recheck.py"),
         f"--state={tmp_path / 'x.npz'}", f"--out={tmp_path / 'o.json'}"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env=dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 2, result.stderr
    assert "--model is required" in result.stderr and "Traceback" not in result.stderr
