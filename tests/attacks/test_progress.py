"""Progress bars: on stderr at verbose=1, nothing at verbose=0, stdout untouched."""

from atalp_keras.attacks import PGDAttack, RaySAttack
from atalp_keras.attacks.progress import Progress


def test_progress_writes_a_keras_progbar_to_stderr_only(capsys):
    bar = Progress(10, verbose=1, title="stage", unit_name="image")
    bar.add(4)
    bar.finish(robust=3)
    out, err = capsys.readouterr()
    assert out == ""
    assert "stage" in err and "10/10" in err and "robust: 3" in err
    quiet = Progress(10, verbose=0)
    quiet.add(4)
    quiet.finish()
    assert capsys.readouterr() == ("", "")


def test_attacks_show_progress_at_verbose_1(digits, undefended_model, capsys):
    x, y = digits[2][:20], digits[3][:20]
    PGDAttack(0.1, num_steps=2, seed=0).perturb(undefended_model, x, y, batch_size=8,
                                                 verbose=1)
    RaySAttack(0.1, n_queries=30).perturb(undefended_model, x, y, verbose=1)
    out, err = capsys.readouterr()
    assert out == ""
    assert "pgd" in err and "20/20" in err and "rays" in err
    PGDAttack(0.1, num_steps=2, seed=0).perturb(undefended_model, x, y, verbose=0)
    assert capsys.readouterr() == ("", "")
