"""Needle values (7-digit numbers, words, UUIDs), keys, and the sentences that carry them, in several phrasings.

Phrasings come in two pools: `train` (used to make training data) and `heldout` (only for evaluation), so a
report can show whether the skill transfers to wordings the model never saw.
"""
from __future__ import annotations

import random
import uuid as _uuid

from .task import pool  # noqa: F401  (one phrasing-pool picker for every family: train, grammar, heldout, any)

KEYS = (
    "abiding accurate adamant aggressive alluring ambitious ancient anxious aromatic astonishing bashful "
    "belligerent bewildered boundless brave breezy brilliant bustling callous capricious careful cautious "
    "charming cheerful clumsy colossal courageous crafty crooked curious damaged dazzling decisive delightful "
    "devoted diligent dizzy dramatic dusty eager earnest elegant eloquent enchanted energetic envious exotic "
    "fabulous faithful fearless feeble ferocious fierce flashy fluffy foolish fragile frantic friendly frosty "
    "furtive gentle giant gifted glamorous gleaming gloomy glorious graceful grumpy handsome harmonious hasty "
    "helpful hilarious honest humble hungry icy idle immense impartial innocent jagged jealous jolly joyous "
    "jubilant keen kind knowing lavish lazy lively lonely loyal lucky luminous majestic marvelous meek mellow "
    "merciful mighty modest moody mysterious naive nervous nimble noble noisy obedient odd opulent orange "
    "outgoing painful pastoral peaceful perfect pious plucky polite precious proud puzzled quaint quick quiet "
    "radiant rapid rare reckless regal resolute restless rich rigid robust rustic sacred salty savage scarce "
    "secretive serene shaggy shiny shy silent silky skillful sleepy slender sly smooth solemn sparkling steady "
    "stormy striped sturdy subtle sunny superb swift tame tender thankful thoughtful thrifty timid tranquil "
    "tricky truthful unique upbeat vagabond valiant vast velvet vibrant vigilant vivid wandering wary wealthy "
    "whimsical wicked wild wise witty wobbly wonderful zany zealous"
).split()

NOUNS = (
    "badger beacon canyon cathedral comet compass falcon fjord glacier harbor harvest lantern lighthouse "
    "meadow monsoon nebula orchard otter pebble pelican quarry raven reef saddle sapphire sparrow summit "
    "thistle tundra violin walrus willow zephyr anchor bramble cinder dagger ember garnet hickory juniper "
    "kestrel lagoon marigold nutmeg oyster parsnip quill riddle sequoia tambourine umbrella vortex"
).split()

VALUE_WORDS = (
    "apricot avalanche banjo barometer biscuit blizzard buttercup cactus caravan cobblestone coconut "
    "cricket crocodile daffodil dolphin dragonfly dumpling eclipse emerald firefly flamingo galaxy gazebo "
    "geyser gondola hammock hedgehog hurricane iceberg igloo jasmine kangaroo kiwi labyrinth lemonade "
    "limousine lobster mandolin marshmallow meteor mosaic mushroom nightingale noodle octopus origami "
    "pancake papaya parachute peacock penguin pepper pinecone porcupine pretzel pumpkin quartz rainbow "
    "raspberry rhubarb saxophone scarecrow seashell snowflake spaghetti squirrel starfish strawberry "
    "sunflower tornado trampoline tulip turquoise typhoon vanilla volcano waffle waterfall xylophone yacht zebra"
).split()

# What a needle of each value kind is called: (train names, held-out names).
NAMES = {
    "number": (
        ["special magic number", "secret code", "access code", "pass key", "lucky number", "registration number"],
        ["vault combination", "reference number", "hidden number"],
    ),
    "word": (
        ["special magic word", "secret password", "code word", "hidden word"],
        ["watchword", "secret term"],
    ),
    "uuid": (
        ["special magic uuid", "unique identifier", "tracking id"],
        ["serial identifier", "record uuid"],
    ),
}

# Sentences that carry a needle: (train, held-out). {name} is the needle's name, {key} its key, {value} its value.
NEEDLE_TEMPLATES = (
    [
        "One of the {names} for {key} is: {value}.",
        "The {name} for {key} is {value}.",
        "Remember this: the {name} of {key} is {value}.",
        "For the record, {key} has the {name} {value}.",
        "Note that the {name} assigned to {key} is {value}.",
        "It is worth knowing that {value} is the {name} for {key}.",
    ],
    [
        "Write this down: {key} goes with the {name} {value}.",
        "Among the notes was this line: {name} of {key} = {value}.",
        "Do not forget that {key}'s {name} is {value}.",
    ],
)

# Questions about one needle: (train, held-out).
QUESTIONS_ONE = (
    [
        "What is the {name} for {key}?",
        "What is the {name} for {key} mentioned in the text?",
        "Which {name} belongs to {key}?",
        "Find the {name} for {key}. What is it?",
        "According to the document, what is the {name} of {key}?",
    ],
    [
        "Tell me {key}'s {name}.",
        "The text names a {name} for {key}. Give it.",
        "Look up the {name} that goes with {key}.",
    ],
)

QUESTIONS_ALL_OF_KEY = (
    [
        "What are all the {names} for {key}?",
        "List every {name} for {key} mentioned in the text.",
        "Give all of the {names} that belong to {key}.",
    ],
    [
        "Which {names} does the text give for {key}? Name them all.",
        "Collect each {name} stated for {key}.",
    ],
)

QUESTIONS_EVERY = (
    [
        "List every {name} mentioned in the text.",
        "What are all the {names} in the document? List each one.",
        "Find all of the {names} hidden in the text and list them.",
    ],
    [
        "Enumerate each {name} that appears anywhere above.",
        "Go through the text and write down every {name} you find.",
    ],
)

ANSWER_FORMATS = (
    ["", "Answer briefly.", "Reply with just the answer.", "Answer in one short sentence."],
    ["Keep the answer short.", "Only give the answer, nothing else."],
)


def plural(name: str) -> str:
    return name + "s" if not name.endswith("s") else name


def make_value(kind: str, rng: random.Random) -> str:
    if kind == "number":
        return str(rng.randint(1_000_000, 9_999_999))
    if kind == "word":
        return rng.choice(VALUE_WORDS)
    if kind == "uuid":
        return str(_uuid.UUID(int=rng.getrandbits(128), version=4))
    raise ValueError(kind)


def make_key(rng: random.Random) -> str:
    return f"{rng.choice(KEYS)}-{rng.choice(NOUNS)}"


def needle_sentence(template: str, name: str, key: str, value: str) -> str:
    return template.format(name=name, names=plural(name), key=key, value=value)


def distinct(rng: random.Random, make, n: int, avoid=()) -> list:
    """n distinct values from `make(rng)`, none in `avoid`."""
    seen = set(avoid)
    out = []
    for _ in range(n * 1000):
        v = make(rng)
        if v not in seen:
            seen.add(v)
            out.append(v)
            if len(out) == n:
                return out
    raise ValueError("could not draw enough distinct values")
