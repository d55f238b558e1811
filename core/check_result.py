"""What `biasmon check` found, as data: `CheckResult` (`to_json()` is `check --json`), with a `LayerResult`
per layer, the problems each layer had (`ProblemSeen`), and each earlier run of the stream (`RunResult`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class ProblemSeen:
    """A problem verdict a layer had at some point: where it began, its longest stretch, whether it counts."""

    verdict: str
    cause: str
    first_step: int
    longest_steps: int
    final: bool      # the layer's verdict at the end of the stream
    counts: bool     # final, or lasted `sustain` steps or more (detached: final only)


@dataclass(frozen=True)
class LayerResult:
    verdict: str
    cause: str
    since: int
    first_seen: int
    problems: list[ProblemSeen]


@dataclass(frozen=True)
class Divergence:
    step: int
    layer: str | None
    reason: str | None


@dataclass(frozen=True)
class Malformed:
    """The lines read with a problem (skipped, or read as divergence): a line with two problems is one line."""

    count: int            # lines
    lines: list[int]      # their numbers, rising
    messages: list[str]   # the first MAX_LISTED problems
    problems: int = 0     # problems in all (a line may have several)
    unreadable: int = 0   # the lines with a problem other than a non-finite value (valid: read as divergence)
    first_unreadable: str | None = None   # the first such problem (what --strict names)


@dataclass(frozen=True)
class RunResult:
    """One run of a stream that holds several (restarted, or a preset switched): each is judged alone."""

    index: int            # 1 for the stream's first run
    label: str | None     # the preset or run id the stream gave it
    first_step: int | None
    last_step: int | None
    steps: int
    layers: dict[str, LayerResult]
    failing: list[str]    # what fails the check in this run ("hidden1 uphill", ..., "diverged at step 2100")
    weights: dict[str, LayerResult] = field(default_factory=dict)   # each layer's weights, if logged
    diverged: Divergence | None = None   # the run's first divergence

    def where(self) -> str:
        """'run 2 (label), steps 0..299' ('no step read' for a run whose every step line diverged)."""
        span = "no step read" if self.first_step is None else f"steps {self.first_step}..{self.last_step}"
        return f"run {self.index}{f' ({self.label})' if self.label else ''}, {span}"


@dataclass(frozen=True)
class CheckResult:
    """What `check` found; to_json() is `check --json`'s output."""

    source: str
    steps: int
    first_step: int | None
    last_step: int | None
    final_loss: float | None
    best_loss: float | None
    final_val_loss: float | None
    has_grads: bool
    max_span: int
    diverged: Divergence | None
    layers: dict[str, LayerResult]
    malformed: Malformed
    notes: list[str]
    sustain: int
    failing: list[str]
    status: str          # "ok" or "problem"
    exit: int            # 0 or 1
    runs: list[RunResult] = field(default_factory=list)  # every run but the last, if the stream holds several
    last_run: str | None = None   # the last run's label (the preset or run id the stream gave it), if several
    weights: dict[str, LayerResult] = field(default_factory=dict)   # each layer's weights (the last run), if logged

    def to_json(self) -> dict:
        return asdict(self)
