"""Self-contained HTML reports of runs: charts (inline SVG, and PNG files), epochs and transcripts."""

from ._build import ReportSummary, build_report
from ._data import ReportError

__all__ = ["ReportError", "ReportSummary", "build_report"]
