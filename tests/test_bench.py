"""The benchmark's code, run in a tiny configuration (its timings are never asserted)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from charrnn.benchmark.suite import BenchConfig, PlainTrainer, Row, flops_per_char, run_bench, synthetic_text
from charrnn.model.kernels import KERNELS
from charrnn.text.vocab import Vocab
from tests.conftest import TINY_TEXT

TINY = BenchConfig(window=0.02, sample_window=0.02, repeats=1, threads=1, batch_size=4, seq_len=16, embed=8,
                   train_shapes=((1, 16),),
                   gru_shape=(1, 16), sample_shapes=((1, 16),), sample_threads=(1, 2), beam_shape=(1, 16),
                   eval_shape=(1, 24), eval_chars=3000, eval_batch=8, memory_shapes=((1, 16),), memory_steps=1,
                   serve_shape=(1, 16), serve_clients=(1, 2), serve_chars=20, serve_rounds=1, serve_precisions=("fp32",))


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory) -> dict:
    corpus = tmp_path_factory.mktemp("bench") / "c.txt"
    corpus.write_text(synthetic_text(20_000), encoding="utf-8")
    return run_bench(TINY, str(corpus))


def test_tiny_bench_reports_every_row_with_a_figure_and_a_baseline(tiny_result):
    rows = {r["key"]: r for r in tiny_result["rows"]}
    expected = ["train_lstm_1x16", "train_gru_1x16", "sample_lstm_1x16", "sample_lstm_1x16_t2",
                "beam_w5_1x16", "eval_lstm_1x24", "memory_lstm_1x16", "serve_fp32_1c", "serve_fp32_2c"]
    assert list(rows) == expected
    for key in expected:
        r = rows[key]
        if key == "serve_fp32_1c":  # the baseline of the other serve rows
            assert r["figure"] > 0 and r["baseline"] is None and "first char p50" in r["note"]
            continue
        assert r["figure"] > 0 and r["baseline"] > 0, key
        assert r["ratio"] == pytest.approx(r["figure"] / r["baseline"])
    assert rows["serve_fp32_2c"]["baseline"] == rows["serve_fp32_1c"]["figure"]
    assert rows["train_lstm_1x16"]["extra"]["gflops"] > 0
    train = rows["train_lstm_1x16"]["extra"]  # both precisions timed, auto's choice shown
    assert train["fp32_chars_per_sec"] > 0 and train["bf16_chars_per_sec"] > 0 and train["precision"] in ("fp32", "bf16")
    sample = rows["sample_lstm_1x16"]["extra"]  # every kernel tried, the chosen one named
    assert set(sample["kernels"]) == {f"{k}/1" for k in KERNELS} and sample["kernel"] in KERNELS
    assert {"flags", "cpu_summary"} <= set(tiny_result["machine"])
    assert rows["memory_lstm_1x16"]["figure"] >= rows["memory_lstm_1x16"]["baseline"]
    assert {"machine", "config", "corpus", "rows", "seconds"} <= set(tiny_result)
    json.dumps(tiny_result)  # the JSON file is written from exactly this


def test_plain_baseline_learns():
    vocab = Vocab.from_text(TINY_TEXT)
    torch.manual_seed(0)
    plain = PlainTrainer(vocab.encode_array(TINY_TEXT), len(vocab), 1, 32, 8, batch_size=4, seq_len=32, lr=1e-2)
    losses = [plain.step() for _ in range(60)]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_flops_count_the_gate_matrices():
    # 1 LSTM layer, E=2, H=3, V=5: 6 * 4*3*(2+3) + 6 * 3*5
    assert flops_per_char("lstm", 1, 3, 2, 5) == 6 * 4 * 3 * 5 + 6 * 3 * 5
    assert flops_per_char("gru", 2, 3, 2, 5) == 6 * 3 * 3 * 5 + 6 * 3 * 3 * 6 + 6 * 3 * 5


def test_a_row_meets_its_goal_only_when_every_goal_is_reached():
    assert Row("k", "w", 100.0, "chars/s", "b", 10.0, goal_ratio=5.0, goal_figure=50.0).met is True
    assert Row("k", "w", 100.0, "chars/s", "b", 10.0, goal_ratio=20.0, goal_figure=50.0).met is False
    assert Row("k", "w", 100.0, "chars/s", "b", 10.0, goal_ratio=5.0, goal_figure=500.0).met is False
    assert Row("k", "w", None, "chars/s").met is None


def test_bench_command_rejects_an_unknown_section():
    from typer.testing import CliRunner

    from charrnn.cli import app

    result = CliRunner().invoke(app, ["bench", "--only", "nothing"])
    assert result.exit_code == 2
    assert "--only takes" in result.output


def test_bench_command_prints_the_table_and_writes_json(tmp_path, monkeypatch):
    from dataclasses import replace

    from typer.testing import CliRunner

    from charrnn.cli import app

    monkeypatch.setattr(BenchConfig, "quick", classmethod(lambda cls: replace(TINY)))
    corpus = tmp_path / "c.txt"
    corpus.write_text(synthetic_text(20_000), encoding="utf-8")
    out = tmp_path / "bench" / "r.json"
    result = CliRunner().invoke(app, ["bench", "--quick", "--only", "sample", "--threads", "1",
                                      "--corpus", str(corpus), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "sample 1×16 LSTM, batch 1, 1 thread, " in result.stdout
    assert "eager nn.LSTM step" in result.stdout
    saved = json.loads(out.read_text())
    assert [r["key"] for r in saved["rows"]] == ["sample_lstm_1x16", "sample_lstm_1x16_t2"]
    lines = result.stdout.splitlines()  # piped: the title, the header, one line per row, however long its note
    assert len(lines) == 2 + 2 and all(line.startswith("sample 1×16 LSTM") for line in lines[2:])


def test_memory_rows_cover_every_preset_and_the_defaults():
    from charrnn.benchmark.suite import BenchConfig
    from charrnn.benchmark.memory import memory_setup
    from charrnn.training.config import PRESETS

    cfg = BenchConfig()
    assert set(PRESETS) | {"default"} <= set(cfg.memory_shapes)
    key, what, args = memory_setup("large", cfg)
    assert key == "memory_large" and args == [3, 512, 128, 64, 128]  # layers, hidden, embed, B, T of the preset
    assert memory_setup("default", cfg)[2][:2] == [2, 384]


def test_kernels_section_measures_what_each_kernel_costs(tiny_run, tmp_path):
    from dataclasses import replace

    corpus = tmp_path / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    result = run_bench(replace(TINY, sections=("kernels",), kernel_chars=300), str(corpus), checkpoint=str(tiny_run))
    rows = {r["key"]: r for r in result["rows"]}
    assert list(rows) == [f"kernel_bpc_{k}" for k in KERNELS if k != "fp32"]
    for r in rows.values():
        assert r["baseline"] > 0 and abs(r["figure"]) < 0.05 and r["met"] == (r["figure"] <= 0.01)
    assert run_bench(replace(TINY, sections=("kernels",)), str(corpus))["rows"] == []  # no checkpoint: skipped


def test_the_serve_load_test_only_targets_this_machine():
    import asyncio

    from charrnn.serve.loadtest import run_round

    with pytest.raises(ValueError, match="only targets this machine"):
        asyncio.run(run_round("192.168.1.10", 8000, 1, 10))
