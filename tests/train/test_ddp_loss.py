"""Loss normalisation under DDP: two CPU processes (gloo) give the gradients of one process on the same data.

The recipe's compute_loss divides each sequence's summed token loss by num_items_in_batch, which Trainer sums over
all processes; DDP then averages gradients over processes. Trainer's own compute_loss multiplies by the number of
processes to undo that average; the recipe replaced compute_loss and lost the factor, so under `accelerate launch`
every gradient came out 1/world_size. Here: one process with grad_accum=2 over two sequences of different lengths,
against two processes with grad_accum=1 and one sequence each (the same optimizer step), compared before the
optimizer step (clipping off, so a halved gradient cannot be hidden by it).

This file is also the worker: `python -m torch.distributed.run --standalone --nproc-per-node 2 <this file> ...`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch


def _train(model_dir: str, data: str, out: str, grad_accum: int) -> dict:
    from transformers import TrainerCallback

    from longrecall.train.recipe import LongLoraConfig, train_longlora

    grads = {}

    class Grab(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
            grads.update({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None})

    cfg = LongLoraConfig(model=model_dir, pretrain=data, max_length=64, s2attn=False, max_steps=1, grad_accum=grad_accum,
                         warmup_steps=0, max_grad_norm=0.0, bf16=False, gradient_checkpointing=False, save_steps=100,
                         lr=1e-3, output_dir=out)
    train_longlora(cfg, callbacks=[Grab()])
    return grads


def test_two_process_gradients_equal_one_process_gradients(tmp_path, tok):
    from longrecall.models import tiny_model

    model_dir = tmp_path / "base"
    tiny_model(len(tok)).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    data = tmp_path / "blocks.jsonl"
    # Two blocks with different token counts (39 and 17 targets): a plain per-process mean would weigh them wrongly.
    gen = torch.Generator().manual_seed(0)
    rows = [{"input_ids": torch.randint(10, len(tok), (n,), generator=gen).tolist()} for n in (40, 18)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    one = _train(str(model_dir), str(data), str(tmp_path / "one"), grad_accum=2)

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    saved = tmp_path / "ddp_grads.pt"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", __file__,
         str(model_dir), str(data), str(tmp_path / "two"), str(saved)],
        env=env, capture_output=True, text=True, timeout=900,  # a hang guard only; nothing here depends on timing
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    two = torch.load(saved)
    assert two["world_size"] == 2
    two = two["grads"]
    assert one.keys() == two.keys() and any("embed_tokens" in k for k in one) and any("lora_B" in k for k in one)
    for name, g in one.items():
        assert g.abs().sum() > 0 or two[name].abs().sum() == 0, name
        torch.testing.assert_close(two[name], g, rtol=1e-4, atol=1e-8, msg=lambda m, n=name: f"{n}: {m}")


if __name__ == "__main__":  # one DDP rank
    import torch.distributed as dist

    model_dir, data, out, saved = sys.argv[1:5]
    grads = _train(model_dir, data, out, grad_accum=1)
    if int(os.environ["RANK"]) == 0:
        torch.save({"world_size": dist.get_world_size() if dist.is_initialized() else 1, "grads": grads}, saved)
