"""Progress in a log file: when stderr is not a terminal a run prints plain lines (a start and
an end line per stage, and a heartbeat line every N seconds), never silence until exit."""

from __future__ import annotations

import io
import re
import time

from ddbench.reporting.console import ConsoleUI, LogProgress


def test_stage_lines_and_heartbeat_while_a_step_is_long():
    stream = io.StringIO()
    with ConsoleUI(every=0.05, log_stream=stream) as ui:
        advance = ui.progress("observer convnet3-bn", total=4)
        advance(1)
        time.sleep(0.3)  # one long step: the heartbeat still reports it
        ui.info("a message")
        advance(3)
    lines = stream.getvalue().splitlines()
    assert all(re.match(r"\[\d\d:\d\d:\d\d\] ", line) for line in lines)
    assert "observer convnet3-bn: started (4 steps)" in lines[0]
    heartbeats = [line for line in lines if "observer convnet3-bn: 1/4 (25%)" in line]
    assert len(heartbeats) >= 2 and all("ETA" in line and "elapsed" in line for line in heartbeats)
    assert any(line.endswith("a message") for line in lines)
    assert re.search(r"observer convnet3-bn: done in \d+:\d\d$", lines[-1])


def test_no_heartbeat_after_a_stage_ends_and_none_when_quiet():
    stream = io.StringIO()
    with LogProgress(stream, every=0.02) as progress:
        progress.add_task("distill lic", 2)(2)
        time.sleep(0.1)
    assert len(stream.getvalue().splitlines()) == 2  # started, done: nothing repeats a finished stage
    quiet = io.StringIO()
    with ConsoleUI(quiet=True, every=0.01, log_stream=quiet) as ui:
        ui.progress("x", 3)(1)
        time.sleep(0.05)
    assert quiet.getvalue() == ""


def test_a_redirected_run_talks(tmp_path):
    import subprocess
    import sys

    log = tmp_path / "log"
    with open(log, "w") as handle:
        code = subprocess.run([sys.executable, "-m", "ddbench", "run", "--method", "random", "--ipc", "1", "--seeds", "1",
                               "--observer-epochs", "1", "--option", "budget.epochs=1", "--cache-dir", str(tmp_path / "cache"),
                               "--out", str(tmp_path / "out"), "--progress-every", "1"],
                              stdout=handle, stderr=subprocess.STDOUT).returncode
    text = log.read_text()
    assert code == 0, text
    # every stage has its start and end line, writing the results included
    for stage in ("observer convnet3-bn-w64", "distill random", "evaluate random seed 0",
                  "write results, tables, image grids and report"):
        assert re.search(rf"\] {stage}: started \(\d+ steps\)", text), stage
        assert re.search(rf"\] {stage}: done in", text), stage


def test_work_a_stopped_run_left_advances_the_count_but_not_the_estimate():
    from ddbench.api import DistillTask

    now = [0.0]
    stream = io.StringIO()
    progress = LogProgress(stream, every=0, clock=lambda: now[0])
    advance = progress.add_task("distill dm", 100)
    task = DistillTask(dataset=None, observer=None, observer_arch=None, ipc=1, device=None, seed=0, options=None,
                       progress=advance, resumed_progress=advance.resumed)
    task.progress_resumed(50)  # loaded from the saved state at once
    assert "50/100 (50%)" in progress.line(progress.tasks[0]) and "ETA" not in progress.line(progress.tasks[0])
    now[0] = 10.0
    task.progress(1)  # one iteration of this run took 10 s: 49 left take 490 s, not 10 s
    assert progress.line(progress.tasks[0]) == "distill dm: 51/100 (51%), elapsed 0:10, ETA 8:10"
    plain = progress.add_task("distill lic", 4)
    plain(1)
    now[0] = 20.0
    assert progress.line(progress.tasks[1]).endswith("ETA 0:30")  # nothing resumed: the whole stage's rate
    calls = []
    fallback = DistillTask(dataset=None, observer=None, observer_arch=None, ipc=1, device=None, seed=0, options=None,
                           progress=calls.append)
    fallback.progress_resumed(3)  # a UI without a resumed count: plain progress
    assert calls == [3]
