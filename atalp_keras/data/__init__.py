"""Data for atalp-keras: dataset sources as ``tf.data``, batching, and the
checks every user-supplied image and label goes through.

- `load_dataset` (``registry.py``) dispatches a spec (``digits``,
  ``fashion_mnist``, ``tfds:<name>[:split]``, ``folder:<path>``,
  ``idx:<path>``) to the source that registered its prefix (``sources/``);
  each returns a `DatasetInfo` of unbatched ``(image, label)`` pairs, image
  float32 in ``[0, 1]`` NHWC, label int32 in ``[0, K)``.
- `make_pipeline`, `RandomPadCrop`, `to_numpy` (``pipeline.py``).
- `stratified_split`, `subset_indices`, `select_examples`, `take_subset`
  (``splits.py``): which examples go where, seeded by the data seed only.
- `check_images`, `check_labels`, `check_num_classes`, `validate_arrays`,
  `check_dataset` (``validation.py``): the one shared validator; each raises
  `atalp_keras.errors.UsageError` with one line.

Nothing here downloads: TFDS data must already be prepared in ``data_dir``.
"""

from atalp_keras.data.info import DatasetInfo
from atalp_keras.data.pipeline import RandomPadCrop, make_pipeline, to_numpy
from atalp_keras.data.registry import (SourceRequest, check_image_size,
                                       load_dataset, register_source,
                                       source_usage)
from atalp_keras.data.splits import (select_examples, stratified_split,
                                     subset_indices, take_subset)
from atalp_keras.data.validation import (check_dataset, check_images,
                                         check_labels, check_num_classes,
                                         validate_arrays)
from atalp_keras.data import sources  # noqa: E402,F401  (registers them)

__all__ = [
    "DatasetInfo", "RandomPadCrop", "SourceRequest", "check_dataset",
    "check_image_size", "check_images", "check_labels", "check_num_classes",
    "load_dataset", "make_pipeline", "register_source", "select_examples",
    "source_usage", "stratified_split", "subset_indices", "take_subset",
    "to_numpy", "validate_arrays",
]
