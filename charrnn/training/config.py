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
"""

from __future__ import annotations

import difflib
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from charrnn.generation.settings import MAX_SEED, MAX_TEMP
from charrnn.model.config import TYPE_NAMES, ModelConfig, _finite, _type_errors
from charrnn.runtime.device import PRECISIONS
from charrnn.text.kinds import DEFAULT_MAX_VOCAB, check_kind
from charrnn.util.errors import CharrnnError, UsageError
from charrnn.util.files import atomic_write_text, os_advice, path_kind
from charrnn.util.showtext import visible

MAX_LR = 10.0  # AdamW above this only diverges
MAX_THREADS = 4096  # a static bound; the cores this process may use are checked where it runs


# ---- the training settings stored in every checkpoint ----------------------------------------------


@dataclass
class TrainConfig:
    batch_size: int = 32  # B: parallel streams per step (global: split across torchrun processes)
    seq_len: int = 64  # T: characters per step that gradients flow through
    lr: float = 6e-3  # peak learning rate (AdamW)
    min_lr_ratio: float = 0.05  # the cosine decay ends at lr * min_lr_ratio
    warmup: int = 30  # steps of linear warm-up
    weight_decay: float = 0.1  # AdamW decoupled weight decay (matrices only; 0.1: -0.005 bits/char at 130 s on Shakespeare)
    clip: float = 5.0  # global gradient-norm clip; 0 = off
    steps: int | None = None  # stop after this many steps
    epochs: float | None = None  # ... or this many passes over the training text
    time: float | None = None  # ... or this many seconds of wall-clock time
    eval_every: int = 200  # steps between validation passes (and checkpoint saves)
    patience: int = 0  # stop after this many validations without a new best (0 = never: train the whole budget)
    save_every: int = 0  # steps between extra snapshots step-000500.pt (0 = none)
    keep: int = 3  # snapshots kept; older ones are deleted (best.pt and last.pt never are)
    eval_chars: int = 250_000  # validate on the first this-many held-out characters (0 = all; `charrnn eval` for the whole tail)
    val_fraction: float = 0.1  # the last part of the corpus held out for validation
    log_every: int = 10  # steps between progress records
    sample_every: int = 200  # steps between live samples shown while training; 0 = off
    sample_length: int = 200  # characters per live sample
    sample_prime: str = ""  # live samples continue this text ('' = start after a line break)
    sample_temp: float = 0.8  # live samples' temperature (their seed is `seed`, so only the model changes)
    device: str = "auto"  # auto | cpu | cuda | mps
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (auto: timed on the CPU, see trainspeed; autocast on a GPU)
    threads: int = 0  # CPU threads for torch; 0 = auto: 1 or one per core, timed (see trainspeed)
    seed: int = 1337

    def __post_init__(self) -> None:
        wrong = _type_errors(self)
        if wrong:
            raise UsageError(wrong[0])
        checks = [
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.seq_len >= 1, "--seq-len must be at least 1"),
            (_finite(self.lr) and 0 < self.lr <= MAX_LR, f"--lr must be a number in (0, {MAX_LR:g}]"),
            (_finite(self.min_lr_ratio) and 0 <= self.min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1]"),
            (self.warmup >= 0, "warmup must be >= 0"),
            (_finite(self.weight_decay) and self.weight_decay >= 0, "--weight-decay must be a number >= 0"),
            (_finite(self.clip) and self.clip >= 0, "--clip must be a number >= 0 (0 turns clipping off)"),
            (self.steps is None or self.steps >= 1, "--steps must be at least 1"),
            (self.epochs is None or _finite(self.epochs) and self.epochs > 0, "--epochs must be a positive number"),
            (self.time is None or _finite(self.time) and self.time > 0, "--time must be a positive number of seconds"),
            (self.eval_every >= 1, "--eval-every must be at least 1"),
            (self.patience >= 0, "--patience must be >= 0 (0 = never stop early)"),
            (self.eval_chars >= 0, "--eval-chars must be >= 0 (0 = all the held-out text)"),
            (self.log_every >= 1, "log_every must be at least 1"),
            (self.sample_every >= 0, "--sample-every must be >= 0 (0 turns live samples off)"),
            (1 <= self.sample_length <= 100_000, "sample_length must be between 1 and 100,000"),
            (_finite(self.sample_temp) and 0 <= self.sample_temp <= MAX_TEMP, f"sample_temp must be a number from 0 to {MAX_TEMP:g}"),
            (self.save_every >= 0, "--save-every must be >= 0 (0 turns snapshots off)"),
            (self.keep >= 0, "--keep must be >= 0"),
            (0.0 <= self.val_fraction < 1.0, "--val-fraction must be in [0, 1)"),
            (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:"),
             "--device must be auto, cpu, cuda or mps"),
            (self.precision in PRECISIONS, "--precision must be auto, fp32, bf16 or fp16"),
            (0 <= self.threads <= MAX_THREADS, f"--threads must be between 0 and {MAX_THREADS} (0 = one per core)"),
            (0 <= self.seed <= MAX_SEED, "--seed must be between 0 and 2**64 - 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """From a dict (a checkpoint's, say): unknown keys are ignored, every value is checked."""
        if not isinstance(d, dict):
            raise UsageError(f"training settings must be a mapping, not {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def fit_to_text(train: TrainConfig, n_chars: int) -> tuple[TrainConfig, str | None]:
    """Shrink B (then T) so a short text still fills B streams of at least T + 1 characters.

    Returns the settings to train with and a message saying what changed (None if nothing did).
    A 2 KB poem with the default 32 streams of 64 would otherwise be refused as too short.
    """
    n_train = n_chars - int(n_chars * train.val_fraction)
    b, t = train.batch_size, train.seq_len
    if n_train // b >= t + 1 or n_train < 2:
        return train, None  # it fits (or nothing can: the batcher says so)
    b = max(1, n_train // (t + 1))
    if n_train // b < t + 1:
        t = n_train - 1
    from dataclasses import replace

    message = (f"the training text is short ({n_train:,} characters): batch {train.batch_size} x seq {train.seq_len} "
               f"became {b} x {t} so that it fits")
    return replace(train, batch_size=b, seq_len=t), message


# ---- run configurations -----------------------------------------------------------------------------


MODEL_KEYS = tuple(f.name for f in fields(ModelConfig) if f.name != "vocab_size")
TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig))
SOURCE_KEYS = ("corpus", "glob", "encoding", "tokens", "max_vocab")  # where the text comes from, how it is cut
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
    """Everything `charrnn train` needs besides the output folder."""

    model: dict  # ModelConfig fields except vocab_size (which the corpus decides)
    train: TrainConfig  # the training settings
    corpus: list[str] = field(default_factory=list)  # files, folders, catalog names or '-'
    glob: list[str] = field(default_factory=list)  # patterns for files inside folders
    encoding: str = "utf-8"  # text encoding of the corpus
    tokens: str = "char"  # token kind: char, word or byte (see tokenkind.py); the checkpoint's vocabulary records it
    max_vocab: int = DEFAULT_MAX_VOCAB  # word models: ids in the vocabulary, its fallback characters included
    preset: str | None = None  # the preset it was built on (a note; to_dict() holds it expanded)
    given: set = field(default_factory=set)  # keys the user set (flags, --config, --preset): never sized automatically

    def to_dict(self) -> dict:
        """A flat dict in the config-file format, every key present (the preset is expanded)."""
        return {"corpus": list(self.corpus), "glob": list(self.glob), "encoding": self.encoding,
                "tokens": self.tokens, "max_vocab": self.max_vocab,
                **self.model, **self.train.to_dict()}


# ---- presets ---------------------------------------------------------------------------------------


def preset_names() -> list[str]:
    from charrnn.text.catalog import load_catalog

    return [*PRESETS, *(name for name, e in load_catalog().items() if e.preset)]


def get_preset(name: str) -> dict:
    """A built-in preset, or the recommended setup of a catalog corpus (`--preset linux`)."""
    if name in PRESETS:
        return dict(PRESETS[name])
    from charrnn.text.catalog import load_catalog

    entry = load_catalog().get(name)
    if entry is None or not entry.preset:
        raise UsageError(f"no preset named {name!r}; presets: {', '.join(preset_names())}")
    return validate(entry.preset, f"catalog preset {name!r}")


# ---- validation ------------------------------------------------------------------------------------



def _field_types() -> dict[str, tuple]:
    """Key -> the types its dataclass annotation allows, e.g. (float, NoneType), read with `typing`."""
    out: dict[str, tuple] = {"preset": (str,), "corpus": (list,), "glob": (list,), "encoding": (str,),
                             "tokens": (str,), "max_vocab": (int,)}
    for cls in (ModelConfig, TrainConfig):
        for name, hint in typing.get_type_hints(cls).items():
            out[name] = typing.get_args(hint) or (hint,)
    return out


def _check(key: str, value, allowed: tuple, where: str):
    """`value` converted to the key's type, or a UsageError naming the key and the expected type."""
    if value is None and type(None) in allowed:
        return None
    if list in allowed:  # a string or a list of strings
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        expected = "a string or a list of strings"
    elif float in allowed and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif float in allowed and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads `1e-3` (no dot) as a string
        except ValueError:
            pass
    elif int in allowed and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif str in allowed and isinstance(value, str):
        return value
    if list not in allowed:
        expected = " or ".join(TYPE_NAMES[t] for t in allowed)
    raise UsageError(f"{where}: {key} must be {expected}, not {type(value).__name__} {value!r}")


def validate(data: dict, where: str) -> dict:
    """Check keys and types of a config mapping; return it with values normalised."""
    types = _field_types()
    out = {}
    for key, value in data.items():
        if key not in types:
            close = difflib.get_close_matches(str(key), VALID_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"{where}: unknown key {key!r}{hint}; valid keys: {', '.join(VALID_KEYS)}")
        out[key] = _check(key, value, types[key], where)
    return out


def load_config_file(path: str | Path) -> dict:
    """Read and validate a YAML config file (keys as in `VALID_KEYS`)."""
    p = Path(path)
    if p.is_dir():
        raise CharrnnError(f"{path} is a folder: --config reads one YAML file")
    if not p.exists():  # a pipe (-c <(cmd)) is read like a file
        raise CharrnnError(f"no such config file: {path}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
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


# ---- layering --------------------------------------------------------------------------------------


def layer(*layers: dict) -> dict:
    """Merge config dicts, later ones winning; a layer naming any budget key replaces the whole budget."""
    merged: dict = {}
    for d in layers:
        if any(k in d for k in BUDGET_KEYS):
            for k in BUDGET_KEYS:
                merged.pop(k, None)
        merged.update(d)
    return merged


def resolve_run_config(flags: dict, preset: str | None = None, config_file: str | Path | None = None,
                       base: dict | None = None) -> RunConfig:
    """defaults <- base <- preset <- config file <- flags -> a checked RunConfig.

    `flags` holds only the options the user gave (None values are dropped). The preset is
    `preset` if given, else the config file's `preset:` key. `base`: the automatic sizing's
    choice (`charrnn.training.sizing`), under everything the user named.
    """
    file_layer = load_config_file(config_file) if config_file else {}
    preset = preset or file_layer.pop("preset", None)
    file_layer.pop("preset", None)
    preset_layer = get_preset(preset) if preset else {}
    merged = layer(base or {}, preset_layer, file_layer, {k: v for k, v in flags.items() if v is not None and v != []})
    model = {k: merged[k] for k in MODEL_KEYS if k in merged}
    try:
        ModelConfig(vocab_size=1, **model)  # check the model keys now, not after reading the corpus
    except ValueError as e:
        raise UsageError(str(e)) from None
    train = TrainConfig(**{k: merged[k] for k in TRAIN_KEYS if k in merged})
    defaults = {f.name: f.default for f in fields(ModelConfig) if f.name != "vocab_size"}
    return RunConfig(model={**defaults, **model}, train=train, corpus=merged.get("corpus", []),
                     glob=merged.get("glob", []), encoding=merged.get("encoding", "utf-8"), preset=preset,
                     given=set(preset_layer) | set(file_layer) | {k for k, v in flags.items() if v is not None},
                     tokens=check_kind(merged.get("tokens", "char")), max_vocab=_check_max_vocab(merged))


def _check_max_vocab(merged: dict) -> int:
    n = merged.get("max_vocab", DEFAULT_MAX_VOCAB)
    if n < 2:
        raise UsageError("--max-vocab must be at least 2")
    return n


def portable_sources(sources: list[str]) -> list[str]:
    """Sources as a config file should keep them: paths made absolute, catalog names, '-' and pipes as given
    (/dev/fd/63, from bash's `<(cmd)`, resolves to a name no folder holds)."""
    return [s if s == "-" or path_kind(s) in ("missing", "stream") else str(Path(s).resolve()) for s in sources]


def resumed_run_config(stored: dict | None, model: ModelConfig, train: TrainConfig, sources: list[str]) -> RunConfig:
    """The configuration of a resumed run: what it was started with (`stored`, the flat config-file
    form kept in the checkpoint), with the training settings it now runs under (a new budget, say)."""
    stored = stored or {}
    return RunConfig(model={k: getattr(model, k) for k in MODEL_KEYS}, train=train,
                     corpus=list(stored.get("corpus") or sources), glob=list(stored.get("glob") or []),
                     encoding=stored.get("encoding") or "utf-8", tokens=stored.get("tokens") or "char",
                     max_vocab=stored.get("max_vocab") or DEFAULT_MAX_VOCAB)


def write_run_config(out_dir: str | Path, run: RunConfig, note: str = "") -> Path:
    """Write the effective configuration to `out_dir/config.yaml` (atomically); `note` adds a comment line.

    The file is UTF-8. A path that is not (a name with byte 0xff holds the surrogate U+DCFF in
    Python) is escaped in the comments, which have no escapes of their own; YAML's
    double-quoted strings escape it in the settings (`"\\uDCFF"`), and read it back as it was.
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
