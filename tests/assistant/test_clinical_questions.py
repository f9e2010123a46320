"""What a clinician's question asks for (issue 23): assistant/clinical.py and the way facts are
shown (assistant/patient_answers.display). Unit tests, no database."""

import pytest

from assistant.clinical import clinical_ask
from assistant.patient_answers import display

NAMES = frozenset({"abel", "muller", "leonie"})


@pytest.mark.parametrize(
    "question",
    [
        "Is Abel allergic to anything?",
        "Does Abel have any allergies?",
        "any allergies for abel?",
        "Abel's allergies - anything on file?",
        "What allergies are recorded for Abel?",
    ],
)
def test_every_phrasing_of_allergies_asks_for_the_whole_list(question):
    ask = clinical_ask(question, name_words=NAMES)
    assert (ask.category, ask.item) == ("allergies", "")  # "anything" is never the topic


@pytest.mark.parametrize(
    "question",
    ["What medications is Leonie on?", "what is she taking", "any meds?", "Is Abel on anything?"],
)
def test_medication_questions_ask_for_the_current_ones(question):
    ask = clinical_ask(question, name_words=NAMES)
    assert ask.category == "medications" and ask.latest and ask.item == ""


def test_when_a_drug_was_started_asks_for_that_drug_at_any_time():
    ask = clinical_ask("When did Abel start taking fexofenadine?", name_words=NAMES)
    assert (ask.category, ask.item, ask.latest) == ("medications", "fexofenadine", False)
    ask = clinical_ask("When was Abel prescribed Penicillin V Potassium 250 MG?", name_words=NAMES)
    assert ask.category == "medications"  # not the potassium lab value


@pytest.mark.parametrize(
    ("question", "item", "words"),
    [
        ("What was Abel's most recent blood pressure?", "blood pressure", "blood pressure"),
        ("his last bp", "bp", "blood pressure"),
        ("What's Abel's latest HbA1c?", "hba1c", "hemoglobin a1c"),
        ("Abel's most recent LDL cholesterol?", "ldl cholesterol", "low density lipoprotein"),
    ],
)
def test_a_result_by_its_everyday_name_asks_for_its_latest_value(question, item, words):
    ask = clinical_ask(question, name_words=NAMES)
    assert ask.category == "observation" and ask.latest
    assert ask.item == item and words in ask.record_words


def test_a_diagnosis_verb_outranks_the_words_of_the_item():
    ask = clinical_ask(
        "When was Abel diagnosed with perennial allergic rhinitis?", name_words=NAMES
    )
    assert (ask.category, ask.item) == ("conditions", "perennial rhinitis")
    ask = clinical_ask("When was Abel diagnosed with Body mass index 30+?", name_words=NAMES)
    assert ask.category == "conditions"


def test_a_question_about_someone_without_a_category_is_still_about_a_patient():
    ask = clinical_ask("what did the doctor tell her?")
    assert ask.about_a_patient and ask.names_someone and not ask.recognised
    assert not clinical_ask("What is the termination notice period?").about_a_patient


def test_facts_are_shown_without_codes_and_with_measurement_noise_rounded_never_doses():
    line = "Most recent Blood Pressure (LOINC 55284-4): 126.84815502815191/73.65341356926074 mmHg."
    assert display(line) == "Blood Pressure: 126.8/73.7 mmHg"
    dose = "Current medication: Digoxin 0.125 MG Oral Tablet (RxNorm 309888), prescribed 2004."
    assert display(dose) == "Digoxin 0.125 MG Oral Tablet, prescribed 2004"
