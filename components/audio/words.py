"""Negative words: the phrase's own parts, confusables and everyday English.

A detector that has only heard the whole phrase and unrelated words learns to fire on
any part of it. Feeding it the phrase's pieces ("acti", "vate") and near-rhymes as
negatives makes it wait for the whole phrase.
"""
from __future__ import annotations

import re

import numpy as np

# Everyday words people say near a device; none shares much sound with "activate".
COMMON_WORDS = """
about above across after again against air all almost alone along already also always
among animal answer any anything apple around baby back ball bank basket beautiful bed
before begin behind believe below between bicycle bird black blue boat body book both
bottle bread bring brother brown building bus business but buy call camera candle car
careful carry cat chair change cheese chicken child children city clean clock close
cloud coffee cold color come computer cook corner country course cover cup dance dark
daughter dinner doctor dog dollar door down dream dress drink drive during early earth
easy eat egg eight either electric enough evening every example eye face family far
farm father feel field finger finish fire first fish five floor flower follow food foot
forest forget four free friday friend from front fruit full garden girl give glass go
gold good grass great green ground group grow hair half hand happy hard hat have head
hear heart heavy hello help here high hill history hold holiday home horse hospital hot
hour house hundred husband idea important inside island jacket job juice jump just
keep key kitchen knife know lake language large last late laugh learn leave left lemon
letter library light listen little long look lunch machine make many market matter
maybe meeting milk minute money monday month morning mother mountain mouth move music
name near never news next night nine noise north nothing number ocean office often
old open orange other outside paper parent park party people pencil person phone
picture place plant play please pocket police potato pretty problem question quiet
radio rain read really red remember rest rice right river road room round run salt
same saturday school science sea second seven shirt shoe short shoulder sister six sky
sleep slow small snow soft something sometimes song soon south speak spring square
station still stone story street strong student study sugar summer sunday supper sweet
table talk teacher team telephone television ten thank their there thing think three
thursday ticket today together tomorrow tonight tooth town train travel tree trouble
true tuesday turn twelve twenty two umbrella under until upstairs usually valley very
village visit voice wait walk wall warm wash watch water weather wednesday week welcome
west where while white window winter woman wonderful word work world write yellow
yesterday young zero
""".split()


def phrase_parts(phrase: str) -> list[str]:
    """Pieces of the phrase a detector must not fire on: its words (for a multi-word
    phrase) and, for each longer word, a front and a back part cut at a vowel boundary."""
    words = phrase.lower().split()
    parts = list(words) if len(words) > 1 else []
    for word in words:
        if len(word) < 5:
            continue
        # cut after the vowel group nearest the middle: "activate" -> "acti" + "vate"
        cuts = [m.end() for m in re.finditer(r"[aeiouy]+", word) if 1 < m.end() < len(word) - 1]
        if cuts:
            cut = min(cuts, key=lambda c: abs(c - len(word) / 2))
            parts += [word[:cut], word[cut:]]
    whole = " ".join(words)
    return sorted({p for p in parts if p != whole and len(p) > 1})


def negative_vocabulary(phrase: str, confusables: list[str], extra: list[str],
                        n_random: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """(hard negatives, random negatives) for a phrase, none of which contains it."""
    whole = " ".join(phrase.lower().split())
    hard = sorted({w.lower() for w in [*phrase_parts(phrase), *confusables, *extra]} - {whole})
    pool = [w for w in COMMON_WORDS if w not in hard and whole not in w and w not in whole]
    n = min(n_random, len(pool))
    random_words = sorted(rng.choice(pool, size=n, replace=False).tolist()) if n else []
    return hard, random_words
