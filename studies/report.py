"""Renders the results page from the committed metrics JSON: ``masklens report``.

Numbers in the write-up come only from here, so they cannot drift from the artifacts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from masklens.cli import parse_config


@dataclass(frozen=True)
class ReportConfig:
    results_dir: str = "results"
    template: str = "docs/templates/results.md.j2"
    # Not docs/results.md: that is the site's stub page, filled in at build time by docs_hooks/render.py.
    # build/ sits beside results/, so the template's ../results/ figure links work from here too.
    out: str = "build/results.md"


def load_results(results_dir: str | Path) -> dict:
    """{preset: {metrics stem: metrics dict, ..., "history": [...], "gallery": {...}}} for every
    results/<preset>/ folder (history and gallery only where their JSON exists)."""
    results = {}
    # A preset's folder holds metrics; results/figures and results/ablations do not.
    for preset_dir in sorted(p for p in Path(results_dir).iterdir() if any(p.glob("metrics-*.json"))):
        entry = {
            path.stem.removeprefix("metrics-"): json.loads(path.read_text())
            for path in sorted(preset_dir.glob("metrics-*.json"))
        }
        history_path = preset_dir / "history.json"
        if history_path.exists():
            entry["history"] = json.loads(history_path.read_text())["history"]
        gallery_path = preset_dir / "gallery.json"
        if gallery_path.exists():
            entry["gallery"] = json.loads(gallery_path.read_text())
        results[preset_dir.name] = entry
    return results


def load_optional_json(path: str | Path) -> dict | None:
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def load_context(results_dir: str | Path) -> dict:
    """What templates see: ``results`` (see ``load_results``); ``shipped``, the preset whose model the
    site ships (results/shipped.json, written by the release; ``default`` without it); and the
    top-level artifacts ``framing`` (results/framing.json), ``framing_neck`` (results/framing-neck.json, that
    framing grown below the chin), ``compression`` (results/compression.json),
    ``benchmark`` (results/benchmark.json), ``live_benchmark`` (results/live-benchmark.json, the webcam
    mode's speed), ``live_benchmark_full_model`` (results/live-benchmark-full-model.json, the same with the
    full model's live graph in place of the distilled student's), ``detection`` (results/detection.json),
    ``detector_finetune`` (results/detector-finetune.json, R-Net and O-Net fine-tuned on masked faces),
    ``calibration`` (results/calibration.json, the "can't tell" rule of ``masklens calibrate``), ``sweep``
    (results/sweep.json, the recipe sweep of ``training.sweep``) and ``bad_inputs`` (results/bad-inputs.json, what
    the CLI and the page make of odd and broken files: ``masklens bad-inputs``) and ``explanations``
    (results/explanations.json, the heatmap checks of ``masklens explain``), None if absent; ``ablations``, each
    results/ablations/NAME.json by NAME (models trained to compare recipes, not shipped);
    ``figures``, the names of the PNGs in results/figures."""
    results_dir = Path(results_dir)
    shipped = load_optional_json(results_dir / "shipped.json") or {"preset": "default"}
    return {
        "results": load_results(results_dir),
        "shipped": shipped["preset"],
        "framing": load_optional_json(results_dir / "framing.json"),
        "framing_neck": load_optional_json(results_dir / "framing-neck.json"),
        "compression": load_optional_json(results_dir / "compression.json"),
        "benchmark": load_optional_json(results_dir / "benchmark.json"),
        "live_benchmark": load_optional_json(results_dir / "live-benchmark.json"),
        "live_benchmark_full_model": load_optional_json(results_dir / "live-benchmark-full-model.json"),
        "detection": load_optional_json(results_dir / "detection.json"),
        "detector_finetune": load_optional_json(results_dir / "detector-finetune.json"),
        "calibration": load_optional_json(results_dir / "calibration.json"),
        "sweep": load_optional_json(results_dir / "sweep.json"),
        "bad_inputs": load_optional_json(results_dir / "bad-inputs.json"),
        "explanations": load_optional_json(results_dir / "explanations.json"),
        "ablations": {
            path.stem: json.loads(path.read_text()) for path in sorted((results_dir / "ablations").glob("*.json"))
        },
        "figures": sorted(p.name for p in (results_dir / "figures").glob("*.png")),
    }


def percent(value: float, digits: int = 2) -> str:
    return f"{100 * value:.{digits}f}%"


def environment(template_dir: str | Path) -> Environment:
    """The Jinja environment every write-up template renders in (strict: an undefined name fails)."""
    env = Environment(loader=FileSystemLoader(template_dir), undefined=StrictUndefined, keep_trailing_newline=True)
    env.filters["percent"] = percent
    return env


def render_template(template: str | Path, context: dict) -> str:
    template = Path(template)
    return environment(template.parent).get_template(template.name).render(**context)


def render(config: ReportConfig) -> str:
    text = render_template(config.template, load_context(config.results_dir))
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    config = parse_config(ReportConfig, argv, description=__doc__.splitlines()[0])
    render(config)
    print(f"wrote {config.out}")
