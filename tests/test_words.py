"""Negative words: the phrase's parts and its phoneme-neighbour confusables (components/audio/words.py)."""
import numpy as np

from components.audio.words import negative_vocabulary, phoneme_confusables, phoneme_neighbours, phrase_parts


def test_phoneme_neighbours_are_near_in_sound_but_never_the_word_itself():
    near = phoneme_neighbours("computer")
    # K AH M P Y UW T ER: commuter drops P (1 edit), compactor changes two phonemes
    assert near["commuter"] == 1 and near["compute"] == 1 and near["compactor"] == 2
    # a homophone, and words that hold the whole sound, are what a detector should fire on
    assert "computer" not in near and "computers" not in near
    assert all(1 <= d <= 2 for d in near.values())
    # a short word allows one edit only
    assert set(phoneme_neighbours("hey").values()) == {1}
    assert phoneme_neighbours("zzqxv") == {}  # not in the dictionary: nothing invented


def test_phoneme_confusables_swap_one_word_of_the_phrase_and_are_seeded():
    found = phoneme_confusables("hey jarvis", 30, np.random.default_rng(0))
    assert len(found) == 30 and found == sorted(found)
    assert found == phoneme_confusables("hey jarvis", 30, np.random.default_rng(0))
    assert found != phoneme_confusables("hey jarvis", 30, np.random.default_rng(1))
    pairs = [text.split() for text in found]
    assert all(len(p) == 2 and (p[0] == "hey") != (p[1] == "jarvis") for p in pairs)
    # both words of the phrase take turns, so neither crowds the other out
    assert sum(p[0] == "hey" for p in pairs) == 15
    assert phoneme_confusables("computer", 4, np.random.default_rng(0)) == sorted(
        phoneme_confusables("computer", 4, np.random.default_rng(0)))
    assert len(phoneme_confusables("computer", 4, np.random.default_rng(0))) == 4


def test_negative_vocabulary_holds_parts_given_and_found_confusables_but_never_the_phrase():
    hard, random_words = negative_vocabulary("Computer", ["keyboard"], ["mouse"], 50, 20, np.random.default_rng(0))
    assert {"commuter", "compute", "keyboard", "mouse", *phrase_parts("computer")} <= set(hard)
    assert "computer" not in hard and not {"computer", *hard} & set(random_words)
    assert len(random_words) == 20
    without, _ = negative_vocabulary("computer", ["keyboard"], [], 0, 20, np.random.default_rng(0))
    assert "commuter" not in without and "keyboard" in without
