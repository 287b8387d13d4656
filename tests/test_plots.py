"""The study scatter of :mod:`wsol.plots`: what it draws, read back from the figure."""

from __future__ import annotations

import pytest

import wsol.plots as plots
from wsol.plots import ReferenceLine, ScatterPoint, plot_study_scatter


@pytest.fixture
def drawn(monkeypatch, tmp_path):
    """The figure plot_study_scatter draws, kept before it is closed (and still written to disk)."""
    figures = []
    save = plots.save_figure

    def keep(fig, path, dpi=110):
        figures.append((fig.axes, [ax.get_legend_handles_labels()[1] for ax in fig.axes]))
        return save(fig, path, dpi)

    monkeypatch.setattr(plots, "save_figure", keep)
    return figures


def test_study_scatter_panels_points_and_lines(drawn, tmp_path) -> None:
    panels = {
        "regime all": [
            ScatterPoint("cam", 71.0, 1.0, 59.0, 0.5, 60.0),
            ScatterPoint("psol", 72.0, 0.5, 66.0, 0.4, 67.0),
        ],
        "regime n300": [ScatterPoint("cam", 68.0, 1.0, 58.0, 0.5, 59.0)],
    }
    lines = [
        ReferenceLine("center_gaussian", 62.67),
        ReferenceLine("all_ones", 0.0, ":"),
        ReferenceLine("target", 67.67, "-", "red"),
    ]
    path = plot_study_scatter(tmp_path / "s.png", panels, lines, title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    axes, legends = drawn[0]
    assert [ax.get_title() for ax in axes] == ["regime all", "regime n300"]
    for ax, legend in zip(axes, legends, strict=True):
        low, high = ax.get_ylim()
        assert low < 58.0 and high > 67.67  # the points and the target are in view
        assert legend == ["center_gaussian: 62.67", "all_ones: 0.00, off the axis", "target: 67.67"]
    # One colour per label across panels: cam's error bar has the same colour in both, psol's another.
    cam_all, psol_all = (c.lines[0].get_color() for c in axes[0].containers)
    (cam_n300,) = (c.lines[0].get_color() for c in axes[1].containers)
    assert cam_all == cam_n300 != psol_all
