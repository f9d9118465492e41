"""AutoAttack's resume_file: a run killed in a stage resumes after its last
finished stage, or inside it after its last finished piece of points, and
returns what an uninterrupted run returns; a file written by another call
(other model, points or settings) is not used."""

import os

import numpy as np
import pytest

from atalp_keras.attacks import AutoAttack
from atalp_keras.attacks.apgd import APGDTAttack
from atalp_keras.errors import UsageError

from attack_checks import points  # noqa: F401 (a fixture)

BUDGETS = dict(num_steps=5, n_target_classes=2, n_queries=40, seed=0)


class Killed(Exception):
    pass


def _subset(points, n=60):
    x, y = points
    return x[:n], y[:n]


def test_a_killed_run_resumes_after_its_last_stage_with_the_same_result(
        undefended_model, points, tmp_path, monkeypatch, capsys):
    x, y = _subset(points)
    whole = AutoAttack(0.05, **BUDGETS).run(undefended_model, x, y)
    path = tmp_path / "aa_state.npz"

    original = APGDTAttack._generate

    def killed(*args, **kwargs):
        raise Killed()

    # Stage 2 (APGD-T) is killed: stage 1's result is on disk.
    monkeypatch.setattr(APGDTAttack, "_generate", killed)
    with pytest.raises(Killed):
        AutoAttack(0.05, resume_file=path, **BUDGETS).run(undefended_model, x, y)
    assert path.is_file()
    monkeypatch.setattr(APGDTAttack, "_generate", original)

    # The rerun does not attack with stage 1 again (its call would raise).
    from atalp_keras.attacks.apgd import APGDAttack
    monkeypatch.setattr(APGDAttack, "_generate", killed)
    resumed = AutoAttack(0.05, resume_file=path, **BUDGETS).run(undefended_model, x, y,
                                                                 verbose=1)
    assert "resuming after stage 1" in capsys.readouterr().err
    np.testing.assert_array_equal(resumed.x_adv, whole.x_adv)
    np.testing.assert_array_equal(resumed.success, whole.success)
    assert resumed.extras["broken_by"] == whole.extras["broken_by"]
    assert [r["robust_accuracy"] for r in resumed.extras["report"]] == \
        [r["robust_accuracy"] for r in whole.extras["report"]]
    # Stage 1 broke something, so the resumed images came from the file.
    assert "apgd-ce" in resumed.extras["broken_by"]


def test_a_run_killed_inside_a_stage_resumes_at_its_next_piece(
        undefended_model, points, tmp_path, monkeypatch, capsys):
    from atalp_keras.attacks.apgd import APGDAttack

    x, y = _subset(points)
    whole = AutoAttack(0.05, **BUDGETS).run(undefended_model, x, y)
    n_stage1 = whole.extras["report"][1]["n"]
    assert n_stage1 > 14  # three pieces of 7 at least
    path = tmp_path / "aa_state.npz"
    original = APGDAttack._generate
    attacked = []

    def second_piece_killed(self, model, xs, *args, **kwargs):
        assert type(self) is APGDAttack
        if attacked:
            raise Killed()
        attacked.append(len(xs))
        return original(self, model, xs, *args, **kwargs)

    monkeypatch.setattr(APGDAttack, "_generate", second_piece_killed)
    with pytest.raises(Killed):
        AutoAttack(0.05, resume_file=path, save_every=7, **BUDGETS).run(undefended_model, x, y)
    assert attacked == [7]

    def counted(self, model, xs, *args, **kwargs):
        if type(self) is APGDAttack:  # not APGD-T, which inherits the method
            attacked.append(len(xs))
        return original(self, model, xs, *args, **kwargs)

    # Another piece size resumes the same file; stage 1's first 7 points are
    # not attacked again.
    monkeypatch.setattr(APGDAttack, "_generate", counted)
    resumed = AutoAttack(0.05, resume_file=path, save_every=5, **BUDGETS).run(
        undefended_model, x, y, verbose=1)
    err = capsys.readouterr().err
    assert f"resuming after stage 0, {n_stage1 - 7} points of stage 1 still to attack" in err
    assert f"on {n_stage1} points (7 attacked before)" in err
    assert sum(attacked) == n_stage1 and max(attacked[1:]) == 5
    np.testing.assert_array_equal(resumed.x_adv, whole.x_adv)
    np.testing.assert_array_equal(resumed.success, whole.success)
    assert resumed.extras["broken_by"] == whole.extras["broken_by"]
    assert [(r["component"], r["robust_accuracy"], r["n"]) for r in resumed.extras["report"]] \
        == [(r["component"], r["robust_accuracy"], r["n"]) for r in whole.extras["report"]]
    assert resumed.extras["report"][1]["seconds"] > 0


def test_save_every_is_checked():
    with pytest.raises(UsageError, match="save_every"):
        AutoAttack(0.05, save_every=0)


def test_another_calls_file_is_not_used(undefended_model, points, tmp_path, capsys):
    x, y = _subset(points)
    path = tmp_path / "aa_state.npz"
    AutoAttack(0.05, version="fast", resume_file=path, **BUDGETS).run(undefended_model, x, y)
    # Other eps, other points: each starts over (and says so), with the result
    # of a run without the file.
    for eps, (xs, ys) in [(0.08, (x, y)), (0.05, (x[:30], y[:30]))]:
        fresh = AutoAttack(eps, version="fast", **BUDGETS).run(undefended_model, xs, ys)
        again = AutoAttack(eps, version="fast", resume_file=path, **BUDGETS).run(
            undefended_model, xs, ys)
        assert "holds another call's progress" in capsys.readouterr().err
        np.testing.assert_array_equal(again.x_adv, fresh.x_adv)


def test_resume_file_needs_a_keras_model_before_any_stage(undefended_model, points, tmp_path,
                                                          monkeypatch):
    from atalp_keras.attacks.apgd import APGDAttack

    def killed(*args, **kwargs):
        raise Killed()

    monkeypatch.setattr(APGDAttack, "_generate", killed)  # stage 1 never starts
    x, y = _subset(points, 10)
    with pytest.raises(UsageError, match="needs a Keras model"):
        AutoAttack(0.05, version="fast", resume_file=tmp_path / "s.npz", **BUDGETS).run(
            lambda images, training=False: undefended_model(images), x, y)


def test_a_finished_file_runs_no_stage_and_other_weights_start_over(
        undefended_model, points, tmp_path, monkeypatch, capsys):
    import keras

    from atalp_keras.attacks.apgd import APGDAttack

    x, y = _subset(points, 40)
    path = tmp_path / "aa_state.npz"
    first = AutoAttack(0.05, version="fast", resume_file=path, **BUDGETS).run(
        undefended_model, x, y)
    original = APGDAttack._generate

    def killed(*args, **kwargs):
        raise Killed()

    # Every stage done: the result comes from the file, no component runs.
    monkeypatch.setattr(APGDAttack, "_generate", killed)
    monkeypatch.setattr(APGDTAttack, "_generate", killed)
    again = AutoAttack(0.05, version="fast", resume_file=path, **BUDGETS).run(
        undefended_model, x, y)
    np.testing.assert_array_equal(again.x_adv, first.x_adv)
    # Other weights (the same architecture): the file is not theirs.
    other = keras.models.clone_model(undefended_model)
    other.set_weights([w * 1.01 for w in undefended_model.get_weights()])
    with pytest.raises(Killed):
        AutoAttack(0.05, version="fast", resume_file=path, **BUDGETS).run(other, x, y)
    assert "holds another call's progress" in capsys.readouterr().err
    # Another batch size or XLA setting is another call too.
    for kwargs in ({"batch_size": 7}, {"jit_compile": True}):
        with pytest.raises(Killed):
            AutoAttack(0.05, version="fast", resume_file=path, **BUDGETS).run(
                undefended_model, x, y, **kwargs)
    # An unreadable file: said, and started over.
    path.write_bytes(b"not an npz")
    monkeypatch.setattr(APGDAttack, "_generate", original)
    monkeypatch.undo()
    fresh = AutoAttack(0.05, version="fast", resume_file=path, **BUDGETS).run(
        undefended_model, x, y)
    assert "cannot be read" in capsys.readouterr().err
    np.testing.assert_array_equal(fresh.x_adv, first.x_adv)
    assert not list(tmp_path.glob(".*partial*"))


def test_each_process_writes_the_state_through_its_own_temporary_file(
        undefended_model, points, tmp_path, monkeypatch):
    x, y = points
    path = tmp_path / "aa.npz"
    renamed = []
    real_replace = os.replace

    def replace(src, dst):
        renamed.append((os.path.basename(src), dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    AutoAttack(0.05, version="fast", resume_file=path, **BUDGETS).run(undefended_model, x, y)
    # Two runs on one file (a queue started twice) never write into one
    # temporary file: each renames a whole file of its own into place.
    assert renamed and all(src == f".aa.npz.{os.getpid()}.partial.npz" and dst == str(path)
                           for src, dst in renamed)
