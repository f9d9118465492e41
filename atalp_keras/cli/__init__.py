"""Command-line entry points (``atalp-train``, ...) and what they share.

The shared helpers of `atalp_keras.cli.common` are re-exported here, so
``from atalp_keras.cli import parse_eps`` keeps working. Importing this
package does not import TensorFlow.
"""

from atalp_keras.cli.common import (USAGE_ERROR_EXIT_CODE, EpsListParser,
                                    EpsParser, ItemListParser, ListSerializer,
                                    ValueParser, dataclass_from_flags,
                                    define_flags, fail, flags_to_text,
                                    import_tensorflow_quietly, main_boundary,
                                    one_line, parse_eps, parse_flags,
                                    parse_fraction, parse_image_size,
                                    quiet_tensorflow, quiet_tensorflow_logs,
                                    run)
