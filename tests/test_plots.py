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


def test_row_styles_are_distinct_beyond_the_palette() -> None:
    styles = plots.row_styles([f"r{k}" for k in range(25)])
    assert len(set(styles.values())) == 25
    assert {styles[f"r{k}"][1] for k in range(10)} == {"o"} and styles["r10"][1] == "s"
    assert styles["r0"][0] == styles["r10"][0]  # the colour comes round again with the next marker


def test_draws_plot_orders_the_legend_stars_the_best_row_and_floors_outliers(drawn, tmp_path) -> None:
    points = {
        "dev": {"b": [61.0], "a": [66.0, 67.0], "z": [5.0, 60.0]},
        "h1": {"a": [59.0], "b": [58.0]},
    }
    baseline, ceiling, prior = {"dev": 64.0, "h1": 57.5}, {"h1": 62.0}, {"dev": 62.0, "h1": 55.0}
    path = plots.plot_draws(tmp_path / "d.png", points, baseline, ceiling, prior, highlight="a", order=["a", "b"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (ax,) = drawn[0][0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["label-free baseline", "supervised ceiling", "centre prior", "a (best)", "b", "z"]
    low, high = ax.get_ylim()
    assert high > 67.0  # 5 is more than 15 below every line (floor 40): not in the range
    assert [t.get_text() for t in ax.texts] == ["5"]  # ... but written on the floor
    stars = [y for line in ax.lines if line.get_marker() == "*" for y in line.get_ydata()]
    assert sorted(stars) == [59.0, 66.0, 67.0]
    assert low == pytest.approx(55.0 - 0.05 * 12.0 - 0.5)  # the lowest line, less the margin
