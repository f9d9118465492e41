"""atalp_keras.artifacts: the run-folder layout and the model card."""

import json
import os

from atalp_keras import artifacts


def test_run_folder_paths_use_the_declared_names(tmp_path):
    folder = artifacts.RunFolder(tmp_path)
    assert folder.classifier == os.path.join(tmp_path, "classifier.keras")
    assert folder.card == os.path.join(tmp_path, artifacts.CARD_FILE)
    assert folder.last_checkpoint == os.path.join(tmp_path, "checkpoints", "last.keras")
    assert folder.worker("worker_1").path == os.path.join(tmp_path, "workers", "worker_1")
    assert not folder.finished


def test_model_card_round_trip_and_legacy_folders(tmp_path):
    assert artifacts.read_model_card(tmp_path) is None
    legacy = {"git_commit": "c0ffee",
              "config": {"dataset": "digits", "data_seed": 2, "image_size": None,
                         "method": "pat", "eps": 0.2, "step_size": 0.05,
                         "model": "tiny", "seed": 1, "max_test_examples": 40},
              "dataset": {"input_shape": [8, 8, 1], "num_classes": 10,
                          "class_names": [str(i) for i in range(10)]}}
    (tmp_path / "metrics.json").write_text(json.dumps(legacy))
    card = artifacts.read_model_card(tmp_path)
    assert (card.dataset, card.data_seed, card.method, card.eps) == ("digits", 2, "pat", 0.2)
    assert (card.input_shape, card.commit, card.created) == ([8, 8, 1], "c0ffee", None)

    card.created = artifacts.now()
    artifacts.write_model_card(tmp_path, card)
    assert artifacts.read_model_card(tmp_path) == card
    # Keys a later version adds are ignored by this one.
    stored = artifacts.read_json(tmp_path / artifacts.CARD_FILE)
    artifacts.write_json(tmp_path / artifacts.CARD_FILE, dict(stored, extra=1))
    assert artifacts.read_model_card(tmp_path) == card
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]
