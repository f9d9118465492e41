"""The speed benchmark's parts, importable and testable (``bench/speed.py`` drives them).

- `config`: the bench settings, declared once as a dataclass (the flags come from it).
- `workloads`: models and data of each workload (digits 8x8, 28x28, CIFAR-size).
- `reference`: the hand-written PGD-AT step the package is measured against.
- `variants`: bench-only model/attack variants (levers).
- `timing`: round-robin timing, epoch timing, memory readings.
- `counting`: a model wrapper counting forward and input-gradient images.
- `costmodel`: per-layer MAC counts and passes per image per training step.
- `rows_train`, `rows_attack`: what one row measures (run in a child process).
- `plan`: which rows run, and running one in a fresh process.
- `report`: derived ratios, target checks and the printed tables.
"""
