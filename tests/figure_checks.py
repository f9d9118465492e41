"""Reading back what a figure shows, for the tests of the figures and of the
commands that write them.

`saved_figures` records every matplotlib `Figure` saved while a test runs
(the file is still written), so a test of a whole command can check the
plotted values against the results the command wrote beside them.
"""

import os

import numpy as np
import pytest
from matplotlib.figure import Figure


@pytest.fixture
def saved_figures(monkeypatch):
    """``{file name: Figure}`` of the figures saved during the test."""
    saved = {}
    savefig = Figure.savefig

    def recording_savefig(fig, fname, *args, **kwargs):
        saved[os.path.basename(os.fspath(fname))] = fig
        return savefig(fig, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording_savefig)
    return saved


def lines(ax):
    """``{label: (x, y)}`` of the axes' lines, as float arrays."""
    return {line.get_label(): (np.asarray(line.get_xdata(), float),
                               np.asarray(line.get_ydata(), float))
            for line in ax.get_lines()}


def assert_lines(ax, expected):
    """The axes hold exactly the lines ``{label: (xs, ys)}`` (ys in percent)."""
    found = lines(ax)
    assert sorted(found) == sorted(expected)
    for label, (xs, ys) in expected.items():
        np.testing.assert_allclose(found[label][0], xs, err_msg=label)
        np.testing.assert_allclose(found[label][1], ys, atol=1e-9, err_msg=label)


def shown_image(ax, layer=0):
    """The array of the axes' ``layer``-th image (0: the picture, 1: an overlay)."""
    return np.asarray(ax.get_images()[layer].get_array())


def surface_quad_means(z):
    """What `plot_surface` colours each quad of a small grid by: the mean of
    its four corners, row by row."""
    z = np.asarray(z, float)
    return ((z[:-1, :-1] + z[1:, :-1] + z[:-1, 1:] + z[1:, 1:]) / 4).reshape(-1)
