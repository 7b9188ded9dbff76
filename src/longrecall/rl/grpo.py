"""GRPO on the NIAH reward: TRL's GRPOTrainer (or the Atropos consumer) on the LongLoRA adapter setup.

    longrecall train grpo --config configs/grpo-cpu-smoke.yaml [--via trl|atropos] [--set key=value ...]

Prompts come from the generator (train phrasing pool); each dataset row carries its sample's scoring fields as a JSON
column, which TRL hands to `niah_reward` as a keyword argument, so the reward is exactly `niah.score`. The policy is
the base model + position scaling + LoRA+ (LoRA, embeddings, norms) or an SFT adapter to continue. Every forward is
full attention: RL trains on chats, which train with full attention as in SFT (`s2attn: true` is refused).
Outputs next to the recipe's: adapter/, train_log.jsonl, reward.png, config.yaml.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from ..config import to_dict
from ..errors import UserError
from ..io import atomic_open
from ..models import train_bf16
from ..niah import FAMILIES, GenSpec, generate_samples, score
from ..niah.evidence import ask_for_evidence, credit
from .atropos_consumer import AtroposConfig
from .policy import HAVE_LORA_PLUS, LoraPlusConfig, adapter_record, build_policy, param_groups, save_policy, write_logs

SCORING_KEYS = ("id", "task", "answers", "metric", "chain", "needles", "value_kind")
VIAS = ("trl", "atropos")


@dataclass
class GrpoConfig:
    model: str = "default"
    """Base model: 'default' (embedded SmolLM2-135M-Instruct), a local folder or a hub id."""
    adapter: str | None = None
    """Adapter folder of an SFT run (e.g. runs/longlora-cpu/adapter) to continue with RL; None: a fresh LoRA+ adapter."""
    via: str = "trl"
    """trl: TRL generates and scores in-process; atropos: pull scored groups from an Atropos API (`run-api`)."""
    tasks: list[str] = field(default_factory=lambda: ["single"])
    """Task families to draw prompts from (niah.FAMILIES)."""
    lengths: list[int] = field(default_factory=lambda: [256, 512])
    """Prompt lengths in tokens (answer budget included)."""
    depths: list[float] = field(default_factory=lambda: [0.1, 0.3, 0.5, 0.7, 0.9])
    """Needle depths to draw from."""
    haystacks: list[str] = field(default_factory=lambda: ["noise"])
    """Haystack kinds: noise | prose | needles."""
    needle_kinds: list[str] = field(default_factory=lambda: ["number"])
    """Value kinds: number | word | uuid."""
    phrasing: str = "train"
    """Phrasing pool of the training prompts (keep 'train': held-out phrasings are for evaluation)."""
    answer_prefix: bool | None = None
    """The prompt format: append the family's answer opening after the generation prompt. None: the format recorded
    in `adapter` (false without one: the data commands' format). The trained adapter records it, and `longrecall eval
    niah` and the Atropos env then ask with the same one."""
    n_prompts: int = 32
    """Distinct samples in the training set (repeated as epochs when max_steps needs more)."""
    num_generations: int = 4
    """Group size G: completions per prompt; advantages are normalized within each group."""
    prompts_per_step: int = 1
    """Groups per optimizer step (gradient accumulation over prompts)."""
    max_completion_length: int | None = None
    """Max new tokens per completion (None: the largest answer budget among the samples)."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts (a group needs different answers to carry a signal)."""
    top_p: float = 1.0
    """Nucleus sampling of the rollouts."""
    lora: LoraPlusConfig = field(default_factory=LoraPlusConfig)
    """LoRA+ settings for a fresh adapter (ignored with `adapter:`)."""
    s2attn: bool = False
    """Must stay false: RL trains on chats, and chats train with full attention, as sampling and SFT see them (S²-Attn
    hides the needle from the answer: answer loss 0.85 -> 3.5, docs/benchmarks.md). Kept so older configs load."""
    group_fraction: float = 0.25
    """Unused (S²-Attn is off in RL); kept so older configs load."""
    target_length: int | None = None
    """Context to scale RoPE positions to (LongLoRA's linear interpolation); None keeps the native positions."""
    scaling_method: str = "linear"
    """Position scaling: linear | yarn."""
    evidence_credit: float = 0.0
    """Weight w of the evidence F1 (niah.evidence): prompts ask for 'Evidence:' lines then 'Answer:'; reward =
    (1 − w) · answer score + w · evidence F1. Same key as the env's `evidence_credit` (via atropos: passed to it)."""
    curriculum: str = "uniform"
    """uniform | adaptive (per-family difficulty kept at the edge of competence; the Atropos env draws the prompts
    online, so adaptive needs via: atropos; the TRL path trains on a fixed prompt set)."""
    dynamic_sampling: bool = False
    """Drop groups whose rollouts all score the same and draw others until the batch is full (DAPO). The env does it
    (its ensure_scores_are_not_same), so it needs via: atropos; the env logs drawn and all-equal group counts."""
    lr: float = 1e-5
    """Learning rate (constant after warmup)."""
    warmup_steps: int = 0
    """Linear warmup steps."""
    beta: float = 0.0
    """KL coefficient against the starting policy (0: no reference model, TRL's default)."""
    loss_type: str = "dapo"
    """TRL loss aggregation: dapo | grpo | dr_grpo | bnpo (trl path only)."""
    scale_rewards: str = "group"
    """Advantage scaling: group (GRPO) | batch | none (Dr. GRPO)."""
    max_steps: int = 4
    """Optimizer steps."""
    max_minutes: float | None = None
    """Stop after this many minutes of training, then save the adapter as at max_steps (the RL issue's budget).
    Via atropos the minutes add up over resumes; via trl they count this process only. None: max_steps alone."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    bf16: bool = True
    """bf16 autocast (CPU too); weights and optimizer stay fp32."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward (worth it past a few thousand tokens)."""
    use_vllm: bool = False
    """Generate with vLLM (GPU only; TRL's server mode: start `trl vllm-serve --model MODEL` first)."""
    vllm_server_base_url: str | None = None
    """vLLM server URL for use_vllm, e.g. http://127.0.0.1:8001."""
    save_steps: int = 50
    """Checkpoint every this many steps (trl path resumes from the newest one in output_dir)."""
    seed: int = 0
    """Seeds the prompts, the adapter init and sampling."""
    output_dir: str = "runs/grpo"
    """Where adapter/, train_log.jsonl, reward.png and config.yaml go."""
    atropos: AtroposConfig = field(default_factory=AtroposConfig)
    """The Atropos API consumer's settings (via: atropos)."""


def resolve_prompt_format(cfg: GrpoConfig) -> GrpoConfig:
    """answer_prefix None -> the adapter's recorded format (false without an adapter or a record)."""
    from .policy import adapter_answer_prefix

    recorded = adapter_answer_prefix(cfg.adapter) if cfg.adapter else None
    if cfg.answer_prefix is None:
        return replace(cfg, answer_prefix=bool(recorded))
    if recorded is not None and recorded != cfg.answer_prefix:
        print(f"note: answer_prefix {str(cfg.answer_prefix).lower()} differs from the adapter's ({str(recorded).lower()}, "
              f"{cfg.adapter}): the new adapter records {str(cfg.answer_prefix).lower()}, and evaluation follows it")
    return cfg


def validate(cfg: GrpoConfig) -> GrpoConfig:
    checks = [
        (cfg.via in VIAS, f"via must be one of {', '.join(VIAS)}, got '{cfg.via}'"),
        (not cfg.s2attn, "s2attn: true is refused in RL: its prompts are chats, which train with full attention as they are sampled "
                         "(S²-Attn hides the needle from the answer, docs/benchmarks.md): set s2attn: false"),
        (all(t in FAMILIES for t in cfg.tasks) and cfg.tasks, f"tasks must be families from {', '.join(FAMILIES)}, got {cfg.tasks}"),
        (cfg.num_generations >= 2, f"num_generations must be >= 2 (GRPO compares answers within a group), got {cfg.num_generations}"),
        (cfg.n_prompts >= 1 and cfg.prompts_per_step >= 1 and cfg.max_steps >= 1, "n_prompts, prompts_per_step and max_steps must be >= 1"),
        (cfg.max_minutes is None or cfg.max_minutes > 0, f"max_minutes must be above 0 (or null: no time budget), got {cfg.max_minutes}"),
        (cfg.lr > 0, f"lr must be positive, got {cfg.lr}: use 1e-5"),
        (0.0 <= cfg.evidence_credit <= 1.0, f"evidence_credit must be a weight in [0, 1], got {cfg.evidence_credit}: use 0.3"),
        (not (cfg.evidence_credit and cfg.answer_prefix), "evidence_credit asks for 'Evidence:' before the answer, which an "
                                                          "answer prefix cuts off: set answer_prefix: false"),
        (cfg.curriculum in ("uniform", "adaptive"), f"curriculum must be uniform or adaptive, got '{cfg.curriculum}'"),
        (cfg.curriculum == "uniform" or cfg.via == "atropos", "curriculum: adaptive draws prompts online from the Atropos "
                                                              "env: set via: atropos (the TRL path trains on a fixed prompt set)"),
        (not cfg.dynamic_sampling or cfg.via == "atropos", "dynamic_sampling drops and redraws groups in the Atropos env: "
                                                           "set via: atropos (TRL gives all-equal groups zero advantage)"),
        (cfg.temperature > 0, f"temperature must be > 0 for sampled groups, got {cfg.temperature}: use 1.0"),
        (HAVE_LORA_PLUS or not cfg.adapter, "adapter: needs longrecall.train.lora_plus (missing): unset adapter"),
        (not cfg.use_vllm or cfg.vllm_server_base_url, "use_vllm needs vllm_server_base_url (start `trl vllm-serve --model MODEL`)"),
        (cfg.atropos.batch_size % cfg.num_generations == 0 or cfg.via != "atropos" or not cfg.atropos.launch,
         f"atropos.batch_size ({cfg.atropos.batch_size}) must be a multiple of num_generations ({cfg.num_generations}): "
         f"set it to {cfg.num_generations * cfg.prompts_per_step}"),
        (cfg.atropos.policy == "self" or cfg.atropos.policy.startswith(("http://", "https://")),
         f"atropos.policy must be 'self' or a server's base URL (http://HOST:PORT/v1), got '{cfg.atropos.policy}'"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    return cfg


# ---------------------------------------------------------------- data and reward (pure)

def draw_specs(cfg: GrpoConfig) -> list[GenSpec]:
    """n_prompts seeded specs over the configured tasks, lengths, depths and haystacks."""
    specs = []
    for i in range(cfg.n_prompts):
        rng = random.Random(f"grpo:{cfg.seed}:{i}")
        specs.append(GenSpec(task=rng.choice(cfg.tasks), length=rng.choice(cfg.lengths), depth=rng.choice(cfg.depths),
                             haystack=rng.choice(cfg.haystacks), needle_kind=rng.choice(cfg.needle_kinds),
                             seed=cfg.seed * 1_000_003 + i, phrasing=cfg.phrasing, answer_prefix=bool(cfg.answer_prefix)))
    return specs


def prompt_text(tokenizer, sample) -> str:
    """The chat-formatted prompt (+ answer prefix) exactly as the generator measured it."""
    text = tokenizer.apply_chat_template(sample.messages(), tokenize=False, add_generation_prompt=True)
    return (text if isinstance(text, str) else text[0]) + sample.answer_prefix


def build_rows(cfg: GrpoConfig, tokenizer) -> list[dict]:
    """Dataset rows {"prompt": text, "sample": JSON of the scoring fields} (TRL passes extra columns to rewards)."""
    samples = generate_samples(draw_specs(cfg), tokenizer)
    if cfg.evidence_credit:
        samples = [ask_for_evidence(s) for s in samples]
    return [{"prompt": prompt_text(tokenizer, s), "sample": json.dumps({k: getattr(s, k) for k in SCORING_KEYS}),
             "answer_budget": s.answer_budget} for s in samples]


def _text(completion) -> str:
    return completion[-1]["content"] if isinstance(completion, list) else str(completion)


def niah_reward(completions, sample, **_) -> list[float]:
    """TRL reward function: `niah.score` of each completion against the sample (JSON column) it answers."""
    return [score(json.loads(s) if isinstance(s, str) else s, _text(c)) for c, s in zip(completions, sample)]


def evidence_reward(weight: float):
    """TRL reward function with evidence credit: (1 − w) · answer score + w · evidence F1 (niah.evidence)."""
    def reward(completions, sample, **_) -> list[float]:
        return [credit(json.loads(s) if isinstance(s, str) else s, _text(c), weight) for c, s in zip(completions, sample)]

    reward.__name__ = "evidence_reward"  # TRL logs each reward function by name
    return reward


def _trainer_cls():
    import torch
    from trl import GRPOTrainer

    class NiahGRPOTrainer(GRPOTrainer):
        """GRPOTrainer + LoRA+ learning-rate groups and eval-mode generation (full attention everywhere)."""

        def __init__(self, *args, lora_cfg=None, **kwargs):
            self.lora_cfg = lora_cfg
            super().__init__(*args, **kwargs)

        def create_optimizer(self, model=None):
            if self.optimizer is None and HAVE_LORA_PLUS and self.lora_cfg is not None:
                groups = param_groups(self.model, self.lora_cfg, self.args.learning_rate, self.args.weight_decay)
                self.optimizer = torch.optim.AdamW(groups, lr=self.args.learning_rate, betas=(self.args.adam_beta1, self.args.adam_beta2), eps=self.args.adam_epsilon)
            return super().create_optimizer(model) if self.optimizer is None else self.optimizer

        def _generate_single_turn(self, *args, **kwargs):
            # Rollouts see the model as evaluation does: no dropout.
            was = self.model.training
            self.model.eval()
            try:
                return super()._generate_single_turn(*args, **kwargs)
            finally:
                self.model.train(was)

    return NiahGRPOTrainer


def make_trainer(cfg: GrpoConfig, callbacks: list | None = None):
    """(NiahGRPOTrainer, tokenizer) ready to train: policy, prompts from the generator, niah_reward, GRPOConfig."""
    import torch
    from datasets import Dataset
    from trl import GRPOConfig

    model, tokenizer = build_policy(cfg)
    rows = build_rows(cfg, tokenizer)
    budgets = [r.pop("answer_budget") for r in rows]
    tokenizer.padding_side = "left"  # TRL pads prompts on the left for generation
    args = GRPOConfig(
        output_dir=cfg.output_dir, max_steps=cfg.max_steps, per_device_train_batch_size=cfg.num_generations,
        gradient_accumulation_steps=cfg.prompts_per_step, num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length or max(budgets), temperature=cfg.temperature, top_p=cfg.top_p,
        learning_rate=cfg.lr, lr_scheduler_type="constant_with_warmup", warmup_steps=cfg.warmup_steps, beta=cfg.beta,
        loss_type=cfg.loss_type, scale_rewards=cfg.scale_rewards, max_grad_norm=cfg.max_grad_norm, bf16=train_bf16(cfg.bf16),
        gradient_checkpointing=cfg.gradient_checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False},
        save_steps=cfg.save_steps, save_total_limit=1, logging_steps=1, seed=cfg.seed, data_seed=cfg.seed, report_to="none",
        remove_unused_columns=False, disable_tqdm=False, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
        use_vllm=cfg.use_vllm, vllm_mode="server", vllm_server_base_url=cfg.vllm_server_base_url,
    )
    trainer = _trainer_cls()(
        model=model, reward_funcs=[evidence_reward(cfg.evidence_credit) if cfg.evidence_credit else niah_reward], args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
        callbacks=callbacks, lora_cfg=None if cfg.adapter else cfg.lora,
    )
    return trainer, tokenizer


def train_trl(cfg: GrpoConfig, callbacks: list | None = None) -> dict:
    """GRPO with TRL: G completions per prompt, rewarded by niah.score; resumes from the newest checkpoint in output_dir."""
    from transformers import TrainerCallback
    from transformers.trainer_utils import get_last_checkpoint

    out, title = Path(cfg.output_dir), "GRPO (TRL) on the NIAH reward"

    class _Logs(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            write_logs(state.log_history, out, title)

    class _Budget(TrainerCallback):
        def __init__(self):
            self.t0 = time.monotonic()

        def on_step_end(self, args, state, control, **kw):
            if cfg.max_minutes is not None and (time.monotonic() - self.t0) / 60 >= cfg.max_minutes:
                control.should_training_stop = True

    trainer, tokenizer = make_trainer(cfg, [_Logs(), _Budget(), *(callbacks or [])])
    trainer.train(resume_from_checkpoint=get_last_checkpoint(str(out)) if out.exists() else None)
    history = trainer.state.log_history
    extra = {"recipe": "grpo-trl", "config": to_dict(cfg), "steps": trainer.state.global_step, **adapter_record(cfg)}
    adapter = save_policy(trainer.model, tokenizer, out, extra)
    write_logs(history, out, title)
    return {"adapter": str(adapter), "steps": trainer.state.global_step, "rewards": [h["reward"] for h in history if "reward" in h],
            "log": str(out / "train_log.jsonl"), "plot": str(out / "reward.png")}


def train_grpo(cfg: GrpoConfig, callbacks: list | None = None) -> dict:
    """Validate, settle the prompt format, write config.yaml, then run the chosen path (trl or atropos)."""
    cfg = resolve_prompt_format(validate(cfg))
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "config.yaml") as fh:
        yaml.safe_dump(to_dict(cfg), fh, sort_keys=False)
    if cfg.via == "atropos":
        from .atropos_consumer import train_atropos
        return train_atropos(cfg)
    return train_trl(cfg, callbacks)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="YAML preset (configs/grpo-*.yaml)")
    parser.add_argument("--via", choices=VIAS, default=None, help="trl: generate in-process with TRL; atropos: pull scored groups from `run-api`")
    parser.add_argument("--output-dir", default=None, help="overrides output_dir")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. max_steps=10 or atropos.batch_size=8 (repeatable)")


def config_from_args(args) -> GrpoConfig:
    """Typed config from a parsed Namespace (the CLI) or an argv list (tests, scripts)."""
    from ..config import load_config
    from ..train.recipe import parse_sets

    if not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(prog="longrecall train grpo")
        add_arguments(parser)
        args = parser.parse_args(args)
    overrides = parse_sets(args.set)
    overrides.update({k: v for k, v in (("via", args.via), ("output_dir", args.output_dir)) if v})
    return load_config(GrpoConfig, args.config, overrides)


def main(args=None) -> int:
    """`longrecall train grpo --config FILE [--via trl|atropos] [--output-dir DIR] [--set key=value ...]`."""
    summary = train_grpo(config_from_args(args))
    r = summary["rewards"]
    trend = f"mean reward {r[0]:.3f} -> {r[-1]:.3f}" if r else "no reward logged"
    print(f"{summary['steps']} steps, {trend}; adapter in {summary['adapter']}; curve {summary['plot']}")
    return 0
