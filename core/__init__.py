"""biasmon's core: pure NumPy (never Textual, never the CLI). The names below are its public API, and the
only ones the TUI uses (an import-linter contract in pyproject.toml). README's "How it is built" maps the
modules."""

__version__ = "0.1.0"

from .diagnoser import Diagnoser, Diagnosis, Observation  # noqa: E402
from .errors import BiasmonError, DataError, PresetError, StreamError  # noqa: E402
from .gradcheck import finite_difference_errors  # noqa: E402
from .layout import Layout  # noqa: E402
from .readlines import MAX_LINE_CHARS, OVERLONG_LINE, chunks as line_chunks, stream_lines  # noqa: E402
from .logger import StreamWriter  # noqa: E402
from .network import Network  # noqa: E402
from .presets import DEFAULT_PRESET, Preset, discover as discover_presets, resolve as load_preset  # noqa: E402
from .reader import StreamReader, read_all  # noqa: E402
from .records import Event, LayerDiagnosis, LayerVectors, LossChange, StepRecord  # noqa: E402
from .stream import RESET_EVENTS, RecordWriter  # noqa: E402
from .summary import RunSummary  # noqa: E402
from .trainer import Trainer, build_network, load_data  # noqa: E402
from .verdicts import CAUSES, DEAD_UNITS, HELD_UPHILL, PROBLEMS, VERDICTS, Thresholds  # noqa: E402

__all__ = ["__version__", "BiasmonError", "CAUSES", "DEFAULT_PRESET", "DataError", "Diagnoser", "Diagnosis",
           "DEAD_UNITS", "Event", "HELD_UPHILL", "LayerDiagnosis", "LayerVectors", "Layout", "LossChange", "MAX_LINE_CHARS", "Network",
           "OVERLONG_LINE", "Observation", "PROBLEMS", "Preset", "PresetError", "RESET_EVENTS", "RecordWriter",
           "RunSummary", "StepRecord", "StreamError", "StreamReader", "StreamWriter", "Thresholds", "Trainer",
           "VERDICTS", "build_network", "discover_presets", "finite_difference_errors", "load_data",
           "line_chunks", "load_preset", "read_all", "stream_lines"]
