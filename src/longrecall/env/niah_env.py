"""The needle-in-a-haystack Atropos environment: samples from the spine, rollouts from any OpenAI-compatible endpoint,
rewards from `niah.score`. The class is glue; curriculum, tokenization and the eval grid are plain functions.

    python -m longrecall.env.niah_env process --env.total_steps 2 --env.group_size 2 --env.lengths 512 \
        --openai.base_url http://127.0.0.1:8000/v1    # model_name defaults to the embedded model's folder
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import statistics
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from atroposlib.envs.base import APIServerConfig, BaseEnv, BaseEnvConfig
from pydantic import Field, field_validator, model_validator

from ..errors import UserError
from ..io import write_json
from ..models import resolve
from ..niah import FAMILIES, GenSpec, Sample, generate_sample, generate_samples, score
from ..niah.curriculum import Adaptive
from ..niah.evidence import ask_for_evidence, credit

logger = logging.getLogger(__name__)
CURRICULA = ("uniform", "length_ramp", "adaptive")
# full: the whole haystack; rag: the question with plain top-k retrieved sentences of that haystack; hybrid: what the
# question's own strategy retrieves (multi-hop for chains, find-all for every-X questions). Both within rag_budget.
CONTEXT_MODES = {"full": None, "rag": "topk", "hybrid": "auto"}
# `| str` keeps the library's CLI from declaring nargs="+": it forwards one raw string ("512,1024"), split below.
StrList = list[str] | str
IntList = list[int] | str
FloatList = list[float] | str


class NiahEnvConfig(BaseEnvConfig):
    """Every field is a `--env.<field>` flag; the library's fields (group_size, total_steps, ...) come with it."""

    tasks: StrList = Field(default=["single"], description="task families to train on (niah.FAMILIES)")
    lengths: IntList = Field(default=[512, 1024, 2048], description="prompt lengths in tokens (answer budget included)")
    depths: FloatList = Field(default=[0.1, 0.3, 0.5, 0.7, 0.9], description="needle depths to draw from")
    haystacks: StrList = Field(default=["noise"], description="haystack kinds: noise | prose | needles | user")
    needle_kinds: StrList = Field(default=["number"], description="value kinds: number | word | uuid")
    corpus: Optional[str] = Field(default=None, description="file or folder of text for haystack 'user'")
    phrasing: str = Field(default="train", description="phrasing pool for training samples: train | heldout | any")
    answer_prefix: bool = Field(
        default=False,
        description="the prompt format: end the prompt with the family's answer opening, sent as a final assistant turn the "
        "server continues (continue_final_message: the policy server, vLLM). Training, env evaluation and `longrecall eval "
        "niah` must use the adapter's one (recorded in longrecall_adapter.json); false is the data commands' format",
    )
    return_token_ids: bool = Field(
        default=False,
        description="ask the server for the sampled token ids (vLLM >= 0.10.2: return_token_ids); the policy server always "
        "sends them. Without ids the answer text is re-tokenized (an end token only when finish_reason is 'stop')",
    )
    curriculum: str = Field(
        default="uniform", description="uniform | length_ramp (start at the shortest length, unlock the next as reward rises) "
        "| adaptive (per family, a ladder of length and needles/hops/distractors, moved to keep the reward in "
        "[adapt_low, adapt_high]; niah/curriculum.py)"
    )
    ramp_threshold: float = Field(default=0.6, description="length_ramp: mean group reward that unlocks the next length")
    ramp_window: int = Field(default=8, description="length_ramp / adaptive: groups averaged before deciding")
    adapt_low: float = Field(default=0.3, description="adaptive: a family's mean reward under this moves it one rung easier")
    adapt_high: float = Field(default=0.7, description="adaptive: a family's mean reward over this moves it one rung harder")
    evidence_credit: float = Field(
        default=0.0, description="weight w of the evidence F1 in the reward: the prompt asks for 'Evidence:' lines, then "
        "'Answer:'; reward = (1 - w) * answer score + w * evidence F1 against the target needles (niah.evidence); 0 = off")
    evidence_tokens: int = Field(default=160, description="evidence_credit: extra answer tokens for the cited sentences")
    context_mode: str = Field(
        default="full", description="full (the whole haystack) | rag (plain top-k retrieved sentences of it) | hybrid "
        "(multi-hop / find-all retrieval chosen by the question); rag and hybrid keep rag_budget tokens of context")
    rag_budget: int = Field(default=1024, description="rag / hybrid: tokens of retrieved context in the prompt")
    answer_max_tokens: Optional[int] = Field(default=None, description="max new tokens per answer (None: the sample's budget)")
    temperature: float = Field(default=1.0, description="sampling temperature for training rollouts")
    top_p: float = Field(default=1.0, description="nucleus sampling for training rollouts")
    sample_via_generation_config: bool = Field(
        default=True,
        description="also send do_sample/temperature as a `generation_config` field: transformers serve decodes greedily "
        "without it (every rollout of a group would be the same); turn off for servers that refuse unknown fields",
    )
    eval_tasks: StrList = Field(default=[], description="eval grid families (empty: tasks)")
    eval_haystacks: StrList = Field(default=[], description="eval grid haystack kinds (empty: haystacks)")
    eval_needle_kinds: StrList = Field(default=[], description="eval grid value kinds (empty: needle_kinds)")
    eval_lengths: IntList = Field(default=[], description="eval grid lengths (empty: lengths)")
    eval_depths: FloatList = Field(default=[0.1, 0.5, 0.9], description="eval grid depths")
    eval_samples: int = Field(default=2, description="samples per eval cell (task x length x depth)")
    eval_phrasing: str = Field(default="train", description="phrasing pool for the eval grid: train | heldout | any")
    eval_temperature: float = Field(default=0.0, description="0 = greedy")
    seed: int = Field(default=0, description="seeds every sample the env draws")
    max_group_attempts: int = Field(default=2, description="endpoint attempts per group before it is dropped")
    max_failed_groups: int = Field(default=3, description="dropped groups in a row before the env exits with an error")
    # Library defaults changed for a local, offline, data-making setup:
    tokenizer_name: str = Field(default="default", description="tokenizer folder ('default': the embedded model's)")
    use_wandb: bool = Field(default=False, description="log to Weights & Biases (needs an account)")
    ensure_scores_are_not_same: bool = Field(
        default=False, description="drop groups whose rollouts all score the same (GRPO learns nothing from them)"
    )
    include_messages: bool = Field(default=True, description="send the chats to the trainer (sft-gen --save-messages reads them)")
    max_num_workers_per_node: int = Field(default=2, description="groups in flight at once (a CPU server is slow)")
    max_eval_workers: int = Field(default=2, description="eval requests in flight at once")
    max_batches_offpolicy: int = Field(
        default=1,
        description="batches the env may queue ahead of the trainer (the library's default 3 lets rollouts ~3 steps old "
        "reach the trainer); 1 keeps the queue to the batch being trained, and the consumer drops any older rollout",
    )

    @field_validator(
        "tasks", "lengths", "depths", "haystacks", "needle_kinds", "eval_tasks", "eval_lengths", "eval_depths", "eval_haystacks",
        "eval_needle_kinds", mode="before"
    )
    @classmethod
    def _split(cls, v):
        # The library passes CLI values through as one string: accept "512,1024" (and JSON lists).
        if isinstance(v, str):
            v = json.loads(v) if v.lstrip().startswith("[") else [x for x in v.replace(" ", ",").split(",") if x]
        return v

    @field_validator("tasks", "eval_tasks")
    @classmethod
    def _families(cls, v: list[str]) -> list[str]:
        for t in v:
            if t not in FAMILIES:
                raise UserError(f"unknown task family '{t}': use one of {', '.join(FAMILIES)}")
        return v

    @field_validator("context_mode")
    @classmethod
    def _context_mode(cls, v: str) -> str:
        if v not in CONTEXT_MODES:
            raise UserError(f"unknown context mode '{v}': use {', '.join(CONTEXT_MODES)}")
        return v

    @field_validator("curriculum")
    @classmethod
    def _curriculum(cls, v: str) -> str:
        if v not in CURRICULA:
            raise UserError(f"unknown curriculum '{v}': use {' or '.join(CURRICULA)}")
        return v

    @model_validator(mode="after")
    def _evidence(self):
        if not 0.0 <= self.evidence_credit <= 1.0:
            raise UserError(f"evidence_credit {self.evidence_credit}: use a weight in [0, 1] (0 = off, e.g. 0.3)")
        if self.evidence_credit and self.answer_prefix:
            raise UserError("evidence_credit asks for 'Evidence:' before the answer, which an answer prefix cuts off: "
                            "set answer_prefix false")
        if not 0.0 <= self.adapt_low < self.adapt_high <= 1.0:
            raise UserError(f"adapt_low {self.adapt_low} / adapt_high {self.adapt_high}: need 0 <= low < high <= 1")
        return self


def draw_spec(cfg: NiahEnvConfig, index: int, level: int = -1) -> GenSpec:
    """The index-th training spec: seeded by (seed, index); lengths limited to the `level+1` shortest (-1: all)."""
    rng = random.Random(f"niah-env:{cfg.seed}:{index}")
    lengths = sorted(cfg.lengths)
    pool = lengths if level < 0 else lengths[: level + 1]
    haystack = rng.choice(cfg.haystacks)
    return GenSpec(
        task=rng.choice(cfg.tasks), length=rng.choice(pool), depth=rng.choice(cfg.depths), haystack=haystack,
        needle_kind=rng.choice(cfg.needle_kinds), seed=cfg.seed * 1_000_003 + index, phrasing=cfg.phrasing,
        corpus=cfg.corpus if haystack == "user" else None, answer_prefix=cfg.answer_prefix,
    )


def with_context_mode(sample: Sample, tokenizer, mode: str, budget: int) -> Sample:
    """The sample as the mode shows it: the whole haystack, or the part retrieval finds in it (same question, same
    answers, same reward)."""
    method = CONTEXT_MODES[mode]
    if method is None:
        return sample
    from ..rag.multihop import rag_answer_context

    ctx = rag_answer_context(sample.to_dict(), tokenizer, method=method, budget=budget, fill=True)
    return dataclasses.replace(sample, context=ctx)


def eval_specs(cfg: NiahEnvConfig) -> list[GenSpec]:
    """The fixed eval grid: task x haystack x value kind x length x depth x eval_samples, seeded apart from training
    draws, in the training prompt format (answer_prefix)."""
    return [
        GenSpec(task=t, length=n, depth=d, haystack=h, needle_kind=k, seed=10**9 + cfg.seed * 1000 + i, phrasing=cfg.eval_phrasing,
                corpus=cfg.corpus if h == "user" else None, answer_prefix=cfg.answer_prefix)
        for t in (cfg.eval_tasks or cfg.tasks) for h in (cfg.eval_haystacks or cfg.haystacks)
        for k in (cfg.eval_needle_kinds or cfg.needle_kinds) for n in (cfg.eval_lengths or cfg.lengths)
        for d in cfg.eval_depths for i in range(cfg.eval_samples)
    ]


class LengthRamp:
    """Curriculum state: unlock the next length once the mean reward over `window` groups reaches `threshold`."""

    def __init__(self, n_levels: int, threshold: float, window: int):
        self.n_levels, self.threshold, self.level = n_levels, threshold, 0
        self.recent: deque[float] = deque(maxlen=max(1, window))

    def update(self, reward: float) -> int:
        self.recent.append(reward)
        full = len(self.recent) == self.recent.maxlen
        if full and self.level < self.n_levels - 1 and statistics.fmean(self.recent) >= self.threshold:
            self.level += 1
            self.recent.clear()
        return self.level


@dataclass
class Rollout:
    """One sampled answer as the server reported it: text, why it ended, and (when the server gives them) its ids."""

    text: str
    finish_reason: str | None = "stop"
    token_ids: list[int] | None = None


def end_token_id(tokenizer) -> int:
    """The token a chat model samples to end its turn (SmolLM2: <|im_end|>)."""
    return tokenizer.eos_token_id


def prompt_token_ids(tokenizer, messages: list[dict], answer_prefix: str = "") -> list[int]:
    """The prompt as the server sees it: the chat with the generation prompt, then the answer prefix (if any)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer((text if isinstance(text, str) else text[0]) + answer_prefix, add_special_tokens=False)["input_ids"]


def completion_token_ids(tokenizer, rollout: Rollout) -> list[int]:
    """The answer's tokens as sampled: the server's ids when it sent them; otherwise the text's tokens, plus the end
    token only when the answer stopped by itself. A cut answer (finish_reason "length") never gets an end token: the
    model never sampled one, and training on it would teach it to stop where it was cut."""
    if rollout.token_ids is not None:
        return [int(t) for t in rollout.token_ids]
    ids = tokenizer(rollout.text, add_special_tokens=False)["input_ids"]
    return ids if rollout.finish_reason == "length" else ids + [end_token_id(tokenizer)]


def tokenize_rollout(tokenizer, messages: list[dict], completion: str | Rollout, prompt_ids: list[int] | None = None,
                     answer_prefix: str = "") -> tuple[list[int], list[int]]:
    """Token ids of prompt + sampled answer and a mask that keeps only the sampled answer tokens (-100 elsewhere).

    The answer is not re-rendered through the chat template (that would add an end of turn and a newline that were
    never sampled): see completion_token_ids. `prompt_ids`: the server's own prompt ids, when it sent them."""
    rollout = completion if isinstance(completion, Rollout) else Rollout(completion)
    prompt = list(prompt_ids) if prompt_ids is not None else prompt_token_ids(tokenizer, messages, answer_prefix)
    answer = completion_token_ids(tokenizer, rollout)
    return prompt + answer, [-100] * len(prompt) + answer


def build_group(tokenizer, sample: Sample, completions: list[str | Rollout], prompt_ids: list[int] | None = None,
                policy_version: int | None = None, evidence_credit: float = 0.0) -> dict:
    """A ScoredDataGroup for Atropos: tokens, masks, rewards, chats, and the sample's identity.

    `policy_version` (the policy server's optimizer step when it sampled the group) travels in generation_params,
    which the API passes to the trainer, so the trainer can drop rollouts of older weights."""
    messages = sample.messages()
    group = {"tokens": [], "masks": [], "scores": [], "messages": []}
    for c in completions:
        rollout = c if isinstance(c, Rollout) else Rollout(c)
        tokens, masks = tokenize_rollout(tokenizer, messages, rollout, prompt_ids, sample.answer_prefix)
        group["tokens"].append(tokens)
        group["masks"].append(masks)
        group["scores"].append(credit(sample, rollout.text, evidence_credit) if evidence_credit else score(sample, rollout.text))
        group["messages"].append(messages + [{"role": "assistant", "content": sample.answer_prefix + rollout.text}])
    if policy_version is not None:
        group["generation_params"] = {"policy_version": int(policy_version)}
    # Extra key: written to `process` JSONL, ignored by the API's schema.
    group["sample"] = {k: getattr(sample, k) for k in ("id", "task", "haystack", "length", "depth", "seed", "answers")}
    return group


def request_messages(sample: Sample) -> tuple[list[dict], dict]:
    """The chat to send and the extra request fields: with an answer prefix, it is a final assistant turn the server
    continues (vLLM's and the policy server's `continue_final_message`)."""
    if not sample.answer_prefix:
        return sample.messages(), {}
    return sample.messages() + [{"role": "assistant", "content": sample.answer_prefix}], {
        "continue_final_message": True, "add_generation_prompt": False}


def reply_rollouts(resp, n: int) -> tuple[list[Rollout], list[int] | None, int | None]:
    """(rollouts, the server's prompt ids or None, the oldest policy version among the choices or None)."""
    choices = list(resp.choices)[:n]
    rollouts = [Rollout(c.message.content or "", getattr(c, "finish_reason", None), getattr(c, "token_ids", None)) for c in choices]
    versions = [v for v in (getattr(c, "policy_version", None) for c in choices) if v is not None]
    if not versions and getattr(resp, "policy_version", None) is not None:
        versions = [resp.policy_version]
    return rollouts, getattr(resp, "prompt_token_ids", None), (min(versions) if versions else None)


def grid_rows(records: list[dict]) -> list[dict]:
    """Mean score per (task, haystack, value kind, length): the axes stay fields, not metric names."""
    cells: dict[tuple, list[float]] = {}
    for r in records:
        cells.setdefault((r["task"], r.get("haystack", ""), r.get("needle_kind", ""), r["length"]), []).append(r["score"])
    return [{"task": t, "haystack": h, "needle_kind": k, "length": n, "n": len(v), "score": statistics.fmean(v)}
            for (t, h, k, n), v in sorted(cells.items())]


def new_eval_dir(base: Path, step: int) -> Path:
    """base/step-NNNNNN, or step-NNNNNN_1, _2, ... when that step was evaluated before: an evaluation never
    overwrites another (a rerun of `evaluate`, two evals at one trainer step)."""
    base.mkdir(parents=True, exist_ok=True)
    for i in range(10**6):
        path = base / (f"step-{step:06d}" + (f"_{i}" if i else ""))
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise UserError(f"{base} holds a million evaluations of step {step}: pass another --env.data_dir_to_save_evals")


def root_cause(e: BaseException) -> str:
    """The library wraps endpoint errors in two layers of tenacity RetryError: show the first real one."""
    while hasattr(e, "last_attempt") and e.last_attempt.exception() is not None:
        e = e.last_attempt.exception()
    return f"{type(e).__name__}: {str(e)[:200]}"


class NiahEnv(BaseEnv):
    name = "niah"
    env_config_cls = NiahEnvConfig

    def __init__(self, config: NiahEnvConfig, server_configs, slurm=False, testing=False):
        config.tokenizer_name = resolve(config.tokenizer_name)
        super().__init__(config, server_configs, slurm=slurm, testing=testing)
        self.index = 0
        self.failed_groups = 0
        self.ramp = LengthRamp(len(config.lengths), config.ramp_threshold, config.ramp_window)
        self.adaptive = Adaptive(list(config.tasks), list(config.lengths), config.adapt_low, config.adapt_high,
                                 config.ramp_window) if config.curriculum == "adaptive" else None
        self.groups_drawn = self.groups_dropped = 0  # dynamic sampling: groups whose rollouts all scored the same
        self.eval_metrics: list[tuple[str, float]] = []  # logged with the next wandb_log, as atroposlib's envs do

    @classmethod
    def config_init(cls) -> tuple[NiahEnvConfig, list[APIServerConfig]]:
        model_dir = resolve("default")
        # wandb_name doubles as the env's name at the API: `serve` sends null (a 422) unless it is set here.
        env = NiahEnvConfig(tokenizer_name=model_dir, group_size=4, total_steps=100, max_token_length=8192, wandb_name=cls.name)
        # health_check off: a 1-token request per second would compete with rollouts on a CPU server.
        server = APIServerConfig(server_type="openai", base_url="http://127.0.0.1:8000/v1", model_name=model_dir,
                                 api_key="x", health_check=False, timeout=600, num_requests_for_eval=4)
        return env, [server]

    async def setup(self) -> None:
        pass  # samples are drawn on demand; nothing to load beyond the tokenizer

    async def register_env(self) -> None:
        try:
            await super().register_env()
        except Exception as e:  # noqa: BLE001 - the library raises a tenacity RetryError after 3 tries
            raise SystemExit(f"niah_env serve: no Atropos API at {self.config.rollout_server_url} ({root_cause(e)}): "
                             "start `run-api --port N` first or fix --env.rollout_server_url") from None

    async def get_next_item(self) -> Sample:
        level = self.ramp.level if self.config.curriculum == "length_ramp" else -1
        spec = draw_spec(self.config, self.index, level)
        if self.adaptive is not None:
            spec = dataclasses.replace(spec, **self.adaptive.setting(spec.task))
        self.index += 1
        sample = generate_sample(spec, self.tokenizer)
        if self.config.evidence_credit:  # the question asks for the supporting sentences first
            sample = ask_for_evidence(sample, self.config.evidence_tokens)
        return with_context_mode(sample, self.tokenizer, self.config.context_mode, self.config.rag_budget)

    def sampling_kwargs(self, temperature: float, max_tokens: int) -> dict:
        kw = {"max_tokens": max_tokens, "temperature": temperature}
        if temperature > 0:
            kw["top_p"] = self.config.top_p
            if self.config.sample_via_generation_config:
                gen = {"do_sample": True, "temperature": temperature, "top_p": self.config.top_p, "max_new_tokens": max_tokens}
                kw["extra_body"] = {"generation_config": json.dumps(gen)}
        return kw

    def request_kwargs(self, sample: Sample, temperature: float, max_tokens: int) -> tuple[list[dict], dict]:
        """(messages, request kwargs) for one sample: sampling settings, answer-prefix continuation, token ids."""
        messages, extra = request_messages(sample)
        kw = self.sampling_kwargs(temperature, max_tokens)
        if self.config.return_token_ids:
            extra["return_token_ids"] = True
        if extra:
            kw["extra_body"] = {**kw.get("extra_body", {}), **extra}
        return messages, kw

    async def collect_trajectories(self, item: Sample):
        n = self.config.group_size
        messages, kw = self.request_kwargs(item, self.config.temperature, self.config.answer_max_tokens or item.answer_budget)
        error: Exception | None = None
        attempts = max(1, self.config.max_group_attempts)
        for _ in range(attempts):
            try:
                resp = await self.server.chat_completion(messages=messages, n=n, **kw)
                rollouts, prompt_ids, version = reply_rollouts(resp, n)
                if len(rollouts) < n:
                    raise ValueError(f"the endpoint returned {len(rollouts)} of {n} completions")
                break
            except Exception as e:  # noqa: BLE001 - any endpoint failure counts against the bound below
                error = e
        else:
            self.failed_groups += 1
            logger.error("niah_env: group %s dropped after %d attempts: %s", item.id, attempts, root_cause(error))
            if self.failed_groups >= self.config.max_failed_groups:
                # SystemExit leaves asyncio and the library's catch-all handlers, so serve/process stop here.
                raise SystemExit(
                    f"niah_env: {self.failed_groups} groups in a row failed ({root_cause(error)}): "
                    "start the model server (`longrecall serve`) or fix --openai.base_url / --openai.model_name"
                )
            return None, []
        self.failed_groups = 0
        group = build_group(self.tokenizer, item, rollouts, prompt_ids, version, self.config.evidence_credit)
        mean = statistics.fmean(group["scores"])
        self.ramp.update(mean)
        if self.adaptive is not None:
            event = self.adaptive.update(item.task, mean)
            if event:
                logger.info("curriculum: %s", json.dumps(event))
        self.groups_drawn += 1
        if len(set(group["scores"])) == 1:
            self.groups_dropped += 1  # the library drops it when ensure_scores_are_not_same is on
        return group, []

    async def evaluate(self, *args, **kwargs) -> dict:
        """Run the fixed grid greedily; write metrics.json, samples.jsonl (library format) and grid.json to a new folder
        per evaluation (data_dir_to_save_evals/step-N); stash the metrics for the next wandb_log.

        No wandb_log here: it would clear the training rollouts gathered for the step's table (evaluate runs as a task
        in the middle of a step). The library's own envs append to self.eval_metrics and log them with the step."""
        start = time.time()
        samples = [with_context_mode(s, self.tokenizer, self.config.context_mode, self.config.rag_budget)
                   for s in generate_samples(eval_specs(self.config), self.tokenizer, progress=False)]
        gate = asyncio.Semaphore(max(1, self.config.max_eval_workers))

        async def answer(s: Sample) -> dict:
            messages, kw = self.request_kwargs(s, self.config.eval_temperature, self.config.answer_max_tokens or s.answer_budget)
            async with gate:
                resp = await self.server.chat_completion(messages=messages, n=1, split="eval", **kw)
            out = resp.choices[0].message.content or ""
            return {"id": s.id, "task": s.task, "haystack": s.haystack, "needle_kind": s.needle_kind, "length": s.length,
                    "depth": s.depth, "seed": s.seed, "answers": s.answers, "output": out, "score": score(s, out)}

        try:
            records = await asyncio.gather(*(answer(s) for s in samples))
        except Exception as e:  # noqa: BLE001
            raise SystemExit(f"niah_env evaluate: the endpoint failed ({root_cause(e)}): "
                             "start the model server (`longrecall serve`) or fix --openai.base_url") from None
        rows = grid_rows(records)
        metrics = {"eval/score": statistics.fmean(r["score"] for r in records) if records else 0.0, "eval/n": len(records)}
        if self.config.context_mode != "full":
            metrics = {f"eval/{self.config.context_mode}/{k[5:]}": v for k, v in metrics.items()}
        base = self.config.data_dir_to_save_evals or "data/niah_eval"
        out_dir = new_eval_dir(Path(base), int(self.curr_step))
        write_json(out_dir / "grid.json", rows)
        params = {"temperature": self.config.eval_temperature, "max_new_tokens": self.config.answer_max_tokens or "budget",
                  "answer_prefix": self.config.answer_prefix, "context_mode": self.config.context_mode,
                  "rag_budget": self.config.rag_budget}
        self.config.data_dir_to_save_evals = str(out_dir)  # evaluate_log writes into data_dir_to_save_evals
        try:
            await self.evaluate_log(metrics=metrics, samples=records, start_time=start, end_time=time.time(),
                                    generation_parameters=params, verbose=False)
        finally:
            self.config.data_dir_to_save_evals = str(base)
        for r in rows:
            logger.info("eval %-12s %-7s %-7s %6d tokens: %.3f (n=%d)", r["task"], r.get("haystack", ""), r.get("needle_kind", ""),
                        r["length"], r["score"], r["n"])
        logger.info("eval files: %s", out_dir)
        self.eval_metrics += list(metrics.items())
        return metrics

    async def wandb_log(self, wandb_metrics: Optional[dict] = None) -> None:
        """The library's log of the step, with the metrics of evaluations finished since the last one."""
        wandb_metrics = dict(wandb_metrics or {})
        wandb_metrics |= {"train/groups_drawn": self.groups_drawn, "train/groups_all_equal": self.groups_dropped}
        if self.adaptive is not None:
            wandb_metrics |= self.adaptive.metrics()
        for name, value in self.eval_metrics:
            wandb_metrics[name] = value
        self.eval_metrics = []
        await super().wandb_log(wandb_metrics)

    @classmethod
    def cli(cls) -> None:
        # `process` and `evaluate` switch wandb on whatever the config says: off unless the command line asks.
        argv = sys.argv
        if len(argv) > 1 and argv[1] in ("process", "evaluate") and not any(a.startswith("--env.use_wandb") for a in argv):
            argv += ["--env.use_wandb", "false"]
        # Our INFO (the eval summary) on stderr; the library's stays off (it logs a status line every 0.1 s).
        if not logger.handlers:
            logger.addHandler(logging.StreamHandler())
            logger.setLevel(logging.INFO)
            logger.propagate = False
        try:
            super().cli()
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)


if __name__ == "__main__":
    NiahEnv.cli()
