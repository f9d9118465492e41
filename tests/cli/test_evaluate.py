"""atalp_keras.cli.evaluate (``evaluate.py``, ``atalp-evaluate``): flags
generated from EvaluateSettings, the refusals of issue 10 item 14, the model
card's defaults and the main command's suite with AutoAttack and the worst
case (issue 12 item 6). Tiny models, a few digits, two attack steps."""

import dataclasses
import os

import keras
import pytest
from absl import flags

from atalp_keras import artifacts, cli
from atalp_keras.cli import evaluate
from atalp_keras.evaluation import build_attacks, load_model_for_eval, parse_attack_list
from atalp_keras.evaluation.settings import EvaluateSettings
from train_runs import REPO, read_json


def _flags(argv):
    fv = flags.FlagValues()
    evaluate.define_flags(fv)
    cli.parse_flags([evaluate.PROGRAM] + list(argv), fv, evaluate.PROGRAM)
    return fv


def _one_error_line(capsys, code, exit_info):
    assert exit_info.value.code == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{evaluate.PROGRAM}: error: "), err
    return err[0]


def _save_digits_classifier(path, seed=0):
    import atalp_keras as ak

    keras.utils.set_random_seed(seed)
    ak.tiny_resnet((8, 8, 1), 10, widths=(4, 8, 8, 16)).save(path)
    return str(path)


def test_every_setting_is_a_flag_of_the_same_name_and_value():
    fv = _flags(["--model=m", "--eps=8/255,0.1", "--image_size=16", "--data_seed=3",
                 "--source_model=a.keras,b.keras", "--noaudit", "--num_examples=5"])
    names = {field.name for field in dataclasses.fields(EvaluateSettings)}
    assert names <= set(fv)
    settings = evaluate.settings_from_flags(fv)
    assert settings.eps == pytest.approx((8 / 255, 0.1))
    assert (settings.image_size, settings.data_seed) == ((16, 16), 3)
    assert settings.source_model == ("a.keras", "b.keras")
    assert (settings.audit, settings.num_examples, settings.attacks) == (False, 5, "fgsm,pgd")


def test_help_exits_0_and_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _flags(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--num_examples" in out and "--audit_examples" in out


def test_an_empty_eps_is_refused_in_flag_spelling(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _flags(["--model=m", "--eps="])
    line = _one_error_line(capsys, 2, exit_info)
    assert "--eps is empty" in line and "Received: --eps=''" in line


def test_more_examples_than_the_test_set_is_refused(tmp_path, capsys):
    model = _save_digits_classifier(tmp_path / "m.keras")
    fv = _flags([f"--model={model}", "--dataset=digits", "--eps=0.1",
                 "--num_examples=400", f"--out_dir={tmp_path / 'eval'}"])
    with pytest.raises(SystemExit) as exit_info:
        evaluate.run([evaluate.PROGRAM], fv)
    line = _one_error_line(capsys, 2, exit_info)
    assert "--num_examples=400" in line and "360 test examples" in line
    assert not (tmp_path / "eval").exists()


def test_the_model_card_supplies_the_defaults(tmp_path):
    run_dir = tmp_path / "run"
    os.makedirs(run_dir)
    _save_digits_classifier(run_dir / artifacts.CLASSIFIER_FILE)
    artifacts.write_model_card(run_dir, artifacts.ModelCard(
        dataset="digits", data_seed=4, image_size=[8, 8], method="at_alp", eps=0.15))
    _, metadata = load_model_for_eval(str(run_dir))
    assert metadata == {"dataset": "digits", "data_seed": 4, "image_size": [8, 8],
                        "method": "at_alp", "eps": 0.15, "name": "run"}


def test_the_main_flagfile_runs_autoattack_at_its_standard_steps():
    fv = _flags([f"--flagfile={os.path.join(REPO, 'configs', 'digits_eval.flags')}"])
    settings = evaluate.settings_from_flags(fv)
    attacks = build_attacks(parse_attack_list(settings.attacks), settings.eps,
                            num_steps=settings.num_steps, step_size=settings.step_size,
                            restarts=settings.restarts, seed=settings.seed)
    described = [a.describe() for a in attacks]
    assert [(d["attack"], d.get("num_steps")) for d in described] == \
        [("fgsm", 1), ("pgd", 20), ("autoattack", 100)]
    assert described[1]["step_size"] == 0.05 and described[2]["version"] == "standard"


def test_autoattack_and_the_worst_case_reach_the_table(tmp_path, capsys):
    model = _save_digits_classifier(tmp_path / "m.keras")
    out_dir = tmp_path / "eval"
    fv = _flags([f"--model={model}", "--dataset=digits", "--eps=0.2", "--num_examples=8",
                 "--attacks=fgsm,autoattack:num_steps=2:n_queries=5:n_target_classes=1",
                 "--noaudit", "--verbose=0", f"--out_dir={out_dir}"])
    records = evaluate.run([evaluate.PROGRAM], fv)
    assert [r["attack"] for r in records] == ["none", "fgsm", "autoattack", "worst-case"]
    table = (out_dir / "results.md").read_text()
    assert "| m | unknown | autoattack | 0.2 | 2 | - | 8 |" in table
    assert "| m | unknown | worst-case | 0.2 |" in table
    assert "## AutoAttack stages" in table
    assert read_json(out_dir / "results.json")[2]["stages"][0]["component"]
    assert table in capsys.readouterr().out
