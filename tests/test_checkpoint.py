import torch

from charrnn.checkpoint import load_model, newest_checkpoint


def test_save_load_gives_identical_logits(tiny_run):
    a = load_model(tiny_run / "best.pt")
    b = load_model(tiny_run / "best.pt")
    x = torch.randint(0, len(a.vocab), (2, 30))
    assert torch.equal(a.model(x)[0], b.model(x)[0])
    assert a.checkpoint["format_version"] == 1
    assert set(a.checkpoint) >= {"model_config", "vocab", "model", "optimizer", "train_config", "step", "metrics"}


def test_run_folder_and_newest_run(tiny_run, tmp_path):
    assert load_model(tiny_run).path.name == "best.pt"
    assert newest_checkpoint(tiny_run.parent).parent == tiny_run
