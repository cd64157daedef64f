"""A small sentence grammar: the text source that needs nothing installed.

Templates over short word lists give millions of distinct, plain English
sentences (statements, questions, requests, with numbers, prices, years,
times and ordinals so that normalisation is exercised). Deterministic for a
given seed.
"""

from __future__ import annotations

import random
from typing import Iterator

NAMES = ("Anna Ben Clara David Emma Frank Grace Henry Iris Jack Karen Leo Maria Nora Oscar "
         "Paula Quentin Rosa Samuel Tina Victor Wendy Yusuf Zoe Martin Helen Peter Lucy").split()
ADJECTIVES = ("old young small large quiet noisy bright dark warm cold heavy light green red blue "
              "yellow brown clever lazy happy tired busy careful strange famous simple gentle "
              "narrow wide empty crowded wooden broken golden silver ancient modern friendly "
              "rusty shiny muddy sleepy hungry polite curious proud").split()
NOUNS = (("cat", "cats"), ("dog", "dogs"), ("teacher", "teachers"), ("farmer", "farmers"),
         ("doctor", "doctors"), ("child", "children"), ("sailor", "sailors"),
         ("baker", "bakers"), ("student", "students"), ("neighbour", "neighbours"),
         ("horse", "horses"), ("bird", "birds"), ("engineer", "engineers"),
         ("painter", "painters"), ("driver", "drivers"), ("musician", "musicians"),
         ("gardener", "gardeners"), ("writer", "writers"), ("soldier", "soldiers"),
         ("fisherman", "fishermen"), ("pilot", "pilots"), ("nurse", "nurses"))
THINGS = (("book", "books"), ("letter", "letters"), ("box", "boxes"), ("key", "keys"),
          ("table", "tables"), ("window", "windows"), ("cup", "cups"), ("lamp", "lamps"),
          ("coat", "coats"), ("basket", "baskets"), ("bottle", "bottles"), ("map", "maps"),
          ("clock", "clocks"), ("chair", "chairs"), ("bicycle", "bicycles"),
          ("ticket", "tickets"), ("picture", "pictures"), ("apple", "apples"),
          ("candle", "candles"), ("blanket", "blankets"), ("stone", "stones"),
          ("bell", "bells"), ("drum", "drums"), ("rope", "ropes"), ("boat", "boats"),
          ("carpet", "carpets"), ("mirror", "mirrors"), ("jacket", "jackets"))
PLACES = ("the kitchen", "the garden", "the station", "the market", "the library", "the harbour",
          "the village", "the office", "the museum", "the bridge", "the forest", "the river",
          "the school", "the hospital", "the bakery", "the hill", "the square", "the beach",
          "the attic", "the cellar", "the farm", "the castle", "the valley", "the airport")
# (base, past) forms of transitive verbs.
VERBS = (("find", "found"), ("carry", "carried"), ("paint", "painted"), ("open", "opened"),
         ("close", "closed"), ("sell", "sold"), ("buy", "bought"), ("mend", "mended"),
         ("hide", "hid"), ("clean", "cleaned"), ("move", "moved"), ("drop", "dropped"),
         ("borrow", "borrowed"), ("lend", "lent"), ("wrap", "wrapped"), ("count", "counted"),
         ("send", "sent"), ("fetch", "fetched"), ("lose", "lost"), ("keep", "kept"),
         ("bring", "brought"), ("throw", "threw"), ("pack", "packed"), ("measure", "measured"))
INTRANSITIVE = (("sleep", "slept"), ("wait", "waited"), ("sing", "sang"), ("laugh", "laughed"),
                ("arrive", "arrived"), ("work", "worked"), ("rest", "rested"),
                ("listen", "listened"), ("walk", "walked"), ("travel", "travelled"),
                ("dance", "danced"), ("swim", "swam"), ("shout", "shouted"),
                ("whisper", "whispered"), ("wander", "wandered"))
ADVERBS = ("slowly quickly quietly loudly carefully happily early late again together "
           "suddenly patiently eagerly calmly gladly").split()
TIMES = ("yesterday", "this morning", "last night", "on Monday", "on Friday", "after lunch",
         "before dinner", "at noon", "in the evening", "last week", "every day", "in winter",
         "in the spring", "on Sunday afternoon")
MONTHS = ("January February March April May June July August September October November "
          "December").split()
RELATIVES = "brother sister mother father uncle aunt cousin grandmother grandfather friend".split()


def _pick(rng: random.Random, items):
    return items[rng.randrange(len(items))]


def _subject(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return _pick(rng, NAMES)
    noun = _pick(rng, NOUNS)
    if rng.random() < 0.3:
        return f"the {_pick(rng, ADJECTIVES)} {noun[1]}"
    return f"the {_pick(rng, ADJECTIVES)} {noun[0]}" if rng.random() < 0.6 else f"the {noun[0]}"


def _object(rng: random.Random) -> str:
    thing = _pick(rng, THINGS)
    if rng.random() < 0.25:
        return f"{rng.randint(2, 99)} {thing[1]}"
    return f"the {_pick(rng, ADJECTIVES)} {thing[0]}" if rng.random() < 0.7 else f"the {thing[0]}"


def _sentence(rng: random.Random) -> str:
    form = rng.randrange(10)
    subject = _subject(rng)
    verb = _pick(rng, VERBS)
    intr = _pick(rng, INTRANSITIVE)
    if form == 0:
        return f"{subject} {verb[1]} {_object(rng)} in {_pick(rng, PLACES)} {_pick(rng, TIMES)}."
    if form == 1:
        return f"Why did {subject} {verb[0]} {_object(rng)} {_pick(rng, TIMES)}?"
    if form == 2:
        return (f"My {_pick(rng, RELATIVES)} bought a {_pick(rng, ADJECTIVES)} "
                f"{_pick(rng, THINGS)[0]} for ${rng.randint(2, 400)}.{rng.randint(10, 99)}.")
    if form == 3:
        return (f"In {rng.randint(1850, 2024)}, {subject} {intr[1]} {_pick(rng, ADVERBS)} "
                f"near {_pick(rng, PLACES)}.")
    if form == 4:
        day = rng.randint(1, 28)
        return (f"{_pick(rng, NAMES)} and {_pick(rng, NAMES)} will {verb[0]} {_object(rng)} on "
                f"the {day}{_suffix(day)} of {_pick(rng, MONTHS)}.")
    if form == 5:
        minutes = _pick(rng, ("00", "15", "30", "45"))
        return f"Please {verb[0]} {_object(rng)} before {rng.randint(1, 12)}:{minutes}."
    if form == 6:
        thing = _pick(rng, THINGS)
        return (f"There are {rng.randint(2, 250)} {_pick(rng, ADJECTIVES)} {thing[1]} in "
                f"{_pick(rng, PLACES)}.")
    if form == 7:
        return (f"{subject} {intr[1]} {_pick(rng, ADVERBS)} while {_subject(rng)} {verb[1]} "
                f"{_object(rng)}.")
    if form == 8:
        return f"Did {subject} really {intr[0]} in {_pick(rng, PLACES)} {_pick(rng, TIMES)}?"
    return (f"{subject} {verb[1]} {_object(rng)} because {_subject(rng)} {intr[1]} "
            f"{_pick(rng, ADVERBS)}.")


def _suffix(day: int) -> str:
    if day % 10 in (1, 2, 3) and day not in (11, 12, 13):
        return ("st", "nd", "rd")[day % 10 - 1]
    return "th"


def generate_sentences(seed: int = 0) -> Iterator[str]:
    """An endless stream of distinct sentences, the same for the same seed."""
    rng = random.Random(f"demo-grammar-{seed}")
    seen: set[str] = set()
    while True:
        sentence = _sentence(rng)
        sentence = sentence[0].upper() + sentence[1:]
        if sentence not in seen:
            seen.add(sentence)
            yield sentence
