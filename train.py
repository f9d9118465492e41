"""Trains a classifier with AT+ALP (or another preset), then exports it.

    python train.py --flagfile=configs/digits_at_alp.flags

The same as the ``atalp-train`` command; see `atalp_keras.cli.train` and
``python train.py --help``.
"""

from atalp_keras.cli.train import main

if __name__ == "__main__":
    main()
