"""Print the table of bad corpora: what `charrnn train FILE` answers for each (exit code, exact message).

    python bench/bad_inputs.py            # markdown table on stdout, takes a few seconds

Each input is written to a temporary folder and trained on through the real command line, so the
message is exactly what a user sees on stderr. tests/test_corpus_cli.py checks the same cases.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CASES = [
    ("empty file", b""),
    ("binary: PNG image", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00"),
    ("binary: ELF executable", b"\x7fELF\x02\x01\x01\x00" + bytes(8)),
    ("binary: gzip", gzip.compress(b"hello\n" * 10)),
    ("Latin-1 text", "café au lait\n".encode("latin-1")),
    ("UTF-16 text (with BOM)", "hello world\n".encode("utf-16")),
    ("UTF-16-LE text (no BOM)", "hello world\n".encode("utf-16-le")),
    ("NUL bytes", b"hello\x00world\n"),
    ("NUL after the first 8 KB", b"ok\n" * 5000 + b"bad\x00\n"),
    ("UTF-8 cut mid-character", "abc 你好".encode()[:-1]),
    ("whitespace only", b"  \n\t\n   \n"),
    ("one character", b"a"),
]


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1", COLUMNS="300")
    print("| input | exit code | message (stderr) |\n| --- | ---: | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        env["CHARRNN_CACHE"] = str(Path(tmp) / "cache")
        for label, data in CASES:
            (Path(tmp) / "c.txt").write_bytes(data)
            r = subprocess.run([sys.executable, "-m", "charrnn", "train", "c.txt", "--steps", "1"],
                               cwd=tmp, env=env, capture_output=True, text=True)
            message = r.stderr.strip().replace("|", "\\|")
            assert "Traceback" not in message, message
            print(f"| {label} | {r.returncode} | `{message}` |")


if __name__ == "__main__":
    main()
