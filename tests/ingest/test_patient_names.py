"""Patient names as people write them (issue 23): unit tests of ingest/patients.py, no database."""

from ingest.patients import (
    FAMILY_NAME,
    FULL_NAME,
    GIVEN_NAME,
    IDENTIFIER,
    NamedPatient,
    fold,
    match_strength,
    naming_words,
    patients_matching,
    question_words,
    within_one_edit,
)

VINCENZO_B = NamedPatient(1, "Vincenzo126", "Bergstrom287", ("MRN-0042-77",))
VINCENZO_K = NamedPatient(2, "Vincenzo33", "Kling921")
ABEL = NamedPatient(3, "Abel832", "Muller251")
RUBEN = NamedPatient(4, "Rubén780", "Valentín837")
MELDA = NamedPatient(5, "Melda993", "O'Connell601")
ANN = NamedPatient(6, "Ann1", "Lee2")
PATIENTS = [VINCENZO_B, VINCENZO_K, ABEL, RUBEN, MELDA, ANN]


def ids(question: str) -> list[int]:
    return [p.patient_id for p in patients_matching(question, PATIENTS)]


def test_fold_drops_case_accents_and_the_digits_a_source_adds():
    assert fold("Bergström287") == "bergstrom"
    assert fold("VALENTÍN837") == "valentin"
    assert fold("O'Connell601") == "o'connell"


def test_possessives_and_punctuation_are_not_part_of_a_name():
    assert question_words("What was Vincenzo's BP?") == ["What", "was", "Vincenzo", "BP"]
    assert question_words("Abel\u2019s allergies") == ["Abel", "allergies"]


def test_one_edit_is_a_typo_two_are_another_name():
    assert within_one_edit("vincenso", "vincenzo")  # replaced
    assert within_one_edit("bergstrm", "bergstrom")  # deleted
    assert within_one_edit("mullerr", "muller")  # inserted
    assert within_one_edit("muelr", "mueler") and within_one_edit("mlluer", "mluler")  # swapped
    assert not within_one_edit("chris", "chrissy")
    assert not within_one_edit("kling", "klein")


def test_names_as_people_write_them_find_the_patient():
    assert ids("Is Abel allergic to anything?") == [3]  # given name alone
    assert ids("what's muller's latest bp") == [3]  # surname alone, lower case, possessive
    assert ids("Is Abel832 Muller251 allergic?") == [3]  # as the record writes it
    assert ids("Abel Mueller allergies") == [3]  # one-letter typo of the surname
    assert ids("When was Ruben Valentin diagnosed?") == [4]  # without the accents
    assert ids("Melda O'Connell's medications") == [5]
    assert ids("MRN-0042-77 allergies") == [1]  # an identifier


def test_a_shared_first_name_matches_both_and_a_surname_settles_it():
    assert ids("What was Vincenzo's most recent blood pressure?") == [1, 2]
    assert ids("Vincenso Bergstrom bp") == [1]
    assert ids("vincenzo kling allergies") == [2]


def test_the_strongest_kind_of_match_decides():
    words = question_words("Vincenzo Bergstrom allergies")
    assert match_strength(VINCENZO_B, words) == FULL_NAME
    assert match_strength(VINCENZO_K, words) == GIVEN_NAME
    assert match_strength(VINCENZO_B, question_words("Bergstrom")) == FAMILY_NAME
    assert match_strength(VINCENZO_B, ["MRN-0042-77"]) == IDENTIFIER


def test_short_names_need_the_exact_word_and_question_words_are_never_names():
    assert ids("Does Ann Lee have allergies") == [6]
    assert ids("and what about allergies") == []  # "and" is not "Ann"
    assert ids("what is his last blood pressure") == []
    last = NamedPatient(7, "Will1", "Last2")
    assert patients_matching("Will the last result be shown?", [last]) == []


def test_naming_words_are_left_out_of_what_is_asked():
    words = naming_words("When was Ruben Valentín diagnosed with seizures?", RUBEN)
    assert {"ruben", "valentin"} <= words and "seizures" not in words
    assert "mueller" in naming_words("Abel Mueller allergies", ABEL)
