"""Reports over finished runs: summaries, markdown tables and curves."""

from ._analysis import (
    common_images as common_images,
    markdown_table as markdown_table,
    plot_curves as plot_curves,
    seconds_table as seconds_table,
    summarize_run as summarize_run,
    summarize_runs as summarize_runs,
    summary_record as summary_record,
    write_curves_csv as write_curves_csv,
)

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
