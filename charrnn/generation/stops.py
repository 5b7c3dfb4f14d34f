"""Stop strings for text that is shown as it streams: the stop string itself is never shown.

`charrnn sample --stop` keeps the stop string in the output. An answer in `charrnn chat` and
a completion from `charrnn serve` (as OpenAI's API defines it) end *before* it. Streaming
that means holding back any tail that could still grow into a stop string:

    stop "\\n\\n"     generated   "a"   "b"   "\\n"   "c"    "\\n"   "\\n"
                    shown now   "a"   "b"   ""     "\\nc"  ""     ""  -> stopped; "\\n" never shown
"""

from __future__ import annotations

from collections.abc import Sequence


class StopScanner:
    """Feed it generated text; it passes on what can no longer be part of a stop string."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.held = ""  # the tail that is a prefix of some stop string
        self.stopped = False

    def feed(self, text: str) -> str:
        """The text that is now certain to be shown (empty once a stop string has been written)."""
        if self.stopped:
            return ""
        if not self.stops:
            return text
        held = self.held + text
        ends = [held.find(s) for s in self.stops if s in held]
        if ends:
            self.stopped, self.held = True, ""
            return held[: min(ends)]
        keep = self._partial(held)
        self.held = held[len(held) - keep :] if keep else ""
        return held[: len(held) - keep]

    def flush(self) -> str:
        """At the end of the text: what was held back (it turned out not to be a stop string)."""
        held, self.held = self.held, ""
        return held

    def _partial(self, text: str) -> int:
        """Length of the longest tail of `text` that begins some stop string."""
        for k in range(min(len(text), max(len(s) for s in self.stops) - 1), 0, -1):
            tail = text[len(text) - k :]
            if any(s.startswith(tail) for s in self.stops):
                return k
        return 0
