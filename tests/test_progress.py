"""Progress in a log file: plain lines with the time left, never carriage returns."""

import io

from mrs_jax.core import LineProgress, progress_bar
from mrs_jax.job import summary


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_a_file_gets_lines_with_the_time_left_and_no_carriage_returns():
    stream = io.StringIO()
    bar = progress_bar(10, desc="epoch 1/3", unit="step", stream=stream, every_s=0.0,
                       later=20, iterable=range(10))
    assert isinstance(bar, LineProgress)
    for _ in bar:
        bar.set_postfix(loss="1.0", refresh=False)
    bar.close()
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 11  # one a step (every_s=0), one at the close
    assert lines[-1].startswith("epoch 1/3: 10/10 step (100%)")
    assert "left in all" in lines[-1] and "loss 1.0" in lines[-1]


def test_lines_wait_for_their_interval():
    stream = io.StringIO()
    bar = LineProgress(100, desc="certify", unit="img", stream=stream, every_s=3600)
    for _ in range(50):
        bar.update(1)
    assert stream.getvalue() == ""
    bar.close()
    assert stream.getvalue().startswith("certify: 50/100 img (50%)")


def test_a_terminal_gets_a_bar_and_false_gets_nothing():
    assert progress_bar(3, desc="x", enabled=False) is None
    bar = progress_bar(3, desc="x", stream=_Tty())
    assert type(bar).__name__ == "tqdm"
    bar.close()


def test_the_summary_line_of_a_run():
    rows = [
        dict(label=1, prediction=1, radius=1.0, certified=True, covered=True,
             clean_prediction=1, seconds={"certify": 2.0}),
        dict(label=0, prediction=-1, radius=0.0, certified=False, covered=True,
             clean_prediction=0, seconds={"certify": 4.0}),
    ]
    line = summary(rows)
    assert line.startswith("2 images, clean ")
    assert "abstained 50.0%" in line and "3 s/image (median)" in line
