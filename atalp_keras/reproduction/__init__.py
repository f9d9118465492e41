"""The reproduction pipeline behind ``experiments/reproduce.py``.

- `settings`: the run's settings (one dataclass; flags generated from it) and
  the training recipe as `TrainConfig` fields by name.
- `presets`: named recipes (``--preset=digits``, ``--preset=fmnist``), ``--quick``.
- `sweep`: AT/ALP weights chosen on a validation split of the training set.
- `models`: training of main models and transfer sources, reuse of finished ones.
- `evaluate`: the per-model attack suite, cached per model and attack.
- `stats`: Wilson intervals, mean ± std over seeds, the tie rule.
- `figures`, `report`, `discussion`: figures and the Markdown report (its prose
  in ``templates/``).
- `pipeline`: the steps in order.

Importing this package does not import TensorFlow.
"""
