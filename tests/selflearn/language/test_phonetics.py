"""CMUdict phonetics: neighbours one phoneme edit apart, the edit distance."""

from selflearn.language import phonetics


def test_phonetic_neighbours_are_one_phoneme_apart():
  nb = phonetics.phonetic_neighbours(["dragons", "milk", "zzzznotaword"])
  assert "dragon" in nb["dragons"] and nb["zzzznotaword"] == ()
  prons = phonetics.pronunciations()
  for w in nb["milk"]:
    assert w != "milk" and phonetics.edit_distance(prons["milk"], prons[w]) <= 1  # homophones count
  assert phonetics.edit_distance(("A", "B"), ("B",)) == 1 and phonetics.edit_distance((), ("A", "B")) == 2
