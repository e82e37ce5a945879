"""Generation that cannot outlive its deadline, and the seed-style sample evaluation.

`generate()` wraps a Hugging Face ``model.generate()`` with a stopping criterion
that checks the deadline and the operator's abort flag between every two
decoding steps, so a model that never emits end-of-text, or an example that
makes generation crawl, costs at most ``timeout`` plus one forward pass. It
works on any thread (no SIGALRM) and keeps the partial text in every outcome.

`evaluate_samples()` is the sample half of a trainui evaluation for a
Hugging Face model: the next ``eval.samples`` examples, each generated under
``eval.eval_timeout_seconds`` and reported to the run as ``sample`` events.

Failures: on its own (``synced`` false) a rank's failure inside
``generate()`` becomes the outcome ``error`` and the evaluation goes on. When
the ranks generate in step (``synced_gpus``: ZeRO-3, FSDP) the failure is
raised instead: the other ranks are then inside a collective of the same
forward pass (FSDP's gathers, the stop agreement's all_reduce) that the
failed rank will never join, so carrying on would leave them waiting or
pair the wrong collectives. Raising ends the process, torchrun ends the
others, and the run records ``failed`` with the reason.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from .protocol import MAX_SECONDS, rust_display
from .run import PROGRESS_INTERVAL

__all__ = [
    "Generation",
    "DeadlineCriteria",
    "generate",
    "evaluate_samples",
    "example_loss",
]

COMPLETED = "completed"
TIMED_OUT = "timed_out"
ABORTED = "aborted"
ERROR = "error"

# Stop reasons as numbers, so that ranks agree on one with all_reduce(MAX):
# an abort wins over a timeout, a timeout over carrying on.
_GO_ON, _TIMED_OUT, _ABORTED = 0, 1, 2
_REASONS = {_TIMED_OUT: TIMED_OUT, _ABORTED: ABORTED}


@dataclass
class Generation:
    """What one generation produced and how it ended.

    ``outcome`` is ``completed`` (end-of-text or ``max_new_tokens``),
    ``timed_out``, ``aborted`` or ``error`` (``message`` says why). ``text``
    and ``tokens`` are the new text and the number of new tokens, partial
    ones included, for the first sequence of the batch.
    """

    outcome: str
    text: str
    tokens: int
    elapsed_secs: float
    message: str | None = None
    token_ids: list[int] = field(default_factory=list)
    sequences: torch.Tensor | None = None

    @property
    def run_outcome(self) -> str | tuple[str, str]:
        """The outcome as `Run.sample` takes it: a name, or ``("error", message)``."""
        if self.outcome == ERROR:
            return (ERROR, self.message or "generation failed")
        return self.outcome


def _is_set(abort: Any) -> bool:
    if abort is None:
        return False
    if callable(getattr(abort, "is_set", None)):
        return bool(abort.is_set())
    if callable(abort):
        return bool(abort())
    return bool(abort)


def _wait_for_device(tensor: torch.Tensor) -> None:
    """Blocks until the device has computed `tensor`, so the clock read after it is honest."""
    if tensor.device.type == "cuda":
        torch.cuda.synchronize(tensor.device)
    elif tensor.device.type not in ("cpu", "meta"):
        tensor.flatten()[:1].cpu()


def _dist_ready() -> bool:
    return (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    )


_HOOK_NEVER_RAN = (
    "trainui.generate: synced generation, but the forward hook on the model never ran "
    "(generate() runs the forward of another module: a wrapper such as FSDP1's or PEFT's "
    "hands generate() to the model inside it). Each rank now stops at its own deadline or "
    "abort, not at a step agreed with the others; pass the module whose forward generate() "
    "runs to agree on the step."
)


class DeadlineCriteria(StoppingCriteria):
    """Stops every row when the deadline has passed or the abort flag is set.

    Transformers calls stopping criteria once after every decoding step (after
    the new token is appended, before the next forward pass) and ORs the
    result into its ``unfinished_sequences``; it does this whatever
    ``min_new_tokens`` says (that one only masks end-of-text in the logits), so
    a ``True`` here ends the loop after the current step.

    With ``synced=True`` the decision is agreed by all ranks of the default
    process group: a forward hook (`agree`, which runs on every rank for every
    forward, including ranks whose sequences are already done and that no
    longer call stopping criteria) does one ``all_reduce(MAX)`` of "I must
    stop" per forward pass, so one rank's timeout or abort stops every rank
    after the same step and none is left waiting in a collective.

    The hook must sit on the module whose forward ``generate()`` runs. When it
    has not run by the first decoding step (a wrapper that hands
    ``generate()`` to an inner module: FSDP1's wrapper, PEFT models), the
    criterion falls back to each rank's own verdict, with a warning: the
    deadline and the abort flag still end every rank's generation (a rank
    that stops early keeps stepping in ``synced_gpus``'s loop until the
    others stop at their own deadlines), though the ranks may then stop
    after different steps. Agreeing in the criterion instead is not possible:
    a rank whose sequences are done no longer calls it, so an all_reduce
    there would meet a different collective on that rank. Every rank makes
    its first call after the same forward pass and sees the same hook count
    (the modules are the same everywhere), so all fall back together.

    ``heartbeat()`` is called after every decoding step and, when synced,
    after every forward pass (so a rank whose sequences are done still
    beats while it keeps stepping for the others).
    """

    def __init__(
        self,
        deadline: float,
        abort: Any = None,
        *,
        synced: bool = False,
        on_step: Callable[[torch.Tensor], None] | None = None,
        heartbeat: Callable[[], None] | None = None,
    ) -> None:
        self.deadline = deadline
        self.abort = abort
        self.synced = synced
        self.on_step = on_step
        self.heartbeat = heartbeat
        self.reason: str | None = None
        self.last_ids: torch.Tensor | None = None
        #: Forward passes the synced agreement has seen (`agree` calls).
        self.agreements = 0
        self._agreed = _GO_ON
        self._flag: torch.Tensor | None = None

    def _beat(self) -> None:
        if self.heartbeat is None:
            return
        try:
            self.heartbeat()
        except Exception:  # noqa: BLE001 - a reporting failure must not end the generation
            pass

    def local_reason(self) -> int:
        """This process's own verdict, read now."""
        if _is_set(self.abort):
            return _ABORTED
        if time.monotonic() >= self.deadline:
            return _TIMED_OUT
        return _GO_ON

    def agree(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        """Forward hook for synced generation: all ranks agree whether to stop."""
        logits = getattr(output, "logits", None)
        if logits is None and isinstance(output, (tuple, list)) and output:
            logits = output[0]
        if isinstance(logits, torch.Tensor):
            _wait_for_device(logits)
        device = torch.device("cpu")
        if torch.distributed.get_backend() != "gloo" and isinstance(logits, torch.Tensor):
            device = logits.device
        if self._flag is None or self._flag.device != device:
            self._flag = torch.zeros(1, dtype=torch.int32, device=device)
        self._flag.fill_(self.local_reason())
        torch.distributed.all_reduce(self._flag, op=torch.distributed.ReduceOp.MAX)
        self._agreed = int(self._flag.item())
        self.agreements += 1
        self._beat()

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        self.last_ids = input_ids
        # Reading the new token waits for the device: the deadline below is
        # then measured after the token exists, not when its work was queued.
        _wait_for_device(input_ids)
        if self.synced and self.agreements == 0:
            self.synced = False
            warnings.warn(_HOOK_NEVER_RAN, RuntimeWarning, stacklevel=2)
        self._beat()
        if self.on_step is not None:
            self.on_step(input_ids)
        verdict = self._agreed if self.synced else self.local_reason()
        if verdict != _GO_ON and self.reason is None:
            self.reason = _REASONS[verdict]
        stop = self.reason is not None
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


def _eos_ids(model: Any, tokenizer: Any, generate_kwargs: Mapping[str, Any]) -> set[int]:
    eos = generate_kwargs.get("eos_token_id")
    if eos is None:
        config = getattr(model, "generation_config", None)
        eos = getattr(config, "eos_token_id", None)
    if eos is None and tokenizer is not None:
        eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        return set()
    if isinstance(eos, torch.Tensor):
        eos = eos.tolist()
    return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}


def _new_tokens(ids: torch.Tensor | None, prompt_len: int, eos: set[int]) -> list[int]:
    """The new tokens of the first row, up to (not including) the first end-of-text."""
    if ids is None or ids.shape[-1] <= prompt_len:
        return []
    new = ids[0, prompt_len:].tolist()
    for i, token in enumerate(new):
        if token in eos:
            return new[:i]
    return new


def _decode(tokenizer: Any, token_ids: list[int]) -> str:
    if tokenizer is None or not token_ids:
        return ""
    return tokenizer.decode(token_ids, skip_special_tokens=True)


def _resolve_synced(model: Any, synced: bool | None, generate_kwargs: Mapping[str, Any]) -> bool:
    if synced is not None:
        return bool(synced) and _dist_ready()
    if not _dist_ready():
        return False
    synced_gpus = generate_kwargs.get("synced_gpus")
    if synced_gpus is not None:
        return bool(synced_gpus)
    # Transformers' own default: synced when ZeRO-3 or FSDP holds the model.
    try:
        from transformers.integrations import is_deepspeed_zero3_enabled
        from transformers.integrations.fsdp import is_fsdp_managed_module
    except ImportError:  # pragma: no cover - older or slimmer transformers
        return False
    return bool(is_deepspeed_zero3_enabled() or is_fsdp_managed_module(model))


def _seconds(name: str, value: Any) -> float:
    """A deadline in seconds as the CLI's `--timeout` takes one: a number
    above 0 and at most a year (a NaN would never be reached, so no
    deadline at all); ValueError otherwise."""
    try:
        secs = None if isinstance(value, (bool, str, bytes)) else float(value)
    except (TypeError, ValueError, RuntimeError):
        secs = None
    if secs is None or not (math.isfinite(secs) and 0.0 < secs <= MAX_SECONDS):
        raise ValueError(
            f"{name} must be a number of seconds greater than 0 and at most "
            f"{rust_display(MAX_SECONDS)} (one year) (got {value!r})"
        )
    return secs


def _temperature(value: Any) -> float:
    """A sampling temperature as `eval.temperature` takes one: a finite
    number of 0 or more; ValueError otherwise."""
    try:
        number = None if isinstance(value, (bool, str, bytes)) else float(value)
    except (TypeError, ValueError, RuntimeError):
        number = None
    if number is None or not (math.isfinite(number) and number >= 0.0):
        raise ValueError(f"temperature must be a finite number of 0 or more (got {value!r})")
    return number


def generate(
    model: Any,
    input_ids: torch.Tensor | None = None,
    *,
    tokenizer: Any = None,
    prompt: str | None = None,
    timeout: float,
    abort: Any = None,
    synced: bool | None = None,
    min_new_tokens: int = 0,
    progress: Callable[[str, int, float], None] | None = None,
    progress_interval: float = PROGRESS_INTERVAL,
    heartbeat: Callable[[], None] | None = None,
    **generate_kwargs: Any,
) -> Generation:
    """Runs ``model.generate()`` under a deadline of ``timeout`` seconds and an abort flag.

    Give ``input_ids`` (a ``[batch, len]`` tensor) or ``prompt`` and
    ``tokenizer``. ``abort`` is a ``threading.Event`` (or anything with
    ``is_set()``, or a callable returning a bool), checked before every
    decoding step like the deadline. ``synced`` makes all ranks agree on the
    stop (see `DeadlineCriteria`); ``None`` means: when torch.distributed is
    initialized and the generation runs with ``synced_gpus`` (given, or chosen
    by transformers for ZeRO-3 and FSDP). ``progress(text, tokens,
    elapsed_secs)`` is called at most every ``progress_interval`` seconds
    while tokens come; ``heartbeat()`` after every decoding step (and every
    forward pass when synced). Every other keyword goes to
    ``model.generate()``.

    A failure inside ``generate()`` becomes the outcome ``error`` with the
    exception as ``message``, and the tokens made until then are kept;
    except when synced, where it is raised (see the module doc: the other
    ranks wait in a collective this rank will not join).

    A ``timeout`` that is not a number of seconds above 0 and at most a year
    (NaN included: it would never be reached) and a ``temperature`` that is
    not a finite number of 0 or more are refused with a ValueError, as the
    CLI refuses them.
    """
    timeout = _seconds("timeout", timeout)
    if "temperature" in generate_kwargs and generate_kwargs["temperature"] is not None:
        generate_kwargs["temperature"] = _temperature(generate_kwargs["temperature"])
    started = time.monotonic()
    deadline = started + timeout
    if input_ids is None:
        if prompt is None or tokenizer is None:
            raise ValueError("generate() needs input_ids, or a prompt and its tokenizer")
        encoded = tokenizer(prompt, return_tensors="pt")
        input_ids = encoded["input_ids"]
        generate_kwargs.setdefault("attention_mask", encoded.get("attention_mask"))
    device = getattr(model, "device", None)
    if device is not None and input_ids.device != device:
        input_ids = input_ids.to(device)
        if isinstance(generate_kwargs.get("attention_mask"), torch.Tensor):
            generate_kwargs["attention_mask"] = generate_kwargs["attention_mask"].to(device)
    if generate_kwargs.get("attention_mask") is None:
        generate_kwargs["attention_mask"] = torch.ones_like(input_ids)
    if min_new_tokens:
        generate_kwargs["min_new_tokens"] = int(min_new_tokens)
    synced = _resolve_synced(model, synced, generate_kwargs)
    if synced:
        generate_kwargs["synced_gpus"] = True
    prompt_len = input_ids.shape[-1]
    eos = _eos_ids(model, tokenizer, generate_kwargs)

    last_report = [started]

    def on_step(ids: torch.Tensor) -> None:
        now = time.monotonic()
        if progress is None or now - last_report[0] < progress_interval:
            return
        last_report[0] = now
        new = _new_tokens(ids, prompt_len, eos)
        try:
            progress(_decode(tokenizer, new), len(new), now - started)
        except Exception:  # noqa: BLE001 - a reporting failure must not end the generation
            pass

    criteria = DeadlineCriteria(
        deadline, abort, synced=synced, on_step=on_step, heartbeat=heartbeat
    )

    def finish(outcome: str, ids: torch.Tensor | None, message: str | None = None) -> Generation:
        new = _new_tokens(ids, prompt_len, eos)
        return Generation(
            outcome=outcome,
            text=_decode(tokenizer, new),
            tokens=len(new),
            elapsed_secs=time.monotonic() - started,
            message=message,
            token_ids=new,
            sequences=ids,
        )

    # Checked once before the prefill too; under `synced` every rank must
    # enter generate() (the others would wait for it), so only the criterion
    # decides there.
    if not synced:
        verdict = criteria.local_reason()
        if verdict != _GO_ON:
            return finish(_REASONS[verdict], input_ids)

    user_criteria = generate_kwargs.pop("stopping_criteria", None)
    stopping = StoppingCriteriaList(list(user_criteria or []))
    stopping.append(criteria)
    hook = model.register_forward_hook(criteria.agree) if synced else None
    try:
        output = model.generate(input_ids, stopping_criteria=stopping, **generate_kwargs)
    except Exception as error:  # one bad example is an outcome, not a dead run
        if synced:
            raise
        message = f"{type(error).__name__}: {error}".strip()
        return finish(ERROR, criteria.last_ids, message)
    finally:
        if hook is not None:
            hook.remove()
    sequences = getattr(output, "sequences", output)
    return finish(criteria.reason or COMPLETED, sequences)


# --------------------------------------------------------------------------
# Sample evaluation


def _eval_ids(tokenizer: Any, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """Token ids of prompt and of completion (+ end-of-text when the tokenizer has one)."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    eos = getattr(tokenizer, "eos_token_id", None)
    target = list(completion_ids) + ([eos] if eos is not None else [])
    return list(prompt_ids), target


def example_loss(
    model: Any, tokenizer: Any, prompt: str, completion: str, *, synced: bool = False
) -> float | None:
    """The model's mean loss on ``completion`` (and end-of-text) after ``prompt``.

    Prompt positions are masked with -100, as in training. None when the model
    cannot compute it (a failure here must not end the evaluation), unless
    ``synced`` (the ranks run this forward together, as under ZeRO-3 or FSDP):
    then the failure is raised, as in `generate`.
    """
    prompt_ids, target = _eval_ids(tokenizer, prompt, completion)
    if not target:
        return None
    device = getattr(model, "device", torch.device("cpu"))
    ids = torch.tensor([prompt_ids + target], device=device)
    labels = torch.tensor([[-100] * len(prompt_ids) + target], device=device)
    try:
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)
        return float(out.loss)
    except Exception:  # no loss for this example; the evaluation goes on
        if synced:
            raise
        return None


# Where the next evaluation of a run starts in its example list, so that
# successive evaluations see different examples (like the Rust trainer).
_cursors: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_cursor_lock = threading.Lock()


def _next_examples(run: Any, count: int, total: int) -> list[int]:
    with _cursor_lock:
        try:
            start = _cursors.get(run, 0)
        except TypeError:  # not weak-referenceable
            start = getattr(run, "_trainui_eval_cursor", 0)
        indices = [(start + i) % total for i in range(min(count, total))]
        nxt = (start + len(indices)) % total if total else 0
        try:
            _cursors[run] = nxt
        except TypeError:
            run._trainui_eval_cursor = nxt
    return indices


def _any_rank(flag: bool, model: Any) -> bool:
    """Whether `flag` is true on any rank (one all_reduce; every rank must call it)."""
    device = torch.device("cpu")
    if torch.distributed.get_backend() != "gloo":  # NCCL and the like reduce device tensors
        device = getattr(model, "device", None)
        if not isinstance(device, torch.device):  # a wrapper without `.device`
            device = torch.device("cuda", torch.cuda.current_device())
    value = torch.tensor([int(flag)], dtype=torch.int32, device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


def _stop_reached(run: Any) -> bool:
    """Whether a stop has reached this rank, agreed at a boundary or not yet.

    A pending stop keeps `Run.abort` reading as raised even after
    ``clear()``, which only drops a spent abort of the previous sample (as
    `Run.generation_started` does).
    """
    if run.stop_requested:
        return True
    run.abort.clear()
    return run.abort.is_set()


def evaluate_samples(
    run: Any,
    model: Any,
    tokenizer: Any,
    examples: Sequence[Mapping[str, Any]],
    step: int,
    *,
    val_loss: float | None = None,
    train_loss: float | None = None,
    val_batches: int | None = None,
    generate_kwargs: Mapping[str, Any] | None = None,
) -> list[Generation]:
    """One seed-style evaluation: generate the next ``eval.samples`` examples and report them.

    ``examples`` are dicts ``{"prompt", "completion", "origin" (optional)}``.
    Each generation runs under ``eval.eval_timeout_seconds``, greedy at
    ``eval.temperature`` 0 and sampled otherwise, up to ``eval.max_new_tokens``
    new tokens (at least ``eval.min_new_tokens``); the settings in force when
    the evaluation starts hold for all of its samples. The model's loss on each
    golden completion is reported with it. ``generate_kwargs`` go to
    ``model.generate()`` and win over the settings. With ``val_batches``, the
    validation loss ``val_loss`` (scored on that many batches) is reported
    right after ``eval_started``, as the Rust trainer orders them.

    A stop ends the evaluation between samples, as in the Rust trainer: the
    generation running when it arrives ends as ``aborted`` and no later
    sample starts (``eval_finished`` counts the samples done). When the ranks
    generate in step (synced), they agree on this with one all_reduce before
    each sample, so all of them end the evaluation at the same sample.

    The caller runs this on every rank (each rank generates the same
    examples, so the ranks stay in step); the run reports rank 0's samples and
    each rank records its own. The model is left in the train/eval mode it
    was found in.
    """
    settings = run.settings["eval"]
    samples = int(settings["samples"])
    timeout = float(settings["eval_timeout_seconds"])
    max_new = int(settings["max_new_tokens"])
    min_new = int(settings["min_new_tokens"])
    temperature = float(settings["temperature"])
    indices = _next_examples(run, samples, len(examples)) if examples else []
    eos = getattr(tokenizer, "eos_token_id", None)
    kwargs: dict[str, Any] = {"max_new_tokens": max_new}
    if temperature > 0:
        kwargs.update(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
    else:
        kwargs.update(do_sample=False)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    if pad is not None:
        kwargs["pad_token_id"] = pad
    if eos is not None:
        kwargs["eos_token_id"] = eos
    kwargs.update(generate_kwargs or {})
    synced = _resolve_synced(model, None, kwargs)

    def heartbeat() -> None:
        run.beat("generating", step)

    run.eval_started(step, len(indices))
    if val_batches is not None:
        run.val_loss(step, val_loss, val_batches)
    results: list[Generation] = []
    was_training = model.training
    model.eval()
    try:
        for n, index in enumerate(indices, start=1):
            stop = _stop_reached(run)
            if synced:
                stop = _any_rank(stop, model)
            if stop:
                break
            example = examples[index]
            prompt = str(example["prompt"])
            golden = str(example["completion"])
            origin = str(example.get("origin") or f"examples[{index}]")
            _, golden_ids = _eval_ids(tokenizer, prompt, golden)
            golden_tokens = len(golden_ids) - (1 if eos is not None and golden_ids else 0)
            common = dict(
                step=step,
                sample=n,
                of=len(indices),
                example=index,
                origin=origin,
                prompt=prompt,
                golden=golden,
                golden_tokens=golden_tokens,
            )
            run.generation_started(**common, timeout_secs=timeout)

            def progress(text: str, tokens: int, elapsed: float, _n: int = n) -> None:
                run.generation_progress(
                    step=step, sample=_n, text=text, tokens=tokens, elapsed_secs=elapsed
                )

            result = generate(
                model,
                tokenizer=tokenizer,
                prompt=prompt,
                timeout=timeout,
                abort=run.abort,
                synced=synced,
                min_new_tokens=min_new,
                progress=progress,
                heartbeat=heartbeat,
                **kwargs,
            )
            results.append(result)
            loss = example_loss(model, tokenizer, prompt, golden, synced=synced)
            heartbeat()
            run.sample(
                **common,
                output=result.text,
                output_tokens=result.tokens,
                outcome=result.run_outcome,
                loss=loss,
                elapsed_secs=result.elapsed_secs,
                timeout_secs=timeout,
            )
    finally:
        model.train(was_training)
    run.eval_finished(step, val_loss=val_loss, train_loss=train_loss)
    return results
