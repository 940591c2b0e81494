"""The loop the builder and the pusher share (rosetta.core.worker): a failing pass is logged and
the next one runs; a burst of wake-ups is served by one pass."""

import logging
import time

from rosetta.core.notify import wake_local
from rosetta.core.worker import Wakeups, run_pass


def test_a_pass_says_what_it_did_and_a_failing_pass_is_logged_not_raised(caplog):
    log = logging.getLogger("rosetta.test-worker")

    def failing():
        yield "Copied one image."
        raise RuntimeError("the database went away")

    with caplog.at_level(logging.INFO, logger="rosetta.test-worker"):
        run_pass("test worker", lambda: ["Built 1."], log)
        run_pass("test worker", failing, log)
    said = [(record.levelno, record.getMessage()) for record in caplog.records]
    assert said[:2] == [(logging.INFO, "Built 1."), (logging.INFO, "Copied one image.")]
    assert said[2] == (logging.ERROR, "The test worker failed a pass; it tries again.")
    assert "the database went away" in caplog.records[2].exc_text


def test_a_burst_of_wake_ups_is_one_pass_and_without_one_the_wait_is_the_poll(tmp_path, monkeypatch):
    monkeypatch.setenv("ROSETTA_HOME", str(tmp_path))
    with Wakeups("test-worker") as wakeups:
        for _ in range(5):  # several entries added at once
            wake_local("test-worker")
        started = time.monotonic()
        wakeups.wait(timeout=5)
        assert time.monotonic() - started < 1  # woken at once
        started = time.monotonic()
        wakeups.wait(timeout=0.3)  # the other four were served by the same pass
        assert time.monotonic() - started >= 0.3
