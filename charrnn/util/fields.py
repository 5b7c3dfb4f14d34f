"""Settings checked where they enter: each field of a settings dataclass says what it accepts, once.

    @dataclass
    class Sampling:
        temperature: float = setting(1.0, lo=0, hi=100, note="0 = greedy")
        cell: str = setting("lstm", choices=("lstm", "gru", "rnn"))

        def __post_init__(self):
            check(self)

The type comes from the annotation (int, float, str, bool, `X | None`, `tuple[str, ...]`,
`list[str]`, dict), the range from the metadata. `check` refuses a value of another type or out
of range with a UsageError naming the field (`temperature must be a number from 0 to 100 (0 =
greedy), not -1`), and converts an int where a float is expected, a list where a tuple is.
`convert` does the same for one value from outside (YAML, JSON, a checkpoint's metadata), where a
string holding a number also counts as a number and a single string as a list of one.
"""

from __future__ import annotations

import difflib
import functools
import math
import types
import typing
from dataclasses import MISSING, Field, field, fields

from charrnn.util.errors import UsageError

KINDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a mapping"}


def setting(default=MISSING, *, lo=None, hi=None, above=None, below=None, choices=None, finite: bool = True,
            note: str = "", shown: str = "", default_factory=MISSING) -> Field:
    """A dataclass field with what it accepts: `lo` <= value <= `hi`, `above` < value < `below`, or one of
    `choices`; a float field is finite unless `finite` is False. `note` is added to a refusal in brackets;
    `shown` replaces the range's own wording."""
    meta = {"lo": lo, "hi": hi, "above": above, "below": below, "choices": choices, "finite": finite, "note": note,
            "shown": shown}
    return field(default=default, default_factory=default_factory, metadata=meta)


@functools.cache
def _types(cls) -> dict[str, tuple]:
    """Field name -> (base type, optional) from the class's annotations."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        args = [a for a in typing.get_args(hint) if a is not type(None)] if union else [hint]
        out[name] = (typing.get_origin(args[0]) or args[0], union and len(args) < len(typing.get_args(hint)))
    return out


def short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def accepts(f: Field, base: type) -> str:
    """What field `f` accepts, in words: 'an integer from 1 to 1,000', 'one of lstm, gru, rnn'."""
    m = f.metadata
    if m.get("shown"):
        return m["shown"]
    if m.get("choices"):
        return "one of " + ", ".join(map(str, m["choices"]))
    kind = KINDS.get(base, "a list of strings")
    fmt = "{:,}" if base is int else "{:g}"
    lo, hi, above, below = m.get("lo"), m.get("hi"), m.get("above"), m.get("below")
    if lo is not None and hi is not None:
        return f"{kind} from {fmt.format(lo)} to {fmt.format(hi)}"
    if above == 0 and hi is None and below is None:
        return f"a positive {kind.split()[-1]}"
    bounds = [f"{op} {fmt.format(x)}" for op, x in ((">=", lo), (">", above), ("<=", hi), ("<", below)) if x is not None]
    return f"{kind} {' and '.join(bounds)}" if bounds else kind


def _refuse(name: str, f: Field, base: type, value, what: str | None = None) -> UsageError:
    note = f" ({f.metadata['note']})" if f.metadata.get("note") else ""
    shown = f"{type(value).__name__} {short(value)}" if what else short(value)
    return UsageError(f"{name} must be {what or accepts(f, base)}{note}, not {shown}", name)


def _typed(name: str, f: Field, base: type, optional: bool, value, lenient: bool):
    """`value` as the field's type, or a UsageError. `lenient`: also a number in a string, a string for a list."""
    if value is None and optional:
        return None
    ok = None
    if base is float and lenient and isinstance(value, str):
        try:
            value = float(value)  # YAML 1.1 reads `1e-3` (no dot) as a string
        except ValueError:
            pass
    if base in (int, float):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = (float(value) if base is float else value if isinstance(value, int) else None) if number else None
    elif base in (list, tuple):
        items = [value] if lenient and isinstance(value, str) else value
        if isinstance(items, (list, tuple)) and all(isinstance(v, str) for v in items):
            ok = base(items)
    elif isinstance(value, base):
        ok = value
    if ok is None:
        kind = KINDS.get(base, ("a string or " if lenient else "") + "a list of strings")
        raise _refuse(name, f, base, value, kind + (" or null" if optional else ""))
    return ok


def _in_range(f: Field, base: type, value) -> bool:
    m = f.metadata
    if value is None or base not in (int, float):
        return m.get("choices") is None or value in m["choices"]
    if base is float and not math.isfinite(value):
        return not m.get("finite", True)
    return ((m.get("lo") is None or value >= m["lo"]) and (m.get("hi") is None or value <= m["hi"])
            and (m.get("above") is None or value > m["above"]) and (m.get("below") is None or value < m["below"]))


def convert(cls, name: str, value, lenient: bool = True):
    """One value for field `name` of `cls`, typed and range-checked, or a UsageError naming the field."""
    f = next(f for f in fields(cls) if f.name == name)
    base, optional = _types(cls)[name]
    value = _typed(name, f, base, optional, value, lenient)
    if not _in_range(f, base, value):
        raise _refuse(name, f, base, value)
    return value


def check(obj) -> None:
    """Check (and normalise) every field of the dataclass instance `obj`; the first bad one raises."""
    for f in fields(obj):
        if f.init:
            object.__setattr__(obj, f.name, convert(type(obj), f.name, getattr(obj, f.name), lenient=False))


def names(cls) -> tuple[str, ...]:
    """The init fields of the dataclass `cls`, in order."""
    return tuple(f.name for f in fields(cls) if f.init)


def unknown(key, known, where: str = "", noun: str = "key") -> UsageError:
    """The refusal of a key no settings class has: the closest known key, and the list."""
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return UsageError(f"{where}{': ' if where else ''}unknown {noun} {short(key)}{hint}; valid {noun}s: {', '.join(known)}")
