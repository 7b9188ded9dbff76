"""Probe: the reader's chain answer with the walk started for it: the assistant turn prefilled with the first followed link + ' ->'."""
import json, sys, torch
from longrecall.memory.reader import SHIPPED_DIR
from longrecall.memory.api import build_prompt, SYSTEM
from longrecall.memory.walk import walked
from longrecall.niah.scoring import score
from longrecall.models import load_model, load_tokenizer
from longrecall.eval.backends import load_adapter
tok = load_tokenizer("default"); lm = load_adapter(load_model("default", dtype="auto"), str(SHIPPED_DIR), "default")
def gen(prompt, prefix=""):
    ids = tok.apply_chat_template([{"role":"system","content":SYSTEM},{"role":"user","content":prompt}], add_generation_prompt=True, tokenize=True, return_dict=False)
    ids = ids + tok(prefix, add_special_tokens=False)["input_ids"] if prefix else ids
    with torch.no_grad():
        out = lm.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long), max_new_tokens=48, do_sample=False, pad_token_id=tok.pad_token_id)
    return prefix + tok.decode(out[0, len(ids):], skip_special_tokens=True)
rows = [json.loads(l) for l in open(sys.argv[1])]
out = open(sys.argv[2], "w"); tot = {"plain": 0, "prefill": 0}
for r in rows:
    q = r["sample"]["question"]; p = build_prompt(q, r["context"])
    vias = [v for t in r["trace"] for v in t.get("via", [])]
    import re
    res = {}
    first = ""
    if vias:
        m = re.search(r"((?:[A-Z][a-z]+ )*)" + re.escape(vias[0]) + r"((?: [A-Z][a-z]+)*)", r["context"])
        first = m.group(0) if m else vias[0]
    for k, pre in (("plain", ""), ("prefill", f"{first} ->" if first else "")):
        raw = gen(p, pre); ans = walked(raw)[0]
        if k == "prefill" and ans and ans.lower() in q.lower(): ans = res["plain"][1]
        s = score(r["sample"], ans or "")
        res[k] = (raw, ans, s); tot[k] += s
    out.write(json.dumps({"world": r["world"], "q": q, "gold": r["sample"]["answers"], "chain": r["sample"].get("chain"), "vias": vias, **res}) + "\n"); out.flush()
print(len(rows), {k: round(100 * v / len(rows), 1) for k, v in tot.items()})
