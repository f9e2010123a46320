"""What a question about a patient asks for, in a clinician's words.

`clinical_ask` recognises the category of fact asked about (allergies, medications, problems,
results and vitals, immunizations, procedures, encounters, care plans, the date of birth) in
any phrasing ("allergic to anything", "any allergies", "on any meds", "what is she taking",
"her last BP"), the item within it when one is named ("penicillin", "HbA1c"), and whether the
question is about a patient at all (a category, or "he", "her", "the patient").
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Category -> the words that ask for it (regular expressions over the lower-cased question).
CATEGORY_PATTERNS: dict[str, str] = {
    "birth": r"\b(born|birth\s?date|date of birth|dob|birthday|how old)\b",
    "allergies": r"\b(allerg\w*|intoleran\w*)\b",
    "immunizations": r"\b(immuni[sz]\w*|vaccin\w*|shots?|jabs?)\b",
    "procedures": r"\b(procedures?|surger\w*|operations?|operated)\b",
    "medications": (
        r"\b(medications?|meds|medicines?|drugs?|prescri\w*|tablets?|pills?|taking|takes?|"
        r"started|start|put on|on (?:any|anything|what|currently|now|at the moment))\b"
        r"|\b(?:what|is) (?:is |are )?\w+ on\b"
    ),
    "conditions": (
        r"\b(conditions?|diagnos\w*|problems?|diseases?|disorders?|illness\w*|history of|"
        r"suffer\w*)\b"
    ),
    "encounters": r"\b(visits?|encounters?|admissions?|admitted|appointments?)\b",
    "care_plans": r"\b(care\s?plans?|treatment plans?)\b",
}
# Results and vitals by the names clinicians use -> the words the records use for them.
OBSERVATIONS: dict[str, tuple[str, ...]] = {
    "blood pressure": ("blood pressure",),
    "bp": ("blood pressure",),
    "heart rate": ("heart rate",),
    "pulse": ("heart rate",),
    "respiratory rate": ("respiratory rate",),
    "temperature": ("temperature",),
    "temp": ("temperature",),
    "weight": ("body weight",),
    "height": ("body height",),
    "bmi": ("body mass index", "bmi"),
    "body mass index": ("body mass index",),
    "hba1c": ("hemoglobin a1c", "hba1c"),
    "a1c": ("hemoglobin a1c", "hba1c"),
    "glucose": ("glucose",),
    "blood sugar": ("glucose",),
    "cholesterol": ("cholesterol",),
    "ldl": ("low density lipoprotein", "ldl"),
    "hdl": ("high density lipoprotein", "hdl"),
    "ldl cholesterol": ("low density lipoprotein", "ldl"),
    "hdl cholesterol": ("high density lipoprotein", "hdl"),
    "total cholesterol": ("total cholesterol", "cholesterol [mass/volume]"),
    "triglycerides": ("triglycerides",),
    "creatinine": ("creatinine",),
    "egfr": ("glomerular filtration rate",),
    "hemoglobin": ("hemoglobin",),
    "haemoglobin": ("hemoglobin",),
    "platelets": ("platelets",),
    "oxygen saturation": ("oxygen saturation",),
    "spo2": ("oxygen saturation",),
    "o2 sat": ("oxygen saturation",),
    "o2 sats": ("oxygen saturation",),
    "sats": ("oxygen saturation",),
    "resp rate": ("respiratory rate",),
    "rr": ("respiratory rate",),
    "hr": ("heart rate",),
    "pain": ("pain severity",),
    "smoking": ("tobacco smoking status",),
    "potassium": ("potassium",),
    "sodium": ("sodium",),
    "calcium": ("calcium",),
    "chloride": ("chloride",),
    "urea nitrogen": ("urea nitrogen",),
    "bun": ("urea nitrogen",),
}
_DIAGNOSED = r"\bdiagnos\w*"
_PRESCRIBED = r"\b(prescri\w*|started on|start(?:ed)? (?:on|taking)|put on|began taking)\b"
_OBSERVATION_WORDS = r"\b(results?|labs?|vitals?|vital signs|readings?|measurements?|levels?)\b"
_LATEST = r"\b(latest|last|most recent|recent|current|newest|lately)\b"
# A question about medications asks for the current ones unless it asks when, or for the past.
_NOT_CURRENT = (
    r"\b(when|start\w*|began|begin|first|past|previous\w*|ever|history|stopped|used to)\b"
)
_ABOUT_SOMEONE = r"\b(he|she|his|her|hers|him|they|their|them|patient|pt)\b"
# Words that only shape the question ("is", "any", "recorded"): never the item asked about.
FILLER = frozenset(
    """a about after all an and any anything are as at be been before being but by can chart
    could current currently date day did do does done during ever every for from get got had has
    have having he her hers him his how i if in is it its just kind know last latest list lately
    look may me most my new no not now of on or other our patient patients please pt record
    records recorded recent right see seen she show since so some something tell than that the
    their them then there these they this those to up was we were what whats when where which
    who whom whose why will with would yes you your ago documented given type types value
    values result results level levels reading readings measured measurement moment file
    put first anything something currently mrn id number chart notes""".split()
)
CATEGORY_WORDS = frozenset(
    """allergic allergy allergies allergen allergens intolerance intolerances medication
    medications meds medicine medicines drug drugs prescribed prescription prescriptions taking
    take takes taken took tablet tablets pill pills started start condition conditions diagnosed
    diagnosis diagnoses problem problems disease diseases disorder disorders illness history suffer
    suffers suffering immunization immunizations immunisation immunisations vaccine vaccines
    vaccination vaccinations vaccinated shot shots jab jabs procedure procedures surgery
    surgeries operation operations operated visit visits encounter encounters admission
    admissions admitted appointment appointments born birth birthdate dob birthday old age
    care plan plans lab labs vital vitals signs""".split()
)
# Everyday names of items -> the words records use ("flu shot" is an Influenza vaccine).
ITEM_SYNONYMS: dict[str, tuple[str, ...]] = {
    "flu": ("influenza",),
    "covid": ("covid-19", "sars-cov-2"),
    "tetanus": ("td", "tdap"),
    "pneumonia": ("pneumococcal",),
    "sugar": ("glucose",),
    "diabetes": ("diabetes",),
    "asthma": ("asthma",),
    "penicillin": ("penicillin", "amoxicillin"),
    # Common prescribing abbreviations.
    "hctz": ("hydrochlorothiazide",),
    "asa": ("aspirin",),
    "apap": ("acetaminophen",),
    "ntg": ("nitroglycerin",),
    "mtx": ("methotrexate",),
    "ace": ("lisinopril", "enalapril", "ramipril"),
}
_TOKEN = re.compile(r"[a-z0-9][a-z0-9.\-/]*")


@dataclass(frozen=True)
class ClinicalAsk:
    category: str  # one of CATEGORY_PATTERNS, "observation", or "" (not recognised)
    item: str  # what is asked about within the category ("penicillin"), "" for all of it
    latest: bool  # the most recent value or the current items are asked for
    about_a_patient: bool  # the question is about a patient, named or not
    names_someone: bool = False  # "he", "her", "the patient": a person, whatever the category
    record_words: tuple[str, ...] = ()  # how the records name an observation item

    @property
    def recognised(self) -> bool:
        return bool(self.category)


def _tokens(text: str) -> list[str]:
    plain = unicodedata.normalize("NFKD", text.lower())
    plain = "".join(c for c in plain if not unicodedata.combining(c))
    return [t.strip(".-/") for t in _TOKEN.findall(plain) if t.strip(".-/")]


def clinical_ask(question: str, *, name_words: frozenset[str] = frozenset()) -> ClinicalAsk:
    """The category, item and recency a question asks for; `name_words` (the patient's name,
    folded) are left out of the item."""
    text = " " + " ".join(re.sub(r"['\u2019]s\b", "", question.lower()).split()) + " "
    latest = bool(re.search(_LATEST, text))
    observation = ""
    category = ""
    record_words: tuple[str, ...] = ()
    # A verb that names the kind of fact outranks the words of the item: "diagnosed with
    # allergic rhinitis" asks for a diagnosis, "prescribed penicillin V potassium" for a drug.
    if re.search(_DIAGNOSED, text):
        category = "conditions"
    elif re.search(_PRESCRIBED, text):
        category = "medications"
    else:
        observation = _observation(text)
        if observation:
            category, record_words = "observation", OBSERVATIONS[observation]
    if not category:
        for name, pattern in CATEGORY_PATTERNS.items():
            if re.search(pattern, text):
                category = name
                break
        if not category and re.search(_OBSERVATION_WORDS, text):
            category = "observation"
    item = observation or _item(text, name_words)
    if not category and item and re.search(r"\b(have|has|had|get|got|develop\w*)\b", text):
        category = "conditions"  # "When did she have COVID?": a diagnosis
    if category == "medications":
        latest = not re.search(_NOT_CURRENT, text)
    someone = bool(re.search(_ABOUT_SOMEONE, text))
    about = bool(category) or someone
    if category == "observation":
        latest = latest or bool(observation)
    return ClinicalAsk(
        category=category,
        item=item,
        latest=latest,
        about_a_patient=about,
        names_someone=someone,
        record_words=record_words,
    )


def _observation(text: str) -> str:
    """The longest result or vital name the question uses ("blood pressure" before "pressure")."""
    for name in sorted(OBSERVATIONS, key=len, reverse=True):
        if re.search(rf"\b{re.escape(name)}\b", text):
            return name
    return ""


def _item(text: str, name_words: frozenset[str]) -> str:
    words = [
        w
        for w in _tokens(text)
        if w not in FILLER
        and w not in CATEGORY_WORDS
        and w not in name_words
        and w.rstrip("0123456789") not in name_words
        and len(w) > 1
    ]
    return " ".join(words)
