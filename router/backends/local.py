"""A Backend running a transformers causal LM in this process, on CPU or CUDA.

The model comes from a `LocalModelLoader` (router/backends/local_model.py) that the caller
creates once and keeps. A `LocalBackend` feeds one worker through a bounded asyncio queue; the
worker runs `generate` in a thread, so the event loop is never blocked and the model serves one
batch at a time. n > 1 samples are drawn in one batched call (`num_return_sequences`).

Cost of a call: with a `TokenPrice` that has `gpu_hour_usd`, that hourly price times the seconds
the model was busy on the call (the hourly price divided by the measured tokens per second, per
token); otherwise its tokens at the per-million prices. Free by default; always reported.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.llm import (
    Completion,
    GenerationParams,
    Message,
    TokenPrice,
    Usage,
    validate_messages,
)
from router.backends.local_model import (  # re-exported: callers import the local API from here
    DEFAULT_LOCAL_MODEL,
    EMBEDDED_ALIAS,
    LocalModel,
    LocalModelLoader,
    LocalModelSpec,
    ModelSource,
    embedded_gguf_path,
    load_local_model,
    pick_device,
    resolve_model_source,
)
from core.errors import BackendError, BackendTimeout, BackendUnavailable, ConfigError

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_LOCAL_MODEL",
    "EMBEDDED_ALIAS",
    "LocalBackend",
    "LocalModel",
    "LocalModelLoader",
    "LocalModelSpec",
    "ModelSource",
    "embedded_gguf_path",
    "load_local_model",
    "pick_device",
    "resolve_model_source",
]

@dataclass(slots=True)
class _Job:
    messages: Sequence[Message]
    params: GenerationParams
    result: asyncio.Future[list[Completion]]
    cancelled: threading.Event = field(default_factory=threading.Event)
    on_text: Callable[[str], None] | None = None  # streaming: called from the worker thread per decoded piece


class LocalBackend:
    """Serves one LocalModel through a bounded queue and a single worker; async-safe."""

    def __init__(self, model: LocalModel, *, price: TokenPrice | None = None, max_queue: int = 64) -> None:
        if max_queue < 1:
            raise ConfigError(f"local.max_queue: must be >= 1 (got {max_queue}).")
        self.model = model
        self.price = price or TokenPrice(source="free")
        self.max_queue = max_queue
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"LocalBackend(model={self.model.name!r}, device={self.model.device!r})"

    def _ensure_worker(self) -> asyncio.Queue[_Job]:
        loop = asyncio.get_running_loop()
        # A new event loop (e.g. a second asyncio.run) needs its own queue and worker.
        if self._queue is None or self._loop is not loop or self._worker is None or self._worker.done():
            self._loop = loop
            self._queue = asyncio.Queue(maxsize=self.max_queue)
            self._worker = loop.create_task(self._work(self._queue), name=f"local-backend-{self.model.name}")
        return self._queue

    async def _work(self, queue: asyncio.Queue[_Job]) -> None:
        job: _Job | None = None
        try:
            while True:
                job = await queue.get()
                if job.result.done():  # the caller timed out or went away while the job waited
                    continue
                running = asyncio.ensure_future(asyncio.to_thread(self._generate_sync, job))
                # wait() never raises, so one bad request cannot kill the worker; its error goes to the caller.
                await asyncio.wait({running})
                error = running.exception()  # read even when unused, or asyncio logs it as lost
                if job.result.done():
                    continue
                if error is not None:
                    job.result.set_exception(error)
                else:
                    job.result.set_result(running.result())
        finally:
            # Cancelled by aclose(): tell everyone still waiting now, not at each one's timeout.
            left = [job] if job is not None else []
            while not queue.empty():
                left.append(queue.get_nowait())
            for waiting in left:
                waiting.cancelled.set()
                if not waiting.result.done():
                    waiting.result.set_exception(
                        BackendUnavailable(f"{self.model.name} was shut down; retry the request.")
                    )

    async def generate(self, messages: Sequence[Message], params: GenerationParams) -> list[Completion]:
        """Queue the request, wait for the worker, and return n completions."""
        validate_messages(messages)
        queue = self._ensure_worker()
        job = _Job(messages, params, asyncio.get_running_loop().create_future())
        try:
            queue.put_nowait(job)
        except asyncio.QueueFull:
            raise BackendUnavailable(
                f"{self.model.name} has {self.max_queue} requests waiting; retry later or raise max_queue."
            ) from None
        started = time.perf_counter()
        try:
            async with asyncio.timeout(params.timeout_s):
                completions = await job.result
        except TimeoutError:
            raise BackendTimeout(
                f"{self.model.name} did not answer within {params.timeout_s:g} s (queue wait included); "
                "raise the tier's timeout, lower max_tokens, or add capacity."
            ) from None
        finally:
            job.cancelled.set()  # stops a generation nobody waits for at its next token
        latency = time.perf_counter() - started
        return [
            Completion(c.text, c.finish_reason, c.usage, c.cost_usd, latency, c.mean_logprob, c.model)
            for c in completions
        ]

    async def stream(self, messages: Sequence[Message], params: GenerationParams) -> AsyncIterator[str | Completion]:
        """Yield text pieces as the model decodes them, then the Completion with usage and cost (n = 1 only)."""
        validate_messages(messages)
        if params.n != 1:
            raise ConfigError("local.stream: only n = 1 can be streamed.")
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str] = asyncio.Queue()

        def on_text(text: str) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, text)

        # Stop strings are cut from the final text only, so a streamed piece could leak one: send it whole then.
        job = _Job(messages, params, loop.create_future(), on_text=None if params.stop else on_text)
        try:
            self._ensure_worker().put_nowait(job)
        except asyncio.QueueFull:
            raise BackendUnavailable(
                f"{self.model.name} has {self.max_queue} requests waiting; retry later or raise max_queue."
            ) from None
        started = time.perf_counter()
        streamed = False
        try:
            async with asyncio.timeout(params.timeout_s):
                while not (job.result.done() and pieces.empty()):
                    getter = asyncio.ensure_future(pieces.get())
                    waiting: set[asyncio.Future[Any]] = {getter, job.result}
                    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                    if getter.done():
                        streamed = True
                        yield getter.result()
                    else:
                        getter.cancel()
                (completion,) = await job.result
        except TimeoutError:
            raise BackendTimeout(
                f"{self.model.name} did not finish within {params.timeout_s:g} s (queue wait included); "
                "raise the tier's timeout or lower max_tokens."
            ) from None
        finally:
            job.cancelled.set()  # a client that went away stops the generation at its next token
        if not streamed and completion.text:
            yield completion.text
        yield Completion(
            completion.text, completion.finish_reason, completion.usage, completion.cost_usd,
            time.perf_counter() - started, completion.mean_logprob, completion.model,
        )

    async def aclose(self) -> None:
        """Stop the worker; queued requests are abandoned."""
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            await asyncio.wait({self._worker})
        self._worker = None
        self._queue = None

    def _prompt_ids(self, messages: Sequence[Message]) -> torch.Tensor:
        tokenizer = self.model.tokenizer
        if tokenizer.chat_template:
            encoded = tokenizer.apply_chat_template(
                [dict(m) for m in messages], add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            ids: torch.Tensor = encoded["input_ids"]
        else:
            # A base model without a chat template: plain text is the honest fallback.
            text = "\n".join(message["content"] for message in messages) + "\n"
            ids = tokenizer(text, return_tensors="pt")["input_ids"]
        return ids.to(self.model.device)

    def _generate_sync(self, job: _Job) -> list[Completion]:
        """Run in the worker thread: one batched generate call for all n samples."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _StopWhenCancelled(StoppingCriteria):
            def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
                return torch.full((input_ids.shape[0],), job.cancelled.is_set(), dtype=torch.bool, device=input_ids.device)

        params = job.params
        tokenizer, model = self.model.tokenizer, self.model.model
        prompt = self._prompt_ids(job.messages)
        sample = params.temperature > 0 and params.top_p > 0  # top_p 0 keeps only the likeliest token: greedy
        # Greedy decoding gives n identical answers: compute one and copy it at no extra cost.
        draws = params.n if sample else 1
        options: dict[str, Any] = {
            "max_new_tokens": params.max_tokens,
            "num_return_sequences": draws,
            "do_sample": sample,
            "pad_token_id": tokenizer.pad_token_id,
            "return_dict_in_generate": True,
            "output_logits": params.logprobs,
            "stopping_criteria": StoppingCriteriaList([_StopWhenCancelled()]),
        }
        if sample:
            options.update(temperature=params.temperature, top_p=params.top_p, top_k=None)
        if params.stop:
            options.update(stop_strings=list(params.stop), tokenizer=tokenizer)
        if job.on_text is not None:
            options["streamer"] = _piece_streamer(tokenizer, job.on_text)
        busy_started = time.perf_counter()
        try:
            with self.model.lock, torch.inference_mode():
                output = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), **options)
        except (RuntimeError, ValueError) as error:
            raise BackendError(f"{self.model.name} failed to generate: {error}") from error
        busy_s = time.perf_counter() - busy_started
        if job.cancelled.is_set():
            raise BackendTimeout(f"{self.model.name} generation was cancelled before it finished.")
        new_tokens = output.sequences[:, prompt.shape[1] :]
        logprobs = _token_logprobs(output.logits, new_tokens) if params.logprobs else None
        eos_ids = _eos_ids(tokenizer, model)
        drawn: list[tuple[str, str, int, float | None]] = []
        for row in range(new_tokens.shape[0]):
            tokens = new_tokens[row].tolist()
            length, hit_eos = _length_until_eos(tokens, eos_ids)
            text = tokenizer.decode(tokens[:length], skip_special_tokens=True)
            text, hit_stop = _cut_at_stop(text, params.stop)
            counted = min(len(tokens), length + (1 if hit_eos else 0))
            mean = float(logprobs[row, :counted].mean()) if logprobs is not None and counted else None
            drawn.append((text, "stop" if hit_eos or hit_stop else "length", counted, mean))
        drawn += [(text, finish, 0, mean) for text, finish, _, mean in drawn[:1] * (params.n - draws)]
        input_tokens = int(prompt.shape[1])
        completions = []
        for index, (text, finish, output_tokens, mean) in enumerate(drawn):
            usage = Usage(input_tokens if index == 0 else 0, output_tokens)
            share_s = busy_s if index == 0 else 0.0
            completions.append(
                Completion(
                    text=text,
                    finish_reason=finish,
                    usage=usage,
                    cost_usd=self.price.cost(usage.input_tokens, usage.output_tokens, busy_s=share_s),
                    latency_s=busy_s,
                    mean_logprob=mean,
                    model=self.model.name,
                )
            )
        return completions


def _piece_streamer(tokenizer: Any, on_text: Callable[[str], None]) -> Any:
    """A transformers TextStreamer that hands each finished piece of text to `on_text` (word-safe decoding)."""
    from transformers import TextStreamer

    class PieceStreamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                on_text(text)

    return PieceStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


def _eos_ids(tokenizer: Any, model: Any) -> set[int]:
    """Token ids that end a sequence: EOS ids and the pad id that fills rows that ended early."""
    ids: set[int] = set()
    for value in (tokenizer.eos_token_id, tokenizer.pad_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list):
            ids.update(v for v in value if isinstance(v, int))
    return ids


def _length_until_eos(tokens: list[int], eos_ids: set[int]) -> tuple[int, bool]:
    for index, token in enumerate(tokens):
        if token in eos_ids:
            return index, True
    return len(tokens), False


def _cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    cuts = [text.index(s) for s in stop if s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


def _token_logprobs(logits: Sequence[torch.Tensor], new_tokens: torch.Tensor) -> torch.Tensor:
    """Log-probability of each generated token under the model's unmodified distribution."""
    import torch

    steps = torch.stack(list(logits), dim=1).float()  # (rows, steps, vocab)
    chosen = new_tokens[:, : steps.shape[1]].unsqueeze(-1)
    return torch.log_softmax(steps, dim=-1).gather(-1, chosen).squeeze(-1)
