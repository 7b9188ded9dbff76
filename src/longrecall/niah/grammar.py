"""A compositional grammar of training phrasings (`--phrasing grammar`): many surface forms per meaning.

The `train` pools hold a handful of fixed sentences each (6 needle templates, 5 questions, 6 names...). A model
trained on them learns those sentences, and misreads a question worded another way. The grammar composes openers,
cores and closers into hundreds of forms per pool, so that what stays constant across forms is the meaning, not
the words. It never produces a held-out form: its parts avoid the held-out pools' distinctive words, and
tests/niah/test_grammar.py checks every expansion against them.

Chains and non-literal needles grow from niah/grammar_relations.py; pools without a grammar (narratives, variable
tracking, ...) use their `train` pool under `grammar`.
"""
from __future__ import annotations

import functools
import itertools

from . import needles as N


def _compose(openers: list[str], cores: list[str], closers: list[str] = ("",)) -> list[str]:
    """Every opener + core + closer; an empty opener capitalises the core (cores that open on a slot need one)."""
    out = []
    for o, c, z in itertools.product(openers, cores, closers):
        if not o and c.startswith("{"):
            continue
        text = (o + c) if o else c[0].upper() + c[1:]
        out.append(text + z)
    return out


# Extra names per value kind (the train names are kept). None shares a word with a held-out name
# (vault combination, reference number, hidden number, watchword, secret term, serial identifier, record uuid).
_NAMES = {
    "number": ["PIN code", "door code", "locker number", "ticket number", "badge number", "account number",
               "security code", "lock code", "membership number", "room code", "entry code", "personal number"],
    "word": ["passphrase", "magic word", "key word", "signal word", "password", "cipher word", "safe word",
             "login word"],
    "uuid": ["unique id", "device uuid", "session id", "object id", "asset identifier", "universal id"],
}

_NEEDLE_OPENERS = ["", "Remember this: ", "For the record, ", "Note that ", "It is worth knowing that ",
                   "Keep in mind that ", "Incidentally, ", "As it happens, ", "Important: ", "By the way, ",
                   "Please note: ", "One detail matters here: ", "Someone mentioned that "]
_NEEDLE_CORES = [
    "the {name} for {key} is {value}.", "the {name} of {key} is {value}.", "{key} has the {name} {value}.",
    "{value} is the {name} for {key}.", "the {name} assigned to {key} is {value}.",
    "the {name} that belongs to {key} is {value}.", "{key} was given the {name} {value}.",
    "the {name} registered to {key} reads {value}.", "{key} uses {value} as its {name}.",
    "the {name} linked to {key} is {value}.", "{key} is paired with {value} as its {name}.",
    "the {name} on file for {key} is {value}.", "{value} serves as the {name} of {key}.",
]

_ASK_OPENERS = ["", "According to the document, ", "Based on the text, ", "From the context above, ",
                "Using only the text, ", "Quick question: ", "One question: ", "Reading the passage, "]
_ONE_CORES = [
    "what is the {name} for {key}?", "what is the {name} of {key}?", "which {name} belongs to {key}?",
    "what {name} does {key} have?", "what {name} was given to {key}?", "which {name} is assigned to {key}?",
    "what does the document list as the {name} for {key}?", "find the {name} for {key}.", "report the {name} for {key}.",
    "state the {name} of {key}.", "retrieve the {name} assigned to {key}.", "what is {key} using as its {name}?",
    "which value is the {name} of {key}?", "what was recorded as the {name} for {key}?",
]
_ALL_OF_KEY_CORES = [
    "what are all the {names} for {key}?", "list every {name} for {key} mentioned in the text.",
    "give all of the {names} that belong to {key}.", "which {names} are assigned to {key}?",
    "name every {name} of {key}.", "what {names} does {key} have? List them all.",
    "report all {names} recorded for {key}.", "list the {names} linked to {key}, every one of them.",
]
_EVERY_CORES = [
    "list every {name} mentioned in the text.", "what are all the {names} in the document? List each one.",
    "find all of the {names} hidden in the text and list them.", "name all the {names} that appear in the text.",
    "which {names} occur in the document? Give every one.", "report all the {names} the text contains.",
    "list each {name} from the text, without missing any.", "how many {names} are there, and what are they?",
]
_ASK_CLOSERS = ["", " Answer from the text.", " Be exact."]

_SYSTEMS = ["You are a helpful assistant.", "You are a careful reader who answers questions about long documents.",
            "You answer questions using only the text you are given.", "You are a precise assistant.",
            "You read documents and answer questions about them.", "You are a helpful, exact assistant.",
            "Answer questions about the given text accurately."]
_INSTRUCTION_OPENERS = ["Read the following text carefully.", "Below is a long document.", "Here is a document.",
                        "You will be given a text.", "The text below contains some facts.",
                        "Consider the following document.", "What follows is a long text."]
_INSTRUCTION_CLOSERS = [" A question about it follows.", " Answer the question at the end.",
                        " The answer is somewhere in the text.", " Then answer the question that comes after it.",
                        " Some facts are hidden in it; find the one the question asks for."]


@functools.lru_cache(maxsize=None)
def _tables() -> dict[int, list[str]]:
    from .generate import INSTRUCTIONS, SYSTEMS

    def grown(pair, extra):
        train = list(pair[0])
        return train + [x for x in extra if x not in train]

    tables = {
        id(N.NEEDLE_TEMPLATES): grown(N.NEEDLE_TEMPLATES, _compose(_NEEDLE_OPENERS, _NEEDLE_CORES)),
        id(N.QUESTIONS_ONE): grown(N.QUESTIONS_ONE, _compose(_ASK_OPENERS, _ONE_CORES, _ASK_CLOSERS)),
        id(N.QUESTIONS_ALL_OF_KEY): grown(N.QUESTIONS_ALL_OF_KEY, _compose(_ASK_OPENERS, _ALL_OF_KEY_CORES, _ASK_CLOSERS)),
        id(N.QUESTIONS_EVERY): grown(N.QUESTIONS_EVERY, _compose(_ASK_OPENERS, _EVERY_CORES, _ASK_CLOSERS)),
        id(SYSTEMS): grown(SYSTEMS, _SYSTEMS),
        id(INSTRUCTIONS): grown(INSTRUCTIONS, [o + c for o in _INSTRUCTION_OPENERS for c in _INSTRUCTION_CLOSERS]),
    }
    for kind, pair in N.NAMES.items():
        tables[id(pair)] = grown(pair, _NAMES[kind])
    for name, (pair, extra) in _relation_pairs().items():
        tables[id(pair)] = grown(pair, extra)
    return tables


def _relation_pairs() -> dict[str, tuple[tuple, list]]:
    """The chain and non-literal pools and what the grammar adds to each (niah/grammar_relations.py)."""
    from . import chains as C
    from . import grammar_relations as R
    from . import lexicon as X

    out = {f"chain_forward_{k}": (C.FORWARD_PAIRS[k], R.forward_questions(k)) for k in C.FORWARD_PAIRS}
    out["chain_backward"] = (C.BACKWARD_PAIR, R.backward_questions())
    out |= {f"chain_hop_{k}": (C.HOPS[k], R.HOPS[k]) for k in C.HOPS}
    out |= {"nl_items": (X.NL_ITEMS, R.NL_ITEMS), "nl_put": (X.NL_PUT, R.NL_PUT), "nl_q1": (X.NL_Q1, R.NL_Q1),
            "nl_q2": (X.NL_Q2, R.NL_Q2)}
    return out


def pool(pair: tuple[list, list]) -> list[str]:
    """The grammar's forms for one (train, held-out) pair; the train pool where the grammar has none."""
    return list(_tables().get(id(pair), pair[0]))


def pools() -> dict[str, list[str]]:
    """Every grown pool by name (for tests and `longrecall niah families`-style listings)."""
    from .generate import INSTRUCTIONS, SYSTEMS

    named = {"needle": N.NEEDLE_TEMPLATES, "question_one": N.QUESTIONS_ONE, "question_all_of_key": N.QUESTIONS_ALL_OF_KEY,
             "question_every": N.QUESTIONS_EVERY, "system": SYSTEMS, "instruction": INSTRUCTIONS}
    named |= {f"name_{k}": pair for k, pair in N.NAMES.items()}
    named |= {name: pair for name, (pair, _) in _relation_pairs().items()}
    return {name: pool(pair) for name, pair in named.items()}
