"""The analyses of the AT + ALP paper (Goodman et al. 2020), as library calls.

- ``attention_maps`` (``attention.py``): the stage attention maps of Figures
  1 and 4; ``upsample_to`` overlays them on the image.
- ``robust_accuracy_vs_iterations`` (``iterations.py``): accuracy against
  PGD-k for k = 10..200, white-box or transferred from a source model
  (gray/black box, Figure 3); ``pgd_trajectory`` is its resumable PGD.
- ``loss_landscape`` (``landscape.py``): ``z(a, b) = CE(f(x + a r1 + b r2), y)``
  with ``r1 = sign(grad_x CE)`` and Rademacher ``r2`` (Figure 6).
- ``key_region_activation`` (``key_regions.py``): mean upsampled attention
  inside human-annotated key-region masks (Table 3).

Conventions (METHOD.md): images are float in ``[0, 1]``, ``eps`` and
``step_size`` are on that scale, ``model(x, training=False)`` returns logits.
Nothing here reads flags; long loops report through an optional
``progress(message)`` callback.
"""

from atalp_keras.analysis.attention import attention_maps, short_stage_name, upsample_to
from atalp_keras.analysis.iterations import (check_iterations, pgd_trajectory,
                                             robust_accuracy_vs_iterations)
from atalp_keras.analysis.key_regions import check_masks, key_region_activation
from atalp_keras.analysis.landscape import loss_landscape

__all__ = [
    "attention_maps", "check_iterations", "check_masks", "key_region_activation",
    "loss_landscape", "pgd_trajectory", "robust_accuracy_vs_iterations",
    "short_stage_name", "upsample_to",
]
