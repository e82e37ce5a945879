"""How a rank's file says it ended: a process that caught a stop signal
(a launcher such as torchrun ending the ranks left after one failed, or an
operator's SIGTERM) ends `stopped` and names the signal, never `finished`
(which `trainui watch` shows as `done`); a failure stays a failure."""

from __future__ import annotations

import signal

import pytest

import trainui
from runhelpers import check_run_dir, events, rank_file, rank_record, status


def make_run(root):
    return trainui.Run(
        root,
        max_steps=10**6,
        handle_signals=False,
        print_lines=False,
        settings={"train": {"log_steps": 1}, "eval": {"eval_steps": 0}},
    )


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_rank_that_caught_a_stop_signal_ends_stopped_and_names_it(tmp_path, number):
    root = tmp_path / "run"
    run = make_run(root)
    run.start()
    run.log_step(1, 1.0, 1e-3)
    run._on_signal(number, None)  # as the handler is called: only counts
    # The loop ends before a step boundary could agree on the stop (the
    # peers are gone), and says nothing of how: finish() alone.
    run.finish()
    beat = rank_file(root, 0)
    assert beat["phase"] == "done" and beat["state"] == "stopped", beat
    assert beat["signal"] == signal.Signals(number).name, beat
    end = events(root)[-1]
    assert end["type"] == "finished" and end["state"] == "stopped", end
    assert rank_record(root, 0)[-1]["state"] == "stopped"
    assert status(root)["state"] == "stopped"
    check_run_dir(root)


def test_a_finish_that_says_finished_after_a_signal_is_still_stopped(tmp_path):
    # An integration that ends with finish("finished") (a Trainer's
    # on_train_end) after torchrun's SIGTERM: the rank did not finish.
    root = tmp_path / "run"
    run = make_run(root)
    run.start()
    run._on_signal(signal.SIGTERM, None)
    run.finish("finished")
    beat = rank_file(root, 0)
    assert (beat["state"], beat["signal"]) == ("stopped", "SIGTERM"), beat


def test_a_rank_that_fails_after_a_signal_stays_failed_and_one_left_alone_finishes(tmp_path):
    failed = tmp_path / "failed"
    run = make_run(failed)
    run.start()
    run._on_signal(signal.SIGTERM, None)
    run.fail("Connection closed by peer")
    beat = rank_file(failed, 0)
    assert (beat["state"], beat["signal"]) == ("failed", "SIGTERM"), beat
    check_run_dir(failed)

    finished = tmp_path / "finished"
    run = make_run(finished)
    run.start()
    run.finish()
    beat = rank_file(finished, 0)
    assert beat["state"] == "finished" and "signal" not in beat, beat
