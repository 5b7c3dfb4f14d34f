r"""Simple per-character features of a text, for finding the recurrent units that track them.

Every feature is an array with one number per character, and describes the text *after
reading that character* — the same moment as the hidden state recorded after the model
reads it. So an opening quote is already inside its string (1) and the closing quote is
outside again (0); a newline has line position 0 and the next character position 1.

    text        x   =   " a \ " b " ;   / /   i t ' s
    in_string   0 0 0 0 1 1 1 1 1 0 0 0 0 0 0 0 0 0 0
    in_comment  0 0 0 0 0 0 0 0 0 0 0 0 0 1 1 1 1 1 1

One left-to-right scan (`scan`) follows a small lexer for one of three comment syntaxes
(guessed from the text, or chosen):

    c      /* ... */ and // comments (C, C++, Java, JavaScript, Go, Rust)
    hash   # to the end of the line (Python, shell, YAML, Perl, Ruby, R, Makefiles)
    latex  % to the end of the line; no strings (an apostrophe in "don't" is not a quote)

In c and hash syntax a quote (" or ') opens a string that ends at the same unescaped quote or
at the end of the line; quotes inside comments and comment marks inside strings mean nothing.
In hash syntax a # right after a letter, digit, _, $ or { is not a comment (`a#b`, `$#array`,
`${#var}`). Outside strings a backslash escapes the next character (\% \{ in LaTeX, \# in shell).
Brackets inside strings and comments are not counted, and depth never goes below 0 (a snippet
may start inside a block). On prose these features mostly stay at zero, which is the right answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

SYNTAXES = ("auto", "c", "hash", "latex")
SYNTAX_NAMES = {"c": "C comments (/* */, //)", "hash": "# comments (Python, shell, YAML, Perl)",
                "latex": "LaTeX comments (%)"}

# what each feature means, shown next to its best units
DESCRIPTIONS = {
    "in_string": 'inside a quoted string ("..." or \'...\')',
    "in_comment": "inside a comment (/* */ and // in C, # in Python, shell, YAML and Perl, % in LaTeX)",
    "brace_depth": "nesting depth of { }",
    "paren_depth": "nesting depth of ( ) and [ ]",
    "line_position": "characters since the last newline",
    "word_start": "first character of a word",
}


C_DIRECTIVE = r"#\s*(?:include|define|undef|ifn?def|if|elif|else|endif|pragma|error|warning|line)\b"


def guess_syntax(text: str) -> str:
    """The comment syntax whose marks the text holds most of: 'c', 'hash' or 'latex' ('c' on a tie)."""
    counts = {
        "c": text.count("/*") + len(re.findall(r"(?<![:/])//", text)),  # not the // of a URL
        "hash": len(re.findall(r"(?m)(?:^|[ \t])#", text))
        - len(re.findall(rf"(?m)^[ \t]*{C_DIRECTIVE}", text)),  # a C preprocessor line is not a comment
        "latex": len(re.findall(r"(?m)^\s*%", text)) + text.count("\\begin{"),
    }
    best = max(counts.values())
    return next(name for name in ("c", "hash", "latex") if counts[name] == best)


@dataclass
class Features:
    in_string: np.ndarray  # (N,) 1.0 inside a quoted string, else 0.0
    in_comment: np.ndarray  # (N,) 1.0 inside a comment, else 0.0
    brace_depth: np.ndarray  # (N,) how many { are open
    paren_depth: np.ndarray  # (N,) how many ( and [ are open
    line_position: np.ndarray  # (N,) characters since the last newline (the newline itself: 0)
    word_start: np.ndarray  # (N,) 1.0 on the first character of a word (letters, digits, _)

    def as_dict(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in DESCRIPTIONS}


def scan(text: str, syntax: str = "auto") -> Features:
    """All features of `text` in one pass. `syntax` picks the comment marks: c, latex or auto."""
    if syntax not in SYNTAXES:
        raise ValueError(f"syntax must be one of {SYNTAXES}")
    if syntax == "auto":
        syntax = guess_syntax(text)
    string, comment, braces, parens = np.zeros((4, len(text)))  # (N,) each
    quote = None  # the quote character of the open string, or None
    escaped = False  # the previous character was an unescaped backslash
    block_at = -1  # index of the '*' that opened the /* */ comment we are in, or -1
    line = False  # inside a // or % comment
    slash = False  # the previous character was a '/' in code (it may start a comment)
    brace = paren = 0
    for i, ch in enumerate(text):
        was_slash, slash = slash, False
        if quote is not None:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote or ch == "\n":
                quote = None
        elif block_at >= 0:
            if ch == "/" and text[i - 1] == "*" and i - 1 != block_at:
                block_at = -1
        elif line:
            if ch == "\n":
                line = False
        elif escaped:  # \" \' \% \{ outside strings are not special (LaTeX, shell)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif syntax != "latex" and ch in "\"'":
            quote = ch
        elif syntax == "c" and was_slash and ch == "*":
            block_at = i
        elif syntax == "c" and was_slash and ch == "/":
            line = True
        elif syntax == "c" and ch == "/":
            slash = True
        elif syntax == "latex" and ch == "%":
            line = True
        elif syntax == "hash" and ch == "#" and not (i and (text[i - 1].isalnum() or text[i - 1] in "_${")):
            line = True
        elif ch == "{":
            brace += 1
        elif ch == "}":
            brace = max(0, brace - 1)
        elif ch in "([":
            paren += 1
        elif ch in ")]":
            paren = max(0, paren - 1)
        string[i] = quote is not None
        comment[i] = block_at >= 0 or line
        braces[i], parens[i] = brace, paren
    return Features(string, comment, braces, parens, line_position(text), word_start(text))


def line_position(text: str) -> np.ndarray:
    """(N,) characters since the last newline, counting this one; a newline itself is 0."""
    out = np.zeros(len(text))
    col = 0
    for i, ch in enumerate(text):
        col = 0 if ch == "\n" else col + 1
        out[i] = col
    return out


def word_start(text: str) -> np.ndarray:
    """(N,) 1.0 where a word (a run of letters, digits or _) begins, else 0.0."""
    out = np.zeros(len(text))
    for m in re.finditer(r"\w+", text):
        out[m.start()] = 1.0
    return out
