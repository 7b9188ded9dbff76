"""The trainer side of Atropos: register with `run-api`, pull scored groups, apply a group-normalized policy gradient.

One command runs it all on a machine (run-api, the env's `serve`, and the policy served from the training process):

    longrecall train grpo --config configs/grpo-cpu-atropos.yaml        # atropos.launch: true, atropos.policy: self

or piece by piece, the way Atropos runs at scale (the env and API elsewhere, a vLLM/SGLang/transformers server):

    run-api --port 8010 &
    longrecall train grpo --config configs/grpo-cpu-smoke.yaml --via atropos &        # prints the policy's URL
    python -m longrecall.env.niah_env serve --env.rollout_server_url http://127.0.0.1:8010 --env.group_size 4 \
        --openai.base_url POLICY_URL --openai.model_name longrecall-policy

The env's groups (tokens, masks with -100 outside the answer, scores) become token-level advantages: each group's
scores minus their mean, over their standard deviation (GRPO). A group whose scores are all equal carries no signal:
it is skipped and counted. The update is REINFORCE with that baseline, i.e. GRPO's clipped objective at its first
iteration (ratio 1), normalized by the batch's answer tokens. Ratio 1 is exact only for rollouts of the weights
being trained, so with `policy: self` the consumer is **strictly on-policy** (chosen over returning log-probs and
clipping an importance ratio: the rollouts are cheap to redo on CPU, and a stale group would need the old weights'
log-probs, which a plain OpenAI server does not return):
- the served policy tags every reply with its version (optimizer steps taken, rl/policy_server.py); the env passes
  it on in the group's `generation_params.policy_version`;
- a group sampled by older weights (or with no tag) is dropped and counted (`stale` in the log): atroposlib's
  `max_batches_offpolicy` (3 by default) lets the env queue rollouts of up to ~3 steps back, which would otherwise be
  trained as if on-policy;
- the env queues at most one batch ahead (NiahEnvConfig.max_batches_offpolicy = 1), so few rollouts are wasted.
With `policy: URL` the rollouts come from that server's fixed weights: on-policy only until the first step (reload
the server from the saved checkpoints); nothing is dropped there.
The groups' masks cover exactly the sampled answer tokens (the env trains the server's own ids; a cut answer gets no
end token). Checkpoints (adapter + optimizer + log) every save_steps; a rerun with the same output_dir resumes from
the newest and registers its step with the API (starting_step).
"""
from __future__ import annotations

import contextlib
import json
import math
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import UserError

IGNORE = -100
_START_API = "start it with `run-api --port PORT` (atroposlib) or fix atropos.api_url"


@dataclass
class AtroposConfig:
    api_url: str = "http://127.0.0.1:8010"
    """The Atropos API (`run-api`); keep it off the policy server's port (`longrecall serve` uses 8000)."""
    batch_size: int = 8
    """Sequences per /batch, a multiple of the env's group_size (8 = two groups of 4)."""
    max_token_len: int = 2048
    """Longest sequence the env may send (it drops longer groups); above your longest prompt + answer."""
    wait_timeout: float = 600.0
    """Seconds without a batch before giving up: the environment is not producing (not started, or its server is down)."""
    poll_interval: float = 2.0
    """Seconds between /batch polls while the queue is short."""
    request_timeout: float = 30.0
    """Seconds one HTTP request to the API may take."""
    retries: int = 3
    """Attempts per request before the API counts as not running."""
    max_no_signal: int = 20
    """Batches in a row whose groups all have equal rewards before stopping (no learning signal)."""
    max_stale: int = 50
    """policy: self: batches in a row with no group from the current weights before stopping (all stale or untagged)."""
    policy: str = "self"
    """Where the env samples rollouts: 'self' serves the live policy from this process (on-policy), or the base URL of an
    OpenAI-compatible server (transformers serve, vLLM, SGLang) holding fixed weights."""
    policy_port: int = 0
    """Port of the served policy with policy: self (0: any free port)."""
    launch: bool = False
    """Start `run-api` on api_url's port and the needle env's `serve` wired to the policy, with the GRPO config's tasks,
    lengths, haystacks and group size; both are stopped at the end. False: you start them (see the module doc)."""
    env: dict = field(default_factory=dict)
    """Extra env settings for launch (NiahEnvConfig keys), e.g. {curriculum: length_ramp}."""


# ---------------------------------------------------------------- the batch -> loss math (pure)

def group_advantages(scores: list[float], eps: float = 1e-4) -> list[float] | None:
    """(score - mean) / (std + eps) for one group; None when every score is equal (no signal)."""
    if len(scores) < 2 or max(scores) - min(scores) < 1e-9:
        return None
    mean = sum(scores) / len(scores)
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / (len(scores) - 1))
    return [(s - mean) / (std + eps) for s in scores]


def policy_version(group: dict) -> int | None:
    """The policy version a group was sampled with (generation_params.policy_version), None when untagged."""
    v = (group.get("generation_params") or {}).get("policy_version")
    return int(v) if v is not None else None


def fresh_groups(batch: list[dict], version: int) -> tuple[list[dict], int]:
    """(groups sampled by the weights at `version`, how many were dropped: older weights or no tag)."""
    fresh = [g for g in batch if policy_version(g) == version]
    return fresh, len(batch) - len(fresh)


def batch_to_examples(batch: list[dict]) -> tuple[list[dict], dict]:
    """Scored groups -> [{tokens, weights}] with a per-token advantage on answer tokens (0 elsewhere), and stats.

    weights[i] is the advantage of predicting tokens[i] (mask[i] != -100); an env-supplied per-token `advantages`
    list replaces the group-normalized one.
    """
    examples, stats = [], {"groups": len(batch), "skipped_equal": 0, "sequences": 0, "rewards": []}
    for group in batch:
        scores = [float(s) for s in group["scores"]]
        stats["rewards"] += scores
        given = group.get("advantages")
        adv = None if given else group_advantages(scores)
        if adv is None and not given:
            stats["skipped_equal"] += 1
            continue
        for i, (tokens, mask) in enumerate(zip(group["tokens"], group["masks"])):
            if len(tokens) != len(mask):
                raise UserError(f"a scored group has {len(tokens)} tokens but {len(mask)} mask entries: fix the environment's tokenization")
            per_tok = given[i] if given else [adv[i]] * len(tokens)
            weights = [float(a) if m != IGNORE else 0.0 for a, m in zip(per_tok, mask)]
            if any(weights):
                examples.append({"tokens": list(tokens), "weights": weights})
                stats["sequences"] += 1
    return examples, stats


def pg_loss(logps, weights, n_tokens: int):
    """-sum(advantage * log p(token)) / answer tokens: the policy-gradient surrogate (tensors of equal shape)."""
    return -(weights * logps).sum() / max(n_tokens, 1)


def sequence_logps(model, tokens: list[int], keep: int | None = None):
    """log p(tokens[i] | tokens[:i]) for the last `keep` tokens (default: all but the first), shape [keep].

    Only those positions' logits are computed (logits_to_keep), never the whole sequence x vocabulary.
    """
    import torch

    keep = keep or len(tokens) - 1
    ids = torch.tensor([tokens], device=model.device)
    logits = model(input_ids=ids[:, :-1], use_cache=False, logits_to_keep=keep).logits.float()
    return torch.log_softmax(logits, -1).gather(-1, ids[:, -keep:, None])[0, :, 0]


def batch_loss(model, examples: list[dict], bf16: bool = False) -> float:
    """Backward the policy-gradient loss of a batch, one unpadded sequence at a time (full attention); returns it."""
    import torch

    n_tokens = sum(sum(1 for w in ex["weights"] if w) for ex in examples)
    total = 0.0
    for ex in examples:
        first = next(i for i, w in enumerate(ex["weights"]) if w)  # answers end the sequence: score from there
        keep = len(ex["tokens"]) - max(first, 1)
        with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
            lp = sequence_logps(model, ex["tokens"], keep)
        loss = pg_loss(lp, torch.tensor(ex["weights"][-keep:], device=lp.device), n_tokens)
        loss.backward()
        total += float(loss.detach())
    return total


# ---------------------------------------------------------------- the API client (bounded retries)

def _request(cfg: AtroposConfig, path: str, body: dict | None = None) -> dict:
    url = cfg.api_url.rstrip("/") + path
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST" if body is not None else "GET")
    error = None
    for attempt in range(max(1, cfg.retries)):
        try:
            with urllib.request.urlopen(req, timeout=cfg.request_timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as e:  # the API answered: retrying will not help
            raise UserError(f"the Atropos API at {cfg.api_url} refused {path} (HTTP {e.code}): check that it is atroposlib's `run-api`") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout) as e:
            error = getattr(e, "reason", e)
            time.sleep(min(2.0**attempt * 0.2, 5.0))
    raise UserError(f"no Atropos API answers at {cfg.api_url} ({error}): {_START_API}")


def register(cfg: AtroposConfig, num_steps: int, out_dir: str = "", starting_step: int = 0) -> int:
    """POST /register as the trainer (at `starting_step` when resuming); returns the trainer uuid. The env can register
    only after this, and starts counting its steps (evals, logs) from starting_step."""
    reply = _request(cfg, "/register", {
        "wandb_group": "longrecall", "wandb_project": "longrecall", "batch_size": cfg.batch_size,
        "max_token_len": cfg.max_token_len, "checkpoint_dir": out_dir, "save_checkpoint_interval": -1,
        "starting_step": int(starting_step), "num_steps": num_steps,
    })
    return int(reply["uuid"])


def fetch_batch(cfg: AtroposConfig, sleep=time.sleep, clock=time.monotonic, check=None) -> list[dict]:
    """GET /batch until the API has `batch_size` sequences; a UserError after wait_timeout seconds without one.

    `check()` runs between polls (the launcher's: raise if run-api or the env process died)."""
    start = clock()
    while True:
        if check is not None:
            check()
        reply = _request(cfg, "/batch")
        if reply.get("status") == "error":  # the API restarted and forgot us
            raise UserError(f"the Atropos API at {cfg.api_url} does not know this trainer ({reply.get('message')}): restart the training command")
        if reply.get("batch"):
            return reply["batch"]
        if clock() - start >= cfg.wait_timeout:
            status = _request(cfg, "/status")
            raise UserError(
                f"no scored groups from the environment in {cfg.wait_timeout:g}s (queue: {status.get('queue_size', 0)} groups, "
                f"batch_size {cfg.batch_size}): start `python -m longrecall.env.niah_env serve --env.rollout_server_url {cfg.api_url}` against a "
                "running policy server, and make batch_size a multiple of its group_size"
            )
        sleep(cfg.poll_interval)


# ---------------------------------------------------------------- launching run-api and the env (thin glue)

def env_settings(cfg) -> dict:
    """The needle env's settings for a GRPO config: the same tasks, lengths, haystacks, prompt format, sampling and
    group size."""
    env = {"tasks": cfg.tasks, "lengths": cfg.lengths, "depths": cfg.depths, "haystacks": cfg.haystacks,
           "needle_kinds": cfg.needle_kinds, "phrasing": cfg.phrasing, "answer_prefix": bool(cfg.answer_prefix),
           "temperature": cfg.temperature, "top_p": cfg.top_p,
           "group_size": cfg.num_generations, "seed": cfg.seed, "max_num_workers_per_node": 1,
           "max_batches_offpolicy": 1,  # queue one batch ahead at most: older rollouts are dropped (see the module doc)
           "curriculum": cfg.curriculum, "evidence_credit": cfg.evidence_credit,
           "ensure_scores_are_not_same": cfg.dynamic_sampling}
    if cfg.max_completion_length:
        env["answer_max_tokens"] = cfg.max_completion_length
    return {**env, **cfg.atropos.env}


class Launched:
    """run-api and the env's `serve` as child processes (logs in out/logs), stopped on exit."""

    def __init__(self, cfg, out: Path):
        self.cfg, self.logs, self.procs = cfg, out / "logs", {}
        self.logs.mkdir(parents=True, exist_ok=True)

    def start_api(self) -> None:
        from urllib.parse import urlparse

        from ..env.rollouts import _api, _check, _spawn

        u = urlparse(self.cfg.atropos.api_url)
        if u.hostname not in ("127.0.0.1", "localhost") or not u.port:
            raise UserError(f"atropos.launch starts run-api on this machine: set atropos.api_url to http://127.0.0.1:PORT, not {self.cfg.atropos.api_url}")
        log = self.logs / "api.log"
        self.procs["run-api"] = (_spawn(["-m", "atroposlib.cli.run_api", "--host", "127.0.0.1", "--port", str(u.port)], log), log)
        deadline = time.monotonic() + 120
        while not _api(self.cfg.atropos.api_url, "/"):
            _check(self.procs, deadline, "the Atropos API start", 120)
            time.sleep(0.5)

    def start_env(self, policy_url: str, model_name: str) -> None:
        from ..env.rollouts import _spawn, env_flags
        from ..models import resolve

        owned = {"rollout_server_url", "tokenizer_name", "total_steps", "use_wandb", "answer_prefix"} & set(self.cfg.atropos.env)
        if owned:
            raise UserError(f"atropos.env {', '.join(sorted(owned))} is set by the launcher: remove it")
        env = {**env_settings(self.cfg), "rollout_server_url": self.cfg.atropos.api_url, "tokenizer_name": resolve(self.cfg.model),
               "total_steps": 10**6, "use_wandb": False}
        log = self.logs / "env.log"
        argv = ["-m", "longrecall.env.niah_env", "serve", *env_flags(env), "--openai.base_url", policy_url, "--openai.model_name", model_name]
        self.procs["the environment"] = (_spawn(argv, log), log)

    def check(self) -> None:
        from ..env.rollouts import _why

        for name, (p, log) in self.procs.items():
            if p.poll() is not None:
                raise UserError(f"{name} stopped (code {p.returncode}): {_why(log)} (log: {log})")

    def stop(self) -> None:
        from ..env.rollouts import _stop

        for p, _ in reversed(list(self.procs.values())):
            _stop(p)


def env_dynamics(out: Path) -> dict:
    """What the launched env's log says about the run: groups dropped because every rollout scored the same (dynamic
    sampling), and each adaptive-curriculum move (curriculum.jsonl, and curriculum.png: the rung of each family
    against the groups drawn). {} when there is no env log (the env ran elsewhere)."""
    log = out / "logs" / "env.log"
    if not log.exists():
        return {}
    dropped, events = 0, []
    for line in log.read_text(errors="replace").splitlines():
        if "Scores are the same in a group" in line:
            dropped += 1
        elif line.startswith("curriculum: "):
            with contextlib.suppress(json.JSONDecodeError):
                events.append(json.loads(line[len("curriculum: "):]))
    from ..io import write_jsonl

    write_jsonl(out / "curriculum.jsonl", events)
    if events:
        from ..eval.plots import line_chart

        series: dict[str, dict[int, float]] = {}
        for e in events:
            per = series.setdefault(e["family"], {0: float(e["from"])})
            per[int(e["groups"])] = float(e["level"])
        line_chart(series, out / "curriculum.png", title="adaptive curriculum: each family's rung", ylabel="rung (0 = easiest)",
                   logx=False, xlabel="groups drawn")
    return {"groups_all_equal_dropped_by_env": dropped, "curriculum_moves": len(events)}


# ---------------------------------------------------------------- checkpoints (resume after a crash or a stop)

def save_checkpoint(out: Path, model, tokenizer, opt, step: int, history: list[dict], extra: dict) -> Path:
    """out/checkpoint-STEP/{adapter/, optimizer.pt, state.json}; state.json is written last, so only a complete
    checkpoint counts; older ones are removed after."""
    import shutil

    import torch

    from ..io import atomic_open
    from ..train.lora_plus import save_adapter

    ckpt = out / f"checkpoint-{step}"
    save_adapter(model, ckpt / "adapter", extra, tokenizer=tokenizer)
    with atomic_open(ckpt / "optimizer.pt", "wb") as fh:
        torch.save(opt.state_dict(), fh)
    with atomic_open(ckpt / "state.json") as fh:
        json.dump({"step": step, "history": history}, fh)
    for old in out.glob("checkpoint-*"):
        if old != ckpt and old.name.split("-")[-1].isdigit():
            shutil.rmtree(old, ignore_errors=True)
    return ckpt


def last_checkpoint(out: Path) -> Path | None:
    done = [p for p in out.glob("checkpoint-*") if (p / "state.json").exists() and p.name.split("-")[-1].isdigit()]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


# ---------------------------------------------------------------- the loop (thin glue)

def _optimizer(cfg, model):
    import torch

    from .policy import HAVE_LORA_PLUS

    if HAVE_LORA_PLUS and not cfg.adapter:
        from ..train.lora_plus import param_groups
        groups = param_groups(model, cfg.lora, cfg.lr)
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": cfg.lr}]
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=0.0), [p for g in groups for p in g["params"]]


def train_atropos(cfg) -> dict:
    """Register, then for max_steps batches: advantages, one optimizer step; writes adapter/, log and curve."""
    import torch
    from tqdm.auto import tqdm

    from ..config import to_dict
    from .policy import adapter_record, build_policy, save_policy, write_logs

    a = cfg.atropos
    out, title = Path(cfg.output_dir), "GRPO (Atropos consumer) on the NIAH reward"
    resume = last_checkpoint(out)
    model, tokenizer = build_policy(replace(cfg, adapter=str(resume / "adapter")) if resume else cfg)
    model.train()
    opt, params = _optimizer(cfg, model)
    history, step = [], 0
    if resume:
        state = json.loads((resume / "state.json").read_text())
        try:
            opt.load_state_dict(torch.load(resume / "optimizer.pt", weights_only=True))
        except (ValueError, KeyError, RuntimeError) as e:
            raise UserError(f"{resume} does not match this config ({e}): use another --output-dir or delete the checkpoint") from None
        history, step = state["history"], int(state["step"])
        print(f"resuming from {resume} (step {step})")
    extra = {"recipe": "grpo-atropos", "config": to_dict(cfg), **adapter_record(cfg)}
    server = launched = None
    try:
        if a.launch:
            launched = Launched(cfg, out)
            launched.start_api()
        if a.policy == "self":
            from .policy_server import PolicyServer
            server = PolicyServer(model, tokenizer, port=a.policy_port)
            server.version = step  # the weights have taken `step` optimizer steps (resumed ones too)
            server.start()
            policy_url, policy_name = server.base_url, server.model_name
            print(f"policy served at {policy_url} (model name {policy_name}): point the env's --openai.base_url there")
        else:
            from ..env.server import list_models
            served = list_models(a.policy)
            if not served:
                raise UserError(f"no model server answers at {a.policy}: start one (`longrecall serve`) or set atropos.policy: self")
            policy_url, policy_name = a.policy, served[0]
        register(a, cfg.max_steps, str(out), starting_step=step)
        if launched:
            launched.start_env(policy_url, policy_name)
        lock = server.lock if server else contextlib.nullcontext()
        no_signal = stale_batches = 0
        bar = tqdm(total=cfg.max_steps, initial=step, desc="grpo (atropos)")
        spent, t0 = (history[-1].get("minutes", 0.0) if history else 0.0), time.monotonic()  # minutes before this process

        def minutes() -> float:
            return spent + (time.monotonic() - t0) / 60

        while step < cfg.max_steps and (cfg.max_minutes is None or minutes() < cfg.max_minutes):
            batch = fetch_batch(a, check=launched.check if launched else None)
            stale = 0
            if server:  # strictly on-policy: only groups sampled by the weights about to be updated
                batch, stale = fresh_groups(batch, step)
            if not batch:
                stale_batches += 1
                history.append({"step": step, "trained": False, "stale": stale, "batch_groups": 0, "skipped_equal": 0,
                                "policy_requests": server.requests, "minutes": round(minutes(), 3)})
                if stale_batches >= a.max_stale:
                    raise UserError(f"{stale_batches} batches in a row held no group from the current policy (version {step}): "
                                    "point the env at this trainer's policy server (--openai.base_url) and keep its "
                                    "max_batches_offpolicy at 1")
                continue
            stale_batches = 0
            examples, stats = batch_to_examples(batch)
            reward = sum(stats["rewards"]) / max(len(stats["rewards"]), 1)
            row = {"batch_groups": stats["groups"], "skipped_equal": stats["skipped_equal"], "stale": stale, "reward": reward}
            if not examples:
                no_signal += 1
                history.append({**row, "step": step, "trained": False, "policy_requests": server.requests if server else None,
                                "minutes": round(minutes(), 3)})
                if no_signal >= a.max_no_signal:
                    raise UserError(f"{no_signal} batches in a row had equal rewards in every group (no learning signal): raise the env's "
                                    "temperature, use easier/shorter tasks, or start from an SFT adapter (adapter: ...)")
                continue
            no_signal = 0
            with lock:  # the served policy never samples half-updated weights
                for g in opt.param_groups:  # linear warmup, then constant
                    g["lr"] = g.setdefault("base_lr", g["lr"]) * min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
                loss = batch_loss(model, examples, cfg.bf16)
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm))
                opt.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                if server:
                    server.version = step  # rollouts sampled from here on carry the new version
            history.append({**row, "step": step, "trained": True, "loss": loss, "grad_norm": grad_norm, "sequences": stats["sequences"],
                            "policy_requests": server.requests if server else None, "minutes": round(minutes(), 3)})
            bar.update(1)
            bar.set_postfix(reward=f"{reward:.3f}", skipped=stats["skipped_equal"], stale=stale)
            if step % cfg.save_steps == 0 and step < cfg.max_steps:
                with lock:
                    save_checkpoint(out, model, tokenizer, opt, step, history, {**extra, "steps": step})
                write_logs(history, out, title)
        bar.close()
    finally:
        if history:  # on an error too: the log says how far it got
            write_logs(history, out, title)
        if launched:
            launched.stop()
        if server:
            server.stop()
    adapter = save_policy(model, tokenizer, out, {**extra, "steps": step})
    rewards = [h["reward"] for h in history if h.get("trained")]
    return {"adapter": str(adapter), "steps": step, "rewards": rewards, "skipped_equal": sum(h["skipped_equal"] for h in history),
            **(env_dynamics(out) if launched else {}),
            "stale": sum(h.get("stale", 0) for h in history),
            "log": str(out / "train_log.jsonl"), "plot": str(out / "reward.png")}

