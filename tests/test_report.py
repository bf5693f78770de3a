import json
import shutil

from studies.report import ReportConfig, render
from training.config import TrainConfig
from training.evaluate import EvalConfig, evaluate
from training.train import train

from .conftest import REPO, make_tree


def test_results_page_renders_numbers_from_the_metrics_json(tmp_path):
    data = make_tree(tmp_path / "data", per_class=3)
    run = tmp_path / "run"
    model_path = train(
        TrainConfig(
            data_root=str(data),
            out_dir=str(run),
            epochs=1,
            image_size=80,
            batch_size=9,
            num_workers=0,
            validate=False,
            channels_last=False,
        )
    )
    results = tmp_path / "results" / "default"
    metrics = evaluate(
        EvalConfig(
            checkpoint=str(model_path), data_root=str(data), split="holdout", out_dir=str(results), figures=False
        )
    )
    shutil.copy(run / "history.json", results / "history.json")
    out = tmp_path / "results.md"
    text = render(
        ReportConfig(
            results_dir=str(tmp_path / "results"),
            template=str(REPO / "docs" / "templates" / "results.md.j2"),
            out=str(out),
        )
    )
    assert out.read_text() == text
    row = next(line for line in text.splitlines() if line.startswith("| `default` | 80 px"))
    assert f"| {100 * metrics['accuracy']:.2f}% |" in row
    assert f"{100 * metrics['per_class']['incorrect']['recall']:.2f}%" in row
    history = json.loads((results / "history.json").read_text())["history"]
    assert f"| `default` | {history[0]['device']} | 9 | {len(history)} |" in text
