"""Value parsers of the settings: text (a flag, a flagfile line, a model
card) -> a checked value.

The settings dataclasses (`TrainConfig`, `EvaluateSettings`, the analysis and
reproduction settings) name these in their fields' ``parser`` metadata and
call them in their checks; the command-line package wraps them in
absl flag parsers. They live here, below both, so the library's settings do
not import the command line. Nothing here imports absl or TensorFlow.

- `parse_fraction`: ``"8/255"`` or ``"0.0314"`` -> float.
- `parse_eps`: the same, checked to be in ``(0, 1]``.
- `parse_image_size`: ``"32"`` or ``"32,28"`` -> ``(H, W)`` or None.
"""

import fractions
import numbers

from atalp_keras.errors import UsageError


def parse_fraction(text, name="value"):
    """``"8/255"``, ``"0.0314"`` or ``"3e-2"`` -> float.

    Raises:
        UsageError: If ``text`` is neither a decimal number nor ``a/b``.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    text = str(text).strip()
    try:
        if "/" in text:
            numerator, denominator = text.split("/", 1)
            value = fractions.Fraction(numerator.strip()) / fractions.Fraction(
                denominator.strip())
            return float(value)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise UsageError(
            f"`{name}` must be a decimal number or a fraction such as 8/255. "
            f"Received: {name}={text!r}"
        ) from None


def parse_eps(text, name="eps"):
    """Parses ``text`` with `parse_fraction` and checks it is in ``(0, 1]``."""
    # Imported here: the attacks import TensorFlow, this module must not.
    from atalp_keras.attacks.base import check_eps

    try:
        return check_eps(parse_fraction(text, name), name)
    except UsageError:
        raise
    except ValueError as error:
        raise UsageError(str(error)) from None


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def parse_image_size(value, name="image_size"):
    """``"32"``, ``"32,28"``, ``32``, ``(32, 28)``, ``()``/None -> ``(H, W)``
    or None (keep the images' size).

    Raises:
        UsageError: Unless one or two positive integers are given.
    """
    received = value
    if isinstance(value, str):
        items = [s.strip() for s in value.split(",") if s.strip()]
        try:
            value = tuple(int(s) for s in items)
        except ValueError:
            raise UsageError(f"`{name}` must be one or two positive integers "
                             f"(H,W). Received: {name}={received!r}") from None
    if value is None or value == () or value == [] or value == 0:
        return None
    size = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if len(size) == 1:
        size = (size[0], size[0])
    if len(size) != 2 or not all(_is_int(d) and d >= 1 for d in size):
        raise UsageError(f"`{name}` must be one or two positive integers "
                         f"(H, W). Received: {name}={received!r}")
    return tuple(int(d) for d in size)
