"""One benchmark row in this process: ``python -m speedlib.child '<json payload>'``."""

import json
import os
import sys
import time

from .plan import RESULT_TAG


def row_functions():
    from . import rows_attack, rows_train

    return {"units": rows_train.row_units, "steps": rows_train.row_steps,
            "epochs": rows_train.row_epochs, "preset": rows_train.row_preset,
            "reference": rows_train.row_reference, "art_trainer": rows_train.row_art_trainer,
            "costmodel": rows_train.row_costmodel, "prepare": rows_attack.row_prepare,
            "attack": rows_attack.row_attack}


def main(payload):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from . import timing

    spec = json.loads(payload)
    cfg, row = spec["cfg"], spec["row"]
    import keras

    keras.utils.set_random_seed(cfg["seed"])
    start = time.perf_counter()
    result = row_functions()[row["kind"]](cfg, row)
    result["peak_rss_mb"] = timing.peak_rss_mb()
    result["row_wall_seconds"] = time.perf_counter() - start
    print(RESULT_TAG + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
