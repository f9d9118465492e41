"""The flag-value parsers (atalp_keras.cli). The evaluation package's tests are
in tests/evaluation/, the TrainConfig checks in tests/training/."""

import pytest

from atalp_keras import cli


def test_parse_fraction_and_eps():
    assert cli.parse_fraction("8/255") == pytest.approx(8 / 255)
    assert cli.parse_fraction(" 64 / 256 ") == 0.25
    assert cli.parse_fraction("3e-2") == 0.03
    assert cli.parse_eps("0.5") == 0.5
    for bad in ("8/", "abc", "1/0", ""):
        with pytest.raises(ValueError, match="fraction such as 8/255"):
            cli.parse_fraction(bad, "eps")
    with pytest.raises(ValueError, match="did you mean eps=8/255"):
        cli.parse_eps("8")
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        cli.parse_eps("0")
