"""Run configurations: presets, YAML files and command-line flags, layered.

A run's settings come from four layers; a later layer overrides an earlier one key by key:

    dataclass defaults  <-  preset  <-  --config FILE.yaml  <-  command-line flags

The budget keys (`steps`, `epochs`, `time`) move as a group: a layer that sets any of
them replaces the whole budget below it, so `--preset tiny --time 30` trains for 30
seconds rather than "300 steps or 30 seconds, whichever comes first".

A config file is a flat YAML mapping of the same names as the flags (with `_` for `-`):

    corpus: shakespeare          # or a path, or a list of them; the positional argument wins
    preset: small                # optional: the file builds on a preset
    hidden: 256
    lr: 2.0e-3
    time: 300
    tokens: word                 # char (default), word or byte

Every run folder gets a `config.yaml` holding the effective configuration (every key,
preset expanded), so `charrnn train --config checkpoints/x/config.yaml` repeats the run.

A corpus named by a config file is read, never silently. A config file can name any path (`corpus:
/etc/shadow`, `~/.ssh/id_rsa`), and what a run reads ends up in its model, its samples and its
checkpoint (the vocabulary, the opening line kept as its prompt). Refusing absolute or escaping paths
from a config file would keep a shared config from reaching them, but it would also break repeating
a run: config.yaml keeps the corpus as an absolute path, by design, so that it works from any folder,
and a path outside the config's folder is the usual case. Telling one's own config.yaml from a shared
one is impossible (both are plain text anyone can write). So the file is read, and a run whose corpus
comes from a config file rather than the command line says so in its first line, naming the file
and every source it will read (`corpus_notice`), before it reads anything: someone who runs a config
they were given sees what it reads, and Ctrl-C stops it before a byte is trained on. A corpus named
on the command line overrides the file's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import yaml

from charrnn.generation.settings import MAX_SEED, MAX_TEMP
from charrnn.model.config import ModelConfig
from charrnn.runtime.device import PRECISIONS
from charrnn.text.kinds import DEFAULT_MAX_VOCAB, KINDS
from charrnn.util.errors import CharrnnError, UsageError
from charrnn.util.fields import check, convert, names, setting, unknown
from charrnn.util.files import atomic_write_text, os_advice, path_kind
from charrnn.util.showtext import visible

MAX_LR = 10.0  # AdamW above this only diverges
MAX_THREADS = 4096  # a static bound; the cores this process may use are checked where it runs


# ---- the training settings stored in every checkpoint ----------------------------------------------


@dataclass
class TrainConfig:
    batch_size: int = setting(32, lo=1)  # B: parallel streams per step (global: split across torchrun processes)
    seq_len: int = setting(64, lo=1)  # T: characters per step that gradients flow through
    lr: float = setting(6e-3, above=0, hi=MAX_LR)  # peak learning rate (AdamW)
    min_lr_ratio: float = setting(0.05, lo=0, hi=1)  # the cosine decay ends at lr * min_lr_ratio
    warmup: int = setting(30, lo=0)  # steps of linear warm-up
    weight_decay: float = setting(0.1, lo=0)  # AdamW decoupled weight decay (matrices only; 0.1: -0.005 bits/char at 130 s on Shakespeare)
    clip: float = setting(5.0, lo=0, note="0 turns clipping off")  # global gradient-norm clip
    activation_reg: float = setting(2.0, lo=0, note="0 = off")  # AR: the loss gains this x the mean square of the
    # last layer's output (after dropout), and TAR this x the mean square of its change from one character to the next
    temporal_reg: float = setting(1.0, lo=0, note="0 = off")  # (AWD-LSTM's 2 and 1; bench/sweep/README.md)
    steps: int | None = setting(None, lo=1)  # stop after this many steps
    epochs: float | None = setting(None, above=0)  # ... or this many passes over the training text
    time: float | None = setting(None, above=0, note="seconds")  # ... or this many seconds of wall-clock time
    eval_every: int = setting(200, lo=1)  # steps between validation passes (and checkpoint saves)
    patience: int = setting(0, lo=0, note="0 = never stop early")  # stop after this many validations without a new best
    save_every: int = setting(0, lo=0, note="0 turns snapshots off")  # steps between extra snapshots step-000500.pt
    keep: int = setting(3, lo=0)  # snapshots kept; older ones are deleted (best.pt and last.pt never are)
    eval_chars: int = setting(250_000, lo=0, note="0 = all the held-out text")  # validate on the first this-many held-out characters
    val_fraction: float = setting(0.1, lo=0, below=1)  # the last part of the corpus held out for validation
    log_every: int = setting(10, lo=1)  # steps between progress records
    sample_every: int = setting(200, lo=0, note="0 turns live samples off")  # steps between live samples shown while training
    sample_length: int = setting(200, lo=1, hi=100_000)  # characters per live sample
    sample_prime: str = ""  # live samples continue this text ('' = start after a line break)
    sample_temp: float = setting(0.8, lo=0, hi=MAX_TEMP)  # live samples' temperature (their seed is `seed`, so only the model changes)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = setting("auto", choices=PRECISIONS)  # auto: timed on the CPU (training/speed.py); autocast on a GPU
    threads: int = setting(0, lo=0, hi=MAX_THREADS, note="0 = one per core")  # CPU threads for torch; 0 = auto, timed
    seed: int = setting(1337, lo=0, hi=MAX_SEED, shown="an integer from 0 to 2**64 - 1")
    average: float = setting(0.0, lo=0, below=1, note="0 = off")  # weights averaged: each step moves the average
    # 1 - average of the way to them (an exponential moving average); validation and best.pt use the average
    average_from: float = setting(0.5, lo=0, below=1)  # ... from this fraction of the budget on

    def __post_init__(self) -> None:
        check(self)
        if self.device not in ("auto", "cpu", "cuda", "mps") and not self.device.startswith("cuda:"):
            raise UsageError(f"device must be auto, cpu, cuda or mps, not {self.device!r}", "device")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """From a checkpoint's dict: keys of an older or newer charrnn are ignored, every value checked. A run
        saved before AR and TAR trained without them, and goes on without them."""
        return cls(**{"activation_reg": 0.0, "temporal_reg": 0.0, **{k: v for k, v in d.items() if k in names(cls)}})


def fit_to_text(train: TrainConfig, n_chars: int) -> tuple[TrainConfig, str | None]:
    """Shrink B (then T) so a short text (a 2 KB poem, say) still fills B streams of at least T + 1 characters:
    the settings to train with, and a message saying what changed (None if nothing did)."""
    n_train = n_chars - int(n_chars * train.val_fraction)
    b, t = train.batch_size, train.seq_len
    if n_train // b >= t + 1 or n_train < 2:
        return train, None  # it fits (or nothing can: the batcher says so)
    b = max(1, n_train // (t + 1))
    if n_train // b < t + 1:
        t = n_train - 1
    message = (f"the training text is short ({n_train:,} characters): batch {train.batch_size} x seq {train.seq_len} "
               f"became {b} x {t} so that it fits")
    return replace(train, batch_size=b, seq_len=t), message


# ---- run configurations -----------------------------------------------------------------------------


@dataclass
class Source:
    """Where a run's text comes from, and how it is cut into tokens."""

    corpus: list[str] = setting(default_factory=list)  # files, folders, catalog names or '-'
    glob: list[str] = setting(default_factory=list)  # patterns for files inside folders
    encoding: str = "utf-8"  # text encoding of the corpus
    tokens: str = setting("char", choices=KINDS)  # char, word or byte (text/kinds.py); the vocabulary records it
    max_vocab: int = setting(DEFAULT_MAX_VOCAB, lo=2)  # word models: ids in the vocabulary, its characters included

    def __post_init__(self) -> None:
        check(self)


MODEL_KEYS = tuple(k for k in names(ModelConfig) if k != "vocab_size")  # the corpus decides vocab_size
TRAIN_KEYS = names(TrainConfig)
SOURCE_KEYS = names(Source)
BUDGET_KEYS = ("steps", "epochs", "time")
VALID_KEYS = ("preset", *SOURCE_KEYS, *MODEL_KEYS, *TRAIN_KEYS)

# Built-in presets. Budgets are part of a preset only where its purpose implies one.
PRESETS: dict[str, dict] = {
    # seconds on a laptop CPU: check that everything works end to end
    "tiny": dict(cell="lstm", layers=1, hidden=64, embed=16, batch_size=16, seq_len=64, lr=1e-2,
                 steps=300, eval_every=100, sample_every=100),
    # minutes on a CPU: readable Shakespeare-like text
    "small": dict(cell="lstm", layers=2, hidden=256, embed=64, batch_size=32, seq_len=64, lr=4e-3,
                  time=300, eval_every=250),
    # a GPU (or a long CPU run): 2 x 512
    "medium": dict(cell="lstm", layers=2, hidden=512, embed=128, dropout=0.1, batch_size=32, seq_len=128,
                   lr=2e-3, eval_every=500),
    # a GPU: Karpathy's char-rnn class of model, 3 x 512 with dropout
    "large": dict(cell="lstm", layers=3, hidden=512, embed=128, dropout=0.25, batch_size=64, seq_len=128,
                  lr=2e-3, eval_every=500),
}


@dataclass
class RunConfig:
    """Everything `charrnn train` needs besides the output folder, each part checked by its own class."""

    source: Source
    model: ModelConfig  # its vocab_size is the corpus's: 1 until a trainer is built
    train: TrainConfig
    preset: str | None = None  # the preset it was built on (a note; to_dict() holds it expanded)
    given: frozenset = frozenset()  # keys the user set (flags, --config, --preset): never sized automatically
    flags: frozenset = frozenset()  # ... of those, the ones set on the command line (a resumed run takes these)
    corpus_from: str | None = None  # the config file that named the corpus, where the command line named none

    @classmethod
    def from_settings(cls, merged: dict, **kwargs) -> "RunConfig":
        """From one flat mapping of settings (the config-file form), each checked by the class it belongs to."""
        part = lambda keys: {k: merged[k] for k in keys if k in merged}  # noqa: E731
        return cls(Source(**part(SOURCE_KEYS)), ModelConfig(vocab_size=1, **part(MODEL_KEYS)),
                   TrainConfig(**part(TRAIN_KEYS)), **kwargs)

    def to_dict(self) -> dict:
        """A flat dict in the config-file format, every key present (the preset is expanded)."""
        model = {k: getattr(self.model, k) for k in MODEL_KEYS}
        return {**asdict(self.source), **model, **self.train.to_dict()}

    def under_given(self, chosen: dict) -> "RunConfig":
        """`chosen` settings (the sizing's) where the user set nothing: theirs always win."""
        mine = {k: v for k, v in chosen.items() if k not in self.given}
        return replace(self, model=replace(self.model, **{k: v for k, v in mine.items() if k in MODEL_KEYS}),
                       train=replace(self.train, **{k: v for k, v in mine.items() if k in TRAIN_KEYS}))


def get_preset(name: str) -> dict:
    """A built-in preset, or the recommended setup of a catalog corpus (`--preset linux`)."""
    if name in PRESETS:
        return dict(PRESETS[name])
    from charrnn.text.catalog import load_catalog

    catalog = load_catalog()
    if name not in catalog or not catalog[name].preset:
        names = [*PRESETS, *(n for n, e in catalog.items() if e.preset)]
        raise UsageError(f"no preset named {name!r}; presets: {', '.join(names)}")
    return validate(catalog[name].preset, f"catalog preset {name!r}")


def validate(data: dict, where: str) -> dict:
    """Check the keys and values of a config mapping (`util.fields`); return it with values normalised."""
    out = {}
    for key, value in data.items():
        if key not in VALID_KEYS:
            raise unknown(key, VALID_KEYS, where)
        cls = Source if key in SOURCE_KEYS else ModelConfig if key in MODEL_KEYS else TrainConfig
        try:
            out[key] = value if key == "preset" and isinstance(value, str) else convert(cls, key, value)
        except UsageError as e:
            raise UsageError(f"{where}: {e}", *e.settings) from None
    return out


MAX_YAML_DEPTH = 32  # a config file is a flat mapping; a run folder's config.yaml nests two levels


class BoundedLoader(yaml.SafeLoader):
    """yaml's safe loader, refusing nesting deeper than MAX_YAML_DEPTH before its composer recurses into it
    (at ~1,000 levels, `[[[[...` in a config file would raise RecursionError from inside yaml)."""

    depth = 0

    def compose_node(self, parent, index):
        if self.depth >= MAX_YAML_DEPTH:
            raise yaml.YAMLError(f"it is nested more than {MAX_YAML_DEPTH} levels deep")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def read_yaml(text: str):
    """YAML text -> plain data, safely (no tags that build objects) and depth-bounded (`BoundedLoader`)."""
    return yaml.load(text, Loader=BoundedLoader)  # noqa: S506 (a SafeLoader)


def load_config_file(path: str | Path) -> dict:
    """Read and validate a YAML config file (keys as in `VALID_KEYS`)."""
    p = Path(path)
    if p.is_dir():
        raise CharrnnError(f"{path} is a folder: config names one YAML file", "config")
    if not p.exists():  # a pipe (-c <(cmd)) is read like a file
        raise CharrnnError(f"no such config file: {path}")
    try:
        data = read_yaml(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise UsageError(f"{path} is not valid YAML{at}: {getattr(e, 'problem', None) or e}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a config file is a mapping of keys to values (like `hidden: 256`), not a {type(data).__name__}")
    return validate(data, str(path))


def layer(*layers: dict) -> dict:
    """Merge config dicts, later ones winning; a layer naming any budget key replaces the whole budget."""
    merged: dict = {}
    for d in layers:
        if any(k in d for k in BUDGET_KEYS):
            merged = {k: v for k, v in merged.items() if k not in BUDGET_KEYS}
        merged.update(d)
    return merged


def resolve_run_config(flags: dict, preset: str | None = None, config_file: str | Path | None = None) -> RunConfig:
    """defaults <- preset <- config file <- flags (None values dropped) -> a checked RunConfig. The preset is
    `preset` if given, else the config file's `preset:` key."""
    file_layer = load_config_file(config_file) if config_file else {}
    file_preset = file_layer.pop("preset", None)
    preset = preset or file_preset
    preset_layer = get_preset(preset) if preset else {}
    flags = {k: v for k, v in flags.items() if v is not None and v != []}
    given = frozenset(preset_layer) | frozenset(file_layer) | frozenset(flags)
    corpus_from = str(config_file) if file_layer.get("corpus") and "corpus" not in flags else None
    return RunConfig.from_settings(layer(preset_layer, file_layer, flags), preset=preset, given=given,
                                   flags=frozenset(flags), corpus_from=corpus_from)


def corpus_notice(run: RunConfig) -> str | None:
    """The first line of a run whose corpus a config file named (not the command line): that file, and every
    source it makes the run read, as the file names it (see the module doc); None otherwise."""
    if run.corpus_from is None:
        return None
    kinds = {"folder": " (a folder)", "stream": " (a pipe or device)", "other": " (not a file)"}
    shown = ", ".join(visible(s) + ("" if s == "-" else kinds.get(path_kind(s), "")) for s in run.source.corpus)
    return f"reading the corpus that config file {visible(run.corpus_from)} names (none was named on the command " \
           f"line): {shown}"


def portable_sources(sources: list[str]) -> list[str]:
    """Sources as a config file should keep them: paths made absolute, catalog names, '-' and pipes as given
    (/dev/fd/63, from bash's `<(cmd)`, resolves to a name no folder holds)."""
    return [s if s == "-" or path_kind(s) in ("missing", "stream") else str(Path(s).resolve()) for s in sources]


def resumed_run_config(stored: dict | None, model: ModelConfig, train: TrainConfig, sources: list[str]) -> RunConfig:
    """The configuration of a resumed run: what it was started with (`stored`, the flat config-file
    form kept in the checkpoint), with the training settings it now runs under (a new budget, say)."""
    stored = {k: v for k, v in (stored or {}).items() if k in SOURCE_KEYS and v}
    return RunConfig(Source(**{"corpus": sources, **stored}), model, train)


def write_run_config(out_dir: str | Path, run: RunConfig, note: str = "") -> Path:
    """Write the effective configuration to `out_dir/config.yaml` (atomically); `note` adds a comment line.

    A path that is not UTF-8 (surrogates) is escaped in the comments (`visible`); YAML escapes it in the settings.
    """
    path = Path(out_dir) / "config.yaml"
    header = (
        "# charrnn run configuration: the effective settings of this run\n"
        "# (dataclass defaults <- preset <- --config file <- flags, preset expanded).\n"
        f"# Repeat it:  charrnn train --config {visible(str(path))}\n"
        + (f"# Built on preset: {run.preset}\n" if run.preset else "")
        + (f"# {note}\n" if note else "")
    )
    try:
        atomic_write_text(path, header + yaml.safe_dump(run.to_dict(), sort_keys=False, allow_unicode=True))
    except OSError as e:
        raise CharrnnError(f"cannot write {path}: {e.strerror or e}; {os_advice(e)}") from None
    return path
