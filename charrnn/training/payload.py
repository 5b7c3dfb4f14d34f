"""What a checkpoint may hold, checked field by field before anything is built from it.

`torch.load(weights_only=True)` guarantees that loading runs no code, not that what it returns
makes sense. A file can be a perfectly safe pickle of nonsense: a format version that is a
string, a vocabulary shorter than the weights, a config that claims 16,000 hidden units over
a few kilobytes of tensors, a history that is a list of numbers. `check` looks at all of it
with arithmetic and isinstance only (tensor shapes are metadata: nothing is allocated, and on
a memory-mapped load nothing is even read), and raises `Damaged` with what is wrong:

    format_version   int, 1 .. FORMAT_VERSION
    model_config     exactly ModelConfig's fields, each of its type and range
    vocab            {"chars": str}: distinct characters in code-point order, as many as vocab_size;
                     or a word vocabulary {"kind": "word", "chars", "words"} (format 2), or
                     {"kind": "byte"} (format 2, 256 ids)
    model            exactly the tensors ModelConfig.param_shapes() names, of those shapes, float32
    (all tensors)    no more bytes than the file holds
    train_config     TrainConfig's checks (absent in an inference-only export)
    optimizer        AdamW's layout: two groups over the model's parameters, moments of their shapes
    step, epoch      ints >= 0;  best_val_bpc None or a finite number
    metrics          a list of records (dicts with an int "step" and plain values)
    meta             a dict of plain values (corpus, sources, ...)
    extra            cursor, elapsed, carried state (L, B, H), RNG state, scaler, data, schedule_anchor, the
                     weights' moving average (`average`: float32 tensors of the weights' shapes, or None)

With `full=True` (a load that will use the tensors), the tensor data is read as well: every
weight must be finite, and the checksum written at save time (`checksum`) must match, so
bit rot and tampering are caught instead of sampling garbage.

Before any of that, and before anything walks the contents recursively (`_tensors`, `_feed`,
`_check_plain`, a repr in a message), `check_bounds` walks them once with a stack of its own:
no deeper than MAX_DEPTH, no more items than the file has bytes.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, fields

import torch

from charrnn.model.config import ModelConfig
from charrnn.training.config import TrainConfig
from charrnn.training.optim import decays
from charrnn.util.errors import CharrnnError
from charrnn.util.fields import check as check_fields, names, setting
from charrnn.text.vocab import Vocab

CHECKSUM_KEY = "checksum"  # {"blake2b": hex digest of everything else in the payload}
PLAIN = (str, int, float, bool, type(None))
RESUME_EXTRA = ("cursor", "elapsed", "state", "torch_rng")  # extra's fields a resumed run reads
GROUP_KEYS = ("params", "lr", "betas", "eps", "weight_decay")  # what AdamW cannot default (torch fills in the rest)
MAX_DEPTH = 48  # containers within containers: charrnn writes 6 levels (optimizer.param_groups[0].betas[0]); a
#                 plain value may hold 32 more (`_check_plain`). Python's own recursion stops near 1,000.
CONTAINERS = (dict, list, tuple)


class Damaged(CharrnnError):
    """A checkpoint whose contents do not make sense (its message says which field and why)."""


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise Damaged(message)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _kind(x) -> str:
    return f"{type(x).__name__} {x!r}"[:60] if isinstance(x, PLAIN) else type(x).__name__


def check_bounds(ckpt, file_bytes: int | None = None) -> None:
    """Refuse contents nested deeper than MAX_DEPTH, or holding more items than the file has bytes, walking them
    level by level without recursion, so that every recursive walk after it is bounded.

    Each item of a pickle or of JSON text takes at least a byte of its file, so a file of N bytes holds at most
    N items unless it repeats containers by reference (a list holding one list ten times, that one another...):
    a few kilobytes a recursive walk would visit 10^30 times.
    """
    budget = math.inf if file_bytes is None else file_bytes
    level, depth, items = [ckpt], 0, 0
    while level:
        _need(depth <= MAX_DEPTH, f"its contents are nested more than {MAX_DEPTH} levels deep")
        deeper = []
        for x in level:
            parts = [*x.keys(), *x.values()] if isinstance(x, dict) else x if isinstance(x, CONTAINERS) else ()
            items += len(parts)
            _need(items <= budget, f"its contents hold more items than its file has bytes ({budget:,}): "
                                   "they repeat containers by reference")
            deeper += [part for part in parts if isinstance(part, CONTAINERS)]
        level, depth = deeper, depth + 1


# ---- the checksum ----------------------------------------------------------------------------------


def _feed(h, x) -> None:
    """Hash `x` (nested dicts, lists, tuples, tensors, plain values) in a fixed order."""
    if torch.is_tensor(x):
        t = x.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())  # the raw bytes, not copied
    elif isinstance(x, dict):
        h.update(f"D{len(x)}".encode())
        for k, v in x.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(x, (list, tuple)):
        h.update(f"L{len(x)}".encode())
        for v in x:
            _feed(h, v)
    else:
        h.update(f"{type(x).__name__}:{x!r};".encode())


def checksum(payload: dict) -> str:
    """A digest of everything in `payload` but its own checksum: configs, vocabulary, every tensor's bytes."""
    h = hashlib.blake2b(digest_size=16)
    _feed(h, {k: v for k, v in payload.items() if k != CHECKSUM_KEY})
    return h.hexdigest()


# ---- the fields ------------------------------------------------------------------------------------


def model_config(ckpt: dict) -> ModelConfig:
    mc = ckpt.get("model_config")
    _need(isinstance(mc, dict), f"model_config must be a mapping, not {_kind(mc)}")
    keys = {f.name for f in fields(ModelConfig)}
    _need(set(mc) == keys, f"model_config must have exactly the keys {', '.join(sorted(keys))}")
    try:
        return ModelConfig(**mc)
    except (ValueError, TypeError) as e:
        raise Damaged(f"model_config: {e}") from None


def _check_vocab(ckpt: dict, mc: ModelConfig) -> None:
    """A vocabulary of any kind, well formed (its class checks itself), with as many ids as the model has."""
    try:
        vocab = Vocab.from_dict(ckpt.get("vocab"))
    except (ValueError, KeyError, TypeError) as e:
        raise Damaged(f"the vocabulary is malformed: {e}") from None
    _need(len(vocab) == mc.vocab_size, f"the {vocab.unit} vocabulary has {len(vocab):,} ids but the model is built for "
                                       f"{mc.vocab_size:,} (vocab_size and the weights)")


def _check_model(ckpt: dict, mc: ModelConfig) -> None:
    state = ckpt.get("model")
    _need(isinstance(state, dict), f"model must be a mapping of tensors, not {_kind(state)}")
    expected = mc.param_shapes()
    missing, extra = [k for k in expected if k not in state], [k for k in state if k not in expected]
    _need(not missing and not extra, "its weights do not match its model_config: "
          + (f"missing {', '.join(map(str, missing[:3]))}" if missing else f"unexpected {', '.join(map(str, extra[:3]))}"))
    for name, shape in expected.items():
        t = state[name]
        _need(torch.is_tensor(t) and t.dtype == torch.float32, f"model weight {name} is not a float32 tensor "
                                                                "(charrnn keeps its weights in fp32)")
        _need(tuple(t.shape) == shape, f"model weight {name} has shape {tuple(t.shape)}, "
                                       f"but its model_config needs {shape}")


def _tensors(x):
    if torch.is_tensor(x):
        yield x
    elif isinstance(x, dict):
        for v in x.values():
            yield from _tensors(v)
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _tensors(v)


def _check_sizes(ckpt: dict, file_bytes: int | None) -> None:
    if file_bytes is None:
        return
    seen, total = set(), 0
    for t in _tensors(ckpt):
        s = t.untyped_storage()
        key = (s.data_ptr(), s.nbytes())
        if key not in seen:
            seen.add(key)
            total += s.nbytes()
    _need(total <= file_bytes, f"its tensors claim {total:,} bytes, more than the file's {file_bytes:,}")


def _check_plain(x, where: str, depth: int = 0) -> None:
    """Plain JSON-like data only: dicts with str keys, lists, str, numbers, bools, None."""
    _need(depth < 32, f"{where} is nested too deeply")
    if isinstance(x, dict):
        for k, v in x.items():
            _need(isinstance(k, str), f"{where} has a key that is not a string ({_kind(k)})")
            _check_plain(v, f"{where}.{k}", depth + 1)
    elif isinstance(x, (list, tuple)):
        for v in x:
            _check_plain(v, where, depth + 1)
    else:
        _need(isinstance(x, PLAIN), f"{where} holds a {type(x).__name__}, not plain data")


@dataclass
class Record:
    """The fields of a metrics record that charrnn reads back: a training log's or a validation's."""

    step: int = setting(0, lo=0)
    epoch: float | None = None  # (a float field is always finite unless it says otherwise)
    time: float | None = None
    lr: float | None = None
    chars_per_sec: float | None = None
    eval_seconds: float | None = None
    loss: float | None = setting(None, finite=False)  # a skipped step logs these non-finite
    bpc: float | None = setting(None, finite=False)
    grad_norm: float | None = setting(None, finite=False)
    val_loss: float | None = None  # null with no held-out text
    val_bpc: float | None = None

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class Meta:
    """A checkpoint's `meta`: where its run's text came from and what it started from (other keys: plain data)."""

    corpus: str | None = None
    encoding: str | None = None
    init_from: str | None = None
    exported_from: str | None = None
    sources: list[str] | None = None
    glob: list[str] | None = None
    init_from_step: int | None = None
    config: dict | None = None
    prompt: str | None = None  # how a line of its text starts: the prompt a page or playground offers

    def __post_init__(self) -> None:
        check_fields(self)


def _checked(cls, data, where: str):
    """`data`, a mapping of plain values, as a `cls`: its fields' types and ranges checked (other keys are free)."""
    _need(isinstance(data, dict), f"{where} must be a mapping, not {_kind(data)}")
    _check_plain(data, where)
    try:
        return cls(**{k: v for k, v in data.items() if k in names(cls)})
    except (CharrnnError, ValueError, TypeError) as e:
        raise Damaged(f"{where}: {e}") from None


def _check_metrics(ckpt: dict) -> None:
    m = ckpt.get("metrics", [])
    _need(isinstance(m, list), f"metrics must be a list of records, not {_kind(m)}")
    for r in m:
        _need(isinstance(r, dict) and "step" in r, f"metrics holds {_kind(r)}, not a record with a step")
        _checked(Record, r, "a metrics record")


def _check_optimizer(ckpt: dict, mc: ModelConfig) -> None:
    if "optimizer" not in ckpt:
        return
    opt = ckpt["optimizer"]
    _need(isinstance(opt, dict) and isinstance(opt.get("state"), dict) and isinstance(opt.get("param_groups"), list),
          "optimizer must be a mapping with 'state' and 'param_groups'")
    named = mc.param_shapes()  # in the trainer's two AdamW groups, in order (optim.make_optimizer)
    groups = [[s for n, s in named.items() if decays(n, s)], [s for n, s in named.items() if not decays(n, s)]]
    _need(len(opt["param_groups"]) == len(groups), f"optimizer has {len(opt['param_groups'])} parameter groups, not {len(groups)}")
    shape_of: dict[int, tuple[int, ...]] = {}
    for g, shapes in zip(opt["param_groups"], groups):
        _need(isinstance(g, dict) and isinstance(g.get("params"), list), "an optimizer parameter group is malformed")
        missing = [k for k in GROUP_KEYS if k not in g]
        _need(not missing, f"an optimizer parameter group has no {missing[0] if missing else ''}")
        _need(len(g["params"]) == len(shapes), "the optimizer's parameter groups do not match the model")
        for pid, shape in zip(g["params"], shapes):
            _need(_is_int(pid) and pid not in shape_of, "the optimizer's parameter ids are malformed")
            shape_of[pid] = shape
        for key, value in g.items():
            if key in ("lr", "eps", "weight_decay", "initial_lr"):
                _need(_is_number(value) and value >= 0, f"optimizer {key} is {_kind(value)}")
            elif key == "betas":
                _need(isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(b) for b in value),
                      "optimizer betas must be two numbers")
            elif key in ("amsgrad", "maximize", "capturable", "differentiable", "decoupled_weight_decay"):
                _need(isinstance(value, bool), f"optimizer {key} must be true or false")
            elif key in ("foreach", "fused"):
                _need(value is None or isinstance(value, bool), f"optimizer {key} must be null, true or false")
            elif key != "params":
                _need(isinstance(value, PLAIN), f"optimizer {key} is not a plain value")
    steps = max(1, ckpt["step"] if _is_int(ckpt.get("step")) else 0)
    for pid, st in opt["state"].items():
        _need(pid in shape_of, f"the optimizer holds state for a parameter id {_kind(pid)} it does not have")
        _need(isinstance(st, dict), "the optimizer's state is malformed")
        for key in ("exp_avg", "exp_avg_sq"):
            t = st.get(key)
            _need(torch.is_tensor(t) and t.dtype == torch.float32 and tuple(t.shape) == shape_of[pid],
                  f"the optimizer's {key} for parameter {pid} does not have its parameter's shape")
        step = st.get("step")
        count = float(step) if torch.is_tensor(step) and step.numel() == 1 and step.dtype.is_floating_point else None
        _need(count is not None and math.isfinite(count) and 1 <= count <= steps,
              "the optimizer's step count is malformed")


def _check_extra(ckpt: dict, mc: ModelConfig, tc: TrainConfig | None) -> None:
    if "extra" not in ckpt:
        return
    extra = ckpt["extra"]
    _need(isinstance(extra, dict), f"extra must be a mapping, not {_kind(extra)}")
    if "cursor" in extra or "optimizer" in ckpt:  # a training checkpoint: what resuming cannot do without
        missing = [k for k in RESUME_EXTRA if k not in extra] + [k for k in ("step", "epoch", "train_config") if k not in ckpt]
        _need(not missing, f"it is a training checkpoint without {missing[0] if missing else ''}")
    if "cursor" in extra:
        _need(_is_int(extra["cursor"]) and extra["cursor"] >= 0, "extra.cursor must be a whole number >= 0")
    if "elapsed" in extra:
        _need(_is_number(extra["elapsed"]) and extra["elapsed"] >= 0, "extra.elapsed must be a number of seconds")
    if "state" in extra:
        state = extra["state"]
        n_state = 2 if mc.cell == "lstm" else 1
        _need(isinstance(state, (list, tuple)) and len(state) == n_state, f"extra.state must hold {n_state} tensor(s)")
        for s in state:
            _need(torch.is_tensor(s) and s.dtype == torch.float32 and s.dim() == 3
                  and (s.shape[0], s.shape[2]) == (mc.layers, mc.hidden)
                  and (tc is None or s.shape[1] == tc.batch_size),
                  "extra.state does not have the shape (layers, batch, hidden) of its configs")
    if "torch_rng" in extra:
        rng = extra["torch_rng"]
        _need(torch.is_tensor(rng) and rng.dtype == torch.uint8 and rng.dim() == 1 and rng.numel() == torch.get_rng_state().numel(),
              "extra.torch_rng is not a random-number generator state")
    if "cuda_rng" in extra:
        _need(isinstance(extra["cuda_rng"], (list, tuple))
              and all(torch.is_tensor(t) and t.dtype == torch.uint8 for t in extra["cuda_rng"]),
              "extra.cuda_rng is not a list of generator states")
    if "scaler" in extra:
        sc = extra["scaler"]
        _need(sc is None or isinstance(sc, dict), "extra.scaler must be a mapping")
        for k, v in (sc or {}).items():
            _need(_is_number(v) and v >= 0, f"extra.scaler.{k} must be a number")
    if "data" in extra:
        d = extra["data"]
        _need(isinstance(d, dict) and _is_int(d.get("train_chars")) and _is_int(d.get("val_chars"))
              and isinstance(d.get("blake2b"), str), "extra.data is not a corpus fingerprint")
    if "schedule_anchor" in extra:
        a = extra["schedule_anchor"]
        _need(isinstance(a, (list, tuple)) and len(a) == 2 and all(_is_number(x) and 0 <= x <= 1 for x in a),
              "extra.schedule_anchor must be two numbers in [0, 1]")
    if "history" in extra:
        _check_metrics({"metrics": extra["history"]})
    if extra.get("average") is not None:  # the weights' moving average: one float32 tensor per weight, its shape
        avg, shapes = extra["average"], list(mc.param_shapes().values())
        _need(isinstance(avg, (list, tuple)) and len(avg) == len(shapes)
              and all(torch.is_tensor(a) and a.dtype == torch.float32 and tuple(a.shape) == s for a, s in zip(avg, shapes)),
              "extra.average does not hold the model's weights' shapes")


def check_contents(ckpt: dict) -> None:
    """Read the tensor data: the weights must be finite, and match the checksum written with them."""
    for name, t in ckpt["model"].items():
        _need(bool(torch.isfinite(t).all()), f"model weight {name} holds NaN or infinite values")
    for st in (ckpt.get("optimizer") or {}).get("state", {}).values():
        _need(all(bool(torch.isfinite(st[k]).all()) for k in ("exp_avg", "exp_avg_sq")) and bool((st["exp_avg_sq"] >= 0).all()),
              "the optimizer's moments hold NaN, infinite or negative values")
    for s in (ckpt.get("extra") or {}).get("state", []):
        _need(bool(torch.isfinite(s).all()), "the carried hidden state holds NaN or infinite values")
    stored = ckpt.get(CHECKSUM_KEY)
    if stored is None:
        return  # written before checksums were
    _need(isinstance(stored, dict) and isinstance(stored.get("blake2b"), str), "its checksum field is malformed")
    _need(stored["blake2b"] == checksum(ckpt), "its contents do not match the checksum written with them "
                                              "(the file was altered or corrupted after it was saved)")


def check(ckpt: dict, file_bytes: int | None = None, full: bool = True) -> ModelConfig:
    """Raise `Damaged` unless every field of `ckpt` makes sense (see the module doc); its ModelConfig."""
    mc = model_config(ckpt)
    _check_vocab(ckpt, mc)
    _check_model(ckpt, mc)
    _check_sizes(ckpt, file_bytes)
    tc = _checked(TrainConfig, ckpt["train_config"], "train_config") if "train_config" in ckpt else None
    for key in ("step", "epoch"):
        if key in ckpt:
            _need(_is_int(ckpt[key]) and ckpt[key] >= 0, f"{key} must be a whole number >= 0, not {_kind(ckpt[key])}")
    _check_optimizer(ckpt, mc)
    best = ckpt.get("best_val_bpc")
    _need(best is None or _is_number(best) and best >= 0, f"best_val_bpc must be a finite number, not {_kind(best)}")
    _check_metrics(ckpt)
    if ckpt.get("meta") is not None:
        _checked(Meta, ckpt["meta"], "meta")
    _check_extra(ckpt, mc, tc)
    if full:
        check_contents(ckpt)
    return mc
