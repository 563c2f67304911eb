"""The run's overview page: datasets and their splits, methods, the CRF parameters used, machine, versions, wall
time; and the configuration as a page of its own.

This is what the report opens with, so it fits one laptop screen for a run of a
few datasets: one table row per dataset and per network with a CRF.
"""

from __future__ import annotations

import html
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from lesionseg.io import atomic_path
from lesionseg.machine import machine_description, package_versions
from lesionseg.reporting.pages import legend, page, table_html
from lesionseg.reporting.runtimes import format_duration

PathLike = str | os.PathLike

SPLIT_ORDER: tuple[str, ...] = ("train", "val", "test")
"""Splits in the order a reader expects them; folds (``fold0``...) follow in their order, anything else last."""


@dataclass(frozen=True)
class DatasetRun:
    """What the overview says of one dataset: its manifest, scheme, modalities and methods."""

    name: str
    manifest: PathLike
    scheme: str
    modalities: Sequence[str]
    methods: Sequence[str]


@dataclass(frozen=True)
class CRFUse:
    """The CRF parameters one network of a dataset uses, and where they come from (a tuning's YAML, the model
    file, or the configuration)."""

    dataset: str
    network: str
    parameters: Mapping[str, Any]
    origin: str


def split_counts(manifest_path: PathLike) -> str:
    """``train 6 · val 2 · test 4`` (labelled and unlabelled subjects alike), from a manifest."""
    manifest = pd.read_csv(manifest_path, sep="\t", dtype=str, keep_default_na=False)
    counts = Counter(manifest["split"])

    def rank(split: str) -> tuple[int, str]:
        if split in SPLIT_ORDER:
            return SPLIT_ORDER.index(split), split
        return (len(SPLIT_ORDER), f"{split[4:]:>6}") if split.startswith("fold") else (len(SPLIT_ORDER) + 1, split)

    return " · ".join(f"{split} {counts[split]}" for split in sorted(counts, key=rank))


def datasets_table(datasets: Sequence[DatasetRun]) -> pd.DataFrame:
    """One row per dataset: subjects per split, label scheme, modalities, methods."""
    return pd.DataFrame({
        "Dataset": [d.name for d in datasets],
        "Subjects per split": [split_counts(d.manifest) for d in datasets],
        "Labels": [d.scheme for d in datasets],
        "Modalities": [", ".join(d.modalities) for d in datasets],
        "Methods": [", ".join(d.methods) or "none" for d in datasets],
    })


def _numbers(values: Any, decimals: int) -> str:
    values = values if isinstance(values, list | tuple) else [values]
    unique = {round(float(v), decimals) for v in values}
    if len(unique) == 1:  # an isotropic sigma: one number
        return f"{float(values[0]):.{decimals}f}"
    return ", ".join(f"{float(v):.{decimals}f}" for v in values)


def crf_table(uses: Sequence[CRFUse]) -> pd.DataFrame:
    """One row per network with a CRF: its kernels' weights and widths, mean-field iterations, origin."""
    rows = []
    for use in uses:
        p = use.parameters
        rows.append({
            "Dataset": use.dataset, "Network": use.network,
            "Smooth. w": _numbers(p["smoothness_weight"], 3),
            "Smooth. σ mm": _numbers(p["smoothness_sigma_mm"], 2),
            "Appear. w": _numbers(p["appearance_weight"], 3),
            "Appear. σ mm": _numbers(p["appearance_sigma_mm"], 2),
            "Intensity σ": _numbers(p["intensity_sigma"], 2),
            "Iter.": str(p["iterations"]),
            "From": use.origin,
        })
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class RunTime:
    """How long the results took: the span from the first benchmarked job's start to the last one's end (the
    run's wall time, or, over incremental re-runs, the time since the oldest result), and the time summed over
    the jobs (wall and CPU)."""

    span_s: float | None
    job_s: float
    cpu_s: float


def run_time_of(run_times: Sequence[PathLike]) -> RunTime:
    """:class:`RunTime` over the datasets' run times (:func:`lesionseg.reporting.runtimes.run_time`, as YAML)."""
    records = [yaml.safe_load(Path(path).read_text()) for path in run_times]
    spans = [(datetime.fromisoformat(r["start"]), datetime.fromisoformat(r["end"])) for r in records if r.get("start")]
    span = (max(end for _, end in spans) - min(start for start, _ in spans)).total_seconds() if spans else None
    return RunTime(span, sum(float(r.get("job_s") or 0) for r in records),
                   sum(float(r.get("cpu_s") or 0) for r in records))


def datasets_of(datasets: Mapping[str, Mapping[str, Any]], manifests: Sequence[PathLike]) -> list[DatasetRun]:
    """The rule's description of each dataset (name -> scheme, modalities, methods) with its manifest, in order."""
    return [DatasetRun(name, manifest, entry["scheme"], list(entry["modalities"]), list(entry["methods"]))
            for (name, entry), manifest in zip(datasets.items(), manifests, strict=True)]


def crf_uses_of(crf: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[CRFUse]:
    """The rule's CRF description (dataset -> network -> tuned parameters' file or None, and the parameters used
    otherwise) as :class:`CRFUse`, reading each tuning's YAML."""
    uses = []
    for dataset, networks in crf.items():
        for network, entry in networks.items():
            tuned = entry["tuned"]
            if tuned:
                record = yaml.safe_load(Path(tuned).read_text())
                origin = (f"tuned on {len(record['validation_subjects'])} validation subjects of "
                          f"{Path(tuned).parent.parent.parent.name}: Dice {record['network_mean_dice']:.3f} "
                          f"→ {record['mean_dice']:.3f}")
                uses.append(CRFUse(dataset, network, record["parameters"], origin))
            else:
                uses.append(CRFUse(dataset, network, entry["parameters"], "configured (or the model file's)"))
    return uses


def overview_html(datasets: Sequence[DatasetRun], crf_uses: Sequence[CRFUse], machine: Mapping[str, str],
                  versions: Mapping[str, str], run_time: RunTime) -> str:
    """The overview page."""
    span = "unknown" if run_time.span_s is None else format_duration(run_time.span_s)
    facts = {"Wall time": f"{span} from the first benchmarked job's start to the last one's end (over incremental "
                          "re-runs: since the oldest result)",
             "Job time": f"{format_duration(run_time.job_s)} summed over the benchmarked jobs, "
                         f"{format_duration(run_time.cpu_s)} of CPU",
             **{k[:1].upper() + k[1:]: v for k, v in machine.items()},
             "Versions": ", ".join(f"{k} {v}" for k, v in versions.items())}
    facts_rows = "".join(f"<tr><th class='text'>{html.escape(k)}</th><td class='text'>{html.escape(v)}</td></tr>"
                         for k, v in facts.items())
    parts = [
        "<h2>Datasets</h2>", table_html(datasets_table(datasets), index=False),
        legend("Subjects per split as in each dataset's manifest (results/<dataset>/subjects.tsv): train and val "
               "train and validate the networks, test subjects are scored (fold<k>: a cross-validation fold, "
               "scored by the fold model that never saw it); subjects without truth are segmented, not scored."),
    ]
    if crf_uses:
        parts += ["<h2>CRF parameters used</h2>", table_html(crf_table(crf_uses), index=False),
                  legend("Weights (w) and widths (σ) of the 3D fully connected CRF's smoothness kernel (position "
                         "only) and appearance kernel (position and intensity: one intensity σ per image channel, "
                         "in z-score units), and its mean-field iterations, as applied to each network's "
                         "probabilities; tuned: the mean validation Dice of the network without → with the CRF.")]
    parts += ["<h2>Run</h2>", f"<table><tbody>{facts_rows}</tbody></table>",
              legend("Machine and versions of the report's job; the model files record the versions they were "
                     "trained with. The configuration with its defaults filled in is the report item "
                     "'configuration.html'.")]
    return page("lesionseg run overview", parts)


def configuration_html(config: Mapping[str, Any]) -> str:
    """The configuration of the run (defaults filled in) as YAML, on a page of its own."""
    text = yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=None, width=110)
    return page("Configuration of this run (defaults filled in)",
                [f"<pre style='font-size: 12px'>{html.escape(text)}</pre>"])


def write_overview(datasets: Sequence[DatasetRun], crf_uses: Sequence[CRFUse], run_times: Sequence[PathLike],
                   config: Mapping[str, Any], overview_path: PathLike, configuration_path: PathLike) -> None:
    """Write the overview (with this machine and the installed versions) and the configuration pages,
    atomically."""
    page_html = overview_html(datasets, crf_uses, machine_description(), package_versions(), run_time_of(run_times))
    with atomic_path(overview_path) as tmp:
        tmp.write_text(page_html)
    with atomic_path(configuration_path) as tmp:
        tmp.write_text(configuration_html(config))
