"""The needle-in-a-haystack Atropos environment: samples from the spine, rollouts from any OpenAI-compatible endpoint,
rewards from `niah.score`. The class is glue; curriculum, tokenization and the eval grid are plain functions.

    python -m longrecall.env.niah_env process --env.total_steps 2 --env.group_size 2 --env.lengths 512 \
        --openai.base_url http://127.0.0.1:8000/v1    # model_name defaults to the embedded model's folder
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import statistics
import sys
import time
from collections import deque
from pathlib import Path
from typing import Optional

from atroposlib.envs.base import APIServerConfig, BaseEnv, BaseEnvConfig
from pydantic import Field, field_validator

from ..errors import UserError
from ..io import write_json
from ..models import resolve
from ..niah import FAMILIES, GenSpec, Sample, generate_sample, generate_samples, score

logger = logging.getLogger(__name__)
CURRICULA = ("uniform", "length_ramp")
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
    curriculum: str = Field(
        default="uniform", description="uniform | length_ramp (start at the shortest length, unlock the next as reward rises)"
    )
    ramp_threshold: float = Field(default=0.6, description="length_ramp: mean group reward that unlocks the next length")
    ramp_window: int = Field(default=8, description="length_ramp: groups averaged before deciding")
    answer_max_tokens: Optional[int] = Field(default=None, description="max new tokens per answer (None: the sample's budget)")
    temperature: float = Field(default=1.0, description="sampling temperature for training rollouts")
    top_p: float = Field(default=1.0, description="nucleus sampling for training rollouts")
    sample_via_generation_config: bool = Field(
        default=True,
        description="also send do_sample/temperature as a `generation_config` field: transformers serve decodes greedily "
        "without it (every rollout of a group would be the same); turn off for servers that refuse unknown fields",
    )
    eval_tasks: StrList = Field(default=[], description="eval grid families (empty: tasks)")
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

    @field_validator(
        "tasks", "lengths", "depths", "haystacks", "needle_kinds", "eval_tasks", "eval_lengths", "eval_depths", mode="before"
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

    @field_validator("curriculum")
    @classmethod
    def _curriculum(cls, v: str) -> str:
        if v not in CURRICULA:
            raise UserError(f"unknown curriculum '{v}': use {' or '.join(CURRICULA)}")
        return v


def draw_spec(cfg: NiahEnvConfig, index: int, level: int = -1) -> GenSpec:
    """The index-th training spec: seeded by (seed, index); lengths limited to the `level+1` shortest (-1: all)."""
    rng = random.Random(f"niah-env:{cfg.seed}:{index}")
    lengths = sorted(cfg.lengths)
    pool = lengths if level < 0 else lengths[: level + 1]
    haystack = rng.choice(cfg.haystacks)
    return GenSpec(
        task=rng.choice(cfg.tasks), length=rng.choice(pool), depth=rng.choice(cfg.depths), haystack=haystack,
        needle_kind=rng.choice(cfg.needle_kinds), seed=cfg.seed * 1_000_003 + index, phrasing=cfg.phrasing,
        corpus=cfg.corpus if haystack == "user" else None,
    )


def eval_specs(cfg: NiahEnvConfig) -> list[GenSpec]:
    """The fixed eval grid: task x length x depth x eval_samples, seeded apart from training draws."""
    return [
        GenSpec(task=t, length=n, depth=d, haystack=cfg.haystacks[0], needle_kind=cfg.needle_kinds[0],
                seed=10**9 + cfg.seed * 1000 + i, phrasing=cfg.eval_phrasing,
                corpus=cfg.corpus if cfg.haystacks[0] == "user" else None)
        for t in (cfg.eval_tasks or cfg.tasks) for n in (cfg.eval_lengths or cfg.lengths)
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


def tokenize_rollout(tokenizer, messages: list[dict], completion: str) -> tuple[list[int], list[int]]:
    """Token ids of the whole chat and a mask that keeps only the final assistant turn (-100 elsewhere)."""
    prompt = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=False)
    full = tokenizer.apply_chat_template(
        messages + [{"role": "assistant", "content": completion}], tokenize=True, return_dict=False
    )
    if full[: len(prompt)] != prompt:
        raise ValueError("the chat template does not extend the prompt with the answer: cannot mask it")
    return list(full), [-100] * len(prompt) + list(full[len(prompt):])


def build_group(tokenizer, sample: Sample, completions: list[str]) -> dict:
    """A ScoredDataGroup for Atropos: tokens, masks, rewards, chats, and the sample's identity."""
    messages = sample.messages()
    group = {"tokens": [], "masks": [], "scores": [], "messages": []}
    for text in completions:
        tokens, masks = tokenize_rollout(tokenizer, messages, text)
        group["tokens"].append(tokens)
        group["masks"].append(masks)
        group["scores"].append(score(sample, text))
        group["messages"].append(messages + [{"role": "assistant", "content": text}])
    # Extra key: written to `process` JSONL, ignored by the API's schema.
    group["sample"] = {k: getattr(sample, k) for k in ("id", "task", "haystack", "length", "depth", "seed", "answers")}
    return group


def grid_rows(records: list[dict]) -> list[dict]:
    """Mean score per (task, length): the axes stay fields, not metric names."""
    cells: dict[tuple, list[float]] = {}
    for r in records:
        cells.setdefault((r["task"], r["length"]), []).append(r["score"])
    return [{"task": t, "length": n, "n": len(v), "score": statistics.fmean(v)} for (t, n), v in sorted(cells.items())]


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
        self.index += 1
        return generate_sample(spec, self.tokenizer)

    def sampling_kwargs(self, temperature: float, max_tokens: int) -> dict:
        kw = {"max_tokens": max_tokens, "temperature": temperature}
        if temperature > 0:
            kw["top_p"] = self.config.top_p
            if self.config.sample_via_generation_config:
                gen = {"do_sample": True, "temperature": temperature, "top_p": self.config.top_p, "max_new_tokens": max_tokens}
                kw["extra_body"] = {"generation_config": json.dumps(gen)}
        return kw

    async def collect_trajectories(self, item: Sample):
        n = self.config.group_size
        kw = self.sampling_kwargs(self.config.temperature, self.config.answer_max_tokens or item.answer_budget)
        error: Exception | None = None
        attempts = max(1, self.config.max_group_attempts)
        for _ in range(attempts):
            try:
                resp = await self.server.chat_completion(messages=item.messages(), n=n, **kw)
                texts = [c.message.content or "" for c in resp.choices][:n]
                if len(texts) < n:
                    raise ValueError(f"the endpoint returned {len(texts)} of {n} completions")
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
        group = build_group(self.tokenizer, item, texts)
        self.ramp.update(statistics.fmean(group["scores"]))
        return group, []

    async def evaluate(self, *args, **kwargs) -> dict:
        """Run the fixed grid greedily; write metrics.json, samples.jsonl (library format) and grid.json."""
        start = time.time()
        samples = generate_samples(eval_specs(self.config), self.tokenizer, progress=False)
        gate = asyncio.Semaphore(max(1, self.config.max_eval_workers))

        async def answer(s: Sample) -> dict:
            kw = self.sampling_kwargs(self.config.eval_temperature, self.config.answer_max_tokens or s.answer_budget)
            async with gate:
                resp = await self.server.chat_completion(messages=s.messages(), n=1, split="eval", **kw)
            out = resp.choices[0].message.content or ""
            return {"id": s.id, "task": s.task, "length": s.length, "depth": s.depth, "seed": s.seed,
                    "answers": s.answers, "output": out, "score": score(s, out)}

        try:
            records = await asyncio.gather(*(answer(s) for s in samples))
        except Exception as e:  # noqa: BLE001
            raise SystemExit(f"niah_env evaluate: the endpoint failed ({root_cause(e)}): "
                             "start the model server (`longrecall serve`) or fix --openai.base_url") from None
        rows = grid_rows(records)
        metrics = {"eval/score": statistics.fmean(r["score"] for r in records) if records else 0.0, "eval/n": len(records)}
        out_dir = Path(self.config.data_dir_to_save_evals or "data/niah_eval")
        self.config.data_dir_to_save_evals = str(out_dir)
        write_json(out_dir / "grid.json", rows)
        params = {"temperature": self.config.eval_temperature, "max_new_tokens": self.config.answer_max_tokens or "budget"}
        await self.evaluate_log(metrics=metrics, samples=records, start_time=start, end_time=time.time(),
                                generation_parameters=params, verbose=False)
        for r in rows:
            logger.info("eval %-12s %6d tokens: %.3f (n=%d)", r["task"], r["length"], r["score"], r["n"])
        if self.config.use_wandb:
            await self.wandb_log(dict(metrics))
        return metrics

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
