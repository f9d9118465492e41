"""``atalp_keras.audit`` is ``atalp_keras.evaluation.audit`` (the audit moved
into the evaluation package; this name keeps working)."""

import sys

from atalp_keras.evaluation import audit as _audit

sys.modules[__name__] = _audit
