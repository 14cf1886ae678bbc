"""Pretrained models: the safetensors checkpoint codec, carrying a run to another machine, shipping weights with a
card, loading them (SHA-256 checked, no code run) and the commands that take a pretrained name."""

import json

import numpy as np
import pytest
import torch

import seqimpute
from seqimpute import SeqImputeError, pretrained, runs
from seqimpute.cli import main
from seqimpute.files import sha256_of
from seqimpute.runs import load_checkpoint, load_run_model
from seqimpute.train import TrainConfig, train

SMALL = {"hidden": 32, "z": 8, "steps": 3}


def cfg(**kw):
    base = dict(model="gpsi-add", data="sklearn-digits", mask="mcar:0.7", model_options=SMALL, updates=30,
                batch=64, valid_every=10, valid_size=100, ckpt_every=10, log_every=10)
    return TrainConfig(**{**base, **kw})


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b
    return a == b


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "r"
    train(run, cfg(), progress_bar=False)
    return run


def test_a_checkpoint_survives_safetensors_unchanged(trained, tmp_path):
    ck = load_checkpoint(trained / "last.pt")
    assert isinstance(ck["optimizer"]["state"], dict) and ck["optimizer"]["state"]  # integer keys, tensors inside
    runs.save_safetensors_checkpoint(ck, tmp_path / "c.safetensors")
    assert same(ck, runs.load_safetensors_checkpoint(tmp_path / "c.safetensors"))


def test_a_run_carried_as_a_snapshot_resumes_exactly(tmp_path):
    train(tmp_path / "whole", cfg(), progress_bar=False)
    train(tmp_path / "a", cfg(), progress_bar=False, session_updates=10)  # the first machine stops at update 10
    assert runs.snapshot_run(tmp_path / "a", tmp_path / "carried") == 10
    assert sorted(p.name for p in (tmp_path / "carried").iterdir()) == [
        "best.safetensors", "config.toml", "last.safetensors", "metrics.jsonl"]
    assert runs.restore_run(tmp_path / "carried", tmp_path / "b") == 10  # the next machine
    train(tmp_path / "b", None, progress_bar=False)
    pa = load_run_model(tmp_path / "whole", "last")[0].state_dict()
    pb = load_run_model(tmp_path / "b", "last")[0].state_dict()
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    with pytest.raises(SeqImputeError, match="already holds a run"):
        runs.restore_run(tmp_path / "carried", tmp_path / "b")


def test_damaged_and_foreign_safetensors_checkpoints_are_one_clear_error(trained, tmp_path):
    from safetensors.torch import save_file

    runs.save_safetensors_checkpoint(load_checkpoint(trained / "last.pt"), tmp_path / "c.safetensors")
    data = (tmp_path / "c.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    save_file({"w": torch.zeros(3)}, str(tmp_path / "foreign.safetensors"))
    for name in ("cut", "foreign"):
        with pytest.raises(SeqImputeError, match="not a seqimpute safetensors checkpoint"):
            runs.load_safetensors_checkpoint(tmp_path / f"{name}.safetensors")


def ship(trained, folder, name="gpsi-add-digits-mcar"):
    ck = load_checkpoint(trained / "best.pt")
    training = {"updates": int(ck["step"]), "cpu_hours": 0.01, "precision": "fp32", "threads": 1, "cpu": "test",
                "command": "seqimpute train ..."}
    c = pretrained.write(name, ck, runs.read_config(trained), training, folder=folder)
    pretrained.add_scores(name, "mcar:0.7", {"bound_paper_units": 123.4, "mse": 0.05, "n": 10, "samples": 2,
                                             "paper": None, "command": "seqimpute eval ..."}, folder=folder)
    return ck, c


def test_shipped_weights_load_as_the_half_precision_copy_of_the_run(trained, tmp_path):
    ck, c = ship(trained, tmp_path)
    assert c["dtype"] == "float16" and len(c["sha256"]) == 64
    model, config, record = pretrained.load("gpsi-add-digits-mcar", folder=tmp_path)
    for k, v in model.state_dict().items():
        assert v.dtype == torch.float32
        assert torch.equal(v, ck["model"][k].to(torch.float16).float()), k
    assert config["train"]["mask"] == "mcar:0.7" and record["step"] == ck["step"]
    assert "optimizer" not in record
    card_text = pretrained.render_card(pretrained.card("gpsi-add-digits-mcar", tmp_path))
    assert c["sha256"] in card_text and "123.4" in card_text
    assert "gpsi-add-digits-mcar" in pretrained.render_list(tmp_path)


def test_a_changed_damaged_or_missing_weights_file_is_refused(trained, tmp_path):
    ship(trained, tmp_path)
    path = tmp_path / "gpsi-add-digits-mcar.safetensors"
    good = path.read_bytes()
    path.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # one bit
    with pytest.raises(SeqImputeError, match="does not match its card"):
        pretrained.load("gpsi-add-digits-mcar", folder=tmp_path)
    path.write_bytes(good[: len(good) // 3])  # cut, and the card updated to match: the file itself is refused
    card = json.loads((tmp_path / "gpsi-add-digits-mcar.json").read_text())
    (tmp_path / "gpsi-add-digits-mcar.json").write_text(json.dumps({**card, "sha256": sha256_of(path)}))
    with pytest.raises(SeqImputeError, match="not a seqimpute safetensors checkpoint"):
        pretrained.load("gpsi-add-digits-mcar", folder=tmp_path)
    with pytest.raises(SeqImputeError, match="not a pretrained model.*gpsi-add-digits-mcar"):
        pretrained.load("gpsi-add-mnist", folder=tmp_path)
    path.unlink()
    with pytest.raises(SeqImputeError, match="is missing"):
        pretrained.load("gpsi-add-digits-mcar", folder=tmp_path)


def test_commands_take_a_pretrained_name_where_they_take_a_run_folder(trained, tmp_path, monkeypatch, capsys):
    ship(trained, tmp_path)
    monkeypatch.setattr(pretrained, "SHIPPED", tmp_path)
    assert main(["pretrained", "list"]) == 0
    out = capsys.readouterr().out
    assert "gpsi-add-digits-mcar" in out and "mcar:0.7" in out and "123.4" in out
    assert main(["pretrained", "show", "gpsi-add-digits-mcar"]) == 0
    assert pretrained.card("gpsi-add-digits-mcar")["sha256"] in capsys.readouterr().out
    assert main(["eval", "gpsi-add-digits-mcar", "--n", "20", "--samples", "2", "--quiet",
                 "--json", str(tmp_path / "e.json")]) == 0
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["mask"] == "mcar:0.7" and res["training"]["updates"] == pretrained.card("gpsi-add-digits-mcar")["training"]["updates"]
    images = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    images[:, :4] = np.nan
    filled = seqimpute.impute("gpsi-add-digits-mcar", images, samples=2, seed=0)
    assert filled.shape == (2, 3, 8, 8) and np.isfinite(filled).all()
    assert np.array_equal(filled[0, :, 4:], images[:, 4:])  # observed values come back exactly
    assert main(["eval", "no-such-model", "--n", "20"]) == 2
    assert "neither a run folder nor a pretrained model (shipped: gpsi-add-digits-mcar" in capsys.readouterr().err


def test_every_shipped_model_loads_and_matches_its_card():
    for name in pretrained.names():
        c = pretrained.card(name)
        model = pretrained.load_pretrained(name)
        assert model.name == c["config"]["model"]["name"]
        assert c["scores"], f"{name} ships without test scores"
        assert c["training"]["updates"] > 0


def test_the_reproduction_table_reads_the_shipped_cards():
    """results/pretrained/reproduction.json (docs/RESULTS.md's table) holds each shipped card's test scores."""
    from pathlib import Path

    doc = json.loads((Path(__file__).resolve().parents[1] / "results" / "pretrained" / "reproduction.json").read_text())
    rows = {(r["name"], r["cell"]): r for r in doc["rows"]}
    cards = {(name, cell): s for name in pretrained.names() for cell, s in pretrained.card(name)["scores"].items()}
    assert rows.keys() == cards.keys() and cards
    for key, s in cards.items():
        assert rows[key]["bound_paper_units"] == s["bound_paper_units"] and rows[key]["paper"] == s["paper"]
        assert rows[key]["updates"] == pretrained.card(key[0])["training"]["updates"]


def test_pretrained_command_mistakes_are_one_line(capsys):
    assert main(["pretrained", "show"]) == 2
    assert "name the model to show" in capsys.readouterr().err
    assert main(["pretrained", "list", "gpsi-add-mnist-mcar"]) == 2
    assert "takes no name" in capsys.readouterr().err
    assert main(["pretrained", "show", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "is not a pretrained model" in err and err.count("\n") == 1
    with pytest.raises(SeqImputeError, match="one set of weights"):
        pretrained.load_model(pretrained.names()[0], "finetuned")
