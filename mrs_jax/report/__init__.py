"""Reports over finished runs: summaries, markdown tables and curves.
"""

from ._analysis import common_images as common_images
from ._analysis import markdown_table as markdown_table
from ._analysis import plot_curves as plot_curves
from ._analysis import seconds_table as seconds_table
from ._analysis import summarize_run as summarize_run
from ._analysis import summarize_runs as summarize_runs
from ._analysis import summary_record as summary_record
from ._analysis import write_curves_csv as write_curves_csv

__all__ = [
    "common_images",
    "markdown_table",
    "plot_curves",
    "seconds_table",
    "summarize_run",
    "summarize_runs",
    "summary_record",
    "write_curves_csv",
]
