"""The dataset sources; importing this package registers each of them.

The registration order is the order of the sources in help texts.
"""

from atalp_keras.data.sources import digits  # noqa: F401
from atalp_keras.data.sources import tfds  # noqa: F401
from atalp_keras.data.sources import folder  # noqa: F401
from atalp_keras.data.sources import idx  # noqa: F401
from atalp_keras.data.sources import fashion_mnist  # noqa: F401
