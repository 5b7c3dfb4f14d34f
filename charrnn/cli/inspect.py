"""`charrnn eval`, `charrnn score`, `charrnn cells`: look at what a trained model knows.

The report is the command's result, on stdout; with `--json` the JSON is, and the report goes to stderr.
"""

from __future__ import annotations

import contextlib
import sys
import time

import typer

from charrnn.cli.common import CHECKPOINT, THREADS, app, device_option, emit_json, examples, guarded, out_console, result_table
from charrnn.util.errors import CharrnnError, UsageError

EVAL_EXAMPLES = examples(
    "charrnn eval checkpoints/shakespeare/best.pt heldout.txt",
    "cat chapter.txt | charrnn eval checkpoints/shakespeare - --json | jq .bits_per_char",
    "charrnn eval run/best.pt big.txt --batch-size 256 --device cuda")

SCORE_EXAMPLES = examples(
    "charrnn score checkpoints/shakespeare/best.pt poem.txt",
    "head -c 2000 play.txt | charrnn score checkpoints/shakespeare - --top 5",
    "charrnn score run/best.pt poem.txt --html poem.html --json > poem.json")

CELLS_EXAMPLES = examples(
    "charrnn cells checkpoints/linux/best.pt kernel.c",
    "charrnn cells checkpoints/linux/best.pt kernel.c --unit 2:117 --kind c --html cells.html",
    "charrnn cells checkpoints/latex paper.tex --syntax latex --json | jq '.features.in_comment.units[0]'")

SOURCE = typer.Argument(..., help="Text file, a catalog name (charrnn corpus list), or - for stdin.", show_default=False)
ENCODING = typer.Option("utf-8", "--encoding", help="Text encoding of the file.")
HTML = typer.Option(None, "--html", help="Also write a standalone HTML page here.", show_default=False)


def load(command: str, checkpoint: str, source: str, encoding: str, device: str, threads: int):
    """(loaded model, its device, the text) for the commands below (`command` names the one asking)."""
    from charrnn.runtime.device import resolve_device
    from charrnn.runtime.threads import check_threads
    from charrnn.text.catalog import resolve_source
    from charrnn.text.corpus import check_text_file, read_text
    from charrnn.training.checkpoint import load_model

    check_threads(threads)
    source = resolve_source(source)  # a catalog name is its fetched file
    check_text_file(source, command)  # a pipe (<(cmd)) is read like -, a folder is not a file
    dev = resolve_device(device)
    return load_model(checkpoint, dev), dev, read_text([source], encoding=encoding)


@contextlib.contextmanager
def paced(threads: int, loaded, what: str):
    """The block's progress hook: a bar (`progress_bar`) on a terminal, and, for threads 0 on the CPU, the
    thread count chosen block by block as the text is read (`runtime.threads.paced_threads`)."""
    from charrnn.runtime.threads import paced_threads

    cpu = loaded.model.head.weight.device.type == "cpu"
    with progress_bar(what) as progress, paced_threads(threads, progress, cpu) as hook:
        yield hook


@contextlib.contextmanager
def progress_bar(what: str):
    """`progress(done, total)` for the block: a bar on stderr when it is a terminal, None (nothing) otherwise."""
    from charrnn.util.console import err_console

    console = err_console()
    if not console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(what, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def oov_note(oov: dict[str, int]) -> str:
    from charrnn.util.showtext import counter_text

    if not oov:
        return "every character is in the model's vocabulary"
    n = sum(oov.values())
    return f"{n:,} character(s) outside the model's vocabulary were skipped (removed, counted): {counter_text(oov)}"


def need_chars(count: int, source: str) -> None:
    if count < 2:
        raise CharrnnError(f"{'standard input' if source == '-' else source} has fewer than 2 characters "
                           "the model knows: there is nothing to predict")


def reporter(as_json: bool):
    """say(text, style): a line of the human-readable report, as plain text (never markup): on stdout, or on
    stderr when stdout carries --json."""
    from charrnn.util.console import err_console

    console = err_console() if as_json else out_console()
    return lambda text, style=None: console.print(text, style=style, highlight=False, markup=False)


def write_page(path: str, page: str) -> None:
    from charrnn.util.console import info
    from charrnn.util.files import atomic_write_text

    atomic_write_text(path, page)
    info(f"wrote {path}")


@app.command("eval", epilog=EVAL_EXAMPLES)
@guarded
def eval_(
    checkpoint: str = CHECKPOINT,
    source: str = SOURCE,
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Parallel streams (64 is the layout training validates with)."),
    seq_len: int = typer.Option(256, "--seq-len", "-t", help="Characters per forward call (does not change the figure)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    device: str = device_option("auto"),
    threads: int = THREADS,
    encoding: str = ENCODING,
) -> None:
    """Bits per character (and nats, perplexity) of a text under a model: how good is the model on it?"""
    from charrnn.inspect.surprise import eval_text

    if batch_size < 1 or seq_len < 1:
        raise UsageError("--batch-size and --seq-len must be at least 1")
    loaded, dev, text = load("eval", checkpoint, source, encoding, device, threads)
    with paced(threads, loaded, "reading the text") as progress:
        t0 = time.perf_counter()
        ev = eval_text(loaded.model, loaded.vocab, text, batch_size, seq_len, dev, progress=progress)
        seconds = time.perf_counter() - t0
    r, unit = ev.result, loaded.vocab.unit
    need_chars(r.chars, source)
    if as_json:
        emit_json({"checkpoint": str(loaded.path), "source": source, **ev.to_dict(), "seconds": round(seconds, 3)})
    say = reporter(as_json)
    per_token = "" if loaded.vocab.token_is_char else f"; {r.bits_per_token:.4f} bits/token over {r.tokens:,} {unit}"
    say(f"{r.bits_per_char:.4f} bits/char  ({r.nats_per_char:.4f} nats/char, perplexity {r.perplexity:.3f}) "
        f"over {r.chars:,} predicted characters{per_token}")
    say(f"{ev.chars_read:,} characters read; {oov_note(ev.oov)}", "dim")
    streams = min(batch_size, r.tokens)
    restarts = f"it restarts from zero at the {streams - 1} later stream starts (--batch-size 1: none)" if streams > 1 \
        else "one stream: the exact sequential figure"
    say(f"{streams} stream(s) of up to {-(-r.tokens // streams):,} {unit}, the state carried through each; "
        f"{restarts}. {seconds:.2f} s, {r.chars / max(seconds, 1e-9):,.0f} chars/s on {dev.type}", "dim")


@app.command(epilog=SCORE_EXAMPLES)
@guarded
def score(
    checkpoint: str = CHECKPOINT,
    source: str = SOURCE,
    top: int = typer.Option(10, "--top", help="How many of the most surprising spans to list."),
    max_chars: int = typer.Option(0, "--max-chars", help="Score only the first N characters (0 = all)."),
    html: str = HTML,
    as_json: bool = typer.Option(False, "--json", help="Print per-character bits and the spans as JSON on stdout (instead of the coloured text)."),
    no_text: bool = typer.Option(False, "--no-text", help="Show only the summary and spans, not the coloured text."),
    seq_len: int = typer.Option(256, "--seq-len", "-t", help="Characters per forward call (does not change the figures)."),
    device: str = device_option("auto"),
    threads: int = THREADS,
    encoding: str = ENCODING,
) -> None:
    """Show a text coloured by how surprised the model is by each character, with the most surprising spans."""
    from charrnn.cli.render import Section, TableSection, colours_for, html_page, rich_text, surprise_rgb
    from charrnn.inspect.surprise import score_text
    from charrnn.util.console import shown

    if top < 0 or max_chars < 0 or seq_len < 1:
        raise UsageError("--top and --max-chars must be >= 0 and --seq-len at least 1")
    loaded, dev, text = load("score", checkpoint, source, encoding, device, threads)
    text = text[:max_chars] if max_chars else text
    with paced(threads, loaded, "scoring the text") as progress:
        s = score_text(loaded.model, loaded.vocab, text, seq_len, dev, progress)
    need_chars(s.scored + 1, source)
    spans, say, colours = s.spans(top), reporter(as_json), colours_for(s.bits, surprise_rgb)
    if as_json:
        emit_json({"checkpoint": str(loaded.path), "source": source, **s.to_dict(top)})
    elif not no_text:
        say(rich_text(text, colours))
    first = "the first character has nothing before it and is not scored" if loaded.vocab.token_is_char else \
        (f"{loaded.vocab.unit}: each token's bits are spread over its characters; the first token has "
         "nothing before it and is not scored")
    say(f"{s.bits_per_char:.4f} bits/char over {s.scored:,} characters ({s.total_bits:,.1f} bits in all); "
        f"{first}; {oov_note(s.oov)}")
    span_table = TableSection("most surprising spans", ["bits", "line:col", "text"],
                              [[f"{sp.bits:.1f}", f"{sp.line}:{sp.column}", repr(sp.text)] for sp in spans], ("bits",))
    if spans:
        table = result_table(span_table.title, span_table.columns, span_table.numeric)
        for row in span_table.rows:
            table.add_row(*map(shown, row))  # the spans are the text's: escapes shown, never run
        say(table)
    if html:
        tips = ["not scored" if b != b else f"{b:.2f} bits" for b in s.bits]
        note = f"{s.bits_per_char:.3f} bits/char over {s.scored:,} characters. White: 0 bits, yellow: 4, red: 8 or more."
        write_page(html, html_page(f"charrnn score: {source}", [Section(str(loaded.path), text, colours, tips, note)],
                                   tables=[span_table] if spans else []))


@app.command(epilog=CELLS_EXAMPLES)
@guarded
def cells(
    checkpoint: str = CHECKPOINT,
    source: str = SOURCE,
    unit: str = typer.Option(None, "--unit", help="Show one unit, LAYER:INDEX (layers from 1, units from 0), e.g. 2:117.", show_default=False),
    kind: str = typer.Option(None, "--kind", help="h (hidden state) or c (LSTM cell state). Default: both when ranking, c for --unit on an LSTM.", show_default=False),
    top: int = typer.Option(3, "--top", help="Units listed per feature."),
    max_chars: int = typer.Option(20000, "--max-chars", help="Read at most this many characters of the text."),
    show_chars: int = typer.Option(400, "--show-chars", help="Characters of text shown per unit."),
    syntax: str = typer.Option("auto", "--syntax", help="Comment syntax for the features: auto (guessed from the text), c (/* */ and //), hash (# in Python, shell, YAML, Perl) or latex (%)."),
    html: str = HTML,
    as_json: bool = typer.Option(False, "--json", help="Print the ranking (and --unit's correlations) as JSON on stdout (instead of the coloured text)."),
    device: str = device_option("auto"),
    threads: int = THREADS,
    encoding: str = ENCODING,
) -> None:
    """Find the units that track quotes, comments, bracket depth, line position and word starts, and show them."""
    from charrnn.cli.render import html_page
    from charrnn.inspect.cells import analyse, check_kind, check_unit, parse_unit
    from charrnn.inspect.features import SYNTAX_NAMES, SYNTAXES
    from charrnn.inspect.surprise import encode_known

    if syntax not in SYNTAXES:
        raise UsageError(f"--syntax must be one of {', '.join(SYNTAXES)}")
    if top < 1 or max_chars < 2 or show_chars < 1:
        raise UsageError("--top and --show-chars must be at least 1, --max-chars at least 2")
    loaded, dev, text = load("cells", checkpoint, source, encoding, device, threads)
    with paced(threads, loaded, "recording the units") as progress:
        enc = encode_known(loaded.vocab, text[:max_chars])
        known = "".join(ch for ch, k in zip(text[:max_chars], enc.known) if k)
        need_chars(len(known), source)
        check_kind(kind, loaded.model)
        chosen = parse_unit(unit, kind or ("c" if loaded.model.n_state == 2 else "h")) if unit else None
        if chosen:
            check_unit(chosen, loaded.model)
        per_char = None if loaded.vocab.token_is_char else enc.token_of_char()
        report = analyse(loaded.model, enc.tokens, known, syntax, top, [kind] if kind else None, per_char, progress)
    say, colours = reporter(as_json), sys.stdout.isatty()
    legend = ("background: blue = -1, white = 0, red = +1" if colours else
              "each unit's value at each character, one a line: -1 .. +1") + " (h, or tanh(c) for cell states)"
    say(f"{len(known):,} characters read, with {SYNTAX_NAMES[report.syntax]}; {oov_note(enc.oov)}; {legend}", "dim")
    column = None if colours else Column(text[:max_chars], enc.known)
    sections, corr = _unit_sections(report, known, chosen, show_chars, None if as_json else say, column)
    if as_json:
        data = {"checkpoint": str(loaded.path), "source": source, "oov_chars": enc.oov_count, "oov": enc.oov,
                **report.to_dict()}
        if chosen:
            data["unit"] = {"layer": chosen.layer, "index": chosen.index, "kind": chosen.kind, "correlations": corr}
        emit_json(data)
    if html:
        intro = f"{loaded.path} reading {source} ({len(known):,} characters; {oov_note(enc.oov)})."
        constant = [name for name in report.features if not report.changes(name)]
        if constant and not chosen:
            intro += f" Never changes in this text, so no unit can track it: {', '.join(constant)}."
        write_page(html, html_page(f"charrnn cells: {source}", sections, intro))


class Column:
    """A unit's values over a window of the text as plain text, one character a line (`charrnn cells` piped):
    ` +0.731  'a'`, and `skipped  'é'` where a character outside the vocabulary was left out (awk '{print $1}')."""

    def __init__(self, text: str, known):
        import numpy as np

        self.text, self.kept = text, np.flatnonzero(known)  # (K,) where each known character is in `text`

    def __call__(self, values, start: int, end: int) -> str:
        from charrnn.util.showtext import show_char

        rows = [f"{'value':>7}  character"]
        for j in range(start, end):
            if j > start:
                rows += [f"skipped  {show_char(c)}" for c in self.text[self.kept[j - 1] + 1 : self.kept[j]]]
            rows.append(f"{values[j]:>+7.3f}  {show_char(self.text[self.kept[j]])}")
        return "\n".join(rows)


def _unit_sections(report, known: str, chosen, show_chars: int, say, column=None) -> tuple[list, dict | None]:
    """The sections of `charrnn cells`' page: `chosen` unit, or each feature's best units (the
    runners-up on the page only); each shown with `say` too, unless it is None (--json): coloured, or
    with `column` as a column of values. Returns (sections, the chosen unit's correlations or None)."""
    from charrnn.cli.render import Section, activation_rgb, colours_for, rich_text
    from charrnn.inspect.cells import best_window
    from charrnn.inspect.features import DESCRIPTIONS

    sections = []

    def show(u, heading: str, note: str, window_of, terminal: bool) -> None:
        """Add unit `u` over the window where `window_of` varies most to the page (and the terminal)."""
        values = report.values(u)
        start, end = best_window(window_of, show_chars, known)
        colours = colours_for(values[start:end], activation_rgb)
        sections.append(Section(heading, known[start:end], colours, [f"{v:+.2f}" for v in values[start:end]], note))
        if terminal and say is not None:
            say(heading, "bold")
            if note:
                say(note, "dim")
            say(rich_text(known[start:end], colours) if column is None else column(values, start, end))
            say("")

    if chosen:
        corr = report.correlations_of(chosen)
        shown = [f"{n} {r:+.2f}" for n, r in corr.items() if r is not None]
        still = [n for n, r in corr.items() if r is None]
        note = "r with " + ", ".join(shown) + (f"; never changes in this text: {', '.join(still)}" if still else "")
        show(chosen, f"unit {chosen}", note, report.values(chosen), True)
        return sections, corr
    for name, scores in report.ranking.items():
        if not scores:  # a constant feature: any unit's r would be 0 and mean nothing
            if say is not None:
                say(f"{name} ({DESCRIPTIONS[name]}): never changes in this text, so no unit can track it", "dim")
                say("")
            continue
        best, feature = scores[0], report.features[name]
        others = ", ".join(f"{s.unit} r={s.r:+.2f}" for s in scores[1:])
        heading = f"{name} ({DESCRIPTIONS[name]}): unit {best.unit}, r = {best.r:+.3f}"
        show(best.unit, heading, f"next best: {others}" if others else "", feature, True)
        for s in scores[1:]:  # the runners-up go to the HTML page only
            show(s.unit, f"{name}: unit {s.unit}, r = {s.r:+.3f}", "", feature, False)
    return sections, None
