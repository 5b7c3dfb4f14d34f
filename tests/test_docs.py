"""Every command README.md and docs/*.md show runs, as written, and exits as the page says (and so do the
commands the Makefile's `demo:` target runs and prints for you to try next).

The convention for code blocks (docs/development.md says the same):

    ```sh            commands, run: each line by `bash -c` with `set -o pipefail` (so a pipeline fails if charrnn
                     does), a line ending in `\\` continued on the next; `# ...` comments are fine. The command must
                     exit 0, or N where its comment ends in `(exit N)`, and print no "Traceback".
    ```sh no-test    commands shown but not run (a server, torchrun, a GPU, the network, make): each line is
                     reported as a skipped test, so the set stays visible
    ```python        run with exec, in order, in one namespace per page (a page reads like a notebook)
    ```python no-test  not run (it needs a running server)
    ```yaml          a file the page uses: its first line is `# PATH`; written to PATH when the page gets there
    ```text          output, a log line, a picture: never run

Any other fence, or a command indented as a code block outside a fence, fails `test_blocks_follow_the_convention`.

Where: each page runs in its own copy of a folder prepared once per session (`Session`): what `make demo` leaves
(a tiny run at `checkpoints/demo`, trained in a second on a text with every character of `ROMEO:`, and the first
50 KB of corpora/shakespeare.txt), the small files the pages name (corpus.txt, poem.txt, src/, ...), and
`CHARRNN_MIRROR` pointing at the shared corpora (the catalog checks each file's sha256, so stand-ins would be
refused; without the folder, commands that name a catalog corpus are skipped, and so are pipes into a missing jq).

How: `charrnn` on PATH is a shim that hands the command (its arguments, folder, environment, stdin, stdout and
stderr) to a process that has imported charrnn and torch once, and forks for each command: importing torch takes
1-5 s here, which ~100 commands would spend again and again. The forked command runs `charrnn.cli.main` as
`python -m charrnn` does, on one core (as the suite's tests run single-threaded). CHARRNN_DOCS_NO_FORK=1 runs
each command as `python -m charrnn` instead.

Short budgets, by regular expressions on each `charrnn` command (`REWRITES`), so the docs can show real ones:

    --time N, --epochs N, --steps N  -> --steps 3        (train, where no budget is given: --steps 3 added;
                                                          with --resume RUN: 3 more than RUN's last step)
    charrnn train ...                -> ... --eval-chars 2000   (validate on 2,000 characters)
    -n N, --length N (N > 200)       -> 200
    --max-chars N (N > 2000)         -> 2000
    --mirror DIR                     -> --mirror $CHARRNN_MIRROR
    Python: TrainConfig(... time=N)  -> TrainConfig(... steps=3)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED

PAGES = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]
LANGUAGES = {"sh", "python", "yaml", "text"}
# A command that needs the catalog: it names a corpus (or a run named for one), or fetches
CATALOG = re.compile(r"(?:(?<![\w/.-])|(?<=checkpoints/))(shakespeare|warpeace|latex|linux)(?![\w/.])|corpus get")
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)
TOOLS = ("jq",)  # programs the pages pipe into that a machine may lack


@dataclass
class Block:
    page: str
    line: int  # of the block's first line of content, 1-based
    lang: str
    flags: tuple[str, ...]
    body: str


@dataclass
class Step:
    """One thing a page does, in its order: a command, a Python block, a file to write."""
    page: str
    line: int
    kind: str  # "sh", "python", "file"
    text: str
    skip: str = ""  # why it is not run ("" = it is)

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(page: str) -> list[Block]:
    text = (REPO / page).read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        info = m.group(1).split()
        line = text.count("\n", 0, m.start(2)) + 1
        out.append(Block(page, line, info[0] if info else "", tuple(info[1:]), m.group(2)))
    return out


def commands(block: Block) -> list[tuple[int, str]]:
    """(line number, command) for each command of an sh block; `\\` at a line's end joins the next line."""
    out, pending, start = [], "", 0
    for i, raw in enumerate(block.body.splitlines()):
        if not pending:
            start = block.line + i
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line = (pending + raw).strip()
        pending = ""
        if line and not line.startswith("#"):
            out.append((start, line))
    return out


def steps(page: str) -> list[Step]:
    out = []
    for b in blocks(page):
        skip = "no-test" in b.flags
        if b.lang == "sh":
            out += [Step(page, n, "sh", cmd, f"no-test: {cmd}" if skip else "") for n, cmd in commands(b)]
        elif b.lang == "python":
            out.append(Step(page, b.line, "python", b.body, f"no-test: {b.body.splitlines()[0]} ..." if skip else ""))
        elif b.lang == "yaml" and b.body.startswith("# "):
            out.append(Step(page, b.line, "file", b.body, "no-test" if skip else ""))
    return out


def demo_steps() -> list[Step]:
    """The Makefile's `demo:` target: the commands it runs, and the ones it prints for you to try next."""
    lines = (REPO / "Makefile").read_text(encoding="utf-8").splitlines()
    start = lines.index("demo: install")
    out = []
    for n, line in enumerate(lines[start + 1:], start + 2):
        if not line.startswith("\t"):
            break
        m = re.fullmatch(r"\t\$\(BIN\)/(charrnn .*)|\t@echo '  (charrnn .*)'", line)
        if m:
            out.append(Step("Makefile", n, "sh", (m.group(1) or m.group(2)).replace("$$", "$")))
    return out


ALL_STEPS = [s for page in PAGES for s in steps(page)] + demo_steps()


# --- short budgets ------------------------------------------------------------------------------------------

BUDGET = re.compile(r"--(time|epochs|steps)[ =]\S+")
DEMO_STEPS = 150  # what checkpoints/demo is trained for


def cap(flag: str, most: int):
    pattern = re.compile(rf"(?<![\w-])({flag})([ =])(\d+)\b")
    return pattern, lambda m: f"{m.group(1)}{m.group(2)}{min(int(m.group(3)), most)}"


REWRITES = [
    cap("-n|--length", 200),
    cap("--max-chars", 2000),
    (re.compile(r"--mirror[ =]\S+"), lambda m: '--mirror "$CHARRNN_MIRROR"'),
]


def steps_done(cwd: Path, run: str) -> int:
    """The last step a run folder (or the folder of a checkpoint file) logged."""
    folder = cwd / run if (cwd / run).is_dir() else (cwd / run).parent
    lines = (folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return max(json.loads(line)["step"] for line in lines if line.strip())


def shorten(command: str, cwd: Path) -> str:
    """A command as the test runs it: the budgets above, applied to each `charrnn` command of a pipeline."""
    parts = re.split(r"(\|\|?|&&|;)", command)
    for i, part in enumerate(parts):
        if not re.match(r"\s*charrnn\b", part):
            continue
        for pattern, repl in REWRITES:
            part = pattern.sub(repl, part)
        if re.match(r"\s*charrnn\s+train\b", part):
            resume = re.search(r"--resume[ =](\S+)", part)
            if BUDGET.search(part):
                part = BUDGET.sub(f"--steps {steps_done(cwd, resume.group(1)) + 3}" if resume else "--steps 3", part)
            extra = "--eval-chars 2000" if BUDGET.search(part) or "--resume" in part else "--steps 3 --eval-chars 2000"
            part = re.sub(r"charrnn\s+train\b", f"charrnn train {extra}", part, count=1)
        parts[i] = part
    return "".join(parts)


def shorten_python(code: str) -> str:
    return re.sub(r"(TrainConfig\([^)]*?)\btime=\d+", r"\1steps=3", code)


# --- a process that has imported charrnn once, and forks for each command --------------------------------

ZYGOTE = r'''
import atexit, json, os, signal, socket, sys, threading, traceback
sys.path.insert(0, sys.argv[2])
import importlib, pkgutil
import torch  # noqa: F401  (imported once, here: what every command would spend seconds on)
import torch._dynamo  # noqa: F401  (AdamW's constructor imports it: 2 s of every `train` otherwise)
import charrnn
from charrnn.cli import main

for module in [m.name for m in pkgutil.walk_packages(charrnn.__path__, "charrnn.")] + ["onnx", "onnxscript", "torch.onnx"]:
    try:  # what the commands import as they go (no tensor is touched here, no thread pool started: forking is safe)
        importlib.import_module(module)
    except ImportError:
        pass

# One core for every command, as the suite's tests run single-threaded: charrnn then has no thread counts to time
# (the CLI's `--threads 0` times 1 thread against one per core, slowly on a machine other work keeps busy).
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(sys.argv[1])
listener.listen(64)


def reap(*_):  # waited for, so their CPU time counts as this process's children's (`time pytest ...` shows it all)
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


signal.signal(signal.SIGCHLD, reap)
print("ready", flush=True)


def serve(conn):
    head, fds, _, _ = socket.recv_fds(conn, 8, 64)
    size, body = int.from_bytes(head, "big"), b""
    while len(body) < size:
        body += conn.recv(size - len(body))
    request = json.loads(body)
    for i, fd in enumerate(fds[:3]):
        os.dup2(fd, i)
        os.close(fd)
    named = dict(zip((f"/{p}/fd/{n}" for n in request["extra"] for p in ("dev", "proc/self")),
                     (f"/dev/fd/{fd}" for fd in fds[3:] for _ in range(2))))
    request["args"] = [named.get(a, a) for a in request["args"]]
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["charrnn", *request["args"]]
    finished = threading.Event()

    def watch():  # the shim went away (its test timed out): stop as a terminal's Ctrl-C would
        conn.recv(1)
        if not finished.is_set():
            os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    finished.set()
    conn.sendall(code.to_bytes(4, "big", signed=True))
    os._exit(code)


while True:
    try:
        conn, _ = listener.accept()
    except InterruptedError:
        continue
    if os.fork() == 0:
        listener.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        try:
            serve(conn)  # ends the process itself
        finally:
            traceback.print_exc()
            os._exit(1)  # never back into this loop: a child must not serve
    conn.close()
'''

SHIM = r'''#!{python} -S
import json, os, re, socket, sys
if os.environ.get("CHARRNN_DOCS_NO_FORK"):
    os.execv({python!r}, [{python!r}, "-m", "charrnn", *sys.argv[1:]])
# a pipe bash hands over as a file (`<(zcat big.txt.gz)` is /dev/fd/63) travels with stdin, stdout and stderr
extra = sorted({{int(m.group(1)) for a in sys.argv[1:] for m in [re.fullmatch(r"/(?:dev|proc/self)/fd/(\d+)", a)] if m}})
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect({sock!r})
body = json.dumps({{"args": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ), "extra": extra}}).encode()
socket.send_fds(s, [len(body).to_bytes(8, "big") + body], [0, 1, 2, *extra])
code = b""
while len(code) < 4:
    more = s.recv(4 - len(code))
    if not more:
        sys.exit(1)
    code += more
sys.exit(int.from_bytes(code, "big", signed=True))
'''


# --- the folder every page starts from ---------------------------------------------------------------------

# A text whose characters cover every prime the pages use (ROMEO:, JULIET:, KING RICHARD III:, First Citizen:).
PLAY = """\
First Citizen:
Before we proceed any further, hear me speak.

ROMEO:
But, soft! what light through yonder window breaks?
It is the east, and Juliet is the sun.

JULIET:
O Romeo, Romeo! wherefore art thou Romeo?
Deny thy father and refuse thy name;
Or, if thou wilt not, be but sworn my love,
And I'll no longer be a Capulet.

KING RICHARD III:
Now is the winter of our discontent
Made glorious summer by this sun of York;
And all the clouds that lour'd upon our house
In the deep bosom of the ocean buried.

HAMLET:
To be, or not to be, that is the question:
Whether 'tis nobler in the mind to suffer
The slings and arrows of outrageous fortune,
Or to take arms against a sea of troubles.
[Exit Hamlet]

"""

C_SOURCE = """\
/* a small file for the examples */
#include "sched.h"

static int count(const char *s)
{
	int n = 0; // characters
	while (*s++)
		n++;
	return n;
}
"""

TEX = "\\section{Intro}\n% a comment\nLet $x = 1$ and \\emph{y} be given.\n"


def write_files(root: Path) -> None:
    files = {
        "corpus.txt": PLAY * 12,
        "poem.txt": PLAY[:400], "poems.txt": PLAY * 3, "heldout.txt": PLAY * 2, "chapter.txt": PLAY,
        "notes.txt": PLAY, "big.txt": PLAY * 20, "old-novel.txt": PLAY, "chat.txt": PLAY * 4,
        "kernel.c": C_SOURCE * 3, "src/main.c": C_SOURCE * 4, "src/sched.h": C_SOURCE,
        "notes/one.md": PLAY, "notes/two.md": PLAY, "paper.tex": TEX * 30, "chapter.tex": TEX * 30,
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    (root / "old-novel.txt").write_bytes((PLAY + "Caf\u00e9 au lait.\n").encode("latin-1"))


class Session:
    def __init__(self, base: Path):
        self.base = base
        self.bin = base / "bin"
        self.bin.mkdir()
        sock = str(base / "charrnn.sock")
        if len(sock) > 100:  # the limit of a socket's path
            sock = str(Path(tempfile.mkdtemp(prefix="charrnn-")) / "sock")
        shim = self.bin / "charrnn"
        shim.write_text(SHIM.format(python=sys.executable, sock=sock))
        shim.chmod(0o755)
        self.env = dict(os.environ)
        self.env.update(PATH=f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}", COLUMNS="100",
                        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        self.env.pop("CHARRNN_CORPORA", None)
        self.env.pop("CHARRNN_MIRROR", None)
        if SHARED.is_dir():
            self.env["CHARRNN_MIRROR"] = str(SHARED)
        self.zygote = None
        if not os.environ.get("CHARRNN_DOCS_NO_FORK"):
            self.zygote = subprocess.Popen([sys.executable, "-c", ZYGOTE, sock, str(REPO)], env=self.env,
                                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
            assert self.zygote.stdout.readline().strip() == "ready"
        self.template = base / "template"
        self.template.mkdir()
        write_files(self.template)
        # what `make demo` leaves behind: checkpoints/demo, and corpora/shakespeare.txt, here its first 50 KB
        # (`eval` and `score` read it; a command that trains on `shakespeare` fetches the whole file first)
        (self.template / "corpora").mkdir()
        real = SHARED / "shakespeare.txt"
        head = real.read_bytes()[:50_000] if real.is_file() else (PLAY * 70).encode()
        (self.template / "corpora" / "shakespeare.txt").write_bytes(head)
        self.run(self.template, "charrnn train corpus.txt -o checkpoints/demo --layers 1 --hidden 48 --embed 16 "
                                f"--steps {DEMO_STEPS} -b 8 -t 32 --lr 0.02 --eval-every 50 --sample-every 0 --threads 1 "
                                "--precision fp32", check=True)
        self.folders: dict[str, Path] = {}
        self.namespaces: dict[str, dict] = {}

    def folder(self, page: str) -> Path:
        """The page's own copy of the template, made when the page's first step runs."""
        if page not in self.folders:
            dest = self.base / "pages" / page.replace("/", "_")
            shutil.copytree(self.template, dest, symlinks=True)
            self.folders[page] = dest
        return self.folders[page]

    def run(self, cwd: Path, command: str, check: bool = False, timeout: float = 180) -> subprocess.CompletedProcess:
        proc = subprocess.Popen(["bash", "-c", "set -o pipefail\n" + command], cwd=cwd, env=self.env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, errors="replace", start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"{command!r} ran past {timeout} s\n{err[-3000:]}")
        result = subprocess.CompletedProcess(command, proc.returncode, out, err)
        if check:
            assert result.returncode == 0, f"{command}\n{err[-3000:]}"
        return result

    def close(self) -> None:
        if self.zygote:
            self.zygote.terminate()
            self.zygote.wait(timeout=10)


@pytest.fixture(scope="session")
def session(tmp_path_factory):
    s = Session(tmp_path_factory.mktemp("docs"))
    yield s
    s.close()


def expected_status(command: str) -> int:
    m = re.search(r"\(exit (\d+)\)\s*$", command)
    return int(m.group(1)) if m else 0


@pytest.mark.parametrize("step", ALL_STEPS, ids=[s.id for s in ALL_STEPS])
def test_the_docs_run(step: Step, session: Session, monkeypatch, capsys):
    if step.skip:
        pytest.skip(f"{step.id} {step.skip}")
    if step.kind == "sh" and CATALOG.search(step.text) and "CHARRNN_MIRROR" not in session.env:
        pytest.skip(f"{step.id} names a catalog corpus, and there is no mirror folder at {SHARED}")
    for tool in TOOLS:
        if step.kind == "sh" and re.search(rf"\| *{tool}\b", step.text) and not shutil.which(tool):
            pytest.skip(f"{step.id} pipes into {tool}, which is not installed")
    cwd = session.folder(step.page)
    if step.kind == "file":
        first, _, _ = step.text.partition("\n")
        dest = cwd / first[2:].split()[0]
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(step.text, encoding="utf-8")
        return
    if step.kind == "python":
        import torch

        monkeypatch.chdir(cwd)
        namespace = session.namespaces.setdefault(step.page, {"__name__": "__docs__"})
        threads, cores = torch.get_num_threads(), os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(cores)})  # one core, as the commands have
        try:
            exec(compile(shorten_python(step.text), step.id, "exec"), namespace)
        finally:
            torch.set_num_threads(threads)  # a run with threads=0 may have chosen its own
            os.sched_setaffinity(0, cores)
        capsys.readouterr()
        return
    command = shorten(step.text, cwd)
    result = session.run(cwd, command)
    shown = f"{step.text}\nran as: {command}\nstatus {result.returncode}\nstderr:\n{result.stderr[-3000:]}"
    assert result.returncode == expected_status(step.text), shown
    assert "Traceback" not in result.stderr + result.stdout, shown


def test_blocks_follow_the_convention():
    """Every fence names what it holds, and no command hides in an indented block, where it would not be run."""
    for page in PAGES:
        for b in blocks(page):
            assert b.lang in LANGUAGES, f"{page}:{b.line}: a ```{b.lang} block (use one of {sorted(LANGUAGES)})"
            assert set(b.flags) <= {"no-test"}, f"{page}:{b.line}: unknown flags {b.flags}"
            if b.lang == "yaml":
                assert b.body.startswith("# "), f"{page}:{b.line}: a yaml block starts with `# PATH`"
        outside = FENCE.sub("", (REPO / page).read_text(encoding="utf-8"))
        indented = re.findall(r"^(?: {4}|\t)\s*(charrnn .*)$", outside, re.M)
        assert not indented, f"{page}: commands outside a ```sh block are not run: {indented}"


def test_the_readme_is_short_and_links_every_page():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    for page in (REPO / "docs").glob("*.md"):
        assert f"(docs/{page.name})" in readme, f"README.md links docs/{page.name}"
