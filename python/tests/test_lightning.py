"""trainui.lightning.TrainuiCallback on real PyTorch Lightning jobs: a fit in
this process whose losses and gradients are known exactly, the example
(examples/lightning_mlp.py) steered through its control folder, and the
example under Lightning's own DDP (2 processes, gloo) started by
`trainui run --no-tui` and steered with `trainui ctl`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from runhelpers import (
    REPO,
    acked,
    check_run_dir,
    command_acked,
    events,
    find,
    rank_file,
    rank_record,
    status,
    trainui_program,
    wait_exit,
    wait_for,
)

torch = pytest.importorskip("torch")

LIGHTNING_EXAMPLE = REPO / "examples" / "lightning_mlp.py"
ENV = {"OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1"}


def _lightning():
    """lightning.pytorch or pytorch_lightning, whichever is installed."""
    try:
        import lightning.pytorch as pl
    except ImportError:
        pl = pytest.importorskip("pytorch_lightning")
    return pl


# ----------------------------------------------------------------------
# Without a process: the learning rate change every optimizer gets


def test_set_learning_rate_moves_the_optimizer_and_all_its_schedulers():
    from trainui.learning_rate import set_learning_rate

    weight = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.5, total_iters=4)
    decay = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.9)
    chained = torch.optim.lr_scheduler.ChainedScheduler([warmup, decay])
    for _ in range(2):
        optimizer.step()
        chained.step()
    factor = optimizer.param_groups[0]["lr"] / 0.1
    set_learning_rate(optimizer, [chained], 0.02)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.02 * factor)
    assert warmup.base_lrs == [0.02] and decay.base_lrs == [0.02]
    optimizer.step()
    chained.step()
    # The schedule goes on at the new height: the same step as if 0.02 had been the peak.
    reference = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.02)
    again = torch.optim.lr_scheduler.ChainedScheduler(
        [
            torch.optim.lr_scheduler.LinearLR(reference, start_factor=0.5, total_iters=4),
            torch.optim.lr_scheduler.ExponentialLR(reference, gamma=0.9),
        ]
    )
    for _ in range(3):
        reference.step()
        again.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(reference.param_groups[0]["lr"])


def test_the_gradient_norm_is_the_norm_of_all_gradients_together():
    from trainui.lightning import _total_norm

    grads = [torch.randn(21, 16), torch.randn(64, 40), torch.randn(64), torch.randn(3)]
    expected = torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grads]))
    assert float(_total_norm(grads)) == pytest.approx(float(expected), rel=1e-5)
    # Kinds one fused call cannot take together go torch's own way.
    # (A sparse one as nn.Embedding(sparse=True) makes: a row twice, summed.)
    sparse = torch.sparse_coo_tensor([[0, 2, 0]], torch.randn(3, 4), (5, 4))
    mixed = [grads[0].double(), grads[1], sparse]
    dense = [g.to_dense().double().reshape(-1) for g in mixed]
    assert float(_total_norm(mixed)) == pytest.approx(
        float(torch.linalg.vector_norm(torch.cat(dense))), rel=1e-5
    )


# ----------------------------------------------------------------------
# In this process: each recorded field, with values known in advance


@pytest.mark.slow
def test_steps_record_the_accumulated_loss_rate_norm_and_validation(tmp_path, monkeypatch):
    """A module whose loss on batch b is `b + w.c` (c a constant vector): with
    two batches accumulated per step, the step's loss is the mean of its two
    batches and the gradient the optimizer applies is exactly c, whatever w is."""
    pl = _lightning()
    from trainui.lightning import TrainuiCallback

    monkeypatch.delenv("TRAINUI_RUN_DIR", raising=False)
    direction = torch.tensor([3.0, 4.0])  # |c| = 5

    class Known(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(2))

        def training_step(self, batch, batch_idx):
            return float(batch[0][0]) + (self.w * direction).sum()

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", torch.tensor(7.25))

        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=0.125)
            decay = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (step + 1))
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": decay, "interval": "step"},
            }

    batches = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.arange(8.0)), batch_size=1
    )
    run_dir = tmp_path / "run"
    callback = TrainuiCallback(
        run_dir, settings={"train": {"log_steps": 1}}, batch_tokens=lambda batch: 10
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=4,
        accumulate_grad_batches=2,
        check_val_every_n_epoch=None,
        val_check_interval=4,  # batches: every 2 optimizer steps
        num_sanity_val_steps=0,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(Known(), batches, batches)
    check_run_dir(run_dir)

    lines = events(run_dir)
    started = find(lines, type="started")[0]
    assert started["producer"]["framework"] == "lightning"
    assert started["max_steps"] == 4 and started["parameters"] == 2
    assert started["train_examples"] == 8
    assert started["settings"]["eval"]["eval_steps"] == 2, "the Trainer's interval, in steps"
    assert started["settings"]["train"]["learning_rate"] == 0.125
    steps = find(lines, type="step")
    assert [e["step"] for e in steps] == [1, 2, 3, 4]
    # Batches 0+1, 2+3, ...: the mean of the window, not its last batch's share.
    expected = [0.5, 2.5, 4.5, 6.5]
    w = torch.zeros(2)  # as SGD moves it: by rate * c a step
    for step, (event, batch_mean) in enumerate(zip(steps, expected), start=1):
        rate = 0.125 / step  # the rate this step used (the schedule moves it after the step)
        assert event["loss"] == pytest.approx(batch_mean + float((w * direction).sum()))
        assert event["grad_norm"] == pytest.approx(5.0)
        assert event["learning_rate"] == pytest.approx(rate)
        assert event["tokens_per_sec"] > 0
        w -= rate * direction
    assert [e["step"] for e in find(lines, type="val_loss")] == [2, 4]
    assert all(e["loss"] == 7.25 and e["batches"] == 8 for e in find(lines, type="val_loss"))
    assert [e["val_loss"] for e in find(lines, type="eval_finished")] == [7.25, 7.25]
    assert find(lines, type="finished")[-1]["state"] == "finished"
    current = status(run_dir)
    assert current["grad_norm"] == pytest.approx(5.0) and current["val_loss"] == 7.25
    assert current["state"] == "finished" and current["current_step"] == 4


@pytest.mark.slow
def test_sample_hook_outcomes_without_a_validation_loop(tmp_path, monkeypatch):
    """A job with no validation: `eval.eval_steps` evaluates through the sample
    hook alone, which sees the module in eval mode without gradients; a text
    returned past the deadline is `timed_out`, an exception `error`, an object
    with `text` and `tokens` is taken as it says."""
    pl = _lightning()
    from trainui.lightning import TrainuiCallback

    monkeypatch.delenv("TRAINUI_RUN_DIR", raising=False)

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def training_step(self, batch, batch_idx):
            return (self.w * batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    seen = []

    class Counted:
        def __init__(self, text):
            self.text, self.tokens = text, 2

    def hook(module, request):
        seen.append((module.training, torch.is_grad_enabled(), request.max_new_tokens))
        if request.prompt == "slow":
            time.sleep(request.timeout_secs + 0.1)
            return "late"
        if request.prompt == "bad":
            raise RuntimeError("no such token")
        return Counted("4 4")

    examples = [
        {"prompt": "2+2=", "completion": "4 4"},
        {"prompt": "slow", "completion": "x"},
        {"prompt": "bad", "completion": "y"},
    ]
    run_dir = tmp_path / "run"
    callback = TrainuiCallback(
        run_dir,
        generate_sample=hook,
        eval_examples=examples,
        settings={
            "train": {"log_steps": 1},
            "eval": {
                "eval_steps": 2,
                "samples": 3,
                "eval_timeout_seconds": 0.2,
                "max_new_tokens": 5,
            },
        },
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=3,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    batches = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.ones(4, 1)), batch_size=1
    )
    trainer.fit(Tiny(), batches)
    check_run_dir(run_dir)
    lines = events(run_dir)
    assert seen == [(False, False, 5)] * 3, "eval mode, no gradients, the live settings"
    assert [e["step"] for e in find(lines, type="eval_started")] == [2]
    assert find(lines, type="eval_started")[0]["samples"] == 3
    assert not find(lines, type="val_loss"), "no validation loop, no validation loss"
    outcomes = [(s["prompt"], s["outcome"], s["output"]) for s in find(lines, type="sample")]
    assert outcomes == [
        ("2+2=", {"kind": "completed"}, "4 4"),
        ("slow", {"kind": "timed_out"}, "late"),
        ("bad", {"kind": "error", "message": "RuntimeError: no such token"}, ""),
    ]
    first = find(lines, type="sample")[0]
    assert first["output_tokens"] == 2 and first["exact_match"] is True
    finished = find(lines, type="eval_finished")[0]
    assert finished["samples"] == 3 and finished["matches"] == 1
    assert status(run_dir)["timeouts"] == 1 and status(run_dir)["errors"] == 1


@pytest.mark.slow
def test_example_records_steps_evaluations_samples_and_both_kinds_of_checkpoints(
    tmp_path, children
):
    run = tmp_path / "run"
    log = tmp_path / "job.log"
    process = children.start(
        [
            sys.executable,
            str(LIGHTNING_EXAMPLE),
            "--run-dir",
            str(run),
            "--max-steps",
            "60",
            "--eval-steps",
            "30",
            "--save-steps",
            "30",
            "--log-steps",
            "10",
            "--model-checkpoint-steps",
            "20",
            "--samples",
            "2",
        ],
        log,
        env=ENV,
    )
    assert wait_exit(process, log) == 0, log.read_text()[-4000:]
    check_run_dir(run)
    lines = events(run)
    steps = find(lines, type="step")
    assert [e["step"] for e in steps] == [10, 20, 30, 40, 50, 60]
    for event in steps:
        assert isinstance(event["loss"], float) and event["loss"] > 0
        assert event["learning_rate"] > 0 and event["tokens_per_sec"] > 0
        assert isinstance(event.get("grad_norm"), float) and event["grad_norm"] > 0, event
    assert steps[-1]["learning_rate"] == pytest.approx(3e-3), "past the warmup: the peak"

    assert [e["step"] for e in find(lines, type="eval_started")] == [30, 60]
    val = find(lines, type="val_loss")
    assert [e["step"] for e in val] == [30, 60]
    assert all(isinstance(e["loss"], float) and e["batches"] > 0 for e in val)
    samples = find(lines, type="sample")
    assert [(s["step"], s["sample"]) for s in samples] == [(30, 1), (30, 2), (60, 1), (60, 2)]
    assert [s["example"] for s in samples] == [0, 1, 2, 3], "each evaluation takes the next ones"
    for sample in samples:
        assert sample["outcome"] == {"kind": "completed"}, sample
        assert sample["output_tokens"] == len(sample["output"])
        assert sample["prompt"].endswith("=")
    finished = find(lines, type="eval_finished")
    assert [e["samples"] for e in finished] == [2, 2]
    assert [e["val_loss"] for e in finished] == [e["loss"] for e in val]

    checkpoints = [(e["step"], e["path"]) for e in find(lines, type="checkpoint")]
    ours = [(s, p) for s, p in checkpoints if "/checkpoints/" in p]
    assert ours == [
        (30, str(run / "checkpoints" / "checkpoint-30.ckpt")),
        (60, str(run / "checkpoints" / "checkpoint-60.ckpt")),
    ]
    theirs = [(s, Path(p).name) for s, p in checkpoints if "/lightning-checkpoints/" in p]
    assert theirs == [
        (20, "model-step=20.ckpt"),
        (40, "model-step=40.ckpt"),
        (60, "model-step=60.ckpt"),
    ], checkpoints
    for _, path in checkpoints:
        assert Path(path).is_file(), path
    current = status(run)
    assert current["state"] == "finished" and current["current_step"] == 60
    assert current["grad_norm"] == steps[-1]["grad_norm"]
    assert current["val_loss"] == val[-1]["loss"]
    assert current["evals"] == 2 and current["completed"] == 4


@pytest.mark.slow
def test_example_applies_eval_save_set_pause_and_stop(tmp_path, children):
    run = tmp_path / "run"
    log = tmp_path / "job.log"
    process = children.start(
        [
            sys.executable,
            str(LIGHTNING_EXAMPLE),
            "--run-dir",
            str(run),
            "--max-steps",
            "1000000",
            "--log-steps",
            "5",
            "--samples",
            "2",
            "--step-sleep",
            "0.002",
        ],
        log,
        env=ENV,
    )
    wait_for(lambda: find(events(run), type="step"), 180, "the first step event")

    eval_ack = command_acked(run, "eval_now")[0]
    assert eval_ack["message"] == f"evaluating at step {eval_ack['step']}"
    evaluation = wait_for(lambda: find(events(run), type="eval_finished"), 60, "the evaluation")[0]
    assert evaluation["step"] == eval_ack["step"] and evaluation["samples"] == 2
    assert isinstance(evaluation["val_loss"], float), "the validation loop ran"

    save_ack = command_acked(run, "save")[0]
    checkpoint = wait_for(lambda: find(events(run), type="checkpoint"), 60, "the checkpoint")[0]
    assert checkpoint["step"] == save_ack["step"]
    assert checkpoint["path"] == str(run / "checkpoints" / f"checkpoint-{save_ack['step']}.ckpt")
    assert Path(checkpoint["path"]).is_file()

    change = {"set": {"train.learning_rate": 0.0005, "eval.samples": 1, "eval.eval_steps": 40}}
    set_ack = command_acked(run, change)[0]
    assert "train.learning_rate" in set_ack["message"], set_ack
    later = wait_for(
        lambda: [e for e in find(events(run), type="step") if e["step"] > set_ack["step"]],
        60,
        "a step after the set",
    )
    assert later[0]["learning_rate"] == pytest.approx(0.0005), "past the warmup: the new peak"
    every = wait_for(
        lambda: [e for e in find(events(run), type="eval_finished") if e["step"] > set_ack["step"]],
        60,
        "an evaluation of eval.eval_steps",
    )[0]
    assert every["step"] % 40 == 0 and every["samples"] == 1

    # No periodic evaluation from here on: a pause that lands inside one
    # holds in its validation loop, where a second evaluation waits for the
    # resume (and says so); this part checks a pause between steps.
    quiet = command_acked(run, {"set": {"eval.eval_steps": 1000000}})[0]
    wait_for(
        lambda: [e for e in find(events(run), type="step") if e["step"] > quiet["step"]],
        60,
        "a step after the last periodic evaluation could run",
    )
    pause_ack = command_acked(run, "pause")[0]
    assert pause_ack["message"] == f"paused at step {pause_ack['step']}"
    paused_at = pause_ack["step"]
    time.sleep(1.5)
    held = rank_file(run, 0)
    assert held["phase"] == "paused" and held["step"] == paused_at, held
    assert status(run)["state"] == "paused"
    # Save and evaluate while paused: made at once, at that step; the pause goes on.
    paused_save = command_acked(run, "save")[0]
    assert paused_save["message"] == f"saving a checkpoint at step {paused_at}", paused_save
    wait_for(
        lambda: [c for c in find(events(run), type="checkpoint") if c["step"] == paused_at],
        60,
        "the checkpoint made while paused",
    )
    paused_eval = command_acked(run, "eval_now")[0]
    assert paused_eval["message"] == f"evaluating at step {paused_at}", paused_eval
    made = wait_for(
        lambda: [e for e in find(events(run), type="eval_finished") if e["step"] == paused_at],
        60,
        "the evaluation made while paused",
    )[0]
    assert isinstance(made["val_loss"], float), "the validation loop ran"
    time.sleep(1.0)
    assert status(run)["state"] == "paused"
    assert rank_file(run, 0)["phase"] == "paused"
    assert max(e["step"] for e in find(events(run), type="step")) <= paused_at
    resume_ack = command_acked(run, "resume")[0]
    assert resume_ack["step"] == pause_ack["step"]
    wait_for(
        lambda: [e for e in find(events(run), type="step") if e["step"] > pause_ack["step"]],
        60,
        "a step after the resume",
    )

    stop_ack = command_acked(run, "stop")[0]
    assert wait_exit(process, log) == 0, log.read_text()[-3000:]
    check_run_dir(run)
    lines = events(run)
    finished = find(lines, type="finished")[-1]
    assert finished["state"] == "stopped" and finished["step"] == stop_ack["step"]
    last = find(lines, type="checkpoint")[-1]
    assert last["step"] == stop_ack["step"], "a stop writes a final checkpoint"
    assert Path(last["path"]).is_file()
    assert not [e for e in find(lines, type="eval_started") if e["step"] == stop_ack["step"]], (
        "a stop does not evaluate"
    )
    current = status(run)
    assert current["state"] == "stopped" and current["last_checkpoint"] == last["path"]
    assert current["settings"]["train"]["learning_rate"] == 0.0005


# ----------------------------------------------------------------------
# Lightning's own DDP, two processes, under `trainui run`


def _ctl(program: Path, run: Path, *words: str) -> str:
    done = subprocess.run(
        [str(program), "ctl", str(run), *words, "--timeout", "90"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"trainui ctl {' '.join(words)}: {done.stderr}{done.stdout}"
    return done.stdout


def _both_acked(run: Path, command, after: int = 0):
    acks = [[a for a in acked(run, command, rank) if a["step"] > after] for rank in (0, 1)]
    return acks if all(acks) else None


@pytest.mark.slow
def test_ddp_two_processes_under_trainui_run_apply_commands_at_the_same_step(tmp_path, children):
    program = trainui_program()
    if not program.is_file():
        pytest.skip(f"{program} is not built (cargo build --release -p trainui)")
    run = tmp_path / "run"
    log = tmp_path / "trainui.log"
    process = children.start(
        [
            str(program),
            "run",
            "--no-tui",
            "--run-dir",
            str(run),
            "--",
            sys.executable,
            str(LIGHTNING_EXAMPLE),
            "--max-steps",
            "1000000",
            "--devices",
            "2",
            "--log-steps",
            "5",
            "--samples",
            "1",
            "--step-sleep",
            "0.005",
        ],
        log,
        env=ENV,
    )
    wait_for(lambda: find(events(run), type="step"), 240, "the first step event")
    started = find(events(run), type="started")[0]
    assert started["producer"]["world_size"] == 2
    assert started["producer"]["framework"] == "lightning"

    said = _ctl(program, run, "eval")
    assert said.startswith("eval: evaluating at step"), said
    evals = wait_for(lambda: _both_acked(run, "eval_now"), 60, "eval on both ranks")
    assert evals[0][0]["step"] == evals[1][0]["step"]
    step = evals[0][0]["step"]
    samples = [
        wait_for(lambda r=r: find(rank_record(run, r), type="sample"), 60, f"rank {r}'s sample")
        for r in (0, 1)
    ]
    assert samples[0][0]["step"] == samples[1][0]["step"] == step
    assert samples[0][0]["outcome"] == samples[1][0]["outcome"] == {"kind": "completed"}
    val = wait_for(lambda: find(events(run), type="val_loss"), 60, "the validation loss")[0]
    assert val["step"] == step and isinstance(val["loss"], float)

    _ctl(program, run, "save")
    saves = wait_for(lambda: _both_acked(run, "save"), 60, "save on both ranks")
    assert saves[0][0]["step"] == saves[1][0]["step"] > step
    saved = wait_for(
        lambda: [
            c for c in find(events(run), type="checkpoint") if c["step"] == saves[0][0]["step"]
        ],
        60,
        "the checkpoint",
    )[0]
    assert Path(saved["path"]).is_file()

    _ctl(program, run, "set", "train.learning_rate=0.0005", "eval.eval_timeout_seconds=3")
    sets = wait_for(lambda: _both_acked(run, "set"), 60, "set on both ranks")
    assert "train.learning_rate" in sets[0][0]["message"], sets
    assert sets[0][0]["step"] == sets[1][0]["step"]
    later = wait_for(
        lambda: [e for e in find(events(run), type="step") if e["step"] > sets[0][0]["step"]],
        60,
        "a step after the set",
    )
    assert later[0]["learning_rate"] == pytest.approx(0.0005)

    _ctl(program, run, "pause")
    pauses = wait_for(lambda: _both_acked(run, "pause"), 60, "pause on both ranks")
    paused_at = pauses[0][0]["step"]
    assert pauses[1][0]["step"] == paused_at
    time.sleep(1.5)
    for rank in (0, 1):
        held = rank_file(run, rank)
        assert held["phase"] == "paused" and held["step"] == paused_at, held
    # While paused, both ranks save and validate at that step, and stay paused.
    said = _ctl(program, run, "save")
    assert said.startswith(f"save: saving a checkpoint at step {paused_at}"), said
    said = _ctl(program, run, "eval")
    assert said.startswith(f"eval: evaluating at step {paused_at}"), said
    for rank in (0, 1):
        wait_for(
            lambda r=rank: [
                e for e in find(rank_record(run, r), type="eval_finished") if e["step"] == paused_at
            ],
            60,
            f"rank {rank}'s evaluation while paused",
        )
    assert [c["step"] for c in find(events(run), type="checkpoint")][-1] == paused_at
    time.sleep(1.0)
    for rank in (0, 1):
        held = rank_file(run, rank)
        assert held["phase"] == "paused" and held["step"] == paused_at, held
    _ctl(program, run, "resume")
    wait_for(
        lambda: [e for e in find(events(run), type="step") if e["step"] > paused_at],
        60,
        "a step after the resume",
    )

    said = _ctl(program, run, "stop")
    assert said.startswith("stop: "), said
    assert wait_exit(process, log) == 0, log.read_text()[-4000:]
    stops = _both_acked(run, "stop")
    assert stops is not None and stops[0][0]["step"] == stops[1][0]["step"]
    stopped_at = stops[0][0]["step"]
    check_run_dir(run, ranks=2)
    for rank in (0, 1):
        finished = find(rank_record(run, rank), type="finished")[-1]
        assert finished["state"] == "stopped" and finished["step"] == stopped_at
    last = find(events(run), type="checkpoint")[-1]
    assert last["step"] == stopped_at and Path(last["path"]).is_file()
    current = status(run)
    assert current["state"] == "stopped"
    assert current["settings"]["eval"]["eval_timeout_seconds"] == 3
    assert f"stopped at step {stopped_at}/1000000" in log.read_text()
