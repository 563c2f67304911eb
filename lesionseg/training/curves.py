"""Learning curves: every training phase of a model on one epoch axis, from the phases' history files.

A history (``history.csv``, one row per epoch) holds the epoch, the mean training loss, the learning rate
and the validation Dice per region (``val_dice_<region>``). The epoch a phase keeps as its model is the first
with the best :func:`selection_score`; the training loop chooses with the same function. nnU-Net's histories
(:mod:`lesionseg.nnunet.training`) also hold ``val_loss`` (its loss, Dice + cross-entropy, on validation
patches; its Dice columns are its pseudo Dice on those patches) and ``kept`` (1 on the epoch whose weights the
model holds: nnU-Net keeps its last).

Torch-free: the rule that draws the figure does not import torch.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lesionseg.io import atomic_path

PathLike = str | os.PathLike
History = Sequence[Mapping[str, Any]]

DICE_PREFIX = "val_dice_"
DPI = 100
PHASE_BAND = "#eef1f6"
"""Background of the phases after the first."""
BOUNDARY_COLOUR = "#4a5a78"
LR_COLOUR = "#7b3294"
KEPT_COLOUR = "#f2b705"


def dice_regions(history: History) -> list[str]:
    """The regions a history has a validation Dice for, in column order."""
    return [key.removeprefix(DICE_PREFIX) for key in (history[0] if history else {}) if key.startswith(DICE_PREFIX)]


def selection_score(row: Mapping[str, Any]) -> float:
    """What an epoch is chosen by: its mean validation Dice over the regions, or minus its training loss
    without validation subjects. A NaN score is never chosen."""
    dice = [float(row[key]) for key in row if key.startswith(DICE_PREFIX)]
    return sum(dice) / len(dice) if dice else -float(row["loss"])


def is_nnunet(history: History) -> bool:
    """Whether a history is nnU-Net's (it has nnU-Net's validation loss)."""
    return bool(history) and "val_loss" in history[0]


def kept_epoch(history: History) -> int | None:
    """The epoch whose weights the phase keeps (its ``model.pt``): the one marked ``kept``, else the first with
    the best score."""
    marked = [int(row["epoch"]) for row in history if row.get("kept") == 1]
    if marked:
        return marked[0]
    best, kept = -math.inf, None
    for row in history:
        score = selection_score(row)
        if score > best:
            best, kept = score, int(row["epoch"])
    return kept


def lr_changes(history: History) -> list[tuple[int, float, float]]:
    """``(epoch, previous lr, new lr)`` for each epoch of a phase that starts at another learning rate."""
    return [(int(row["epoch"]), float(before["lr"]), float(row["lr"]))
            for before, row in zip(history, history[1:]) if not math.isclose(float(before["lr"]), float(row["lr"]))]


def read_history(path: PathLike) -> list[dict[str, float]]:
    """The rows of a ``history.csv`` as numbers (an empty cell reads as NaN)."""
    with open(path, newline="") as handle:
        return [{key: float(value) if value != "" else math.nan for key, value in row.items()}
                for row in csv.DictReader(handle)]


def _format_lr(lr: float) -> str:
    return f"{lr:.0e}".replace("e-0", "e-")


def _mark_lr_changes(axes: Any, history: History, offset: int) -> None:
    """A dotted line where a phase's learning rate changes, labelled with the factor (once for a constant
    factor at every epoch, as Havaei's decay)."""
    changes = lr_changes(history)
    factors = [after / before for _, before, after in changes]
    if len(changes) > 3 and len(changes) == len(history) - 1:  # a schedule of every epoch: said once, no lines
        constant = all(math.isclose(f, factors[0]) for f in factors)
        text = f"×{factors[0]:.2g} per epoch" if constant else "changes every epoch"
        axes.annotate(text, (offset + changes[0][0] - 0.5, 1), xycoords=("data", "axes fraction"), xytext=(2, -2),
                      textcoords="offset points", va="top", ha="left", fontsize=8, color=LR_COLOUR)
        return
    for (epoch, _, _), factor in zip(changes, factors, strict=True):
        axes.axvline(offset + epoch - 0.5, color=LR_COLOUR, linestyle=":", linewidth=1)
        axes.annotate(f"×{factor:.2g}", (offset + epoch - 0.5, 1), xycoords=("data", "axes fraction"),
                      xytext=(2, -2), textcoords="offset points", va="top", ha="left", fontsize=8, color=LR_COLOUR)


def learning_curves_figure(phases: Mapping[int, History], region_colours: Mapping[str, str], title: str) -> Figure:
    """Training loss, validation Dice per region (and their mean) and learning rate against the epoch.

    ``phases`` maps each phase (1, 2) to its history; later phases continue the epoch axis of the earlier
    ones on a shaded background. Each phase's kept epoch is starred (on the mean Dice; on the loss without
    validation); learning-rate changes are marked with their factor.
    """
    figure = Figure(figsize=(10, 7.5))
    FigureCanvasAgg(figure)
    loss_axes, dice_axes, lr_axes = figure.subplots(3, 1, sharex=True, height_ratios=[3, 3, 1.3])
    order = [p for p in sorted(phases) if phases[p]]
    regions = list(dict.fromkeys(r for p in order for r in dice_regions(phases[p])))
    validated = bool(regions)
    kept_axes = dice_axes if validated else loss_axes
    offset, total, max_loss, min_loss = 0, sum(len(phases[p]) for p in order), 0.0, 0.0
    nnunet = any(is_nnunet(phases[p]) for p in order)
    previous_kept: int | None = None
    labelled: set[str] = set()

    def label_once(name: str) -> str | None:
        if name in labelled:
            return None
        labelled.add(name)
        return name

    for index, phase in enumerate(order):
        history = phases[phase]
        epochs = [int(row["epoch"]) for row in history]
        x = [offset + epoch for epoch in epochs]
        if index:  # a later phase: shaded, its start marked and named just left of the line
            for axes in (loss_axes, dice_axes, lr_axes):
                axes.axvspan(offset + 0.5, offset + len(history) + 0.5, color=PHASE_BAND, zorder=0)
                axes.axvline(offset + 0.5, color=BOUNDARY_COLOUR, linestyle="--", linewidth=1.2, zorder=1)
            source = f"\nfrom phase {order[index - 1]}'s epoch {previous_kept}" if previous_kept is not None else ""
            loss_axes.annotate(f"phase {phase} starts \u2192{source}", (offset + 0.5, 1),
                               xycoords=("data", "axes fraction"), xytext=(-5, -5), textcoords="offset points",
                               va="top", ha="right", fontsize=9, color=BOUNDARY_COLOUR, fontweight="bold")
        else:
            loss_axes.annotate(f"phase {phase}", (offset + 0.5, 1), xycoords=("data", "axes fraction"),
                               xytext=(5, -5), textcoords="offset points", va="top", ha="left", fontsize=9,
                               color=BOUNDARY_COLOUR, fontweight="bold")

        losses = [float(row["loss"]) for row in history]
        finite = [v for v in losses if math.isfinite(v)]
        max_loss, min_loss = max([max_loss, *finite]), min([min_loss, *finite])
        loss_axes.plot(x, losses, color="#333333", marker="o", markersize=4, linewidth=1.6,
                       label=label_once("training") if nnunet else None)
        if is_nnunet(history):
            val_losses = [float(row["val_loss"]) for row in history]
            max_loss = max([max_loss, *[v for v in val_losses if math.isfinite(v)]])
            min_loss = min([min_loss, *[v for v in val_losses if math.isfinite(v)]])
            loss_axes.plot(x, val_losses, color="#999999", marker="o", markersize=3, linewidth=1.2,
                           label=label_once("validation patches"))
        means = [selection_score(row) for row in history] if validated else losses
        for region in regions:
            values = [float(row.get(f"{DICE_PREFIX}{region}", math.nan)) for row in history]
            dice_axes.plot(x, values, color=region_colours.get(region, "#888888"), marker="o", markersize=3.5,
                           linewidth=1.3, label=label_once(region))
        if validated:
            dice_axes.plot(x, means, color="black", marker="o", markersize=4.5, linewidth=2.4,
                           label=label_once("mean"))
        lr_axes.plot(x, [float(row["lr"]) for row in history], color=LR_COLOUR, marker="o", markersize=3,
                     linewidth=1.4, drawstyle="steps-mid")
        _mark_lr_changes(lr_axes, history, offset)

        kept = kept_epoch(history)
        if kept is not None:
            y = means[epochs.index(kept)]
            what = f"mean Dice {y:.2f}" if validated else f"loss {y:.3f}"
            kept_axes.plot([offset + kept], [y], marker="*", markersize=18, color=KEPT_COLOUR,
                           markeredgecolor="black", linestyle="none", zorder=5,
                           label=label_once("kept epoch\n(model.pt)"))
            # Low in the panel, where the curves of the best epoch are not (for the loss, whose lowest epoch is
            # low on the right, at mid-height), a phase's label above the one before; inside the axes at either end.
            share = (offset + kept - 0.5) / max(total, 1)
            align = "left" if share < 0.12 else "right" if share > 0.88 else "center"
            own = f" (its epoch {kept})" if offset else ""
            kept_axes.annotate(f"phase {phase} keeps epoch {offset + kept}{own}\n{what}", (offset + kept, y),
                               xytext=(0.0, (0.05 if validated else 0.4) + 0.17 * index),
                               textcoords=("offset points", "axes fraction"),
                               ha=align, va="bottom", fontsize=8.5, zorder=6,
                               arrowprops={"arrowstyle": "-", "color": "#777777", "linewidth": 0.8,
                                           "shrinkB": 9},
                               bbox={"boxstyle": "round,pad=0.25", "facecolor": (1, 1, 1, 0.85),
                                     "edgecolor": "#999999"})
        previous_kept = kept
        offset += len(history)

    # nnU-Net's loss adds the negative soft Dice to the cross-entropy: it falls below 0.
    span = (max_loss - min_loss) or 1
    loss_axes.set(ylabel="loss\n(Dice + cross-entropy)" if nnunet else "training loss\n(cross-entropy)",
                  ylim=(min_loss - 0.06 * span if min_loss < 0 else 0, max_loss + 0.12 * span), title=title)
    if nnunet:
        loss_axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False, borderaxespad=0)
    dice_axes.set(ylabel="validation pseudo Dice\n(nnU-Net, on patches)" if nnunet else
                  "validation Dice\n(dense inference)", ylim=(0, 1.02))
    if not validated:
        dice_axes.text(0.5, 0.5, "no validation subjects:\neach phase keeps the epoch of lowest training loss",
                       transform=dice_axes.transAxes, ha="center", va="center", color="#555555")
    if labelled:
        kept_axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False,
                         borderaxespad=0, labelspacing=0.8)
    lr_axes.set(ylabel="learning\nrate", yscale="log",
                xlabel="epoch (the phases one after the other)" if len(order) > 1 else "epoch")
    lr_axes.yaxis.set_major_formatter(lambda value, _: _format_lr(value))
    lr_axes.yaxis.set_minor_formatter(lambda value, _: "")
    lr_axes.margins(y=0.4)
    lr_axes.set_xlim(0.5, max(total, 1) + 0.5)
    if total <= 12:
        lr_axes.set_xticks(range(1, total + 1))
    else:
        lr_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    for axes in (loss_axes, dice_axes, lr_axes):
        axes.grid(axis="y", color="#dddddd", linewidth=0.7)
        axes.set_axisbelow(True)
    figure.align_ylabels()
    figure.tight_layout()
    return figure


def plot_learning_curves(path: PathLike, phases: Mapping[int, History], region_colours: Mapping[str, str],
                         title: str) -> None:
    """Write :func:`learning_curves_figure` as PNG, atomically."""
    figure = learning_curves_figure(phases, region_colours, title)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=DPI, format="png")
