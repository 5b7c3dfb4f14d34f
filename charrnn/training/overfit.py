"""Watching a run for overfitting: validation loss rising while training loss falls.

char-rnn's README teaches users to watch the gap between training and validation loss by
eye; this does it for them. After each validation `OverfitWatch.update` compares the new
figure with the best so far:

    val  2.10  1.92  1.85  1.87  1.90  1.94     <- rising for 3 evaluations ...
    train 2.15 1.90  1.78  1.66  1.55  1.45     <- ... while training loss keeps falling
                           best                   => warn once (best.pt stays at the minimum)

With `patience` N > 0 the run also stops after N validations without a new best (early stopping).
"""

from __future__ import annotations

from dataclasses import dataclass, field

RISES = 3  # validations in a row that rose above the best, with training loss falling, before warning


@dataclass
class OverfitWatch:
    patience: int = 0  # stop after this many validations without a new best (0 = never)
    best: float | None = None
    best_step: int = 0
    since_best: int = 0  # validations since the best one
    warned: bool = False
    _train_at_best: float | None = field(default=None, repr=False)

    @property
    def out_of_patience(self) -> bool:
        return bool(self.patience) and self.since_best >= self.patience

    def update(self, step: int, val_bpc: float | None, train_bpc: float | None) -> tuple[str | None, bool]:
        """Record a validation; return (a warning to show once, or None; whether to stop now)."""
        if val_bpc is None:
            return None, False
        if self.best is None or val_bpc < self.best:
            self.best, self.best_step, self.since_best, self._train_at_best = val_bpc, step, 0, train_bpc
            return None, False
        self.since_best += 1
        message = None
        falling = train_bpc is not None and self._train_at_best is not None and train_bpc < self._train_at_best
        if self.since_best >= RISES and falling and not self.warned:
            self.warned = True
            message = (f"the model is overfitting: validation has not improved for {self.since_best} evaluations "
                       f"(best {self.best:.3f} bits/char at step {self.best_step}, kept in best.pt) while training "
                       f"loss keeps falling ({self._train_at_best:.3f} -> {train_bpc:.3f}); try --dropout 0.2, "
                       "a smaller --hidden, or more text" + ("" if self.patience else ", or --patience N to stop early"))
        return message, self.out_of_patience
