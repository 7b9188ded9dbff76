"""Answering backends behind one interface: an in-process transformers model, an OpenAI-compatible endpoint, a context-transform wrapper.

    OMP_NUM_THREADS=1 PYTHONPATH=src python -m pytest tests/eval/test_backends.py -q

A backend has `name`, `max_positions` (None = no limit) and `generate(prompts, max_new_tokens) -> list[str]`, where a
prompt is a niah Sample (anything with `.messages()` and `.answer_prefix`), a list of chat messages, a `Chat`, or a str.
The returned strings are the model's continuation after the answer prefix.
"""
from __future__ import annotations

import copy
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from ..errors import UserError

log = logging.getLogger(__name__)


@dataclass
class Chat:
    """A normalised prompt: chat messages plus the text the assistant turn starts with."""

    messages: list[dict]
    answer_prefix: str = ""


def as_chat(item: Any) -> Chat:
    """Normalise a Sample / message list / Chat / str into a Chat."""
    if isinstance(item, Chat):
        return item
    if callable(getattr(item, "messages", None)):
        return Chat(list(item.messages()), getattr(item, "answer_prefix", "") or "")
    if isinstance(item, str):
        return Chat([{"role": "user", "content": item}])
    if isinstance(item, (list, tuple)) and all(isinstance(m, dict) for m in item):
        return Chat(list(item))
    raise TypeError(f"cannot turn {type(item).__name__} into a chat prompt")


@runtime_checkable
class Backend(Protocol):
    name: str
    max_positions: int | None

    def generate(self, prompts: Sequence[Any], max_new_tokens: int = 64) -> list[str]: ...


def answer(backend: Backend, sample: Any, max_new_tokens: int = 64) -> str:
    """One prompt in, one answer out."""
    return backend.generate([sample], max_new_tokens)[0]


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class HFBackend:
    """A transformers causal LM in this process: greedy decoding, optional peft adapter, prefix-KV reuse."""

    def __init__(self, model: str = "default", adapter: str | None = None, dtype: str = "bfloat16", batch_size: int = 1,
                 reuse_min_tokens: int = 64, *, model_obj=None, tokenizer=None):
        import torch

        from ..models import load_model, load_tokenizer, resolve_dtype

        if dtype not in ("bfloat16", "float32", "autocast", "auto"):
            raise UserError(f"unknown dtype '{dtype}': use auto, bfloat16, float32 or autocast")
        dtype = resolve_dtype(dtype)
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model)
        if model_obj is None:
            model_obj = load_model(model, dtype="float32" if dtype == "autocast" else dtype)
            if adapter:
                model_obj = load_adapter(model_obj, adapter, model)
        self.model = model_obj.eval()
        self.dtype, self.batch_size, self.reuse_min_tokens = dtype, max(1, int(batch_size)), reuse_min_tokens
        self.name = f"hf:{Path(str(model)).name}" + (f"+{Path(adapter).name}" if adapter else "")
        self.max_positions = max_positions(self.model.config)
        tok = self.tokenizer
        stops = {tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tok.get_vocab() else None}
        self.eos_ids = sorted(i for i in stops if i is not None)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else self.eos_ids[0]
        self._torch = torch

    # -- prompt encoding ---------------------------------------------------------------------------------------------
    def encode(self, prompt: Any) -> list[int]:
        """Chat template with the generation prompt, then the answer prefix the model continues."""
        chat = as_chat(prompt)
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(chat.messages, add_generation_prompt=True, tokenize=False)
            text = text if isinstance(text, str) else text[0]
        else:  # a base model without a template: plain paragraphs
            text = "\n\n".join(m["content"] for m in chat.messages) + "\n\n"
        return self.tokenizer(text + chat.answer_prefix, add_special_tokens=False)["input_ids"]

    def _autocast(self):
        import contextlib

        torch = self._torch
        return torch.autocast("cpu", dtype=torch.bfloat16) if self.dtype == "autocast" else contextlib.nullcontext()

    # -- generation --------------------------------------------------------------------------------------------------
    def _run(self, batch: list[list[int]], max_new_tokens: int, cache=None) -> list[str]:
        """Greedy decoding of one left-padded batch (cache: a prefilled prefix shared by a batch of one)."""
        from transformers import GenerationConfig

        torch = self._torch
        width = max(len(ids) for ids in batch)
        input_ids = torch.tensor([[self.pad_id] * (width - len(ids)) + ids for ids in batch])
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch])
        gen = GenerationConfig(do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=self.eos_ids, pad_token_id=self.pad_id)
        kwargs = {"cache": cache} if cache is not None else {}
        with torch.inference_mode(), self._autocast():
            out = self.model.generate(input_ids=input_ids, attention_mask=mask, generation_config=gen, **kwargs)
        return [self.tokenizer.decode(row[width:], skip_special_tokens=True) for row in out]

    def prefill(self, ids: list[int]):
        """Run the shared prefix once and return its KV cache."""
        from transformers import DynamicCache

        torch = self._torch
        cache = DynamicCache(config=self.model.config)
        with torch.inference_mode(), self._autocast():
            self.model(input_ids=torch.tensor([ids]), cache=cache, use_cache=True, logits_to_keep=1)
        return cache

    def _answer_group(self, encoded: list[list[int]], max_new_tokens: int) -> list[str]:
        """Prompts sharing a long prefix: prefill it once, then decode each from a copy of its cache."""
        shared = min(min(_common_prefix(encoded[0], ids) for ids in encoded), min(len(ids) for ids in encoded) - 1)
        if shared < 1:
            return [self._run([ids], max_new_tokens)[0] for ids in encoded]
        cache = self.prefill(encoded[0][:shared])
        # A copy per question: generate() appends to the cache it is given.
        return [self._run([ids], max_new_tokens, cache=copy.deepcopy(cache))[0] for ids in encoded]

    def generate(self, prompts: Sequence[Any], max_new_tokens: int = 64, reuse: bool = True) -> list[str]:
        encoded = [self.encode(p) for p in prompts]
        outputs: list[str | None] = [None] * len(encoded)
        groups: list[list[int]] = []  # indices of prompts sharing a prefix with the group's first prompt
        for i, ids in enumerate(encoded):
            for g in groups:
                if reuse and _common_prefix(encoded[g[0]], ids) >= self.reuse_min_tokens:
                    g.append(i)
                    break
            else:
                groups.append([i])
        singles = [g[0] for g in groups if len(g) == 1]
        for g in groups:
            if len(g) > 1:
                for i, text in zip(g, self._answer_group([encoded[i] for i in g], max_new_tokens)):
                    outputs[i] = text
        for start in range(0, len(singles), self.batch_size):
            chunk = singles[start:start + self.batch_size]
            for i, text in zip(chunk, self._run([encoded[i] for i in chunk], max_new_tokens)):
                outputs[i] = text
        return [o or "" for o in outputs]

    def answer_many(self, context_messages: list[dict], questions: Sequence[str], answer_prefixes: Sequence[str] | None = None,
                    max_new_tokens: int = 64, sep: str = "\n\n") -> list[str]:
        """Several questions over one context: the last message's content gets `sep + question`; the prefix is prefilled once."""
        prefixes = list(answer_prefixes) if answer_prefixes is not None else [""] * len(questions)
        chats = []
        for q, ap in zip(questions, prefixes):
            msgs = [dict(m) for m in context_messages]
            msgs[-1]["content"] = msgs[-1]["content"] + sep + q
            chats.append(Chat(msgs, ap))
        if len(chats) < 2:
            return self.generate(chats, max_new_tokens, reuse=False)
        return self._answer_group([self.encode(c) for c in chats], max_new_tokens)


def max_positions(config) -> int | None:
    """Positions the model was trained or scaled for (transformers keeps max_position_embeddings scaled)."""
    value = getattr(config, "max_position_embeddings", None)
    return int(value) if value else None


def _canonical(name: str | None) -> str | None:
    """Compare base models by alias or folder name: an adapter trained on another machine records another path."""
    from ..models import is_default

    if name is None:
        return None
    return "default" if is_default(name) or is_default(Path(str(name)).name) else Path(str(name).rstrip("/")).name


def load_adapter(model, adapter: str, base_name: str | None = None):
    """Put an adapter folder on `model`: LoRA+ from `longrecall train` (with its position scaling, merged for speed)
    or a LIFT gated memory from `longrecall lift ingest`. Loading is the trainers' own code; this adds the checks."""
    folder = Path(adapter)
    config_file = folder / "adapter_config.json"
    if not config_file.exists():
        raise UserError(f"adapter folder {folder} not found (no adapter_config.json): pass the folder written by `longrecall train`")
    adapter_cfg = json.loads(config_file.read_text())
    if adapter_cfg.get("type") == "gated_memory":
        from ..lift.gated_memory import load_gated_memory

        return load_gated_memory(model, folder)
    from ..train.lora_plus import load_adapter as load_lora_plus
    from ..train.lora_plus import read_adapter_info

    trained_on = read_adapter_info(folder).get("base_model")
    if trained_on and base_name is not None and _canonical(trained_on) != _canonical(base_name):
        raise UserError(f"adapter {folder} was trained on base model '{trained_on}', not '{base_name}': pass --model {trained_on}")
    try:
        peft_model = load_lora_plus(model, folder)
    except (RuntimeError, ValueError, KeyError) as e:
        raise UserError(f"adapter {folder} does not fit model '{base_name}' ({type(e).__name__}: {str(e).splitlines()[0][:100]}): "
                        f"pass the --model it was trained on") from None
    merged = peft_model.merge_and_unload()
    if getattr(merged.config, "tie_word_embeddings", False):
        merged.tie_weights()  # the trained embedding copy must also be the output head again
    return merged


@dataclass
class OpenAIBackend:
    """Any OpenAI-compatible chat endpoint (our `longrecall serve`, vLLM, …), several requests at once, bounded retries."""

    base_url: str
    model: str = "default"
    concurrency: int = 4
    retries: int = 3
    timeout: float = 120.0
    max_positions: int | None = None
    api_key: str = "EMPTY"
    backoff: float = 1.0
    answer_prefix_mode: str = "continue"  # continue: prefix as a final assistant turn the server continues; drop: omit it
    empty_answers: int = field(default=0, init=False)

    def __post_init__(self):
        import openai

        self.name = f"openai:{self.model}"
        self._client = openai.OpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout, max_retries=0)

    def _request(self, chat: Chat, max_new_tokens: int) -> str:
        import openai

        messages, extra = list(chat.messages), {}
        if chat.answer_prefix and self.answer_prefix_mode == "continue":
            messages.append({"role": "assistant", "content": chat.answer_prefix})
            extra = {"continue_final_message": True, "add_generation_prompt": False}
        for attempt in range(self.retries + 1):
            try:
                resp = self._client.chat.completions.create(model=self.model, messages=messages, max_tokens=max_new_tokens,
                                                            temperature=0.0, extra_body=extra or None)
                return self._content(resp)
            except (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError, openai.InternalServerError) as e:
                if attempt == self.retries:
                    if isinstance(e, (openai.APIConnectionError, openai.APITimeoutError)):
                        raise UserError(f"cannot reach {self.base_url} after {self.retries + 1} tries ({type(e).__name__}): "
                                        f"start it with `longrecall serve` or pass the right --base-url") from None
                    return self._garbage(f"{type(e).__name__} after {self.retries + 1} tries")
                time.sleep(self.backoff * 2**attempt)
            except (openai.APIStatusError, openai.APIResponseValidationError) as e:
                return self._garbage(f"{type(e).__name__}: {str(e)[:120]}")
        return self._garbage("no answer")  # pragma: no cover - the loop always returns

    def _content(self, resp) -> str:
        try:
            text = resp.choices[0].message.content
        except (AttributeError, IndexError, TypeError):
            return self._garbage(f"malformed response {str(resp)[:80]!r}")
        if not isinstance(text, str):
            return self._garbage("response without text content")
        return text

    def _garbage(self, why: str) -> str:
        self.empty_answers += 1
        log.warning("counting an empty answer from %s: %s", self.base_url, why)
        return ""

    def generate(self, prompts: Sequence[Any], max_new_tokens: int = 64) -> list[str]:
        chats = [as_chat(p) for p in prompts]
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            return list(pool.map(lambda c: self._request(c, max_new_tokens), chats))


class ContextTransformBackend:
    """Rewrite each sample (e.g. retrieve chunks from its context) before an inner backend answers it: RAG and hybrids."""

    def __init__(self, inner: Backend, transform: Callable[[Any], Any], name: str | None = None, max_positions: int | None = None):
        self.inner, self.transform = inner, transform
        self.name = name or f"{getattr(transform, '__name__', 'transform')}+{inner.name}"
        # None: the transform shrinks the context, so the inner model's positions do not bound the input length.
        self.max_positions = max_positions

    def generate(self, prompts: Sequence[Any], max_new_tokens: int = 64) -> list[str]:
        return self.inner.generate([self.transform(p) for p in prompts], max_new_tokens)


BACKENDS: dict[str, Callable[..., Backend]] = {"hf": HFBackend, "openai": OpenAIBackend}


def make_backend(kind: str, **kwargs) -> Backend:
    """Build a backend from the registry; unknown kinds are a UserError listing the choices."""
    if kind not in BACKENDS:
        raise UserError(f"unknown backend '{kind}': use one of {', '.join(sorted(BACKENDS))}")
    return BACKENDS[kind](**kwargs)
