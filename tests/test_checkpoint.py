import shutil
import time

import torch

from charrnn.checkpoint import load_model, newest_checkpoint
from charrnn.train import TrainConfig, train_on_text

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
