"""Texts for synthetic speech: wake-word phrases, near misses, and ordinary household talk.

The ordinary sentences are written for this project: a fixed list plus templates with slots, so a
seeded generator yields hours of varied, keyword-free speech.
"""

from __future__ import annotations

import numpy as np

KEYWORD_PHRASES: dict[str, tuple[str, ...]] = {
    "okay_nabu": ("okay nabu", "ok nabu"),
    "hey_jarvis": ("hey jarvis",),
    "alexa": ("alexa",),
    "hey_mycroft": ("hey mycroft",),
    "hey_rhasspy": ("hey rhasspy",),
}

# Phrases that sound close to a keyword; none of them is one.
NEAR_MISSES: dict[str, tuple[str, ...]] = {
    "okay_nabu": ("okay now boo", "okay nah bro", "okay new book", "okay navy", "okay maybe", "okay no",
                  "hey nobody", "okay nap time"),
    "hey_jarvis": ("hey travis", "hey service", "hey marvin", "hey harvest", "a jar of this", "hey jealous",
                   "hey jay", "the jar is"),
    "alexa": ("alex", "alexander", "a lexus", "alexis", "electra", "elixir", "alas", "I'll expect her"),
    "hey_mycroft": ("hey microsoft", "my craft", "hey my cross", "minecraft", "hey micro", "mice croft",
                    "my crowd", "hey my car"),
    "hey_rhasspy": ("hey raspberry", "hey rusty", "hey wasp", "raspy voice", "hey rascal", "hey russ",
                    "a rasp", "hey rosie"),
}

# More near misses, for the tuning and held-out splits (`near_misses`): names and words that share a
# keyword's first or last part, or its rhythm.
EXTRA_NEAR_MISSES: dict[str, tuple[str, ...]] = {
    "okay_nabu": ("okay, not now", "okay neighbour", "okay, new boots", "oh hey, Nadia", "okay, my view",
                  "okay, the news", "okay numbers", "okay, a new bulb"),
    "hey_jarvis": ("hey Davis", "hey Mavis", "hey Jarrod", "hey artist", "hey nervous", "hey, starving",
                   "hey Jasmine", "hey, carcass"),
    "alexa": ("Alaska", "Alicia", "Melissa", "relax a bit", "annex A", "Alex said", "a letter",
              "Alessandro"),
    "hey_mycroft": ("hey my loft", "hey Mike", "hey my croissant", "hey microchip", "hey, mind the crowd",
                    "my crofter", "hey my gloves", "I'm crafty"),
}


# The second, larger pool of near misses (`near_misses(..., pool=2)`), none of them in the lists above.
# Built the same way for every keyword: the keyword's carrier ("hey", "okay") kept and its name changed
# by one chunk (a syllable or a consonant cluster replaced, or one dropped), rhymes of the name, and the
# name's parts inside other words and names. A phrase that only changes the carrier ("hi jarvis") is
# not in it: that is the keyword said casually, which a user may well want to fire.
_NAME_VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    # keyword: (carrier, names that differ from the keyword's name by one chunk, or rhyme with it)
    "okay_nabu": ("okay", ("taboo", "bamboo", "kaboom", "nacho", "nada", "nab", "boo", "naval", "Naomi",
                           "Nairobi", "noodle", "nappy", "Nancy", "Nathan", "nibble", "nova", "Kabul",
                           "Abu", "Toby", "Ruby", "baby", "Gabby", "knobby", "nebula", "no bus", "Nabokov",
                           "Google", "nah, you", "Lulu", "Mabel")),
    "hey_jarvis": ("hey", ("Elvis", "Purvis", "Harvey", "Jervis", "Jarrett", "Jarvie", "Jordan", "Charles",
                           "Jasper", "jargon", "Carlos", "Marcus", "Marvel", "Darwin", "Davies", "Javi",
                           "Jarman", "Garvey", "Mervyn", "Nevis", "Sylvia", "Jolly", "Morris", "Curtis",
                           "Jar", "Viz", "Jarl", "Siri", "Jacques", "Parvez")),
    "alexa": ("", ("Alexei", "Alexandra", "Alexia", "Lexie", "Lexa", "Aleksi", "Alec's", "Aleta", "Alana",
                   "Alina", "Alyssa", "Odessa", "Vanessa", "Alpha", "Texas", "Mexico", "necklace", "flexor",
                   "reflex", "Felix", "Felicia", "Eleanor", "Alison", "Ellis", "Axel", "Elsa",
                   "Rebecca", "Lex", "Alexis said", "select her")),
    "hey_mycroft": ("hey", ("my crop", "my cough", "my crow", "microphone", "microwave", "mic check",
                            "my cat", "my crew", "my crumb", "my cruise", "my grocer", "micron",
                            "my clock", "my coffee", "my crayon", "my crest", "Bancroft", "Ashcroft",
                            "aircraft", "my draft", "croft", "my", "spacecraft", "witchcraft", "Lara Croft",
                            "hovercraft", "Myra", "my lift", "my craftsman", "mighty raft")),
}
# Sentences that carry a keyword's parts inside other words, for every keyword.
_PARTS_IN_WORDS: dict[str, tuple[str, ...]] = {
    "okay_nabu": ("the cabana by the pool", "okay, no boots in here", "put it on the navy blue", "a cabin boy",
                  "okay, nobody move", "poke a noodle", "oh, Kate, nab you one", "Okonkwo booked it"),
    "hey_jarvis": ("a jar of vinegar", "hey, jar this", "the carvings are nice", "heavy artist", "hey, Jess",
                   "a jarring noise", "they are vicious", "hay harvest"),
    "alexa": ("a lecture", "elect a leader", "collect a parcel", "relax a little", "a lexicon",
              "Alex, uh, wait", "I'll ask a friend", "the complexion"),
    "hey_mycroft": ("the microphone is on", "my crafts are here", "hey, mice", "a micro farm",
                    "hey, my cousin", "Microsoft Word", "my crowbar", "Mike rafted"),
}


def near_misses(keyword: str, part: int | None = None, pool: int = 1) -> tuple[str, ...]:
    """`keyword`'s near misses. Pool 1: the original list (`part` None), or one half of it and of
    `EXTRA_NEAR_MISSES` (`part` 0 or 1: alternate phrases), so a tuning and a held-out set share no
    phrase. Pool 2: the larger systematic pool (`_NAME_VARIANTS`, `_PARTS_IN_WORDS`), disjoint from
    pool 1, halved the same way."""
    if pool == 2:
        carrier, names = _NAME_VARIANTS.get(keyword, ("", ()))
        every = tuple(f"{carrier} {n}".strip() for n in names) + _PARTS_IN_WORDS.get(keyword, ())
        return every if part is None else every[part::2]
    if part is None:
        return NEAR_MISSES.get(keyword, ())
    every = NEAR_MISSES.get(keyword, ()) + EXTRA_NEAR_MISSES.get(keyword, ())
    return every[part::2]

SENTENCES = (
    "Could you take the rubbish out before the bin lorry comes tomorrow morning?",
    "I think the bread in the cupboard has gone a bit stale.",
    "The heating came on at five, but the living room is still cold.",
    "Remember that your dentist appointment moved to Thursday afternoon.",
    "We should plant the tomatoes once the frost has passed.",
    "Did anybody feed the cat this morning, or should I do it now?",
    "The washing machine finished ten minutes ago, the towels can go on the line.",
    "My phone battery is almost flat, where did you put the charger?",
    "Let's watch the documentary about whales after dinner.",
    "The traffic on the ring road was terrible again today.",
    "I found your gloves under the sofa cushion.",
    "Can you turn the oven down to one hundred and eighty degrees?",
    "The package was left with the neighbour at number twelve.",
    "We need to leave at half past seven to catch the early train.",
    "This soup needs a little more salt and some pepper.",
    "The kids have a swimming lesson on Saturday at nine.",
    "Please close the window, it's getting chilly in here.",
    "Have you seen the blue folder with the insurance papers?",
    "I'm going to the garden centre, do you want anything?",
    "The printer upstairs keeps jamming on the second page.",
    "Grandpa called to say he'll arrive on the Sunday bus.",
    "It looks like rain, so take an umbrella just in case.",
    "The football match starts at eight, so dinner should be early.",
    "I'll pick up milk, eggs and some apples on the way home.",
    "Somebody left the garage door open all night.",
    "The new curtains make the bedroom much darker in the morning.",
    "Don't forget to water the basil on the kitchen windowsill.",
    "We're running low on washing up liquid and dishwasher tablets.",
    "The doorbell battery needs replacing, it barely rings anymore.",
    "My back hurts after carrying those boxes up the stairs.",
    "The library closes early on Wednesdays during the summer.",
    "Shall we invite your parents for lunch next weekend?",
    "The car is due for a service before the end of the month.",
    "I can hear the neighbours' dog barking again.",
    "Put the leftovers in the fridge when they have cooled down.",
    "The recipe says to let the dough rest for an hour.",
    "I can't find the remote control anywhere in this room.",
    "The bus was twenty minutes late because of the roadworks.",
    "Let me know when the kettle boils and I'll make the tea.",
    "The light in the hallway flickers whenever the fridge starts.",
    "She said the meeting was moved to the small conference room.",
    "We could go for a walk by the river if the sun comes out.",
    "There's a strange noise coming from the boiler cupboard.",
    "The plumber will come between ten and twelve on Monday.",
    "My brother is bringing his new puppy to visit.",
    "The strawberries from the market were really sweet this year.",
    "Could you help me move the bookshelf into the corner?",
    "I left a note on the fridge about the school trip money.",
    "The internet has been slow all evening, maybe restart the router.",
    "Tomorrow is bin day, the recycling goes out too.",
    "He fixed the squeaky gate with a bit of oil.",
    "The baby finally fell asleep, so let's keep our voices down.",
    "Our flight leaves at six in the morning, we should pack tonight.",
    "Don't let the dog on the sofa with muddy paws.",
    "The pasta needs another two minutes, it's still a little hard.",
    "Next month we're repainting the kitchen a pale green.",
    "I've booked the table at the Italian place for eight people.",
    "The smoke alarm beeps when the battery is getting low.",
    "Let's put the heavier boxes at the bottom of the van.",
    "She's learning to play the piano and practises every evening.",
)

_PEOPLE = ("I", "we", "my sister", "the neighbours", "our kids", "the plumber", "my boss", "grandma",
           "the delivery driver", "the teacher", "my cousin", "your friend Sarah", "Tom", "Emma and David",
           "the landlord", "our doctor", "the new neighbour", "my uncle Peter")
_ACTIONS = ("left the keys on the kitchen table", "forgot to water the plants", "will be home around six",
            "wants pasta for dinner", "parked the car across the street", "finished the report early",
            "is watching the match in the lounge", "needs new running shoes",
            "called about the broken heater",
            "booked a table for Saturday", "lost the spare key again", "painted the fence last weekend",
            "is coming over for coffee", "fixed the leaking tap", "bought a second hand bicycle",
            "started a vegetable patch", "cleaned out the attic", "ordered a new sofa",
            "is running late because of the traffic", "made a chocolate cake for the party")
_TIMES = ("this morning", "yesterday", "last night", "on Tuesday", "after lunch", "before the meeting",
          "at the weekend", "an hour ago", "earlier today", "last month", "")
_PLACES = ("bakery", "pharmacy", "library", "post office", "train station", "supermarket", "swimming pool",
           "dentist", "hardware shop", "town hall", "garden centre", "butcher")
_THINGS = ("umbrella", "phone charger", "reading glasses", "remote control", "blue jacket", "notebook",
           "scissors", "car keys", "wallet", "headphones", "shopping list", "torch", "passport")
_FOODS = ("soup", "lasagne", "fish pie", "curry", "pancakes", "risotto", "a roast chicken", "fried rice",
          "vegetable stew", "sandwiches")
_ROOMS = ("kitchen", "bathroom", "hallway", "garage", "bedroom", "living room", "study", "porch")
_WEATHER = ("cold and windy", "warm and sunny", "grey and drizzly", "foggy", "much milder", "freezing")

_TEMPLATES = (
    "{person} {action} {time}.",
    "Did you know that {person} {action}?",
    "What time does the {place} close on Sundays?",
    "Can you pass me the {thing}, please?",
    "Have you seen my {thing} anywhere?",
    "I think I left the {thing} in the {room}.",
    "The weather is {weather} today, so dress warmly.",
    "Shall I make {food} for dinner tonight?",
    "The light in the {room} is still on.",
    "We're out of bread, I'll go to the {place} {time}.",
    "Apparently {person} {action}.",
    "Could you check whether the {room} window is shut?",
    "I'm not sure, but I think {person} {action}.",
    "The forecast says it will be {weather} tomorrow.",
)


def ordinary_sentences(n: int, rng: np.random.Generator, part: int | None = None) -> list[str]:
    """`n` sentences of everyday talk: the fixed list and template fills, shuffled.

    `part` 0 or 1 draws from one half of the fixed sentences and one half of the templates only
    (alternate entries), so a tuning and a held-out set say different things."""
    sentences = SENTENCES if part is None else SENTENCES[part::2]
    templates = _TEMPLATES if part is None else _TEMPLATES[part::2]
    out: list[str] = []
    while len(out) < n:
        if rng.random() < 0.35:
            out.append(str(rng.choice(sentences)))
            continue
        template = str(rng.choice(templates))
        text = template.format(
            person=rng.choice(_PEOPLE), action=rng.choice(_ACTIONS), time=rng.choice(_TIMES),
            place=rng.choice(_PLACES), thing=rng.choice(_THINGS), food=rng.choice(_FOODS),
            room=rng.choice(_ROOMS), weather=rng.choice(_WEATHER))
        text = text.replace(" .", ".").strip()
        out.append(text[0].upper() + text[1:])
    return out
