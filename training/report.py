"""Renders the results page from the committed metrics JSON: ``masklens-report``.

Numbers in the write-up come only from here, so they cannot drift from the artifacts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from .cli import parse_config


@dataclass(frozen=True)
class ReportConfig:
    results_dir: str = "results"
    template: str = "docs/templates/results.md.j2"
    out: str = "docs/results.md"


def load_results(results_dir: str | Path) -> dict:
    """{preset: {metrics stem: metrics dict, ..., "history": [...]}} for every results/<preset>/ folder."""
    results = {}
    for preset_dir in sorted(p for p in Path(results_dir).iterdir() if p.is_dir()):
        entry = {path.stem.removeprefix("metrics-"): json.loads(path.read_text())
                 for path in sorted(preset_dir.glob("metrics-*.json"))}
        history_path = preset_dir / "history.json"
        if history_path.exists():
            entry["history"] = json.loads(history_path.read_text())["history"]
        results[preset_dir.name] = entry
    return results


def percent(value: float, digits: int = 2) -> str:
    return f"{100 * value:.{digits}f}%"


def render(config: ReportConfig) -> str:
    template_path = Path(config.template)
    environment = Environment(loader=FileSystemLoader(template_path.parent), undefined=StrictUndefined,
                              keep_trailing_newline=True)
    environment.filters["percent"] = percent
    environment.filters["seconds_for"] = lambda images_per_second, images: images / images_per_second
    text = environment.get_template(template_path.name).render(results=load_results(config.results_dir))
    Path(config.out).write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    config = parse_config(ReportConfig, argv, description=__doc__.splitlines()[0])
    render(config)
    print(f"wrote {config.out}")


if __name__ == "__main__":
    main()
