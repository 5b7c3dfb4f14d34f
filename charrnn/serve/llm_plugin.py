"""charrnn's plugin for `llm` (simonw/llm): every trained run is a model `llm` can prompt.

    pip install llm charrnn                  (the plugin comes with charrnn: its `llm` entry point)
    llm models                               ... charrnn: charrnn/demo (checkpoints/demo)
    llm -m charrnn/demo "ROMEO:" -o temperature 0.8 -o length 500
    llm -m charrnn/demo "ROMEO:" -o temperature 0 -o stop $'\\n\\n'
    llm models --options -q charrnn          the options, what each accepts
    CHARRNN_LLM_RUNS=~/runs:/data/runs llm models      runs kept elsewhere too

The runs are the folders holding a checkpoint under ./checkpoints (of the folder `llm` runs in)
and under each folder named in $CHARRNN_LLM_RUNS (separated by ":", ";" on Windows); a run is
called `charrnn/` and its path below that folder (`charrnn/demo`, `charrnn/names/small`), or the
folder's own name where the folder named is itself a run. A name found twice is the first one's.

The prompt is the prime: the text is its continuation, streamed as `charrnn sample --precision
fp32` writes it (the same text for the same seed). The options are `Sampling`'s, checked by it,
so a refused value reads as charrnn says it, under llm's usual "Error:" (`-o temperature -1`:
"temperature must be a number from 0 to 100 (0 = greedy), not -1"): temperature, top_k, top_p,
length (tokens: characters, or words or bytes for a word or byte model), seed, stop (one string,
kept at the end of the text as `charrnn sample --stop` keeps it) and unk (`skip`: drop prompt
characters the model never saw). In a conversation (`llm -c`, `llm chat`) each prompt continues
the whole text so far. `llm` logs the tokens read and written (`llm logs`, `-u`).

Finding the runs reads file names only: `llm` loads every plugin for every command, so torch is
imported only when a model is prompted.
"""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path

import llm
from pydantic import Field, field_validator

from charrnn.generation.settings import Sampling
from charrnn.util.errors import CharrnnError, UsageError
from charrnn.util.fields import accepts

RUNS_ENV = "CHARRNN_LLM_RUNS"  # more folders of runs, os.pathsep between them
CHECKPOINT_SUFFIXES = (".pt", ".safetensors")  # training.checkpoint.MODEL_SUFFIXES (that module imports torch)
NUMBERS = ("temperature", "top_k", "top_p", "length", "seed")  # the options typed as numbers


def run_roots() -> list[Path]:
    return [Path("checkpoints"), *(Path(p).expanduser() for p in os.environ.get(RUNS_ENV, "").split(os.pathsep) if p)]


def find_runs(roots: list[Path]) -> dict[str, Path]:
    """Model name -> run folder, for every folder holding a checkpoint under `roots` (file names only)."""
    found: dict[str, Path] = {}
    for root in roots:
        if not root.is_dir():
            continue
        folders = sorted({f.parent for f in root.glob("**/*") if f.suffix in CHECKPOINT_SUFFIXES and f.is_file()})
        for folder in folders:
            below = folder.relative_to(root).as_posix()
            found.setdefault("charrnn/" + (below if below != "." else root.resolve().name), folder)
    return found


def described(name: str) -> str:
    """What option `name` accepts, in Sampling's own words, and its default."""
    f = next(f for f in fields(Sampling) if f.name == name)
    base = {"temperature": float, "top_p": float, "stop": str, "unk": str}.get(name, int)
    note = f" ({f.metadata['note']})" if f.metadata.get("note") else ""
    default = "none" if f.default in (None, ()) else f.default
    return f"{accepts(f, base)}{note}; default {default}"


def checked(name: str, value):
    """One option's value as Sampling takes it, or a ValueError with charrnn's message (llm shows it)."""
    if name in NUMBERS and isinstance(value, str):  # `-o seed 7` arrives as the string "7"
        for number in (int, float):
            try:
                value = number(value)
                break
            except ValueError:
                pass
    try:
        setting = getattr(Sampling(**{name: (value,) if name == "stop" else value}), name)
    except UsageError as e:
        raise ValueError(str(e)) from None
    return setting[0] if name == "stop" else setting


class CharrnnOptions(llm.Options):
    temperature: float | None = Field(None, description=described("temperature"))
    top_k: int | None = Field(None, description=described("top_k"))
    top_p: float | None = Field(None, description=described("top_p"))
    length: int | None = Field(None, description="tokens to write: " + described("length"))
    seed: int | None = Field(None, description=described("seed"))
    stop: str | None = Field(None, description="the text ends once it writes this (kept): " + described("stop"))
    unk: str | None = Field(None, description="prompt characters the model never saw: " + described("unk"))

    @field_validator("*", mode="before")
    @classmethod
    def as_charrnn_checks(cls, value, info):
        return None if value is None else checked(info.field_name, value)


class CharrnnModel(llm.Model):
    """One run folder: loaded the first time it is prompted, then kept."""

    can_stream = True
    Options = CharrnnOptions

    def __init__(self, model_id: str, folder: Path):
        self.model_id, self.folder, self.loaded = model_id, folder, None

    def __str__(self) -> str:
        return f"charrnn: {self.model_id} ({self.folder})"

    def execute(self, prompt, stream, response, conversation):
        if prompt.system:
            raise llm.ModelError("a charrnn model takes no system prompt: it continues the text it is given")
        given = {k: v for k, v in prompt.options if v is not None}
        settings = Sampling(**{**given, "stop": (given["stop"],) if "stop" in given else ()})
        earlier = conversation.responses if conversation is not None else []
        prime = "".join(r.prompt.prompt + r.text() for r in earlier) + prompt.prompt
        try:
            yield from self.write(prime, settings, response)
        except CharrnnError as e:
            raise llm.ModelError(str(e)) from None

    def write(self, prime: str, settings: Sampling, response):
        """Stream the continuation of `prime`, as `charrnn sample --precision fp32` writes it; log the tokens."""
        from charrnn.generation.sampling import generate_batch, prime_ids_for, prompt_tokens
        from charrnn.model.kernels import choose_kernel
        from charrnn.runtime.threads import torch_threads
        from charrnn.training.checkpoint import load_model

        if self.loaded is None:
            with torch_threads(1):
                self.loaded = load_model(self.folder)
        model, vocab = self.loaded.model, self.loaded.vocab
        prime_ids_for(vocab, prime, settings.unk)  # refuses unknown characters before anything is written
        read = prompt_tokens(vocab, prime)
        choice = choose_kernel(model, 1, "fp32", 0, steps=settings.length)
        written = 0
        with torch_threads(choice.threads):
            for pieces in generate_batch(model, vocab, settings, prime, choice.kernel):
                written += 1
                if pieces[0]:
                    yield pieces[0]
        response.set_usage(input=read, output=written)


@llm.hookimpl
def register_models(register):
    for name, folder in find_runs(run_roots()).items():
        register(CharrnnModel(name, folder))
