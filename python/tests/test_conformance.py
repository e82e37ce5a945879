"""The golden cases of protocol/cases/: the Python producer must say what
trainui's own (Rust) producer says for the same input, byte for byte: the
status file an event stream folds to, the log lines an event prints, the
answer to a command file, the outcome of a live settings change.

The inputs of the cases are written by hand; the expected outputs are the
Rust producer's answers, written by `TRAINUI_BLESS=1 cargo test --release
-p trainui-protocol --test conformance` and never edited by hand
(protocol/README.md). When a case fails here, the Python package differs
from trainui: fix the package (python/trainui/protocol.py and friends), not
the case."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from trainui import control, protocol
from trainui.eta import EtaEstimate

CASES = Path(__file__).resolve().parents[2] / "protocol" / "cases"

#: Cases where the Python package answers otherwise on purpose: only the
#: verdict (refused or taken) is compared, not the message.
VERDICT_ONLY = {
    (
        "settings.json",
        "an unknown key",
    ): "trainui suggests the nearest of its own config keys; a Python job has no such "
    "config, and lists the keys it can change instead",
    (
        "settings.json",
        "a key that cannot change while the run goes on",
    ): "trainui tells how to restart its own trainer with the key set; a Python job has no "
    "such key, and lists the keys it can change instead",
}

#: Differences found and not fixed yet: they lie in control.py, which was
#: not this test's author's to change. Each runs as an expected failure
#: (strict: once fixed, it fails as passing, and comes off this list).
KNOWN_DIFFERENCES = {
    (
        "control.json",
        "not JSON",
    ): "control.parse_request words a JSON syntax error as Python's json module does "
    "(`Expecting value: line 1 column 1 (char 0)`), not as serde_json does",
    (
        "control.json",
        "a bare NaN",
    ): "control.parse_request words a JSON syntax error as Python's json module does",
    (
        "settings.json",
        "u64 above its largest",
    ): "serde_json reads an integer beyond 2^64-1 as a float, Python's json as an int "
    "(control.parse_request would need parse_int to read it as serde_json does)",
}


def cases(file: str):
    """The cases of `file`, as pytest parameters named after them."""
    loaded = json.loads((CASES / file).read_text(encoding="utf-8"))["cases"]
    params = []
    for case in loaded:
        marks = []
        reason = KNOWN_DIFFERENCES.get((file, case["name"]))
        if reason is not None:
            marks.append(pytest.mark.xfail(reason=reason, strict=True))
        params.append(pytest.param(file, case, id=case["name"], marks=marks))
    return params


def differs(file: str, case: dict) -> str:
    return (
        f"protocol/cases/{file}, case {case['name']!r} ({case['why']}): the Python package "
        "answers otherwise than trainui (the expected side)"
    )


def expected(file: str, case: dict, key: str):
    assert key in case, (
        f"protocol/cases/{file}: case {case['name']!r} has no `{key}` yet: run `TRAINUI_BLESS=1 "
        "cargo test --release -p trainui-protocol --test conformance` to write Rust's answer"
    )
    return case[key]


def same_json(value):
    """`value` as JSON reads it back: what a reader of the file sees."""
    return json.loads(protocol.json_text(protocol.serde_safe(value)))


# ---------------------------------------------------------------------------
# Events in, the status file out

#: Fields of the status file that are not the fold's (see status.json).
NOT_FOLDED = ("updated_at", "gpus")


@pytest.mark.parametrize(("file", "case"), cases("status.json"))
def test_events_fold_to_the_status_file_as_the_cases_say(file, case):
    fold = protocol.StatusFold(case["run_name"], case["max_steps"], case["pid"])
    for event in case["events"]:
        if protocol.shows_in_status(event):  # as the writer thread folds them
            fold.apply(event)
    status = {k: v for k, v in same_json(fold.status).items() if k not in NOT_FOLDED}
    assert status == expected(file, case, "status"), differs(file, case)


# ---------------------------------------------------------------------------
# Events in, log lines out


@pytest.mark.parametrize(("file", "case"), cases("lines.json"))
def test_events_print_the_log_lines_the_cases_say(file, case):
    text = protocol.format_event(case["event"])
    lines = [] if text is None else text.split("\n")
    assert lines == expected(file, case, "lines"), differs(file, case)


# ---------------------------------------------------------------------------
# A command file in, the job's answer out


def contents(case) -> str:
    """The contents of the case's file (see control.json)."""
    if "text" in case:
        text = case["text"]
    elif "request" in case:
        request = dict(case["request"])
        request.setdefault("created_unix", time.time() - case.get("written_secs_ago", 0))
        text = json.dumps(request)
    else:
        text = ""
    return text.ljust(case.get("pad_to_bytes", 0))


@pytest.mark.parametrize(("file", "case"), cases("control.json"))
def test_command_files_are_answered_as_the_cases_say(file, case, tmp_path):
    spool = tmp_path / protocol.SPOOL_DIR
    spool.mkdir(mode=0o700)
    path = spool / case["file"]
    entry = case.get("entry")
    if entry is None:
        path.write_text(contents(case), encoding="utf-8")
    elif entry == "folder":
        path.mkdir()
    else:
        assert entry == "link", entry
        target = tmp_path / "target.json"
        target.write_text(contents(case), encoding="utf-8")
        os.symlink(target, path)
    events, delivered = [], []
    job = control.Spool(
        tmp_path,
        emit=events.append,
        deliver=delivered.append,
        abort=lambda command: None,
        settings=protocol.default_settings(),
        on_settings=lambda settings: None,
    )
    job.close()  # its thread stops before its first look; the test looks once itself
    job.poll_once()
    outcome = {"events": same_json(events), "delivered": same_json(delivered)}
    assert outcome == expected(file, case, "outcome"), differs(file, case)


# ---------------------------------------------------------------------------
# A live settings change in, the settings or the refusal out


@pytest.mark.parametrize(("file", "case"), cases("settings.json"))
def test_live_settings_change_as_the_cases_say(file, case):
    settings = protocol.default_settings()
    if "start" in case:
        settings, _ = protocol.change_settings(settings, case["start"], "start")
    try:
        result, applied = protocol.change_settings(settings, case["changes"], "set")
        outcome = {"settings": same_json(result), "applied": applied}
    except protocol.SettingsError as err:
        outcome = {"error": str(err)}
    want = expected(file, case, "outcome")
    why = VERDICT_ONLY.get((file, case["name"]))
    if why is not None:
        assert outcome.keys() == want.keys(), (differs(file, case), why, outcome, want)
    else:
        assert outcome == want, differs(file, case)


def test_every_difference_listed_names_a_case():
    for file, name in [*VERDICT_ONLY, *KNOWN_DIFFERENCES]:
        names = [case["name"] for case in json.loads((CASES / file).read_text("utf-8"))["cases"]]
        assert name in names, (file, name)


# ---------------------------------------------------------------------------
# The live settings come from the table Rust writes


def test_the_live_settings_are_the_tables():
    table = json.loads(
        (Path(protocol.__file__).with_name("live_settings.json")).read_text(encoding="utf-8")
    )
    keys = [entry["key"] for entry in table["settings"]]
    own = ["train.learning_rate"]  # the package's own addition (protocol.LIVE_SETTINGS)
    assert sorted(protocol.live_keys()) == sorted(keys + own)
    defaults = protocol.flatten(protocol.default_settings())
    assert defaults == {entry["key"]: entry["default"] for entry in table["settings"]}
    for entry in table["settings"]:
        section, name = entry["key"].split(".")
        assert protocol.LIVE_SETTINGS[section][name] == (entry["default"], entry["kind"])
    assert protocol.MAX_SECONDS == table["seconds"]["max"]
    assert protocol._AT_LEAST == {
        entry["key"]: entry["min"]
        for entry in table["settings"]
        if entry["kind"] in ("u64", "u32") and entry["min"] > 0
    }


# ---------------------------------------------------------------------------
# Logging windows in, the ETA of each `step` event out


@pytest.mark.parametrize(("file", "case"), cases("eta.json"))
def test_logging_windows_give_the_etas_the_cases_say(file, case):
    estimate = EtaEstimate()
    previous = 0
    etas = []
    for step, secs in case["windows"]:
        estimate.window(step - previous, secs)
        previous = step
        etas.append(estimate.eta_secs(max(case["max_steps"] - step, 0)))
    assert same_json(etas) == expected(file, case, "eta_secs"), differs(file, case)


# ---------------------------------------------------------------------------
# An event in, the alert it raises out (alerts::of, trainui.alerts.of)


@pytest.mark.parametrize(("file", "case"), cases("alerts.json"))
def test_events_raise_the_alerts_the_cases_say(file, case):
    from trainui import alerts

    assert "alert" in case, (
        f"protocol/cases/{file}: case {case['name']!r} has no `alert` yet: run `TRAINUI_BLESS=1 "
        "cargo test --release -p trainui --lib alerts::` to write Rust's answer"
    )
    alert = alerts.of(case["event"], case["run_name"])
    answer = (
        None if alert is None else {"kind": alert.kind, "title": alert.title, "body": alert.body}
    )
    assert answer == case["alert"], differs(file, case)
