"""Reports over finished runs: summaries, markdown tables and curves.
"""

from ._analysis import common_images as common_images
from ._analysis import curve_radii as curve_radii
from ._analysis import markdown_table as markdown_table
from ._analysis import plot_curves as plot_curves
from ._analysis import read_rows as read_rows
from ._analysis import run_labels as run_labels
from ._analysis import seconds_table as seconds_table
from ._analysis import summarize as summarize
from ._analysis import summarize_run as summarize_run
from ._analysis import summarize_runs as summarize_runs
from ._analysis import summary_record as summary_record
from ._analysis import write_curves_csv as write_curves_csv
from ._plots import figure as figure

__all__ = [
    "common_images",
    "curve_radii",
    "figure",
    "markdown_table",
    "plot_curves",
    "read_rows",
    "run_labels",
    "seconds_table",
    "summarize",
    "summarize_run",
    "summarize_runs",
    "summary_record",
    "write_curves_csv",
]
