"""What a finished (or interrupted) run amounts to: losses, divergence, each layer's last diagnosis."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from operator import attrgetter

from .records import Event, LayerDiagnosis, StepRecord


@dataclass
class RunSummary:
    """Folds records into the figures `record`, `compare` and `check` print."""

    steps: int = 0
    last_step: int | None = None
    final_loss: float | None = None
    best_loss: float | None = None
    final_val: float | None = None
    best_val: float | None = None
    diverged: Event | None = None                                    # the first diverged event
    verdicts: dict[str, LayerDiagnosis] = field(default_factory=dict)  # layer -> its last diagnosis
    weight_verdicts: dict[str, LayerDiagnosis] = field(default_factory=dict)  # the same, of the weights

    def add(self, record: StepRecord | Event) -> None:
        if isinstance(record, StepRecord):
            self.add_steps([record])
        elif record.kind == "diverged" and self.diverged is None:
            self.diverged = record

    def add_steps(self, records: list[StepRecord]) -> None:
        """Consecutive step records, as add() of each would (fewer Python steps for a block of them)."""
        if not records:
            return
        self.steps += len(records)
        self.last_step = records[-1].step
        for attr, final, best in (("loss", "final_loss", "best_loss"), ("val_loss", "final_val", "best_val")):
            values = [v for v in map(attrgetter(attr), records) if v is not None and math.isfinite(v)]
            if values:
                low = min(values)
                setattr(self, final, values[-1])
                setattr(self, best, low if getattr(self, best) is None else min(getattr(self, best), low))
        for record in records:
            if record.diag:
                self.verdicts.update(record.diag)
            if record.weight_diag:
                self.weight_verdicts.update(record.weight_diag)
