"""The protocol module: the log lines of src/lines.rs byte for byte (the
expected texts are those of the Rust unit tests), numbers as Rust formats
them, losses that are not numbers, settings changes and command files."""

from __future__ import annotations

import json
import math

import pytest

import runhelpers  # noqa: F401  (puts the package on the path)
from trainui import control, protocol


def sample_event(outcome, output, **extra):
    event = {
        "type": "sample", "step": 2500, "sample": 1, "of": 4, "example": 17,
        "origin": "val.jsonl:18", "prompt": "47+38=", "golden": "85", "output": output,
        "golden_tokens": 2, "output_tokens": len(output), "outcome": outcome,
        "exact_match": outcome == {"kind": "completed"} and output == "85", "loss": 0.7942,
        "elapsed_secs": 60.001, "tokens_per_sec": 7.0, "timeout_secs": 60.0,
        "counters": protocol.zero_counters(),
    }
    event.update(extra)
    return event


def test_step_lines_read_as_in_rust():
    line = protocol.format_event({
        "type": "step", "step": 120, "max_steps": 2000, "loss": 1.23456, "learning_rate": 3e-4,
        "tokens_per_sec": 12345.4, "elapsed_secs": 83.0, "eta_secs": 3725.0})
    assert line == ("step 120/2000 | loss 1.2346 | lr 3.00e-4 | 12,345 tok/s | elapsed 0:01:23 "
                    "| eta 1:02:05")
    nan = protocol.step_line(5, 10, "NaN", 1e-3, 0.0, 0.0, math.inf)
    assert nan == "step 5/10 | loss NaN | lr 1.00e-3 | 0 tok/s | elapsed 0:00:00 | eta 0:00:00"


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


def test_samples_print_the_incident_markers():
    timed_out = protocol.format_event(sample_event({"kind": "timed_out"}, "1111\n2222"))
    lines = timed_out.split("\n")
    assert lines[0] == "--- Sample 1/4 (example 17, val.jsonl:18) ---"
    assert lines[1] == "PROMPT: 47+38="
    assert lines[2] == "GOLDEN (2 tokens): 85"
    assert lines[3] == "MODEL (9 tokens, partial): 1111\\n2222"
    assert lines[4] == ('TIMEOUT: Model generation exceeded 60s at step 2500 (example 17, '
                        'val.jsonl:18, prompt "47+38="; 9 tokens so far)')
    assert lines[5] == "LOSS ON THIS EXAMPLE: 0.7942"
    assert lines[6] == "TIME: 60.001s, 7.0 tokens/s"
    matched = protocol.format_event(sample_event({"kind": "completed"}, "85"))
    assert "\nMATCH\n" in matched
    mismatch = protocol.format_event(sample_event({"kind": "completed"}, "86"))
    assert "\nMISMATCH\n" in mismatch and "MODEL (2 tokens): 86" in mismatch
    aborted = protocol.format_event(sample_event({"kind": "aborted"}, "8", elapsed_secs=1.25))
    assert ('ABORTED: generation stopped by the operator after 1.2s at step 2500 (example 17, '
            'val.jsonl:18, prompt "47+38=")') in aborted
    error = protocol.format_event(sample_event(
        {"kind": "error", "message": "index out of range"}, "", loss=None))
    assert ('ERROR: generation failed at step 2500 (example 17, val.jsonl:18, prompt "47+38="): '
            'index out of range') in error
    assert "LOSS ON THIS EXAMPLE: -" in error
    quoted = protocol.format_event(sample_event({"kind": "timed_out"}, "", prompt='say "hi"\t'))
    assert 'prompt "say \\"hi\\"\\t"' in quoted


def test_very_long_output_is_cut_in_print():
    text = protocol.format_event(sample_event({"kind": "timed_out"}, "7" * 450))
    assert "... (50 more characters)" in text


def test_eval_and_end_lines():
    assert protocol.eval_header(2500) == "=" * 64 + "\nFULL EVAL - Step 2500\n" + "=" * 64
    summary = protocol.format_event({
        "type": "eval_finished", "step": 2500, "eval": 10, "val_loss": 0.2025,
        "train_loss": 0.2539, "gap": 0.2025 - 0.2539, "samples": 8, "matches": 7,
        "exact_match": 0.875,
        "counters": {"generations": 80, "completed": 80, "timed_out": 0, "aborted": 0,
                     "errors": 0}})
    assert summary == (
        "Loss Comparison: Train=0.2539 | Val=0.2025 | Gap=-0.0514\n"
        "EXACT MATCH: 7/8 (87.5%) | generations 80: 80 completed, 0 timed out, 0 aborted, "
        "0 errors (timeout rate 0.0%)")
    assert protocol.format_event({"type": "failed", "step": 3, "message": "boom"}) == \
        "FAILED at step 3: boom"
    assert protocol.format_event({"type": "checkpoint", "step": 3000,
                                  "path": "runs/x/checkpoints/checkpoint-3000"}) == \
        "checkpoint saved at step 3000: runs/x/checkpoints/checkpoint-3000"
    assert protocol.format_event({"type": "finished", "step": 3000, "max_steps": 3000,
                                  "state": "finished", "loss": 0.21391, "elapsed_secs": 155.0}) \
        == "finished at step 3000/3000 | final loss 0.2139 | elapsed 0:02:35"
    assert protocol.format_event({"type": "finished", "step": 6, "max_steps": 10,
                                  "state": "stopped", "loss": None, "elapsed_secs": 1.2}) \
        == "stopped at step 6/10 | final loss - | elapsed 0:00:01"
    assert protocol.format_event({"type": "stalled", "step": 2500, "phase": "generating",
                                  "silent_secs": 300.4, "timeout_secs": 300.0}) == (
        "STALLED: no progress for 300s (watchdog.stall_timeout_seconds = 300) at step 2500, "
        "while generating")
    assert protocol.format_event({"type": "warning", "step": 5, "message": "x"}) == \
        "WARNING at step 5: x"
    assert protocol.timeout_rate_warning(
        {"generations": 1, "completed": 0, "timed_out": 1, "aborted": 0, "errors": 0}, 0.1
    ).startswith("timeout rate 100.0% (1 of 1 generations) is above eval.timeout_warn_rate "
                 "10.0%: ")


def test_losses_that_are_not_numbers_are_text():
    assert protocol.float_or_text(math.nan) == "NaN"
    assert protocol.float_or_text(math.inf) == "inf"
    assert protocol.float_or_text(-math.inf) == "-inf"
    assert protocol.float_or_text(None) is None
    assert protocol.float_or_text(1.5) == 1.5
    with pytest.raises(ValueError):
        protocol.json_text({"loss": math.nan})


def test_settings_change_as_config_change_live_says():
    settings = protocol.default_settings()
    result, applied = protocol.change_settings(settings, {"eval.eval_timeout_seconds": 30})
    assert applied == ["eval.eval_timeout_seconds = 30.0"]
    assert result["eval"]["eval_timeout_seconds"] == 30.0
    assert settings["eval"]["eval_timeout_seconds"] == 60.0, "the original is left alone"
    assert protocol.change_settings(result, {"eval.eval_timeout_seconds": 30.0})[1] == []
    with pytest.raises(protocol.SettingsError, match="model.n_layer is not a setting"):
        protocol.change_settings(settings, {"model.n_layer": 2})
    with pytest.raises(protocol.SettingsError, match="between 0 and 1"):
        protocol.change_settings(settings, {"eval.timeout_warn_rate": 1.5})
    with pytest.raises(protocol.SettingsError, match="greater than 0"):
        protocol.change_settings(settings, {"eval.eval_timeout_seconds": 0})
    with pytest.raises(protocol.SettingsError, match="at least 1"):
        protocol.change_settings(settings, {"train.log_steps": 0})
    lr, applied = protocol.change_settings(settings, {"train.learning_rate": 0.001})
    assert lr["train"]["learning_rate"] == 0.001 and applied == ["train.learning_rate = 0.001"]


def test_command_files_of_both_versions_are_read():
    request = control.parse_request(json.dumps(
        {"v": 2, "id": "x", "created_unix": 1.5, "command": {"set": {"eval.eval_steps": 100}}}))
    assert request["command"] == {"set": {"eval.eval_steps": 100}}
    assert control.parse_request(
        '{"v":2,"id":"e","created_unix":1.5,"command":"eval_now"}')["command"] == "eval_now"
    old = control.parse_request('{"v":1,"id":"x","created_unix":1.5,"command":"set",'
                                '"assignment":"eval.eval_steps=100"}')
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
        'unknown command "dance"; the commands are stop, pause')
    assert "unknown variant `dance`" in refusal(
        '{"v":2,"id":"b","created_unix":1,"command":"dance"}')
    assert refusal('{"v":9,"id":"b","created_unix":1,"command":"stop"}') == \
        "unknown request version 9"
    big = tmp_path / "c.json"
    big.write_bytes(b" " * 5000)
    with pytest.raises(control.RequestError, match="5000 bytes"):
        control.read_request(big)
    link = tmp_path / "d.json"
    link.symlink_to(big)
    with pytest.raises(control.RequestError, match="^refused: a symbolic link$"):
        control.read_request(link)
    folder = tmp_path / "e.json"
    folder.mkdir()
    with pytest.raises(control.RequestError, match="^refused: not a regular file$"):
        control.read_request(folder)


def test_the_status_follows_a_stall_and_its_recovery():
    fold = protocol.StatusFold("demo", 10, 1)
    fold.apply({"type": "state", "step": 1, "state": "training"})
    fold.apply({"type": "stalled", "step": 2, "phase": "generating", "silent_secs": 5.4,
                "timeout_secs": 5.0})
    assert fold.status["state"] == "stalled"
    assert fold.status["last_message"] == "stalled: no progress for 5s at step 2 (generating)"
    fold.apply({"type": "state", "step": 2, "state": "evaluating"})
    assert fold.status["state"] == "stalled", "a state change during a stall waits"
    fold.apply({"type": "recovered", "step": 2, "phase": "generating"})
    assert fold.status["state"] == "evaluating"


def test_json_safe_copies_a_config_json_can_hold():
    class Strategy:
        def __str__(self):
            return "steps"

    value = {"lr": math.nan, "betas": (0.9, math.inf), "floor": -math.inf, 3: Strategy(),
             "nested": {"path": __import__("pathlib").Path("/x")}, "ok": [1, "a", None, True]}
    assert protocol.json_safe(value) == {
        "lr": "NaN", "betas": [0.9, "inf"], "floor": "-inf", "3": "steps",
        "nested": {"path": "/x"}, "ok": [1, "a", None, True]}
    protocol.json_text(protocol.json_safe(value))  # never a bare NaN


def test_event_lines_are_written_as_serde_writes_them():
    from trainui.rundir import record_line

    line = json.loads(record_line({"type": "step", "step": 1, "loss": math.nan,
                                   "learning_rate": math.inf, "eta_secs": math.nan}, 0.0))
    assert (line["loss"], line["learning_rate"], line["eta_secs"]) == ("NaN", None, None)
    line = json.loads(record_line({"type": "eval_finished", "gap": -math.inf,
                                   "val_loss": math.inf, "train_loss": 1.5}, 0.0))
    assert (line["gap"], line["val_loss"], line["train_loss"]) == ("-inf", "inf", 1.5)
    line = json.loads(record_line({"type": "sample", "origin": object, "prompt": b"x"}, 0.0))
    assert line["origin"] == "<class 'object'>" and line["prompt"] == "b'x'"


def test_counts_are_bounded_as_the_rust_fields_are():
    settings = protocol.default_settings()

    def refusal(changes):
        with pytest.raises(protocol.SettingsError) as caught:
            protocol.change_settings(settings, changes)
        return str(caught.value)

    assert refusal({"eval.samples": 5_000_000_000}) == (
        "set eval.samples=5000000000: eval.samples: invalid value: integer `5000000000`, "
        "expected u32")
    assert refusal({"checkpoint.save_total_limit": 2**32}).endswith("expected u32")
    assert refusal({"eval.eval_steps": 2**64}) == (
        f"set eval.eval_steps={2**64}: eval.eval_steps: invalid value: integer `{2**64}`, "
        "expected u64")
    assert protocol.change_settings(settings, {"eval.eval_steps": 2**64 - 1})[1] == \
        [f"eval.eval_steps = {2**64 - 1}"]
    assert protocol.change_settings(settings, {"eval.samples": 2**32 - 1})[1] == \
        [f"eval.samples = {2**32 - 1}"]
    assert refusal({"eval.samples": -1}) == \
        "set eval.samples=-1: eval.samples: invalid value: integer `-1`, expected u32"
    assert refusal({"eval.samples": 2.0}) == \
        "set eval.samples=2.0: eval.samples: invalid type: floating point `2.0`, expected u32"
    assert refusal({"train.log_steps": True}) == \
        "set train.log_steps=true: train.log_steps: invalid type: boolean `true`, expected u64"
    assert refusal({"eval.temperature": "hot"}) == \
        'set eval.temperature="hot": eval.temperature: invalid type: string "hot", expected f64'
    for key in protocol.live_keys():
        kind = protocol.LIVE_SETTINGS[key.split(".")[0]][key.split(".")[1]][1]
        assert kind in ("u64", "u32", "f64", "seconds"), key


def test_the_learning_rate_must_be_above_zero():
    settings = protocol.default_settings()
    for value, shown in ((0, "0"), (-0.1, "-0.1")):
        with pytest.raises(protocol.SettingsError) as caught:
            protocol.change_settings(settings, {"train.learning_rate": value})
        assert str(caught.value) == (f"set train.learning_rate={json.dumps(value)}: "
                                     f"train.learning_rate must be a number greater than 0 "
                                     f"(got {shown})")
    with pytest.raises(protocol.SettingsError, match="greater than 0"):
        protocol.settings_with({"train": {"learning_rate": math.nan}})


def test_command_files_with_bare_nan_or_infinity_are_not_commands():
    for constant in ("NaN", "Infinity", "-Infinity"):
        text = '{"v":2,"id":"n","created_unix":%s,"command":"stop"}' % constant
        with pytest.raises(control.RequestError, match="^not a command"):
            control.parse_request(text)
    with pytest.raises(control.RequestError, match="^not a command"):
        control.parse_request('{"v":2,"id":"n","created_unix":1e999,"command":"stop"}')
    with pytest.raises(control.RequestError, match="^not a command"):
        control.parse_request('{"v":2,"id":"n","created_unix":1,'
                              '"command":{"set":{"eval.temperature":NaN}}}')


def test_send_writes_utf8_whatever_the_locale(tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "control").mkdir(mode=0o700)  # as a run makes it: send checks it as the job does
    script = ("import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
              "from trainui import control; "
              "print(control.send(Path(sys.argv[2]), {'set': {'eval.temp\\u00e9rature': 1}}))")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0",
           "PYTHONCOERCECLOCALE": "0", "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run([sys.executable, "-c", script, str(runhelpers.PYTHON_DIR),
                           str(tmp_path)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    data = (tmp_path / "control" / f"{done.stdout.strip()}.json").read_bytes()
    assert "température".encode("utf-8") in data
    assert control.parse_request(data.decode("utf-8"))["command"] == \
        {"set": {"eval.température": 1}}


def test_the_status_counts_non_finite_steps():
    fold = protocol.StatusFold("demo", 10, 1)
    event = {"type": "non_finite", "step": 4, "loss": "NaN", "grad_norm": 2.5,
             "action": "warn", "count": 3}
    fold.apply(event)
    assert fold.status["nonfinite_steps"] == 3
    assert fold.status["last_message"] == \
        "non-finite at step 4: loss NaN, grad norm 2.5 (train.on_nonfinite = warn)"
    assert protocol.format_event(event) == (
        "WARNING at step 4: NON-FINITE loss NaN, gradient norm 2.5: its update was applied "
        "(train.on_nonfinite = warn; 3 such steps in the run)")


HOSTILE = "a\x1b]0;t\x07\x1b[8m\u009b\u202ez\tq\r\n"
SHOWN = r"a\x1b]0;t\x07\x1b[8m\u{9b}\u{202e}z\tq\r\n"


def test_text_from_a_run_or_a_model_is_printed_escaped_on_its_line():
    """lines.rs's test of the same name: the same text, byte for byte."""
    event = sample_event({"kind": "error", "message": HOSTILE}, HOSTILE, origin=HOSTILE,
                         prompt=HOSTILE, golden=HOSTILE, output_tokens=21)
    text = protocol.format_event(event)
    assert text.split("\n")[:5] == [
        f"--- Sample 1/4 (example 17, {SHOWN}) ---",
        f"PROMPT: {SHOWN}",
        f"GOLDEN (2 tokens): {SHOWN}",
        f"MODEL (21 tokens, partial): {SHOWN}",
        f"ERROR: generation failed at step 2500 (example 17, {SHOWN}, prompt "
        f"{protocol.rust_debug(HOSTILE)}): {SHOWN}",
    ]
    assert not any(protocol.is_unsafe(ch) and ch != "\n" for ch in text)
    for event in [
        {"type": "warning", "step": 1, "message": HOSTILE},
        {"type": "failed", "step": 1, "message": HOSTILE},
        {"type": "checkpoint", "step": 1, "path": HOSTILE},
        {"type": "control", "id": HOSTILE, "command": HOSTILE, "accepted": False,
         "message": HOSTILE},
        {"type": "control", "id": HOSTILE, "command": HOSTILE, "accepted": True,
         "message": HOSTILE},
        {"type": "command_ack", "step": 1, "command": "stop", "message": HOSTILE},
    ]:
        line = protocol.format_event(event)
        assert "\n" not in line and SHOWN in line, line
        assert not any(protocol.is_unsafe(ch) for ch in line), line
    started = protocol.format_event({
        "type": "started", "run_name": HOSTILE, "device": "cuda\x1b[2J", "parameters": 1,
        "vocab_size": 2, "train_examples": 3, "val_examples": 4, "start_step": 5,
        "resumed_from": "ckpt\u2066x"})
    assert started == (f"run {SHOWN} | device cuda\\x1b[2J | 1 parameters | vocab 2 | 3 train / "
                       "4 val examples\nresumed from ckpt\\u{2066}x at step 5")
    for code in [*range(0x20), 0x7f, *range(0x80, 0xa0), 0x61c, 0x200e, 0x200f,
                 *range(0x2028, 0x202f), *range(0x2066, 0x206a)]:
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
    assert set(kept) == {"é"} and mark == \
        f"{len(output.encode()) - len(kept.encode())} more bytes not recorded)"
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
