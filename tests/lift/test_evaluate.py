"""LIFT evaluation: held-out questions per target needle, and a clear error for inputs without named needles."""
import pytest

from longrecall.errors import UserError
from longrecall.lift.evaluate import needle_questions
from longrecall.lift.route import vocabulary
from longrecall.niah import GenSpec, generate_sample
from longrecall.niah.needles import QUESTIONS_ONE


def test_one_heldout_question_per_target_needle(tok):
    s = generate_sample(GenSpec(task="multiquery", n_needles=4, length=2048, seed=3), tok).to_dict()
    qs = needle_questions(s)
    assert len(qs) == 4 and {q["answer"] for q in qs} == set(s["answers"])
    heldout_starts = [t.split("{")[0] for t in QUESTIONS_ONE[1]]
    assert all(any(q["question"].startswith(h) for h in heldout_starts) for q in qs)


def test_chain_only_inputs_are_refused(tok):
    s = generate_sample(GenSpec(task="chain", length=1024, seed=1), tok).to_dict()
    with pytest.raises(UserError, match="multiquery"):
        needle_questions(s)


def _stubbed_eval(tok, tmp_path, monkeypatch, control, never=0, collapsed=False, route="always"):
    """evaluate() with scripted models: the adapter recalls the ingested needles from memory and nothing else; the base
    reads whatever context it is given (it answers by echoing the prompt)."""
    import json

    import longrecall.lift.evaluate as ev
    import longrecall.models

    sample = generate_sample(GenSpec(task="multiquery", n_needles=4, length=2048, seed=3), tok).to_dict()
    questions = needle_questions(sample)
    adapter_dir = tmp_path / "adapter"
    adapter_dir.mkdir()
    kept = questions[0]["text"]  # only the first needle lies in the kept head/tail
    (adapter_dir / "context.json").write_text(json.dumps({"head": f"Intro. {kept} More.", "tail": "The end."}))
    (tmp_path / "input.json").write_text(json.dumps(sample))
    (adapter_dir / "vocabulary.json").write_text(json.dumps(sorted(vocabulary(sample["context"]))))
    adapter, base = object(), type("Base", (), {"eval": lambda self: self})()
    is_open = [True]
    monkeypatch.setattr(ev, "set_route", lambda model, open_: is_open.__setitem__(0, open_))
    manifest = {"base_model": "tiny", "adapter": "gated", "input_tokens": 2048}
    monkeypatch.setattr(ev, "load", lambda d: (adapter, tok, manifest))
    monkeypatch.setattr(longrecall.models, "load_model", lambda name, dtype=None: base)
    prompts = {"adapter": [], "base": []}

    def generate(model, _tok, messages, max_new_tokens=32):
        who = "adapter" if model is adapter and is_open[0] else "base"  # a shut adapter is the base model
        prompts[who].append(messages)
        text = " ".join(m["content"] for m in messages)
        if who == "base":
            return text
        fallback = questions[0]["answer"] if collapsed else "I don't know."
        return next((q["answer"] for q in questions if q["question"] in text), fallback)

    monkeypatch.setattr(ev, "_generate", generate)
    result = ev.evaluate(adapter_dir, tmp_path / "input.json", tmp_path / "out", control=control, never=never, route=route)
    return result, sample, prompts


def test_evaluate_scores_each_model_and_mode_and_the_control_set(tok, tmp_path, monkeypatch):
    import json

    result, sample, prompts = _stubbed_eval(tok, tmp_path, monkeypatch, control=3)
    assert result["needles"] == 4 and result["outside_kept_context"] == 3
    assert result["recall_no_context"] == 100.0 and result["recall_truncated"] == 100.0  # the adapter remembers
    assert result["base_no_context"] == 0.0 and result["base_truncated"] == 25.0  # the base sees only the kept needle
    assert result["outside_base_truncated"] == 0.0 and result["outside_adapter_truncated"] == 100.0
    # LIFT + retrieval row: the same questions through the memory, the base reading (here echoing) the evidence
    assert result["recall_retrieval"] == 100.0
    # Control: questions about another text, given in context. The base reads it; this adapter answers only from its
    # memory of the ingested input, so the control catches it (the "must not get worse" check).
    assert result["control_base"] == 100.0 and result["control_adapter"] == 0.0
    n = len(ev_chats())
    controls = {who: prompts[who][-3 - n:-n] for who in ("adapter", "base")}
    assert [m[0]["content"] for m in prompts["base"][-n:]] == list(ev_chats())  # then the ordinary chats, to both
    # The scripted adapter answers chats "I don't know." and the base echoes them: none is the same as the base's.
    assert result["chats_same_as_base"] == 0.0 and len(json.loads((tmp_path / "out" / "chats.json").read_text())) == n
    assert controls["adapter"] == controls["base"]  # same control prompts for both models
    needle_texts = [n["text"] for n in sample["needles"]]
    for messages in controls["base"]:
        text = " ".join(m["content"] for m in messages)
        assert len(tok(text)["input_ids"]) > 500  # the other text is in the prompt, not only a question
        assert not any(t in text for t in needle_texts)  # and it is not the ingested input
    assert len({json.dumps(m) for m in controls["base"]}) == 3  # three different control samples
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert saved == result and len(json.loads((tmp_path / "out" / "questions.json").read_text())) == 4


def ev_chats():
    from longrecall.lift.evaluate import CHATS

    return CHATS


@pytest.mark.parametrize("collapsed,rate", [(False, 0.0), (True, 100.0)])
def test_false_recall_counts_memorised_values_given_for_keys_never_ingested(tok, tmp_path, monkeypatch, collapsed, rate):
    import json

    result, sample, _ = _stubbed_eval(tok, tmp_path, monkeypatch, control=0, never=5, collapsed=collapsed)
    assert result["never_ingested_questions"] == 5 and result["false_recall"] == rate
    saved = json.loads((tmp_path / "out" / "never_ingested.json").read_text())
    assert len(saved) == 5 and all(q["key"] not in json.dumps(sample) for q in saved)


def test_the_entity_route_keeps_the_memory_for_ingested_keys_and_the_base_model_for_the_rest(tok, tmp_path, monkeypatch):
    """The same scripted adapter that ruins the control and recalls memorised values for unknown keys (above), routed:
    memory questions still open it, control, never-ingested keys and chats reach the base model."""
    result, _, _ = _stubbed_eval(tok, tmp_path, monkeypatch, control=3, never=5, collapsed=True, route="entity")
    assert result["route"] == "entity" and result["recall_no_context"] == 100.0
    assert result["adapter_opened"] == {"memory questions": 100.0, "in-context control": 0.0, "never ingested": 0.0, "ordinary chats": 0.0}
    assert result["control_adapter"] == result["control_base"] == 100.0
    assert result["false_recall"] == 0.0 and result["chats_same_as_base"] == 100.0


def test_evaluate_without_control_reports_none(tok, tmp_path, monkeypatch):
    result, _, _ = _stubbed_eval(tok, tmp_path, monkeypatch, control=0)
    assert result["control_adapter"] is None and result["control_base"] is None


def test_evaluate_runs_on_a_real_tiny_ingest(tok, tmp_path):
    """The control path with real models: a gated-memory ingest of a tiny model, then every mode and one control."""
    import json

    from longrecall.config import load_config
    from longrecall.lift.evaluate import evaluate
    from longrecall.lift.ingest import IngestConfig, ingest
    from longrecall.models import tiny_model

    base = tmp_path / "tiny"
    tiny_model(len(tok)).save_pretrained(base)
    tok.save_pretrained(base)
    sample = generate_sample(GenSpec(task="multiquery", n_needles=2, length=1024, seed=5), tok).to_dict()
    (tmp_path / "input.json").write_text(json.dumps(sample))
    cfg = load_config(IngestConfig, "configs/lift-cpu-smoke.yaml", {"model": str(base), "max_steps": 2, "loss_eval_segments": 0})
    ingest(tmp_path / "input.json", tmp_path / "adapter", cfg, progress=False)
    result = evaluate(tmp_path / "adapter", tmp_path / "input.json", tmp_path / "eval", control=1, never=2)
    routed = evaluate(tmp_path / "adapter", tmp_path / "input.json", tmp_path / "eval-routed", control=1, never=2, route="entity")
    assert routed["adapter_opened"]["memory questions"] == 100.0 and routed["adapter_opened"]["never ingested"] == 0.0
    assert routed["chats_same_as_base"] == 100.0  # shut: the base model's own answers
    assert result["needles"] == 2 and result["adapter"] == "gated"
    gates = json.loads((tmp_path / "eval" / "gates.json").read_text())
    assert set(gates) == {"memory questions", "in-context control", "ordinary chats"}
    assert set(result["mean_gate"]) == set(gates) and (tmp_path / "eval" / "gates.png").exists()
    assert result["false_recall"] in (0.0, 50.0, 100.0) and len(json.loads((tmp_path / "eval" / "controls.json").read_text())) == 1
    for key in ("recall_no_context", "recall_truncated", "base_truncated", "base_no_context", "control_adapter", "control_base"):
        assert result[key] in (0.0, 50.0, 100.0), key
