"""Word lists of the newer families (non-literal needles, narratives, visited cities), each as (train, held-out).

Answer vocabularies (places, districts, cities) are closed, so the reward can charge every other one an answer
names. Held-out halves never appear in training data, not even as distractors.
"""
from __future__ import annotations

# Where things are kept or people go: the answers of the non-literal and narrative families. Words chosen to be
# absent from the procedural prose haystack (which has gardens, orchards, workshops, kitchens, ...).
PLACES = (
    "boathouse pharmacy stable barn kiosk garage cellar pantry observatory bandstand conservatory porch shed loft "
    "basement veranda laundry gymnasium nursery bathroom"
).split()

# Parts of town (the second hop of a two-hop non-literal needle). Train and held-out halves.
DISTRICTS = (
    "Dunmore Fairhaven Holloway Kingsmere Ashby Westbury Marlow Redfern".split(),
    "Cobham Elmsworth Brackley Pendle Hartfield Sorrelby Wrenton Quarrington".split(),
)

# Non-literal pairs: (word in the needle, word in the question), never sharing a stem. A sample may swap them.
NL_ITEMS = (
    [("bike", "bicycle"), ("sofa", "couch"), ("jacket", "coat"), ("spectacles", "glasses"), ("cash", "money"),
     ("suitcase", "luggage"), ("medicine", "pills"), ("notebook", "journal"), ("puppy", "dog"), ("phone", "mobile")],
    [("automobile", "car"), ("kitten", "cat"), ("trousers", "pants"), ("ring", "jewellery"), ("laptop", "computer"),
     ("cap", "hat"), ("rug", "carpet"), ("rucksack", "backpack"), ("stroller", "pram"), ("sweater", "jumper")],
)

# Where a person put something (one hop). {p} the person, {item} the needle word, {place} the answer.
NL_PUT = (
    ["{p} left their {item} at the {place}.", "{p} stashed their {item} inside the {place}.",
     "{p} put their {item} away in the {place}."],
    ["{p} tucked their {item} into a corner of the {place}.", "Last week {p} stored their {item} at the {place}."],
)
# Which district a place is in (the second hop).
NL_DISTRICT = (
    ["The {place} is in the {district} district.", "The {place} stands in {district}."],
    ["{district} is home to the {place}.", "Anyone walking through {district} passes the {place}."],
)
# Questions share no content word with the needles but the person's name. {p} the person, {item} the question word.
NL_Q1 = (
    ["Where should someone look for the {item} that belongs to {p}?", "Which place holds the {item} owned by {p}?"],
    ["If you wanted {p}'s {item}, where would you go?", "{p} needs the {item} back. Where is it?"],
)
NL_Q2 = (
    ["In which part of town should someone look for the {item} that belongs to {p}?",
     "Which part of town holds the {item} owned by {p}?"],
    ["{p} needs the {item} back. Which part of town must they visit?",
     "If you wanted {p}'s {item}, which part of town would you go to?"],
)

# Narrative: objects carried from place to place.
OBJECTS = (
    "lantern basket parcel trophy kettle map drum clock".split(),
    "hamper vase globe typewriter chessboard candlestick birdcage accordion".split(),
)
TAKE = (
    ["{p} picked up the {obj} in the {place}.", "In the {place}, {p} took the {obj}."],
    ["{p} grabbed the {obj} from a shelf in the {place}.", "While in the {place}, {p} lifted the {obj}."],
)
MOVE = (
    ["{p} went to the {place}.", "{p} walked into the {place}.", "Then {p} moved to the {place}."],
    ["{p} headed over to the {place}.", "Later, {p} wandered into the {place}."],
)
GIVE = (
    ["{p} handed the {obj} to {q}.", "{p} gave the {obj} to {q}."],
    ["{p} passed the {obj} over to {q}.", "{q} received the {obj} from {p}."],
)
WHERE_Q = (
    ["Where is the {obj} now?", "In which place is the {obj} at the end?"],
    ["After all of this, where would you find the {obj}?", "Where did the {obj} end up?"],
)

# Visited cities (all-needles by category): real cities, one word each, unlikely in the haystacks.
TRAVEL_CITIES = (
    "Lisbon Nairobi Osaka Porto Bergen Hanoi Quito Dakar Riga Tallinn Seville Hobart Cusco Tbilisi Accra Lima "
    "Perth Kyoto Zagreb Manila".split(),
    "Reykjavik Mombasa Oaxaca Krakow Marrakesh Zanzibar Galway Valletta Bruges Salzburg Havana Cairo Lahore "
    "Santiago Montreal Auckland Helsinki Ljubljana Bogota Windhoek".split(),
)
VISITED = (
    ["{p} spent a week in {city}.", "Last spring {p} travelled to {city}.", "{p} flew to {city} for a wedding."],
    ["{p} has been to {city} twice.", "{p} toured {city} by train.", "Photos from {p}'s trip to {city} hang in the hall."],
)
NOT_VISITED = (
    ["{p} has never been to {city}.", "{p} hopes to see {city} one day.", "{p} read a novel set in {city}."],
    ["{p} keeps meaning to go to {city} but never has.", "{p} watched a film about {city}.",
     "A letter addressed to someone in {city} sat unsent on {p}'s desk."],
)
CATEGORY_Q = (
    ["List every city that, according to the text, someone has visited.",
     "Which cities has anyone in the text actually been to? Name each one."],
    ["Name all the cities the text says people travelled to, and no others.",
     "Someone in the text went to several cities. Which ones? List them all."],
)

# Key-value lines: a record format per sample; the haystack is made of the same lines. {key}, {value}.
KV_FORMATS = (
    ["{key}: {value};", "{key} = {value};", "key {key} has value {value};"],
    ["{key} -> {value};", "[{key}] {value};", "{key} | {value};"],
)
KV_Q = (
    ["What value does {key} have?", "Give the value stored for {key}."],
    ["Which value is listed next to {key}?", "Among the records, find {key}. What is its value?"],
)
