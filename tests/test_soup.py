"""Weight averaging (training.soup): the mean of the ingredients' weights, recorded, in a loadable checkpoint."""

import dataclasses

import pytest
import torch

from masklens.files import sha256_of
from training.checkpoint import checkpoint_payload, load_checkpoint, model_from_checkpoint
from training.config import TrainConfig, preprocessing_for
from training.model import build_model
from training.soup import SoupConfig, main, make_soup


def write_checkpoint(path, seed: int, config: TrainConfig | None = None):
    config = config or TrainConfig(image_size=80)
    torch.manual_seed(seed)
    model = build_model(preprocessing_for(config))
    with torch.no_grad():  # batch-norm statistics that differ between the ingredients
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    history = [{"epoch": 1, "train_loss": 1.0}]
    payload = checkpoint_payload(model, config, {"train": {"images": 6}}, history, 0, weights_dtype=torch.float16)
    torch.save(payload, path)
    return path


def test_a_soup_is_the_weighted_mean_of_its_ingredients(tmp_path):
    first, second = write_checkpoint(tmp_path / "a.pt", 0), write_checkpoint(tmp_path / "b.pt", 1)
    main(["--checkpoints", str(first), str(second), "--weights", "0.25", "0.75", "--out", str(tmp_path / "soup.pt")])
    soup = load_checkpoint(tmp_path / "soup.pt")
    a, b = load_checkpoint(first)["model"], load_checkpoint(second)["model"]
    for name in ("backbone.conv2d_1a.conv.weight", "backbone.conv2d_1a.bn.running_mean", "reason_head.weight"):
        expected = (0.25 * a[name].double() + 0.75 * b[name].double()).half()
        assert soup["model"][name].dtype == torch.float16
        torch.testing.assert_close(soup["model"][name], expected, rtol=0, atol=1e-3)
    assert soup["data"]["soup"] == [
        {"file": str(first), "sha256": sha256_of(first), "weight": 0.25},
        {"file": str(second), "sha256": sha256_of(second), "weight": 0.75},
    ]
    assert soup["history"] == [] and soup["data"]["train"] == {"images": 6}
    model_from_checkpoint(soup)  # an ordinary checkpoint: it loads


def test_equal_weights_by_default_and_bad_soups_refused(tmp_path):
    first, second = write_checkpoint(tmp_path / "a.pt", 0), write_checkpoint(tmp_path / "b.pt", 1)
    soup = make_soup(SoupConfig(checkpoints=(str(first), str(second))))
    assert [i["weight"] for i in soup["data"]["soup"]] == [0.5, 0.5]
    with pytest.raises(ValueError, match="at least two"):
        make_soup(SoupConfig(checkpoints=(str(first),)))
    with pytest.raises(ValueError, match="summing to 1"):
        make_soup(SoupConfig(checkpoints=(str(first), str(second)), weights=(0.5, 0.6)))
    other = write_checkpoint(tmp_path / "c.pt", 2, dataclasses.replace(TrainConfig(), image_size=96))
    with pytest.raises(ValueError, match="preprocessing"):
        make_soup(SoupConfig(checkpoints=(str(first), str(other))))
