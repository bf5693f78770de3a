import json

import pytest

from training.sweep import SweepConfig, main, parse_variant, run_name, summarise

from .conftest import make_tree


def test_parse_variant_and_run_name():
    overrides = parse_variant("augment=flip,epochs=8")
    assert overrides == {"augment": "flip", "epochs": "8"}
    assert run_name(overrides) == "augment-flip_epochs-8"
    with pytest.raises(ValueError, match="not_a_field"):
        parse_variant("not_a_field=1")
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        parse_variant("augment")


def write_run(runs, variant, val_accuracy, val_loss):
    folder = runs / run_name(parse_variant(variant))
    folder.mkdir(parents=True)
    history = [
        {"epoch": i + 1, "seconds": 10.0, "device": "cpu", "val_accuracy": a, "val_loss": loss}
        for i, (a, loss) in enumerate(zip(val_accuracy, val_loss))
    ]
    (folder / "history.json").write_text(json.dumps({"history": history}))
    (folder / "config.json").write_text(json.dumps({"epochs": len(history), "out_dir": str(folder)}))


def test_choice_is_final_validation_accuracy_then_loss(tmp_path):
    variants = ("epochs=2", "epochs=3", "epochs=4")
    write_run(tmp_path, "epochs=2", [0.99, 0.995], [0.2, 0.1])
    write_run(tmp_path, "epochs=3", [0.999, 0.99, 0.995], [0.1, 0.1, 0.05])  # best early, ties at the end
    write_run(tmp_path, "epochs=4", [0.9, 0.95, 0.97, 0.98], [0.3, 0.2, 0.1, 0.01])
    summary = summarise(SweepConfig(variants=variants, runs_dir=str(tmp_path)))
    assert summary["chosen"] == "epochs=3"
    assert [v["seconds"] for v in summary["variants"]] == [20.0, 30.0, 40.0]
    assert "out_dir" not in summary["variants"][0]["config"]


def test_score_can_average_several_validation_metrics(tmp_path):
    for variant, mfn, real in [("lr=0.1", 0.999, 0.90), ("lr=0.2", 0.995, 0.95)]:
        write_run(tmp_path, variant, [mfn], [0.1])
        path = tmp_path / run_name(parse_variant(variant)) / "history.json"
        history = json.loads(path.read_text())
        history["history"][-1]["real_val_accuracy"] = real
        path.write_text(json.dumps(history))
    config = SweepConfig(variants=("lr=0.1", "lr=0.2"), runs_dir=str(tmp_path))
    assert summarise(config)["chosen"] == "lr=0.1"
    both = summarise(
        SweepConfig(variants=config.variants, runs_dir=str(tmp_path), score=("val_accuracy", "real_val_accuracy"))
    )
    assert both["chosen"] == "lr=0.2" and both["variants"][1]["real_val_accuracy"] == [0.95]
    with pytest.raises(ValueError, match="real_val_synthetic_accuracy"):
        summarise(SweepConfig(variants=config.variants, runs_dir=str(tmp_path), score=("real_val_synthetic_accuracy",)))


def test_unfinished_variant_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="epochs=9"):
        summarise(SweepConfig(variants=("epochs=9",), runs_dir=str(tmp_path)))


@pytest.mark.slow
def test_sweep_trains_each_variant_and_writes_the_summary(tmp_path):
    data = make_tree(tmp_path / "data", per_class=2)
    out = tmp_path / "sweep.json"
    main(
        [
            "--variants",
            "augment=none,epochs=1",
            "augment=flip,epochs=1",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--out",
            str(out),
            "--train-flags",
            f"--data-root {data} --image-size 80 --batch-size 6 --num-workers 0 --channels-last false",
        ]
    )
    summary = json.loads(out.read_text())
    assert [v["variant"] for v in summary["variants"]] == ["augment=none,epochs=1", "augment=flip,epochs=1"]
    assert all(len(v["val_accuracy"]) == 1 for v in summary["variants"])
    assert (tmp_path / "runs" / "augment-flip_epochs-1" / "model.pt").exists()
