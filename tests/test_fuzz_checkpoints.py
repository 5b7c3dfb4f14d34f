"""Fuzz: a real checkpoint's payload mutated a few hundred times (types, sizes, shapes), each loaded by
every command that reads checkpoints. No traceback ever; exit 0 only with the right answer.

"Right" is checked against the unmutated checkpoint: sample, beam, eval and score must print exactly
what they print for it; list and show must exit 0 (a bad file is one bad row, or one error line);
a resumed or fine-tuned run that exits 0 must leave a checkpoint that loads. Half of the mutated
files carry a recomputed checksum (a crafted, self-consistent file: the field checks must catch it),
half keep the original one (bit rot: the checksum catches it).

120 mutations keep the suite quick; `CHARRNN_FUZZ_MUTATIONS=2000 CHARRNN_FUZZ_SEED=5 pytest
tests/test_fuzz_checkpoints.py` searches wider (about 2.5 minutes per 1,000 on one core).
"""

from __future__ import annotations

import copy
import json
import os
import random
import shutil

import pytest
import torch
from typer.testing import CliRunner

from charrnn.training.checkpoint import load_checkpoint
from charrnn.cli import app
from charrnn.training.payload import CHECKSUM_KEY, checksum

from .conftest import TINY_TEXT

MUTATIONS = int(os.environ.get("CHARRNN_FUZZ_MUTATIONS", "120"))
runner = CliRunner()
FAST = ["--threads", "1", "--device", "cpu"]


def commands(ckpt, folder, text):
    """Every command that reads a checkpoint, as (name, argv)."""
    return [
        ("sample", ["sample", str(ckpt), "-n", "20", "--seed", "1", *FAST]),
        ("beam", ["beam", str(ckpt), "-w", "2", "-n", "8", *FAST]),
        ("eval", ["eval", str(ckpt), str(text), "--json", *FAST]),
        ("score", ["score", str(ckpt), str(text), "--json", "--max-chars", "200", *FAST]),
        ("cells", ["cells", str(ckpt), str(text), "--json", "--max-chars", "300", *FAST]),
        ("list", ["checkpoints", "list", str(folder), "--json"]),
        ("show", ["checkpoints", "show", str(ckpt), "--json"]),
        ("resume", ["train", str(text), "--resume", str(ckpt), "--steps", "81", "--eval-every", "1",
                    "--sample-every", "0", "--threads", "1", "--precision", "fp32"]),
        ("init", ["train", str(text), "--init-from", str(ckpt), "-o", str(folder / "init"), "--steps", "1",
                  "--eval-every", "1", "--sample-every", "0", "-b", "4", "-t", "16", "--threads", "1",
                  "--precision", "fp32"]),
    ]


# ---- mutations ------------------------------------------------------------------------------------

ODD = ["", "[/bold]", "\x1b[2J", 0, -1, 2**70, 1.5, float("nan"), float("inf"), True, None, [1, 2, 3], {},
       {"a": 1}, torch.zeros(3), torch.zeros(0), "3"]


def paths(x, prefix=()):
    """Every place in the payload: (path, value)."""
    yield prefix, x
    if isinstance(x, dict):
        for k, v in x.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            yield from paths(v, prefix + (i,))


def mutate_value(v, rng: random.Random):
    """Something of another type, size or shape than `v`."""
    if torch.is_tensor(v) and v.dim() >= 1 and v.numel():
        choice = rng.randrange(8)
        if choice == 0:
            return v[:-1].clone()  # one row fewer
        if choice == 1:
            return torch.cat([v, v[:1]])  # one row more
        if choice == 2:
            return v.reshape(-1).clone()  # flattened
        if choice == 3:
            return v.t().clone() if v.dim() == 2 else v.unsqueeze(0).clone()
        if choice == 4:
            return v.to(rng.choice([torch.int64, torch.float16, torch.bool, torch.uint8]))
        if choice == 5:
            w = v.clone().float() if v.is_floating_point() else v.clone()
            if w.is_floating_point():
                w.view(-1)[rng.randrange(w.numel())] = rng.choice([float("nan"), float("inf")])
            return w
        if choice == 6:
            return torch.zeros(())
        return rng.choice(ODD)
    if isinstance(v, str) and v:
        return rng.choice([v[:-1], v + v[-1], v + "\u2028\x1b", v * 3, 5, None, "[/bold]" + v])
    if isinstance(v, bool):
        return rng.choice(["yes", 2, None])
    if isinstance(v, int):
        return rng.choice([-1, -(2**40), 2**70, v * 1000 + 1, float(v) + 0.5, str(v), True, None, float("nan")])
    if isinstance(v, float):
        return rng.choice([float("nan"), float("inf"), -1.0, 1e308, str(v), None, [v]])
    if isinstance(v, (list, tuple)):
        return rng.choice([list(v)[:-1], list(v) + [list(v)[-1] if v else 1], "list", {}, None, [object.__name__]])
    if isinstance(v, dict):
        return rng.choice([[1, 2, 3], "dict", None, {**v, "unexpected": 1}, {k: v[k] for k in list(v)[:-1]}])
    return rng.choice(ODD)


def mutate(payload: dict, rng: random.Random) -> tuple[dict, str]:
    """A deep copy of `payload` with one place changed (or deleted): (mutated, description)."""
    out = copy.deepcopy(payload)
    places = [p for p, _ in paths(out) if p and p[0] != CHECKSUM_KEY]
    path = rng.choice(places)
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, tuple):  # betas: rebuild the tuple in its parent
        return mutate(payload, rng)
    old = parent[path[-1]]
    if isinstance(parent, dict) and rng.random() < 0.15:
        del parent[path[-1]]
        return out, f"del {'.'.join(map(str, path))}"
    parent[path[-1]] = mutate_value(old, rng)
    return out, f"{'.'.join(map(str, path))}: {type(old).__name__} -> {type(parent[path[-1]]).__name__}"


def targeted(payload: dict) -> list[tuple[dict, str]]:
    """The issue's own cases, always included."""
    cases = []

    def with_(desc, fn):
        p = copy.deepcopy(payload)
        fn(p)
        cases.append((p, desc))

    with_("format_version '2'", lambda p: p.__setitem__("format_version", "2"))
    with_("vocab shorter than the weights", lambda p: p["vocab"].__setitem__("chars", p["vocab"]["chars"][:-3]))
    with_("500-character vocabulary", lambda p: p["vocab"].__setitem__("chars", "".join(map(chr, range(256, 756)))))
    with_("vocab reversed", lambda p: p["vocab"].__setitem__("chars", p["vocab"]["chars"][::-1]))
    with_("a lone surrogate in the vocabulary, and the model writes it", lambda p: (
        p["vocab"].__setitem__("chars", p["vocab"]["chars"][:-1] + "\udfff"), p["model"]["head.bias"].fill_(-50.0),
        p["model"]["head.bias"].__setitem__(-1, 50.0)))
    with_("metrics [1,2,3]", lambda p: p.__setitem__("metrics", [1, 2, 3]))
    with_("model [1]", lambda p: p.__setitem__("model", [1]))
    with_("hidden 16000", lambda p: p["model_config"].__setitem__("hidden", 16000))
    with_("layers 10**8", lambda p: p["model_config"].__setitem__("layers", 10**8))
    with_("train_config list", lambda p: p.__setitem__("train_config", [1]))
    with_("extra string", lambda p: p.__setitem__("extra", "x"))
    with_("optimizer empty", lambda p: p.__setitem__("optimizer", {}))
    with_("step string", lambda p: p.__setitem__("step", "80"))
    with_("cell markup", lambda p: p["model_config"].__setitem__("cell", "[/bold]"))
    with_("cell link", lambda p: p["model_config"].__setitem__("cell", "[link=https://evil.example/x]lstm[/link]"))
    with_("corpus escape", lambda p: p.setdefault("meta", {}).__setitem__("corpus", "\x1b]0;pwned\x07\x1b[2J[/bold]"))
    return cases


def answer(name: str, stdout: str):
    """What a command answered, without what differs from run to run (timings, the file's path)."""
    if name in ("eval", "score", "cells"):
        data = json.loads(stdout)
        return {k: v for k, v in data.items() if k not in ("seconds", "checkpoint")}
    return stdout


def save(payload: dict, path, recompute: bool) -> None:
    payload = dict(payload)
    if recompute:
        payload[CHECKSUM_KEY] = {"blake2b": checksum(payload)}
    torch.save(payload, path)


# ---- the test -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def original(tmp_path_factory, tiny_run):
    """The unmutated checkpoint, and what each command prints for it."""
    import typer.testing

    mp = pytest.MonkeyPatch()  # typer rebuilds the whole click command on every invoke (~10 ms): once is enough
    command = typer.testing._get_command(app)
    mp.setattr(typer.testing, "_get_command", lambda _: command)
    root = tmp_path_factory.mktemp("fuzz")
    text = root / "corpus.txt"
    text.write_text(TINY_TEXT)
    folder = root / "orig"
    folder.mkdir()
    shutil.copy(tiny_run / "last.pt", folder / "last.pt")
    baseline = {}
    for name, argv in commands(folder / "last.pt", folder, text)[:5]:
        result = runner.invoke(app, argv)
        assert result.exit_code == 0, (name, result.stderr)
        baseline[name] = answer(name, result.stdout)
    yield load_checkpoint(folder / "last.pt"), baseline, text, root
    mp.undo()


def run_all(payload, desc, recompute, where, original_run):
    _, baseline, text, _ = original_run
    where.mkdir()
    ckpt = where / "last.pt"
    save(payload, ckpt, recompute)
    outcomes = {}
    for name, argv in commands(ckpt, where, text):
        if name in ("resume", "init"):
            save(payload, ckpt, recompute)  # a previous command may have written a new last.pt
        result = runner.invoke(app, argv)
        what = f"{desc} (checksum {'recomputed' if recompute else 'kept'}) through {name}"
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            f"{what}: {type(result.exception).__name__}: {result.exception}"
        assert "Traceback" not in result.stderr, what
        assert result.exit_code in (0, 1, 2), (what, result.exit_code, result.stderr[-500:])
        if result.exit_code:
            assert "error:" in result.stderr, (what, result.stderr[-500:])
        elif name in baseline:
            assert answer(name, result.stdout) == baseline[name], f"{what}: exit 0 with a different answer"
        elif name in ("resume", "init"):
            written = where / "init" / "last.pt" if name == "init" else ckpt
            load_checkpoint(written)  # a run that says it worked left a loadable checkpoint
        if name == "list":
            assert result.exit_code == 0, (what, result.stderr[-500:])
        outcomes[name] = result.exit_code
    return outcomes


def test_fuzzed_checkpoints_never_traceback_and_never_answer_wrong(original, tmp_path):
    payload = original[0]
    rng = random.Random(int(os.environ.get("CHARRNN_FUZZ_SEED", "19")))
    cases = targeted(payload) + [mutate(payload, rng) for _ in range(MUTATIONS)]
    refused = 0
    for i, (mutated, desc) in enumerate(cases):
        outcomes = run_all(mutated, desc, recompute=i % 2 == 0 or i < 15, where=tmp_path / f"m{i}", original_run=original)
        refused += outcomes["sample"] != 0
        shutil.rmtree(tmp_path / f"m{i}")
    assert len(cases) >= MUTATIONS
    assert refused > len(cases) // 2  # most mutations are caught (the rest touch nothing a sample uses)


def test_byte_flips_are_caught_by_the_checksum(original, tmp_path, tiny_run):
    """20 random byte flips in the file: refused, or (a flip in unused padding) the same answer."""
    _, baseline, text, _ = original
    data = (tiny_run / "last.pt").read_bytes()
    rng = random.Random(7)
    caught = 0
    for i in range(20):
        flipped = bytearray(data)
        at = rng.randrange(len(flipped))
        flipped[at] ^= 1 << rng.randrange(8)
        path = tmp_path / f"flip{i}.pt"
        path.write_bytes(bytes(flipped))
        result = runner.invoke(app, ["sample", str(path), "-n", "20", "--seed", "1", *FAST])
        assert "Traceback" not in result.stderr and (result.exception is None or isinstance(result.exception, SystemExit))
        if result.exit_code:
            caught += 1
            assert "error:" in result.stderr
        else:
            assert result.stdout == baseline["sample"], f"flip at byte {at} sampled something else"
    assert caught >= 15
