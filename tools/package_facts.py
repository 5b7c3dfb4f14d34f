#!/usr/bin/env python3
"""Facts about the package that should stay true, counted from its source (nothing is run).

    python tools/package_facts.py          # every count, one per line, then lines per folder
    python tools/package_facts.py --list   # ... and where each non-zero count comes from

The counts the architecture test holds at zero:

    flag-in-library-error   a CharrnnError (or subclass) message naming a --flag outside cli/:
                            the library names settings; the CLI turns them into flags
    set-num-threads         torch.set_num_threads outside runtime/threads.py, the one helper
    kind-branch             a comparison with a token kind's name ("char", "word", "byte")
                            outside the vocabulary classes in text/
    locals                  locals() anywhere: settings travel as typed objects
    long-function           functions over 60 lines
    unreferenced            functions and methods nothing names (dead code)
"""

from __future__ import annotations

import ast
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "charrnn"
ELSEWHERE = ("tests", "bench", "tools")  # a name used only here still counts as used
ERRORS = {"CharrnnError", "UsageError", "SaveError", "Damaged", "FolderInUse", "SettingError"}
KINDS = {"char", "word", "byte"}
VOCAB_FILES = {"text/vocab.py", "text/wordvocab.py", "text/bytevocab.py", "text/kinds.py"}
THREADS_HOME = "runtime/threads.py"
LONG = 60
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")


def sources() -> dict[str, ast.Module]:
    return {str(f.relative_to(PACKAGE)): ast.parse(f.read_text(encoding="utf-8")) for f in sorted(PACKAGE.rglob("*.py"))}


def strings_in(node: ast.AST):
    for n in ast.walk(node):
        if isinstance(n, ast.Constant) and isinstance(n.value, str):
            yield n.value


def flag_in_library_error(files: dict) -> list[str]:
    found = []
    for name, tree in files.items():
        if name.startswith("cli/"):
            continue
        for n in ast.walk(tree):
            if isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) in ERRORS:
                flags = sorted({f for s in strings_in(n) for f in FLAG.findall(s)})
                if flags:
                    found.append(f"{name}:{n.lineno} {', '.join(flags)}")
    return found


def set_num_threads(files: dict) -> list[str]:
    return [f"{name}:{n.lineno}" for name, tree in files.items() if name != THREADS_HOME for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and n.attr == "set_num_threads"]


def kind_branch(files: dict) -> list[str]:
    def names_a_kind(node) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in KINDS
        return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and any(names_a_kind(e) for e in node.elts)

    return [f"{name}:{n.lineno}" for name, tree in files.items() if name not in VOCAB_FILES for n in ast.walk(tree)
            if isinstance(n, ast.Compare) and any(names_a_kind(x) for x in [n.left, *n.comparators])]


def uses_locals(files: dict) -> list[str]:
    return [f"{name}:{n.lineno}" for name, tree in files.items() for n in ast.walk(tree)
            if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "locals"]


def functions(files: dict, overrides: bool = True):
    """(file, def) of every function and method; `overrides=False` leaves out the methods of classes built on
    another library's class (rich, click, torch), which that library calls by name."""
    ours = {n.name for tree in files.values() for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    for name, tree in files.items():
        outside = set()
        for c in ast.walk(tree):
            if isinstance(c, ast.ClassDef) and any(ast.unparse(b).split(".")[-1] not in ours for b in c.bases):
                outside |= {id(m) for m in c.body}
        for n in ast.walk(tree):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and (overrides or id(n) not in outside):
                yield name, n


def long_function(files: dict) -> list[str]:
    return [f"{name}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)" for name, n in functions(files)
            if n.end_lineno - n.lineno + 1 > LONG]


def unreferenced(files: dict) -> list[str]:
    """Functions whose name appears nowhere but in their own definition (package, tests, bench, tools).

    Dunders, framework hooks (Typer commands, decorated routes) and overrides of a base class's method
    are called by name from outside and are left out."""
    words: Counter = Counter()
    for f in [*PACKAGE.rglob("*.py"), *(p for d in ELSEWHERE for p in (ROOT / d).rglob("*.py"))]:
        words.update(re.findall(r"\w+", f.read_text(encoding="utf-8")))
    found = []
    for name, fn in functions(files, overrides=False):
        if fn.name.startswith("__") or fn.decorator_list and any("command" in ast.unparse(d) or "callback" in
                                                                 ast.unparse(d) for d in fn.decorator_list):
            continue
        if words[fn.name] <= 1:
            found.append(f"{name}:{fn.lineno} {fn.name}")
    return found


def long_lines() -> int:
    return sum(len(line) > 120 for f in PACKAGE.rglob("*.py") for line in f.read_text(encoding="utf-8").splitlines())


def lines_per_folder() -> dict[str, int]:
    out: Counter = Counter()
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(PACKAGE).parts
        out[parts[0] if len(parts) > 1 else "(top)"] += len(f.read_text(encoding="utf-8").splitlines())
    return dict(sorted(out.items()))


CHECKS = {"flag-in-library-error": flag_in_library_error, "set-num-threads": set_num_threads,
          "kind-branch": kind_branch, "locals": uses_locals, "long-function": long_function,
          "unreferenced": unreferenced}


def main() -> int:
    files = sources()
    for label, check in CHECKS.items():
        found = check(files)
        print(f"{label}: {len(found)}")
        if "--list" in sys.argv:
            for where in found:
                print(f"    {where}")
    print(f"lines over 120 characters: {long_lines()}")
    per = lines_per_folder()
    print("lines: " + ", ".join(f"{k} {v:,}" for k, v in per.items()) + f"; total {sum(per.values()):,}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # (read by `head`)
        pass
