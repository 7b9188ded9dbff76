"""Training forms of the related-needle families (chains, non-literal needles) for `--phrasing grammar`.

The `train` pools of these families are tiny: one chain question per target kind, one backward question, three
sentences per hop, ten non-literal word pairs. A reader trained on them learns those words: it answers "bike"
when asked for a bicycle, but not "wallet" when asked for a billfold. The forms here widen what stays constant to
the relation itself. None is a held-out form or echoes one (tests/niah/test_grammar.py checks every 4-word run),
and no word pair here shares a word with the held-out pairs of lexicon.NL_ITEMS.
"""
from __future__ import annotations

from itertools import product

# Chain questions asked forward (from the person to the last hop), per kind of that last hop. {p}, {item}.
_FORWARD_OPENERS = ["", "Using only the notes, ", "From the text, ", "Tracing the facts, ", "Quick question: "]
_FORWARD_CORES = {
    "locker": ["which locker holds {p}'s {item}?", "what locker is {p}'s {item} kept in?",
               "what is the number of the locker with {p}'s {item}?", "the {item} of {p} sits in which locker?"],
    "room": ["in which room is {p}'s {item} kept?", "what room holds the locker with {p}'s {item}?",
             "which room would you enter to get {p}'s {item}?", "the {item} of {p} is in what room?"],
    "building": ["in which building is {p}'s {item} kept?", "what building holds {p}'s {item}?",
                 "which building would you visit to get {p}'s {item}?", "the {item} of {p} is in what building?"],
    "city": ["in which city is {p}'s {item} kept?", "what city holds {p}'s {item}?",
             "which city would you travel to for {p}'s {item}?", "the {item} of {p} is in what city?"],
}
_FORWARD_CLOSERS = ["", " Follow the facts from the person.", " Give only the name.", " Trace each hop."]

# Chain questions asked backward (from the last hop to the person). {item}, {where}.
_BACKWARD_OPENERS = ["", "Using only the notes, ", "From the text, ", "Tracing the facts, "]
_BACKWARD_CORES = ["whose {item} is kept in {where}?", "who owns the {item} that is kept in {where}?",
                   "the {item} in {where} is whose?", "which person's {item} is stored in {where}?",
                   "whose {item} can be traced to {where}?", "who is the owner of the {item} in {where}?"]
_BACKWARD_CLOSERS = ["", " Follow the facts back to the person.", " Name the person.", " Trace the facts back."]

# One more set of sentences per hop. a = this hop's entity, b = the next one.
HOPS = {
    "locker": ["{a} stores the {item} in locker {b}.", "The {item} owned by {a} sits in locker {b}.",
               "{a}'s {item} is in locker {b}.", "Locker {b} is where {a} keeps the {item}.",
               "{a} put the {item} into locker {b}."],
    "room": ["Locker {a} sits in room {b}.", "Locker {a} can be found in room {b}.", "Room {b} has locker {a} in it.",
             "Locker {a} is kept in room {b}."],
    "building": ["Room {a} is part of {b}.", "Room {a} is inside {b}.", "{b} contains room {a}.",
                 "You reach room {a} through {b}."],
    "city": ["{a} is in the city of {b}.", "{a} can be found in the city of {b}.", "The city of {b} has {a}.",
             "{a} lies in {b}."],
}

# Non-literal word pairs beyond lexicon.NL_ITEMS' ten: (word in the needle, word in the question), no shared stem.
NL_ITEMS = [
    ("flashlight", "torch"), ("wallet", "billfold"), ("purse", "handbag"), ("scarf", "muffler"),
    ("duvet", "comforter"), ("cushion", "pillow"), ("bunny", "rabbit"), ("sneakers", "trainers"),
    ("television", "telly"), ("fridge", "refrigerator"), ("lorry", "truck"), ("scooter", "moped"),
    ("hoodie", "sweatshirt"), ("necklace", "pendant"), ("bucket", "pail"), ("cot", "crib"), ("mug", "tumbler"),
    ("parakeet", "budgie"), ("tortoise", "turtle"), ("kayak", "canoe"),
    ("spanner", "wrench"), ("mallet", "hammer"), ("scissors", "shears"), ("gown", "dress"),
    ("photos", "snapshots"), ("biscuits", "cookies"), ("sweets", "candy"), ("headphones", "earbuds"),
    ("wristwatch", "timepiece"), ("diary", "logbook"), ("novel", "paperback"), ("dictionary", "lexicon"),
    ("stallion", "horse"), ("canary", "songbird"), ("yacht", "sailboat"), ("skates", "rollerblades"),
    ("cabinet", "cupboard"), ("bouquet", "flowers"), ("overalls", "dungarees"), ("mittens", "gloves"),
    ("perfume", "fragrance"), ("letters", "mail"),
]
# Where a person put something. {p}, {item}, {place}.
NL_PUT = ["{p} keeps their {item} in the {place}.", "{p} dropped their {item} off at the {place}.",
          "{p}'s {item} sits in the {place}.", "{p} hid their {item} in the {place}.",
          "{p} forgot their {item} at the {place}.", "The {item} of {p} was left in the {place}."]
# Questions of one hop and of two (place, then part of town). {p}, {item}.
NL_Q1 = ["Where is {p}'s {item}?", "In which place is {p}'s {item}?", "Where can the {item} of {p} be found?",
         "Where would someone find {p}'s {item}?", "What place has the {item} of {p}?"]
NL_Q2 = ["In which part of town is {p}'s {item}?", "What part of town is {p}'s {item} in?",
         "Which part of town has the place with {p}'s {item}?", "{p}'s {item} lies in which part of town?"]


def _joined(openers, cores, closers) -> list[str]:
    return [(o + c if o else c[0].upper() + c[1:]) + z for o, c, z in product(openers, cores, closers)]


def forward_questions(kind: str) -> list[str]:
    return _joined(_FORWARD_OPENERS, _FORWARD_CORES[kind], _FORWARD_CLOSERS)


def backward_questions() -> list[str]:
    return _joined(_BACKWARD_OPENERS, _BACKWARD_CORES, _BACKWARD_CLOSERS)
