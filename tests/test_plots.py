"""The report's figures: methods told apart, names readable, legends clear of curves, nothing empty."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from clinfm.report import plots

MANY = [f"method_{letter}" for letter in "abcdefghijkl"]  # 12 methods the palette does not know


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """Every figure the plotting functions turn into SVG, to inspect after the call."""
    figures: list[Figure] = []
    real = plots.to_svg

    def record(fig: Figure, salt: str) -> str:
        figures.append(fig)
        return real(fig, salt)

    monkeypatch.setattr(plots, "to_svg", record)
    return figures


def _points(methods, values=None) -> list[dict]:
    points = []
    for k, method in enumerate(methods):
        for fraction in (0.1, 0.5, 1.0):
            value = (0.6 + 0.02 * k + 0.1 * fraction) if values is None else values
            estimate = {"value": value, "low": value - 0.03, "high": value + 0.03, "per_seed": [value]}
            points.append(
                {
                    "method": method,
                    "fraction": fraction,
                    "n_train": int(800 * fraction),
                    "metrics": {"auroc": estimate},
                }
            )
    return points


def _efficiency(methods, values=None, **kwargs) -> str:
    styles = plots.method_styles(methods)
    return plots.efficiency_svg(_points(methods, values), ["auroc"], {"auroc": "AUROC"}, styles, **kwargs)


def _probe_curves(methods, value=0.7) -> list[dict]:
    sizes = (100, 1000)
    return [
        {
            "method": m,
            "label": "AF",
            "points": [{"n_train_patients": n, "metric": "auroc", "value": value} for n in sizes],
        }
        for m in methods
    ]


def _predictions(methods, y=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    outcome = rng.random(200) < 0.3 if y is None else y
    return {
        m: (outcome, np.clip(0.3 + 0.3 * (outcome - 0.3) + rng.normal(0, 0.2, 200), 0, 1)) for m in methods
    }


def _log(losses) -> pl.DataFrame:
    epochs = np.repeat(np.arange(4), 2)
    return pl.DataFrame({"epoch": epochs, "step": np.arange(8), "train_loss": losses, "val_loss": losses})


# ----------------------------------------------------------------------------- styles


def _distinct(styles: dict[str, plots.Style]) -> bool:
    colours = [s.color for s in styles.values()]
    markers = [s.marker for s in styles.values()]
    return len(set(colours)) == len(colours) and len(set(markers)) == len(markers)


def test_up_to_twelve_methods_differ_in_colour_and_marker() -> None:
    assert len(plots.PALETTE) == 12 and _distinct(plots.ordered_styles(MANY))
    for count in range(1, 13):
        assert _distinct(plots.method_styles(MANY[:count]))
        assert _distinct(plots.method_styles(["pretrained", "gru", *MANY[: max(count - 2, 0)]]))


def test_known_methods_keep_their_colours_whatever_else_is_drawn() -> None:
    for others in ([], MANY[:3], MANY[:10]):
        styles = plots.method_styles(["gru", "pretrained", *others])
        assert styles["pretrained"].color == plots.PALETTE[0]
        assert styles["gru"].color == plots.PALETTE[plots.KNOWN_ORDER.index("gru")]


def test_past_the_palette_no_two_methods_look_the_same() -> None:
    methods = [f"m{i:02d}" for i in range(30)]
    for styles in (plots.method_styles(methods), plots.ordered_styles(methods)):
        looks = [(s.color, s.marker, str(s.linestyle)) for s in styles.values()]
        assert all(a[0] != b[0] or (a[1], a[2]) != (b[1], b[2]) for a, b in itertools.combinations(looks, 2))


def test_no_palette_colour_is_too_faint_on_white() -> None:
    def luminance(colour: str) -> float:
        channels = np.array([int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
        linear = np.where(channels <= 0.04045, channels / 12.92, ((channels + 0.055) / 1.055) ** 2.4)
        return float(linear @ [0.2126, 0.7152, 0.0722])

    # WCAG contrast against white; Okabe-Ito's yellow (1.3) is the kind of colour kept out.
    assert min(1.05 / (luminance(c) + 0.05) for c in plots.PALETTE) >= 2.0


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("method", "name"),
    [
        ("no_mi", "No MI"),
        ("no_mltm", "No MLTM"),
        ("logistic_regression", "Logistic regression"),
        ("pretrained-f1-s0", "Pre-trained"),
        ("labs_scratch-f0.25-s1", "Labs scratch"),
        ("gru", "GRU"),
        ("BioBERT", "BioBERT"),
    ],
)
def test_display_name_turns_ids_into_words(method: str, name: str) -> None:
    assert plots.display_name(method) == name


def test_display_name_prefers_the_given_labels_also_for_runs() -> None:
    labels = {"pretrained": "Pre-trained transformer"}
    assert plots.display_name("pretrained", labels) == "Pre-trained transformer"
    assert plots.display_name("pretrained-f0.5-s2", labels) == "Pre-trained transformer"
    assert (
        plots.run_title("cohort-pretrained-f0.25-s1", labels)
        == "Pre-trained transformer, 25% of labels, seed 1"
    )
    assert plots.run_title("pretrain (version_1)") == "Pre-train (version_1)"


def test_figures_name_methods_by_display_name(drawn: list[Figure]) -> None:
    svg = _efficiency(["no_mltm", "full"], labels={"full": "Full model"})
    assert "No MLTM" in svg and "Full model" in svg and "no_mltm" not in svg
    roc = plots.roc_svg(_predictions(["no_mi"]), plots.method_styles(["no_mi"]))
    assert "No MI (AUROC" in roc and "no_mi" not in roc
    loss = plots.loss_svg([("t-pretrained-f1-s0", _log(np.linspace(1, 0.5, 8)))])
    assert "Pre-trained, 100% of labels, seed 0" in loss and "pretrained-f1" not in loss


# ----------------------------------------------------------------------------- small multiples


def test_methods_split_into_groups_of_at_most_four_only_when_many() -> None:
    assert plots.method_groups(MANY[:4]) == [("", MANY[:4])]
    groups = plots.method_groups(MANY[:10])
    assert [m for _, members in groups for m in members] == MANY[:10]
    assert all(len(members) <= plots.MAX_BANDED_METHODS for _, members in groups) and len(groups) == 3
    assert plots.method_groups(MANY[:10], small_multiples=False) == [("", MANY[:10])]
    assert len(plots.method_groups(MANY[:2], small_multiples=True)) == 1


def test_caller_groups_keep_their_titles_and_leftovers_get_a_panel() -> None:
    groups = plots.method_groups(["a", "b", "c"], {"Encoders": ["a", "x"], "Baselines": ["b"]})
    assert groups == [("Encoders", ["a"]), ("Baselines", ["b"]), ("Other methods", ["c"])]


def test_many_methods_get_a_panel_per_group_sharing_the_y_axis(drawn: list[Figure]) -> None:
    svg = _efficiency(MANY[:6], groups=None)
    assert "other panels' methods" in svg  # the grey reference lines' legend entry
    columns = drawn[-1].subfigs
    assert len(columns) == 2
    left, right = (column.axes[0] for column in columns)
    assert left.get_ylim() == right.get_ylim()
    assert "other panels" not in _efficiency(MANY[:4])
    grouped = _efficiency(MANY[:3], groups={"Pre-trained encoders": MANY[:2], "Baselines": MANY[2:]})
    assert "Pre-trained encoders" in grouped and "Baselines" in grouped
    probes = plots.probe_svg(_probe_curves(MANY[:8]), plots.ordered_styles(MANY[:8]))
    assert len(drawn[-1].subfigs) == 2 and "other panels' methods" in probes


# ----------------------------------------------------------------------------- legends and axes


def _all_figures(drawn: list[Figure]) -> list[Figure]:
    _efficiency(MANY[:3])
    _efficiency(MANY[:6])
    plots.probe_svg(_probe_curves(MANY[:3]), plots.ordered_styles(MANY[:3]))
    predictions = _predictions(MANY[:5])
    plots.roc_svg(predictions, plots.method_styles(MANY[:5]))
    plots.calibration_svg(predictions, plots.method_styles(MANY[:5]), None, 0.3)
    plots.loss_svg([("a", _log(np.linspace(1, 0.5, 8))), ("b", _log(np.linspace(2, 1, 8)))])
    return drawn


def test_legends_sit_outside_every_axes(drawn: list[Figure]) -> None:
    for fig in _all_figures(drawn):
        FigureCanvasAgg(fig).draw()
        legends = [*fig.legends, *(legend for sub in fig.subfigs for legend in sub.legends)]
        axes = [ax for ax in fig.get_axes() if ax.get_visible()]
        assert legends and all(ax.get_legend() is None for ax in axes)
        for legend, ax in itertools.product(legends, axes):
            assert not legend.get_window_extent().overlaps(ax.get_window_extent())


def test_loss_curves_tick_whole_epochs(drawn: list[Figure]) -> None:
    assert plots.loss_svg([("run", _log(np.linspace(1, 0.5, 8)))])
    ax = drawn[-1].axes[0]
    assert isinstance(ax.xaxis.get_major_locator(), MaxNLocator) and ax.get_xlabel() == "epoch"
    ticks = ax.xaxis.get_major_locator()()
    assert all(float(t).is_integer() for t in ticks)


# ----------------------------------------------------------------------------- nothing to draw


def test_nothing_to_draw_gives_an_empty_string() -> None:
    styles = plots.method_styles(["a"])
    assert _efficiency(["a"], values=float("nan")) == ""
    assert plots.efficiency_svg([], ["auroc"], {}, styles, {}) == ""
    assert plots.probe_svg(_probe_curves(["a"], value=None), styles, {}) == ""
    one_class = _predictions(["a"], y=np.zeros(200, dtype=bool))
    assert (
        plots.roc_svg(one_class, styles, {}) == "" and plots.calibration_svg(one_class, styles, {}, 0.0) == ""
    )
    missing = {"a": (np.array([0, 1, 0, 1]), np.full(4, np.nan))}
    assert plots.roc_svg(missing, styles) == "" and plots.calibration_svg(missing, styles) == ""
    assert plots.loss_svg([]) == "" and plots.loss_svg([("run", _log(np.full(8, np.nan)))]) == ""


def test_a_method_without_data_is_left_out_but_the_others_drawn() -> None:
    predictions = {**_predictions(["a"]), "b": (np.ones(10, dtype=bool), np.linspace(0, 1, 10))}
    svg = plots.roc_svg(predictions, plots.method_styles(["a", "b"]), {"a": "Alpha", "b": "Beta"})
    assert "Alpha" in svg and "Beta" not in svg
