"""The verdicts of timed choices, kept on disk per machine: `TuneCache` (cache_dir()/tune.json).

Verdicts are keyed by the CPU (model and the flags that matter), the torch version and the
workload, so later runs skip the probe. A corrupt file is ignored; another torch version misses.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable, Iterable
from pathlib import Path

from charrnn.runtime.timing import Verdict
from charrnn.util.files import atomic_write_text, cache_dir

IMPORTANT_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")
CACHE_VERSION = 1


def cpu_info() -> dict:
    """{"model": "AMD EPYC ...", "flags": [the IMPORTANT_FLAGS this CPU reports]} (Linux; elsewhere the model only)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model in (platform.processor(), platform.machine()):
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "flags": [f for f in IMPORTANT_FLAGS if f in flags]}


def cpu_summary() -> str:
    """'AMD EPYC (avx512_bf16, no amx)' for logs and the benchmark title."""
    info = cpu_info()
    flags = [f for f in info["flags"] if f in ("avx512_bf16", "avx512_fp16", "amx_bf16")]
    if not any(f.startswith("amx") for f in flags):
        flags.append("no amx")
    return f"{info['model']} ({', '.join(flags)})"


class TuneCache:
    """Verdicts on disk: key (a dict) -> value (a dict). Missing, unreadable or corrupt means empty."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path is not None else cache_dir() / "tune.json"

    @staticmethod
    def key(workload: dict, torch_version: str, cpu: dict | None = None) -> str:
        """The CPU (model and flags), the torch version and the workload, as one string."""
        return json.dumps({"cpu": cpu or cpu_info(), "torch": torch_version, **workload}, sort_keys=True)

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError, RecursionError):  # (nested past Python's limit: corrupt too)
            return {}
        ok = isinstance(data, dict) and data.get("version") == CACHE_VERSION and isinstance(data.get("entries"), dict)
        return data["entries"] if ok else {}

    def get(self, key: str) -> dict | None:
        """The entry for `key`; None where there is none, or where CHARRNN_NO_TUNE_CACHE is set (`cache_disabled`)."""
        value = None if cache_disabled() else self._read().get(key)
        return value if isinstance(value, dict) else None

    def verdict(self, key: str, valid: Iterable[str]) -> Verdict | None:
        """The cached verdict for `key`, where its choice is still one of `valid`."""
        hit = self.get(key)
        if hit and hit.get("choice") in set(valid):
            return Verdict(hit["choice"], dict(hit.get("rates") or {}), cached=True)
        return None

    def put(self, key: str, value: dict) -> None:
        """Store a verdict (best effort: a cache that cannot be written is no error)."""
        entries = self._read()
        entries[key] = value
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=1) + "\n")
        except OSError:
            pass


def cache_disabled() -> bool:
    """CHARRNN_NO_TUNE_CACHE=1 measures every time (benchmarks use it)."""
    return os.environ.get("CHARRNN_NO_TUNE_CACHE", "") not in ("", "0")


def cached_or_measured(cache: TuneCache, key: str, measure: Callable[[], Verdict],
                       valid: Iterable[str]) -> Verdict:
    """The cached verdict for `key` when there is a usable one, else `measure()` (then cached)."""
    cached = cache.verdict(key, valid)
    if cached:
        return cached
    verdict = measure()
    cache.put(key, verdict.to_dict())
    return verdict
