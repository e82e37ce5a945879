"""The protocol module: numbers as Rust formats them, losses that are not
numbers, settings changes and command files, and what the golden cases of
protocol/cases/ (test_conformance.py) do not say: the package's own
settings key, the escaping of every unsafe character, text cut to fit a
line."""

from __future__ import annotations

import json
import math

import pytest

from trainui import control, protocol


def sample_event(outcome, output, **extra):
    event = {
        "type": "sample",
        "step": 2500,
        "sample": 1,
        "of": 4,
        "example": 17,
        "origin": "val.jsonl:18",
        "prompt": "47+38=",
        "golden": "85",
        "output": output,
        "golden_tokens": 2,
        "output_tokens": len(output),
        "outcome": outcome,
        "exact_match": outcome == {"kind": "completed"} and output == "85",
        "loss": 0.7942,
        "elapsed_secs": 60.001,
        "tokens_per_sec": 7.0,
        "timeout_secs": 60.0,
        "counters": protocol.zero_counters(),
    }
    event.update(extra)
    return event


def test_step_lines_read_as_in_rust():
    nan = protocol.step_line(5, 10, "NaN", 1e-3, 0.5, 0.0, math.inf)
    assert nan == "step 5/10 | loss NaN | lr 1.00e-3 | 1 tok/s | elapsed 0:00:00 | eta 0:00:00"
    # A job that counts no tokens shows no rate.
    none = protocol.step_line(5, 10, 2.0, 1e-3, 0.0, 0.0, 1.0)
    assert none == "step 5/10 | loss 2.0000 | lr 1.00e-3 | elapsed 0:00:00 | eta 0:00:01"


def test_numbers_are_grouped_and_durations_rounded():
    assert protocol.thousands(0) == "0"
    assert protocol.thousands(999) == "999"
    assert protocol.thousands(1000) == "1,000"
    assert protocol.thousands(1234567) == "1,234,567"
    assert protocol.duration(3599.6) == "1:00:00"
    assert protocol.duration(0.5) == "0:00:01", "Rust rounds halves away from zero"
    assert protocol.lower_exp(0.0, 2) == "0.00e0"
    assert protocol.lower_exp(1500.0, 2) == "1.50e3"
    assert protocol.rust_display(60.0) == "60"
    assert protocol.rust_display(2.5) == "2.5"
    assert protocol.rust_display(1e-7) == "0.0000001"
    assert protocol.rust_display(1e21) == "1000000000000000000000"
    assert protocol.fixed(-0.05154, 4, plus=True) == "-0.0515"
    assert protocol.fixed(0.05154, 4, plus=True) == "+0.0515"
    assert protocol.fixed(math.nan, 4) == "NaN"


def test_the_timeout_rate_warning_reads_as_in_rust():
    assert protocol.timeout_rate_warning(
        {"generations": 1, "completed": 0, "timed_out": 1, "aborted": 0, "errors": 0}, 0.1
    ).startswith("timeout rate 100.0% (1 of 1 generations) is above eval.timeout_warn_rate 10.0%: ")


def test_losses_that_are_not_numbers_are_text():
    assert protocol.float_or_text(math.nan) == "NaN"
    assert protocol.float_or_text(math.inf) == "inf"
    assert protocol.float_or_text(-math.inf) == "-inf"
    assert protocol.float_or_text(None) is None
    assert protocol.float_or_text(1.5) == 1.5
    with pytest.raises(ValueError, match="not JSON compliant"):
        protocol.json_text({"loss": math.nan})


def test_settings_change_as_config_change_live_says():
    settings = protocol.default_settings()
    result, applied = protocol.change_settings(settings, {"eval.eval_timeout_seconds": 30})
    assert result["eval"]["eval_timeout_seconds"] == 30.0
    assert settings["eval"]["eval_timeout_seconds"] == 60.0, "the original is left alone"
    with pytest.raises(protocol.SettingsError, match=r"model\.n_layer is not a setting"):
        protocol.change_settings(settings, {"model.n_layer": 2})
    lr, applied = protocol.change_settings(settings, {"train.learning_rate": 0.001})
    assert lr["train"]["learning_rate"] == 0.001 and applied == ["train.learning_rate = 0.001"]


def test_command_files_of_both_versions_are_read():
    request = control.parse_request(
        json.dumps(
            {"v": 2, "id": "x", "created_unix": 1.5, "command": {"set": {"eval.eval_steps": 100}}}
        )
    )
    assert request["command"] == {"set": {"eval.eval_steps": 100}}
    assert (
        control.parse_request('{"v":2,"id":"e","created_unix":1.5,"command":"eval_now"}')["command"]
        == "eval_now"
    )
    old = control.parse_request(
        '{"v":1,"id":"x","created_unix":1.5,"command":"set","assignment":"eval.eval_steps=100"}'
    )
    assert old["command"] == {"set": {"eval.eval_steps": 100}} and old["id"] == "x"
    for name, word in protocol.COMMAND_WORDS.items():
        if name == "set":
            continue
        text = json.dumps({"v": 1, "id": "x", "created_unix": 1, "command": word})
        assert control.parse_request(text)["command"] == name


def test_bad_command_files_are_refused_with_a_reason(tmp_path):
    def refusal(text):
        with pytest.raises(control.RequestError) as caught:
            control.parse_request(text)
        return str(caught.value)

    assert refusal("not json").startswith("not a command")
    assert refusal('{"v":1,"id":"b","created_unix":1,"command":"dance"}').startswith(
        'unknown command "dance"; the commands are stop, pause'
    )
    assert "unknown variant `dance`" in refusal(
        '{"v":2,"id":"b","created_unix":1,"command":"dance"}'
    )
    assert (
        refusal('{"v":9,"id":"b","created_unix":1,"command":"stop"}') == "unknown request version 9"
    )
    big = tmp_path / "c.json"
    big.write_bytes(b" " * 5000)
    with pytest.raises(control.RequestError, match="5000 bytes"):
        control.read_request(big)
    link = tmp_path / "d.json"
    link.symlink_to(big)
    with pytest.raises(control.RequestError, match=r"^refused: a symbolic link$"):
        control.read_request(link)
    folder = tmp_path / "e.json"
    folder.mkdir()
    with pytest.raises(control.RequestError, match=r"^refused: not a regular file$"):
        control.read_request(folder)


def test_json_safe_copies_a_config_json_can_hold():
    class Strategy:
        def __str__(self):
            return "steps"

    value = {
        "lr": math.nan,
        "betas": (0.9, math.inf),
        "floor": -math.inf,
        3: Strategy(),
        "nested": {"path": __import__("pathlib").Path("/x")},
        "ok": [1, "a", None, True],
    }
    assert protocol.json_safe(value) == {
        "lr": "NaN",
        "betas": [0.9, "inf"],
        "floor": "-inf",
        "3": "steps",
        "nested": {"path": "/x"},
        "ok": [1, "a", None, True],
    }
    protocol.json_text(protocol.json_safe(value))  # never a bare NaN


def test_event_lines_are_written_as_serde_writes_them():
    from trainui.rundir import record_line

    line = json.loads(
        record_line(
            {
                "type": "step",
                "step": 1,
                "loss": math.nan,
                "learning_rate": math.inf,
                "eta_secs": math.nan,
            },
            0.0,
        )
    )
    assert (line["loss"], line["learning_rate"], line["eta_secs"]) == ("NaN", None, None)
    line = json.loads(
        record_line(
            {"type": "eval_finished", "gap": -math.inf, "val_loss": math.inf, "train_loss": 1.5},
            0.0,
        )
    )
    assert (line["gap"], line["val_loss"], line["train_loss"]) == ("-inf", "inf", 1.5)
    line = json.loads(record_line({"type": "sample", "origin": object, "prompt": b"x"}, 0.0))
    assert line["origin"] == "<class 'object'>" and line["prompt"] == "b'x'"


def test_counts_are_bounded_as_the_rust_fields_are():
    settings = protocol.default_settings()

    def refusal(changes):
        with pytest.raises(protocol.SettingsError) as caught:
            protocol.change_settings(settings, changes)
        return str(caught.value)

    # A Python int beyond 2^64-1 (JSON reads one as a float: protocol/cases).
    assert refusal({"eval.eval_steps": 2**64}) == (
        f"set eval.eval_steps={2**64}: eval.eval_steps: invalid value: integer `{2**64}`, "
        "expected u64"
    )
    for key in protocol.live_keys():
        kind = protocol.LIVE_SETTINGS[key.split(".")[0]][key.split(".")[1]][1]
        assert kind in ("u64", "u32", "f64", "seconds"), key


def test_the_learning_rate_must_be_above_zero():
    settings = protocol.default_settings()
    for value, shown in ((0, "0"), (-0.1, "-0.1")):
        with pytest.raises(protocol.SettingsError) as caught:
            protocol.change_settings(settings, {"train.learning_rate": value})
        assert str(caught.value) == (
            f"set train.learning_rate={json.dumps(value)}: "
            f"train.learning_rate must be a number greater than 0 "
            f"(got {shown})"
        )
    with pytest.raises(protocol.SettingsError, match="greater than 0"):
        protocol.settings_with({"train": {"learning_rate": math.nan}})


def test_command_files_with_bare_nan_or_infinity_are_not_commands():
    for constant in ("NaN", "Infinity", "-Infinity"):
        text = f'{{"v":2,"id":"n","created_unix":{constant},"command":"stop"}}'
        with pytest.raises(control.RequestError, match=r"^not a command"):
            control.parse_request(text)
    with pytest.raises(control.RequestError, match=r"^not a command"):
        control.parse_request('{"v":2,"id":"n","created_unix":1e999,"command":"stop"}')
    with pytest.raises(control.RequestError, match=r"^not a command"):
        control.parse_request(
            '{"v":2,"id":"n","created_unix":1,"command":{"set":{"eval.temperature":NaN}}}'
        )


def test_send_writes_utf8_whatever_the_locale(tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "control").mkdir(mode=0o700)  # as a run makes it: send checks it as the job does
    script = (
        "from pathlib import Path; import sys; "
        "from trainui import control; "
        "print(control.send(Path(sys.argv[1]), {'set': {'eval.temp\\u00e9rature': 1}}))"
    )
    env = {
        **os.environ,
        "LC_ALL": "C",
        "LANG": "C",
        "PYTHONUTF8": "0",
        "PYTHONCOERCECLOCALE": "0",
        "PYTHONIOENCODING": "utf-8",
    }
    done = subprocess.run(
        [sys.executable, "-P", "-c", script, str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    data = (tmp_path / "control" / f"{done.stdout.strip()}.json").read_bytes()
    assert "température".encode() in data
    assert control.parse_request(data.decode("utf-8"))["command"] == {
        "set": {"eval.température": 1}
    }


HOSTILE = "a\x1b]0;t\x07\x1b[8m\u009b\u202ez\tq\r\n"
SHOWN = r"a\x1b]0;t\x07\x1b[8m\u{9b}\u{202e}z\tq\r\n"


def test_text_from_a_run_or_a_model_is_printed_escaped_on_its_line():
    """lines.rs's test of the same name: the same text, byte for byte."""
    event = sample_event(
        {"kind": "error", "message": HOSTILE},
        HOSTILE,
        origin=HOSTILE,
        prompt=HOSTILE,
        golden=HOSTILE,
        output_tokens=21,
    )
    text = protocol.format_event(event)
    assert text.split("\n")[:5] == [
        f"--- Sample 1/4 (example 17, {SHOWN}) ---",
        f"PROMPT: {SHOWN}",
        f"GOLDEN (2 tokens): {SHOWN}",
        f"MODEL (21 tokens, partial): {SHOWN}",
        (
            f"ERROR: generation failed at step 2500 (example 17, {SHOWN}, prompt "
            f"{protocol.rust_debug(HOSTILE)}): {SHOWN}"
        ),
    ]
    assert not any(protocol.is_unsafe(ch) and ch != "\n" for ch in text)
    for event in [
        {"type": "warning", "step": 1, "message": HOSTILE},
        {"type": "failed", "step": 1, "message": HOSTILE},
        {"type": "checkpoint", "step": 1, "path": HOSTILE},
        {
            "type": "control",
            "id": HOSTILE,
            "command": HOSTILE,
            "accepted": False,
            "message": HOSTILE,
        },
        {
            "type": "control",
            "id": HOSTILE,
            "command": HOSTILE,
            "accepted": True,
            "message": HOSTILE,
        },
        {"type": "command_ack", "step": 1, "command": "stop", "message": HOSTILE},
    ]:
        line = protocol.format_event(event)
        assert "\n" not in line and SHOWN in line, line
        assert not any(protocol.is_unsafe(ch) for ch in line), line
    started = protocol.format_event(
        {
            "type": "started",
            "run_name": HOSTILE,
            "device": "cuda\x1b[2J",
            "parameters": 1,
            "vocab_size": 2,
            "train_examples": 3,
            "val_examples": 4,
            "start_step": 5,
            "resumed_from": "ckpt\u2066x",
        }
    )
    assert started == (
        f"run {SHOWN} | device cuda\\x1b[2J | 1 parameters | vocab 2 | 3 train / "
        "4 val examples\nresumed from ckpt\\u{2066}x at step 5"
    )
    for code in [
        *range(0x20),
        0x7F,
        *range(0x80, 0xA0),
        0x61C,
        0x200E,
        0x200F,
        *range(0x2028, 0x202F),
        *range(0x2066, 0x206A),
    ]:
        assert protocol.is_unsafe(chr(code)), hex(code)
        assert not any(protocol.is_unsafe(ch) for ch in protocol.escape(chr(code)))
    for ordinary in ("é", "日本", "🏖", " ", "\u00a0", "\u200d"):
        assert protocol.escape(ordinary) == ordinary


def test_an_event_too_long_for_a_line_has_its_longest_texts_cut_and_marked():
    from trainui.rundir import MAX_EVENT_LINE, fit_event, record_line

    output = "é" * (MAX_EVENT_LINE // 2 + 7)  # 2 bytes a character: twice the limit alone
    event = sample_event({"kind": "timed_out"}, output, prompt="p" * 1000)
    line = record_line(event, 0.0)
    assert len(line) <= MAX_EVENT_LINE
    written = json.loads(line)
    assert written["prompt"] == "p" * 1000, "only the longest texts are cut"
    kept, _, mark = written["output"].partition("... (")
    assert (
        set(kept) == {"é"}
        and mark == f"{len(output.encode()) - len(kept.encode())} more bytes not recorded)"
    )
    assert len(kept.encode()) < len(output.encode()) // 2 + 1
    ranked = fit_event(protocol.serde_safe(event), 0.0, rank=3)[1]
    assert len(ranked) <= MAX_EVENT_LINE and json.loads(ranked)["rank"] == 3
    small = {"type": "warning", "step": 1, "message": "short"}
    assert fit_event(small, 0.0)[0] is small
    huge = {"type": "failed", "step": 1, "message": "x" * (3 * MAX_EVENT_LINE)}
    message = json.loads(record_line(huge, 0.0))["message"]
    assert message.endswith("more bytes not recorded)") and len(message) < MAX_EVENT_LINE
    # A long text that is not one of those cut (an origin) leaves the line
    # long, and ends the cutting instead of going on for ever.
    long_origin = dict(sample_event({"kind": "timed_out"}, "out"), origin="o" * MAX_EVENT_LINE)
    assert len(record_line(long_origin, 0.0)) > MAX_EVENT_LINE
