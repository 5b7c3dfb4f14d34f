"""The catalog file says what it means: every field is read back exactly as it is written."""

from __future__ import annotations

from dataclasses import fields
from importlib import resources

from charrnn.text.catalog import CorpusEntry, load_catalog


def raw_fields() -> dict[str, dict[str, str]]:
    """`name -> field -> the text after "field: "` on that field's line of catalog.yaml."""
    text = resources.files("charrnn.text").joinpath("catalog.yaml").read_text(encoding="utf-8")
    raw: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        if line and not line.startswith((" ", "#")):
            entry = raw.setdefault(line.rstrip(":"), {})
        elif line.startswith("  ") and ": " in line:
            key, value = line.strip().split(": ", 1)
            entry[key] = value
    return raw


def test_every_text_field_reads_back_as_written():
    catalog, raw = load_catalog(), raw_fields()
    assert set(catalog) == set(raw)
    for name, entry in catalog.items():
        for f in fields(CorpusEntry):
            value = getattr(entry, f.name)
            if f.name == "name" or not isinstance(value, str):
                continue
            written = raw[name][f.name].strip()
            unquoted = written[1:-1] if written[:1] in "\"'" and written[-1:] == written[:1] else written
            assert value == unquoted, f"{name}.{f.name} reads as {value!r}, written {written!r} (quote it?)"


def test_descriptions_are_whole():
    for entry in load_catalog().values():
        d = entry.description
        assert d.count("(") == d.count(")"), f"{entry.name}: description cut inside parentheses: {d!r}"
        assert not d.endswith((",", " ")), d
