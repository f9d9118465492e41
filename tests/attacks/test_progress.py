"""Progress bars: on stderr at verbose=1, nothing at verbose=0, stdout untouched;
a line now and then (not a redrawn bar) where stderr is a log file."""

from atalp_keras.attacks import PGDAttack, RaySAttack, progress
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


def test_a_log_file_gets_a_line_per_interval_and_one_at_the_end(capsys, monkeypatch):
    # capsys' stderr is not a terminal: the log mode.
    bar = Progress(10, verbose=1, title="square", unit_name="query")
    for i in range(9):
        bar.add(1, robust=10 - i)
    bar.finish(robust=2)
    err = capsys.readouterr().err.splitlines()
    # Within the interval: the title and the final line only.
    assert err[0] == "square"
    assert len(err) == 2 and err[1].startswith("square: 10/10 queries (100%)")
    assert err[1].endswith("robust: 2")
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)
    bar = Progress(4, verbose=1, unit_name="image")
    for _ in range(4):
        bar.add(1)
    bar.finish()
    err = capsys.readouterr().err.splitlines()
    assert [line.split(" images")[0] for line in err] == [
        "progress: 1/4", "progress: 2/4", "progress: 3/4", "progress: 4/4"]


def test_a_log_file_gets_one_end_line_unless_finish_brings_values(capsys):
    bar = Progress(3, verbose=1, unit_name="image")
    bar.add(3)
    bar.add(0)
    bar.update(3)
    bar.finish()
    assert len(capsys.readouterr().err.splitlines()) == 1
    bar.finish(robust=1)
    assert capsys.readouterr().err.strip().endswith("robust: 1")
