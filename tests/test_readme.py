"""The README's Python example runs as written (on a small text, with a short budget)."""

from __future__ import annotations

import re

from tests.conftest import REPO, TINY_TEXT


def python_section() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_python_example_runs(in_tmp, capsys):
    code = python_section()
    assert code.startswith("from charrnn import ")  # the public API, not submodules
    (in_tmp / "corpus.txt").write_text(("The end.\n" + TINY_TEXT) * 30, encoding="utf-8")
    code = code.replace("TrainConfig(time=20)", "TrainConfig(steps=30, batch_size=8, seq_len=32, eval_every=30, "
                                                 "sample_every=0, threads=1, precision='fp32')")
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"30 steps, best \d\.\d{3} bits/char", out[0])
    assert out[-1].endswith("bits/char on the last 20,000 characters")
