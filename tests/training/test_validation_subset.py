"""The per-epoch validation runs on a split held out of the training examples
(issue 22, item 3), attacks a fixed subset of --eval_adv_examples of it and
scores every validation example clean (issue 11, item 4); the final
evaluation and metrics.json say how many examples each number covers."""

import numpy as np
import pytest

from atalp_keras import data
from atalp_keras.errors import UsageError
from atalp_keras.model import ATTACK_MASK
from atalp_keras.training import TrainConfig, run_folder
from atalp_keras.training.pipelines import make_pipelines


def _pipes(replicas=1, **settings):
    # 500 training digits, a tenth (50) held out for validation.
    settings = {"validation_split": 0.1, **settings}
    config = TrainConfig(dataset="digits", max_train_examples=500, max_test_examples=50,
                         batch_size=16, eps=0.2, **settings).validate()
    return config, make_pipelines(config, data.load_dataset("digits", seed=0), replicas)


def _rows(dataset):
    """The flattened images of an unbatched dataset, as bytes."""
    return [bytes(x.numpy().reshape(-1)) for x, _ in dataset]


def _batches(dataset):
    return [(x.numpy(), y.numpy(), w) for x, y, w in dataset]


def test_subset_attacked_first_every_example_scored_once():
    config, pipes = _pipes(eval_adv_examples=20)
    assert (pipes.num_val, pipes.num_val_adv) == (50, 20)
    batches = _batches(pipes.validation)
    masks = np.concatenate([w[ATTACK_MASK].numpy() for *_, w in batches])
    assert masks.tolist() == [1.0] * 20 + [0.0] * 30
    # Batches of the subset first: only ceil(20 / 16) = 2 batches hold marked examples.
    assert [bool(w[ATTACK_MASK].numpy().any()) for *_, w in batches] == [True, True] + \
        [False] * (len(batches) - 2)
    seen = np.concatenate([x for x, *_ in batches]).reshape(50, -1)
    held_out = np.stack([x.numpy().reshape(-1) for x, _ in pipes.val_examples])
    assert sorted(map(bytes, seen)) == sorted(map(bytes, held_out))
    # A fixed subset: the same again, and not merely the first held-out examples.
    again = np.concatenate([x for x, *_ in _batches(_pipes(eval_adv_examples=20)[1]
                                                    .validation)])
    assert np.array_equal(again.reshape(50, -1)[:20], seen[:20])
    assert not np.array_equal(seen[:20], held_out[:20])


def test_the_validation_split_is_held_out_of_training_and_never_the_test_set():
    _, pipes = _pipes()
    val, train, test = (_rows(d) for d in (pipes.val_examples, pipes.train_examples,
                                           pipes.test.unbatch()))
    assert (len(val), len(train), pipes.num_train) == (50, 450, 450)
    assert not set(val) & set(train) and not set(val) & set(test)
    # Fixed by data_seed alone: another --seed holds out the same images.
    assert _rows(_pipes(seed=7)[1].val_examples) == val
    assert _rows(_pipes(data_seed=1)[1].val_examples) != val


def test_no_split_means_no_per_epoch_validation():
    _, pipes = _pipes(validation_split=0.0, keep="last")
    assert pipes.validation is None and pipes.num_train == 500
    with pytest.raises(UsageError, match=r"validation_split=0, keep='best'"):
        _pipes(validation_split=0.0)
    with pytest.raises(UsageError, match=r"validation_split=0.001 of 500 .* holds out 0"):
        _pipes(validation_split=0.001)


def test_zero_or_a_large_limit_attacks_the_whole_split():
    for limit in (0, 50, 1000):
        _, pipes = _pipes(eval_adv_examples=limit)
        assert (pipes.num_val, pipes.num_val_adv) == (50, 50)
        assert all(len(batch) == 2 for batch in pipes.validation)  # no attack mask
    _, pipes = _pipes(eval_pgd_steps=0)
    assert (pipes.num_val, pipes.num_val_adv) == (50, 0)


def test_default_is_a_fixed_thousand_and_recorded():
    config = TrainConfig().validate()
    assert config.eval_adv_examples == 1000
    assert run_folder.record(config)["eval_adv_examples"] == 1000
    other = TrainConfig(eval_adv_examples=200).validate()
    assert run_folder.config_differences(run_folder.record(config), other) == \
        ["--eval_adv_examples=1000 -> 200"]


def test_metrics_json_states_n_of_each_number(tmp_path):
    from atalp_keras.training import train

    result = train(TrainConfig(
        dataset="digits", max_train_examples=96, max_test_examples=32, epochs=1,
        batch_size=32, num_steps=1, eval_pgd_steps=1, eval_adv_examples=10, eps=0.2,
        validation_split=0.25, tiny_widths=(4, 4, 4, 4), verbose=0, export=False,
        model_dir=str(tmp_path / "run")))
    assert result["validation"]["n"] == 24 and result["validation"]["adv_n"] == 10
    assert result["dataset"]["num_train"] == 72
    assert result["validation"]["attack"]["num_steps"] == 1
    assert (result["test"]["n"], result["test"]["adv_n"]) == (32, 32)
    assert 0.0 <= result["history"][0]["val_adv_accuracy"] <= 1.0
    recorded = run_folder.artifacts.read_json(str(tmp_path / "run" / "run_config.json"))
    assert recorded["config"]["eval_adv_examples"] == 10


def test_under_replicas_a_subset_below_one_batch_is_refused():
    # Two replicas drop each part's partial batch: 20 -> 16 attacked, and a
    # subset of 10 (< the batch of 16) would attack nothing and pick best.keras
    # on no adversarial example at all.
    _, pipes = _pipes(replicas=2, eval_adv_examples=20)
    assert pipes.num_val_adv == 16
    with pytest.raises(UsageError, match=r"eval_adv_examples=10") as error:
        _pipes(replicas=2, eval_adv_examples=10)
    assert "global evaluation batch (16)" in str(error.value)
