import dataclasses
import shutil
import time

import torch

from charrnn.training.checkpoint import load_checkpoint, load_model, newest_checkpoint
from charrnn import TrainConfig, train_on_text

from tests.conftest import TINY_TEXT


def test_a_saved_model_loads_back_with_the_same_logits(tmp_path):
    cfg = TrainConfig(steps=12, batch_size=4, seq_len=16, eval_every=12, threads=1, precision="fp32", sample_every=0,
                      device="cpu")
    trainer, _ = train_on_text(TINY_TEXT, {"hidden": 16, "embed": 8}, cfg, tmp_path)
    loaded = load_model(tmp_path / "last.pt")  # last.pt: the state training ended in
    x = torch.randint(0, len(loaded.vocab), (2, 30))
    trainer.model.eval()
    assert torch.equal(loaded.model(x)[0], trainer.model(x)[0])
    assert loaded.vocab == trainer.vocab and loaded.model.config == trainer.mcfg
    assert loaded.checkpoint["format_version"] == 1
    assert set(loaded.checkpoint) >= {"model_config", "vocab", "model", "optimizer", "train_config", "step", "metrics"}


def test_run_folder_and_newest_run(tiny_run, tmp_path):
    assert load_model(tiny_run).path.name == "best.pt"
    shutil.copytree(tiny_run, tmp_path / "old")
    time.sleep(0.01)
    shutil.copytree(tiny_run, tmp_path / "new")
    (tmp_path / "new" / "best.pt").touch()
    assert newest_checkpoint(tmp_path) == tmp_path / "new" / "best.pt"


def test_a_save_landing_in_the_middle_of_a_load_is_not_mixed_into_it(tmp_path, monkeypatch):
    """`charrnn sample` or `--resume` read last.pt while a run saves over it every few steps. torch's
    memory-mapped load opens the file twice (the pickle, then the tensor data); here the run's next
    save lands exactly between the two opens: the load still reads one save, whole."""
    cfg = TrainConfig(steps=3, batch_size=4, seq_len=16, eval_every=3, threads=1, precision="fp32", sample_every=0,
                      device="cpu")
    train_on_text(TINY_TEXT, {"hidden": 16, "embed": 8}, cfg, tmp_path / "a")
    train_on_text(TINY_TEXT, {"hidden": 16, "embed": 8}, dataclasses.replace(cfg, steps=7, eval_every=7), tmp_path / "b")
    last, later = tmp_path / "a" / "last.pt", tmp_path / "b" / "last.pt"
    original = torch.UntypedStorage.from_file

    def save_lands(*args, **kwargs):  # the moment between reading the pickle and mapping the tensor data
        shutil.copyfile(later, tmp_path / "next.tmp")
        (tmp_path / "next.tmp").replace(last)  # how every save is published: a whole new file renamed over
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.UntypedStorage, "from_file", save_lands)
    ckpt = load_checkpoint(last)  # raised "the optimizer's step count is malformed" when the two were mixed
    assert ckpt["step"] == 3 and all(float(s["step"]) == 3 for s in ckpt["optimizer"]["state"].values())
    monkeypatch.undo()
    assert load_checkpoint(last)["step"] == 7  # and the next load reads the new save
