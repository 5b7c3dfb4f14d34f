"""`charrnn checkpoints ...`: list, show, prune and export checkpoints."""

from __future__ import annotations

import typer

from charrnn.cli.common import App, app, emit_json, examples, guarded, out_console, result_table
from charrnn.runtime.memory import fmt_bytes

ckpt_app = App(help="Checkpoints: list runs, show one, prune snapshots, export for inference.", epilog=examples(
    "charrnn checkpoints list",
    "charrnn checkpoints show checkpoints/shakespeare",
    "charrnn checkpoints prune checkpoints/shakespeare --keep 3",
    "charrnn checkpoints export checkpoints/shakespeare -o small.safetensors"))
app.add_typer(ckpt_app, name="checkpoints")
CHECKPOINT = typer.Argument(..., help="A checkpoint file, or a run folder (its best.pt).", show_default=False)


def fmt_params(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


@ckpt_app.command("list", epilog=examples(
    "charrnn checkpoints list",
    "charrnn checkpoints list runs/ --json | jq '.[] | select(.name == \"best.pt\")'"))
@guarded
def list_(
    folder: str = typer.Argument("checkpoints", help="A folder of runs, or one run folder."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
) -> None:
    """Table of every checkpoint: run, step, val bits/char, model shape, params, size, date."""
    from charrnn.training.runs import list_checkpoints
    from charrnn.util.console import info, shown

    found = list_checkpoints(folder)
    if as_json:
        emit_json([c.to_dict() for c in found], indent=2)
        return
    if not found:
        info(f"no checkpoints under {folder}")
        return
    table = result_table(shown(f"checkpoints in {folder}"),
                         ("run", "checkpoint", "step", "val bits/char", "bits/token", "model", "params", "size", "date"),
                         numeric=("step", "val bits/char", "bits/token", "params", "size"))
    for c in found:
        if c.error:
            table.add_row(shown(c.run), shown(c.name), "-", "-", "-", shown(f"unreadable: {c.error}", style="red"), "-",
                          fmt_bytes(c.bytes), c.modified)
            continue
        model = f"{c.cell} {c.layers}x{c.hidden}" + ("" if c.token_is_char else f" {c.tokens}") \
            + ("" if c.resumable else " (export)")
        table.add_row(shown(c.run), shown(c.name), str(c.step), "-" if c.val_bpc is None else f"{c.val_bpc:.3f}",
                      "-" if c.val_bpt is None else f"{c.val_bpt:.3f}", shown(model), fmt_params(c.params),
                      fmt_bytes(c.bytes), c.modified)  # every field from a file: shown
    out_console().print(table)


@ckpt_app.command(epilog=examples("charrnn checkpoints show checkpoints/shakespeare",
                                  "charrnn checkpoints show run/last.pt --json | jq .train_config"))
@guarded
def show(
    checkpoint: str = CHECKPOINT,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """A checkpoint's model and training configuration (as YAML), vocabulary and validation history."""
    import yaml

    from charrnn.training.checkpoint import resolve_checkpoint
    from charrnn.util.console import shown
    from charrnn.training.runs import summary

    s = summary(resolve_checkpoint(checkpoint))
    if as_json:
        emit_json(s, indent=2)
        return
    con = out_console()
    kind = "resumable training checkpoint" if s["resumable"] else "inference-only checkpoint"
    con.print(shown(f"{s['path']}: {kind}, format {s['format_version']}, {fmt_bytes(s['bytes'])}, {s['modified']}"))
    best = "-" if s["best_val_bpc"] is None else f"{s['best_val_bpc']:.4f}"
    con.print(shown(f"step {s['step']}, epoch {s['epoch']}, best val {best} bits/char, {s['params']:,} parameters"))
    run = {k: v for k, v in s["meta"].items() if k != "config"}  # (its config: the model's and training's again)
    configs = {title: cfg for title, cfg in (("model", s["model_config"]), ("training", s["train_config"]),
                                             ("run", run)) if cfg}
    con.print(shown(yaml.safe_dump(configs, sort_keys=False, allow_unicode=True, width=1000).rstrip("\n"), keep="\n"))
    con.print(shown(s["vocab_line"]))
    if s["metrics"]:
        per_token = s["token_is_char"]
        columns = ("step", "epoch", "time (s)", "val bits/char", "val nats/char" if per_token else "val bits/token")
        table = result_table("validation history", columns, numeric=columns)
        for r in s["metrics"]:
            bpc, other = r.get("val_bpc"), r.get("val_loss") if per_token else r.get("val_bpt")
            table.add_row(str(r["step"]), f"{r.get('epoch', 0):.2f}", f"{r.get('time', 0):.0f}",
                          "-" if bpc is None else f"{bpc:.4f}", "-" if other is None else f"{other:.4f}")
        con.print(table)


@ckpt_app.command(epilog=examples("charrnn checkpoints prune checkpoints/shakespeare --keep 3",
                                  "charrnn checkpoints prune checkpoints --keep 0 --dry-run"))
@guarded
def prune(
    folder: str = typer.Argument(..., help="A run folder, or a folder of runs (each is pruned).", show_default=False),
    keep: int = typer.Option(3, "--keep", help="Newest step-*.pt snapshots to keep in each run (best.pt and last.pt always stay)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be deleted."),
) -> None:
    """Delete old snapshots, keeping best.pt, last.pt and the newest --keep snapshots of each run.

    Only inside run folders (those holding config.yaml or metrics.jsonl), only files that load as
    checkpoints of that run, and never in a run another process is writing.
    """
    from charrnn.util.console import info, warn
    from charrnn.util.errors import CharrnnError
    from charrnn.training.runs import prune as prune_runs

    report = prune_runs(folder, keep, dry_run)
    verb = "would delete" if dry_run else "deleted"
    for f in report.deleted:
        info(f"{verb} {f}")
    if not report.runs:
        warn(f"no run folders under {folder} (a run folder holds config.yaml or metrics.jsonl): nothing to prune")
    if len(report.busy) < report.runs:  # (a run in use was not looked at: no count to give for it)
        info(f"{verb} {len(report.deleted)} snapshot(s)")
    if report.busy:
        for message in report.busy[1:]:
            warn(message)
        raise CharrnnError(report.busy[0] + ("" if len(report.busy) == 1 else f" ({len(report.busy)} runs were busy)"))


@ckpt_app.command(epilog=examples(
    "charrnn checkpoints export checkpoints/demo -o demo.html",
    "charrnn checkpoints export checkpoints/demo -o demo.safetensors",
    "charrnn checkpoints export checkpoints/demo -o demo.onnx",
    "charrnn sample demo.safetensors --temp 0.7"))
@guarded
def export(
    checkpoint: str = CHECKPOINT,
    output: str = typer.Option(..., "--output", "-o", help="The file to write; its suffix picks the form: *.pt or *.safetensors (an inference-only checkpoint), *.html (a web page that writes on its own), *.onnx (the one-step network).", show_default=False),
    force: bool = typer.Option(False, "--force", help="Overwrite the output if it exists."),
) -> None:
    """Export a model: an inference-only checkpoint (.pt, .safetensors), a web page (.html) or ONNX (.onnx).

    Every command that takes a checkpoint reads .pt and .safetensors. The .html page runs the
    model in the browser, offline; the .onnx file steps it in onnxruntime (docs/onnx.md).
    No file carries a path of the machine that trained the model.
    """
    from charrnn.export.write import export as export_file
    from charrnn.training.checkpoint import resolve_checkpoint
    from charrnn.util.console import info

    source = resolve_checkpoint(checkpoint)
    dest = export_file(source, output, force)
    info(f"exported {source} ({source.stat().st_size / 1e6:.2f} MB) -> {dest} ({dest.stat().st_size / 1e6:.2f} MB)")
