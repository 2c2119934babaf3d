"""Deterministic test and benchmark data for the curation stage (decontamination, filters).

* :func:`paraphrase_question` / :func:`verbatim_copy`: the kind of benchmark leak a training
  set really contains (a light rewrite, or an exact copy), to plant and then catch.
* :func:`synthetic_questions`: template-built USMLE-style vignettes that are neither copies of
  benchmark questions nor near-duplicates of each other (every sentence carries numbers or
  slots drawn from large pools).
* :func:`synthetic_trace_records` / :func:`write_synthetic_store`: teacher traces as the
  generate stage stores them, with a realistic mix of truncated, unterminated, looping and
  refused outputs. The ground-truth kind of each trace is in ``endpoint``
  (``synthetic://ok``, ``synthetic://truncated``, ``synthetic://no_final``,
  ``synthetic://loop``, ``synthetic://refusal``).

Everything is a pure function of its seed / ``random.Random``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from medistill.data.schema import Question
from medistill.prompts import TEMPLATES
from medistill.store import TraceRecord, TraceStore, trace_key

# --------------------------------------------------------------------------------------------
# Paraphrase
# --------------------------------------------------------------------------------------------

_SENT_SPLIT = re.compile(r"(?<=[.?!])\s+(?=[A-Z(\"'])")
_AGE = re.compile(r"\b(\d{1,3})(\s?-\s?|\s)(year|yr|month|week|day)(s?)(\s?-\s?|\s)old\b")
_NUM = r"(\d{2,3}(?:\.\d)?)\s?"
# A "C (F)" pair, an "F (C)" pair, or a lone temperature.
_TEMP = re.compile(
    rf"{_NUM}°C\s?\({_NUM}°F\)|{_NUM}°F\s?\({_NUM}°C\)|(?<![\d.])(\d{{2,3}}(?:\.\d)?)\s?°([CF])"
)
_BP = re.compile(r"(?<![\w./])(\d{2,3})/(\d{2,3})(\s?)(mm Hg|mmHg)")
_UNIT = re.compile(
    r"(?<![\w.,/])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(\s?)"
    r"(mg/dL|mg/dl|mEq/L|mmol/L|g/dL|g/dl|ng/mL|pg/mL|U/L|/mm3|/mm³|/μL|mm Hg|mmHg|"
    r"/min|per minute|%|kg|cm|mm/h|μU/mL|mIU/mL)(?![\w/])"
)
_BARE_INT = re.compile(r"(?<![\w.,/\-])(\d{1,3})(?![\w.,/%°]|\d)")
_ANY_INT = re.compile(r"\d+")
_UNIT_SWAP = {
    "mg/dL": "mg/dl",
    "mg/dl": "mg/dL",
    "g/dL": "g/dl",
    "g/dl": "g/dL",
    "mm Hg": "mmHg",
    "mmHg": "mm Hg",
    "/min": "per minute",
    "per minute": "/min",
    "/mm3": "/mm³",
    "/mm³": "/mm3",
}
_SYNONYMS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b([Pp])resents to\b"), "comes to"),
    (re.compile(r"\b([Pp])resented to\b"), "came to"),
    (re.compile(r"\b([Mm])ost likely\b"), "most probable"),
    (re.compile(r"\b([Pp])hysician(s?)\b"), "doctor{s}"),
    (re.compile(r"\b([Ee])mergency department\b"), "emergency room"),
    (re.compile(r"\b([Cc])omplains of\b"), "reports"),
    (re.compile(r"\b([Ss])hortness of breath\b"), "dyspnea"),
    (re.compile(r"\b([Pp])hysical examination shows\b"), "examination shows"),
    (re.compile(r"\b([Ll])aboratory studies show\b"), "lab tests show"),
    (re.compile(r"\b([Ii])s brought to\b"), "is taken to"),
    (re.compile(r"\b([Ww])hich of the following\b"), "which of these"),
]
_SEX_WORD = re.compile(r"\b(man|woman|boy|girl)\b")
_THE_PATIENT = re.compile(r"\b([Tt])he patient\b(?!['’])")


def _keep_case(first: str, word: str) -> str:
    return word[0].upper() + word[1:] if first.isupper() else word[0].lower() + word[1:]


def _synonym_sub(pat: re.Pattern[str], repl: str, text: str) -> str:
    def sub(m: re.Match[str]) -> str:
        plural = m.group(2) if pat.groups >= 2 else ""
        return _keep_case(m.group(1), repl.format(s=plural or ""))

    return pat.sub(sub, text)


def _fmt_like(value: float, like: str) -> str:
    """``value`` printed with the decimals and thousands separators of ``like``."""
    dec = len(like.split(".")[1]) if "." in like else 0
    s = f"{value:,.{dec}f}" if "," in like else f"{value:.{dec}f}"
    return s


def _nudge(raw: str, rng: random.Random, upper: float | None = None) -> str:
    """A slightly different number printed like ``raw`` (always a different string)."""
    v = float(raw.replace(",", ""))
    dec = len(raw.split(".")[1]) if "." in raw else 0
    step = 10.0**-dec
    if "," in raw:
        step = 100.0
    for _ in range(8):
        delta = v * rng.uniform(0.02, 0.09) * rng.choice((-1, 1))
        if abs(delta) < step:
            delta = step * rng.choice((-1, 1)) * rng.randint(1, 3)
        new = round((v + delta) / step) * step
        if upper is not None and new > upper:
            new = v - step * rng.randint(1, 3)
        if new > 0:
            out = _fmt_like(new, raw)
            if out != raw:
                return out
    return _fmt_like(v + step, raw)


def _decap(s: str) -> str:
    """Lower-case the first letter unless the word looks like an acronym (``CT``, ``HIV``)."""
    return s if s[1:2].isupper() or s[:2] == "I " else s[:1].lower() + s[1:]


def _reorder(stem: str, rng: random.Random) -> tuple[str, bool]:
    """Swap non-final sentences (the final question stays last), or comma clauses."""
    sents = _SENT_SPLIT.split(stem.strip())
    body, last = sents[:-1], sents[-1:]
    if len(body) >= 2:
        idx = list(range(len(body)))
        # Keep the opening sentence (it introduces the patient) when there is enough to move.
        lo = 1 if len(body) >= 3 else 0
        for _ in range(1 + (len(body) >= 5) + (len(body) >= 8)):
            i, j = rng.sample(range(lo, len(body)), 2)
            idx[i], idx[j] = idx[j], idx[i]
        if idx == sorted(idx):
            idx[lo], idx[lo + 1] = idx[lo + 1], idx[lo]
        new = [body[i] for i in idx]
        if new != body:
            return " ".join(new + last), True
    # Too few sentences to move: reorder the comma clauses of the longest sentence that has
    # some (the body first, then the final question).
    pool = body + last
    order = [*sorted(range(len(body)), key=lambda i: -len(body[i])), len(body)]
    k = next((i for i in order if ", " in pool[i]), None)
    if k is None:
        return stem, False
    target = pool[k]
    parts = target.split(", ")
    end = ""
    if parts[-1] and parts[-1][-1] in ".?!:":
        end, parts[-1] = parts[-1][-1], parts[-1][:-1]
    if len(parts) >= 4:
        i, j = rng.sample(range(1, len(parts) - 1), 2)
    elif len(parts) == 3:
        i, j = 1, 2
    else:
        i, j = 0, 1
    a, b = parts[i], parts[j]
    if i == 0:  # the clause moving to the front takes the capital
        a, b = _decap(a), b[:1].upper() + b[1:]
    if b.lower().startswith("and "):  # "x, y, and z" -> "x, z, and y"
        a, b = "and " + a, b[4:]
        if i == 0:
            b = b[:1].upper() + b[1:]
    parts[i], parts[j] = b, a
    new_target = ", ".join(parts) + end
    if new_target == target:
        return stem, False
    pool[k] = new_target
    return " ".join(pool), True


def _space(unit: str) -> str:
    """The space between a number and ``unit`` in the usual style (``86/min``, ``7 mg/dL``)."""
    return "" if unit[0] in "/%" or unit == "mmHg" else " "


def _change_numbers(stem: str, rng: random.Random) -> tuple[str, int]:
    """Change ages (always), temperatures, blood pressures and lab values; swap unit spellings.

    Returns the new stem and how many numbers changed (at least one when the stem has any)."""
    changed = 0
    ages: dict[str, str] = {}

    def age(m: re.Match[str]) -> str:
        nonlocal changed
        n, unit = m.group(1), m.group(3)
        if n not in ages:
            v = int(n)
            if unit == "year" and v >= 18:
                new = v + rng.choice((-6, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 7))
                new = max(new, 18)
            else:
                new = v + rng.choice((-2, -1, 1, 2)) if v > 2 else v + rng.randint(1, 2)
            if new == v:
                new = v + 1
            ages[n] = str(new)
        changed += 1
        return f"{ages[n]}{m.group(2)}{unit}{m.group(4)}{m.group(5)}old"

    stem = _AGE.sub(age, stem)

    def temp(m: re.Match[str]) -> str:
        nonlocal changed
        changed += 1
        jitter = rng.choice((-0.3, -0.2, -0.1, 0.1, 0.2, 0.3))
        if m.group(1) is not None or m.group(3) is not None:  # a pair: nudge, maybe flip
            c = float(m.group(1) or m.group(4)) + jitter
            f = c * 9 / 5 + 32
            return f"{f:.1f}°F ({c:.1f}°C)" if rng.random() < 0.5 else f"{c:.1f}°C ({f:.1f}°F)"
        v = float(m.group(5))
        if m.group(6) == "F":  # convert a lone Fahrenheit value
            return f"{(v - 32) * 5 / 9:.1f}°C"
        return f"{v + jitter:.1f}°C"

    stem = _TEMP.sub(temp, stem)

    def bp(m: re.Match[str]) -> str:
        nonlocal changed
        changed += 1
        unit, sep = m.group(4), m.group(3)
        if rng.random() < 0.5:
            unit = _UNIT_SWAP[unit]
            sep = _space(unit)
        return f"{_nudge(m.group(1), rng)}/{_nudge(m.group(2), rng)}{sep}{unit}"

    stem = _BP.sub(bp, stem)

    def unit_value(p: float) -> Callable[[re.Match[str]], str]:
        def sub(m: re.Match[str]) -> str:
            nonlocal changed
            raw, space, unit = m.group(1), m.group(2), m.group(3)
            if rng.random() < p:
                raw = _nudge(raw, rng, upper=100.0 if unit == "%" else None)
                changed += 1
            if unit in _UNIT_SWAP and rng.random() < 0.5:
                unit = _UNIT_SWAP[unit]
                space = _space(unit)
            return f"{raw}{space}{unit}"

        return sub

    stem = _UNIT.sub(unit_value(0.6), stem)
    if not changed and _UNIT.search(stem):
        stem = _UNIT.sub(unit_value(1.0), stem)
    if not changed:
        ms = list(_BARE_INT.finditer(stem)) or list(_ANY_INT.finditer(stem))
        if ms:
            m = rng.choice(ms)
            v = int(m.group(0))
            new = v + rng.randint(1, 3) if v < 3 or rng.random() < 0.5 else v - 1
            stem = f"{stem[: m.start()]}{new}{stem[m.end() :]}"
            changed += 1
    return stem, changed


def _synonyms(stem: str, rng: random.Random, p: float = 0.6) -> str:
    for pat, repl in _SYNONYMS:
        if rng.random() < p and pat.search(stem):
            stem = _synonym_sub(pat, repl, stem)
    sexes = set(_SEX_WORD.findall(stem))
    if len(sexes) == 1 and rng.random() < 0.6:
        (sex,) = sexes
        stem = _THE_PATIENT.sub(lambda m: f"{m.group(1)}he {sex}", stem)
    return stem


def _shuffle_options(q: Question, rng: random.Random) -> tuple[dict[str, str], str | None]:
    letters = list(q.options)
    texts = list(q.options.values())
    perm = list(range(len(texts)))
    if len(perm) >= 2:
        while perm == sorted(perm):
            rng.shuffle(perm)
    options = {letters[i]: texts[p] for i, p in enumerate(perm)}
    gold = None
    if q.gold is not None:
        old = letters.index(q.gold)
        gold = letters[perm.index(old)]
    return options, gold


def paraphrase_question(
    q: Question,
    rng: random.Random,
    *,
    id: str | None = None,
    source: str | None = None,
    split: str | None = None,
) -> Question:
    """A light paraphrase of ``q``, as a contaminated training set would hold it.

    Always: sentences of the stem reordered (the final question stays last; a single sentence
    has its comma clauses reordered instead) when possible, at least one number changed when the
    stem has any (ages always; temperatures re-expressed/converted, blood pressures and lab
    values nudged, unit spellings swapped), and the options shuffled (gold remapped, texts
    unchanged). Sometimes: light synonym swaps (``presents to`` -> ``comes to``...).

    Returns a new :class:`Question` with id ``para-<q.id>`` (or ``id``) and
    ``meta={"planted_from": q.id, "kind": "paraphrase"}``.
    """
    stem, _ = _reorder(q.question, rng)
    stem, _ = _change_numbers(stem, rng)
    stem = _synonyms(stem, rng, 0.6 if stem != q.question else 1.0)
    options, gold = _shuffle_options(q, rng)
    return Question(
        id=id if id is not None else f"para-{q.id}",
        source=source if source is not None else q.source,
        split=split if split is not None else q.split,
        question=stem,
        options=options,
        gold=gold,
        subject=q.subject,
        meta={"planted_from": q.id, "kind": "paraphrase"},
    )


def verbatim_copy(
    q: Question,
    rng: random.Random,
    *,
    id: str | None = None,
    source: str | None = None,
    split: str | None = None,
) -> Question:
    """An exact copy of ``q`` (same stem, same options in the same order) under a new id.

    ``rng`` is accepted for symmetry with :func:`paraphrase_question` and is not used.
    """
    del rng
    return Question(
        id=id if id is not None else f"verb-{q.id}",
        source=source if source is not None else q.source,
        split=split if split is not None else q.split,
        question=q.question,
        options=dict(q.options),
        gold=q.gold,
        subject=q.subject,
        meta={"planted_from": q.id, "kind": "verbatim"},
    )


# --------------------------------------------------------------------------------------------
# Synthetic questions
# --------------------------------------------------------------------------------------------

# Lab: (name, unit, low, high, decimals; -1 = integer rounded to 100 with thousands commas)
_Lab = tuple[str, str, float, float, int]

# (subject, sex, (age lo, age hi, unit), durations, diagnosis, complaints, findings, labs,
#  hallmark, treatment, next step, pathogenesis). Sex "P": a pregnant woman.
# fmt: off
_CONDITIONS: list[tuple] = [
    ("Cardiology", None, (48, 84, "year"), "hd", "Acute inferior myocardial infarction",
     ["crushing substernal chest pain", "chest pressure radiating to the jaw",
      "nausea with profuse sweating"],
     ["diaphoresis and pallor", "a soft S4 gallop", "bradycardia with clear lung fields"],
     [("serum troponin I concentration", "ng/mL", 0.8, 14.0, 1)],
     "ST-segment elevation in leads II, III, and aVF",
     "Aspirin, heparin, and primary percutaneous coronary intervention",
     "Emergency coronary angiography",
     "Rupture of an atherosclerotic plaque with occlusive thrombus"),
    ("Cardiology", None, (22, 60, "year"), "d", "Acute pericarditis",
     ["sharp chest pain that improves when leaning forward", "pleuritic chest pain",
      "low-grade fevers"],
     ["a high-pitched friction rub at the left sternal border",
      "chest pain that worsens when lying supine"],
     [("erythrocyte sedimentation rate", "mm/h", 38, 85, 0)],
     "Diffuse ST-segment elevation with PR-segment depression", "Ibuprofen and colchicine",
     "Transthoracic echocardiography",
     "Inflammation of the visceral and parietal pericardium"),
    ("Cardiology", None, (62, 89, "year"), "wm", "Aortic stenosis",
     ["exertional dyspnea", "episodes of lightheadedness while climbing stairs",
      "exertional chest tightness"],
     ["a crescendo-decrescendo systolic murmur radiating to the carotids",
      "a delayed, weak carotid upstroke", "a soft single second heart sound"],
     [],
     "A calcified aortic valve with a reduced valve area", "Aortic valve replacement",
     "Transthoracic echocardiography", "Dystrophic calcification of the aortic valve cusps"),
    ("Cardiology", None, (58, 86, "year"), "dw", "Atrial fibrillation",
     ["palpitations", "intermittent fluttering in the chest",
      "fatigue and reduced exercise tolerance"],
     ["an irregularly irregular pulse", "variable intensity of the first heart sound"],
     [("serum thyroid-stimulating hormone concentration", "μU/mL", 0.5, 3.8, 1)],
     "Absent P waves with irregularly irregular RR intervals",
     "Rate control with metoprolol and anticoagulation", "12-lead electrocardiography",
     "Multiple reentrant wavelets arising near the pulmonary veins"),
    ("Cardiology", None, (55, 88, "year"), "dw", "Decompensated systolic heart failure",
     ["progressive shortness of breath", "needing three pillows to sleep",
      "swelling of both legs"],
     ["jugular venous distention", "bibasilar crackles",
      "pitting edema of the lower extremities to the knees", "an S3 gallop"],
     [("serum brain natriuretic peptide concentration", "pg/mL", 650, 2400, 0)],
     "Pulmonary vascular congestion and cardiomegaly on chest x-ray",
     "Intravenous furosemide", "Intravenous loop diuretic therapy",
     "Reduced left ventricular ejection fraction with neurohormonal fluid retention"),
    ("Pulmonology", None, (20, 50, "year"), "d", "Pneumococcal pneumonia",
     ["productive cough with rust-colored sputum", "fever and shaking chills",
      "pleuritic right-sided chest pain"],
     ["dullness to percussion at the right base",
      "bronchial breath sounds over the right lower lobe", "increased tactile fremitus"],
     [("leukocyte count", "/mm3", 14000, 23000, -1)],
     "Lobar consolidation of the right lower lobe", "Ceftriaxone and azithromycin",
     "Chest x-ray", "Infection with encapsulated lancet-shaped gram-positive diplococci"),
    ("Pulmonology", None, (55, 82, "year"), "d",
     "Exacerbation of chronic obstructive pulmonary disease",
     ["worsening dyspnea", "increased sputum production", "audible wheezing"],
     ["diffuse expiratory wheezes", "a prolonged expiratory phase",
      "use of accessory muscles of respiration", "a barrel-shaped chest"],
     [("arterial Pco2", "mm Hg", 48, 66, 0)],
     "An FEV1:FVC ratio below 0.70 on spirometry",
     "Inhaled bronchodilators, systemic corticosteroids, and antibiotics",
     "Arterial blood gas analysis", "Protease-mediated destruction of alveolar walls"),
    ("Pulmonology", None, (30, 72, "year"), "hd", "Pulmonary embolism",
     ["sudden-onset shortness of breath", "sharp chest pain on inspiration",
      "a swollen, painful left calf"],
     ["tachypnea", "a tender, swollen left calf", "clear lung fields"],
     [("D-dimer concentration", "μg/mL", 1.2, 6.8, 1)],
     "A filling defect in the pulmonary arteries on CT angiography",
     "Anticoagulation with low-molecular-weight heparin", "CT pulmonary angiography",
     "Embolization of a thrombus from the deep veins of the leg"),
    ("Pulmonology", "M", (18, 34, "year"), "h", "Primary spontaneous pneumothorax",
     ["sudden left-sided chest pain", "acute shortness of breath"],
     ["absent breath sounds over the left hemithorax", "hyperresonance to percussion on the left"],
     [],
     "A visceral pleural line with absent peripheral lung markings",
     "Needle aspiration of the pleural space", "Chest x-ray",
     "Rupture of apical subpleural blebs"),
    ("Pulmonology", None, (28, 58, "year"), "wm", "Sarcoidosis",
     ["a dry cough", "fatigue", "tender red bumps on the shins"],
     ["tender erythematous nodules on the anterior shins", "bilateral parotid enlargement",
      "fine inspiratory crackles"],
     [("serum calcium concentration", "mg/dL", 10.8, 12.4, 1)],
     "Bilateral hilar lymphadenopathy with noncaseating granulomas", "Oral prednisone",
     "Transbronchial lung biopsy", "CD4+ T-cell mediated granulomatous inflammation"),
    ("Gastroenterology", None, (30, 62, "year"), "hd", "Acute pancreatitis",
     ["severe epigastric pain radiating to the back", "nausea and repeated vomiting"],
     ["epigastric tenderness with guarding", "decreased bowel sounds",
      "periumbilical ecchymosis"],
     [("serum lipase activity", "U/L", 480, 3200, 0)],
     "Peripancreatic fat stranding on CT",
     "Aggressive intravenous fluid resuscitation and analgesia",
     "Intravenous fluids with bowel rest", "Premature intracellular activation of trypsinogen"),
    ("Gastroenterology", "F", (35, 62, "year"), "hd", "Acute cholecystitis",
     ["right upper quadrant pain after fatty meals", "nausea", "fever"],
     ["inspiratory arrest during palpation of the right upper quadrant",
      "right upper quadrant tenderness"],
     [("leukocyte count", "/mm3", 12500, 18000, -1)],
     "Gallbladder wall thickening with pericholecystic fluid",
     "Intravenous antibiotics and laparoscopic cholecystectomy",
     "Right upper quadrant ultrasonography", "Obstruction of the cystic duct by a gallstone"),
    ("Gastroenterology", None, (17, 35, "year"), "wm", "Crohn disease",
     ["crampy lower abdominal pain", "nonbloody diarrhea", "unintended weight loss"],
     ["a tender mass in the right lower quadrant", "a perianal fistula", "aphthous oral ulcers"],
     [("hemoglobin level", "g/dL", 9.2, 11.4, 1)],
     "Transmural inflammation with noncaseating granulomas",
     "Corticosteroids followed by an anti-TNF agent", "Colonoscopy with ileal biopsy",
     "A dysregulated Th1 and Th17 response to intestinal flora"),
    ("Gastroenterology", "M", (40, 70, "year"), "h", "Bleeding esophageal varices",
     ["vomiting bright red blood", "black tarry stools", "increasing abdominal girth"],
     ["spider angiomata on the chest", "shifting dullness", "palmar erythema",
      "scleral icterus"],
     [("platelet count", "/mm3", 62000, 110000, -1)],
     "Dilated submucosal veins in the distal esophagus on endoscopy",
     "Octreotide and endoscopic band ligation",
     "Upper endoscopy after hemodynamic stabilization",
     "Portal hypertension with portosystemic collateral formation"),
    ("Gastroenterology", None, (48, 78, "year"), "wm", "Colorectal adenocarcinoma",
     ["fatigue", "a change in bowel habits", "intermittent blood in the stool"],
     ["pale conjunctivae", "a positive fecal occult blood test"],
     [("mean corpuscular volume", "μm3", 68, 78, 0)],
     "An ulcerated mass in the ascending colon", "Surgical resection",
     "Colonoscopy", "Sequential mutations in APC, KRAS, and TP53"),
    ("Nephrology", None, (40, 66, "year"), "wm", "Membranous nephropathy",
     ["swelling around the eyes in the morning", "foamy urine", "swelling of the ankles"],
     ["periorbital edema", "pitting edema of the ankles"],
     [("serum albumin concentration", "g/dL", 1.8, 2.8, 1),
      ("urine protein excretion", "g/24 h", 4.2, 9.8, 1)],
     "Subepithelial immune deposits with a spike-and-dome appearance",
     "An ACE inhibitor with immunosuppressive therapy", "Renal biopsy",
     "Autoantibodies against the phospholipase A2 receptor"),
    ("Pediatrics", None, (5, 13, "year"), "d", "Poststreptococcal glomerulonephritis",
     ["dark cola-colored urine", "puffy eyes", "decreased urine output"],
     ["periorbital edema", "elevated blood pressure for age"],
     [("serum creatinine concentration", "mg/dL", 1.3, 2.4, 1)],
     "A low serum C3 concentration with red blood cell casts",
     "Supportive care with diuretics and salt restriction",
     "Serum complement levels and antistreptolysin O titer",
     "Immune complex deposition after group A streptococcal infection"),
    ("Nephrology", "M", (28, 60, "year"), "h", "Nephrolithiasis",
     ["colicky right flank pain radiating to the groin", "blood in the urine"],
     ["right costovertebral angle tenderness", "writhing in pain on the stretcher"],
     [("urine erythrocyte count", "/hpf", 20, 60, 0)],
     "Envelope-shaped crystals on urinalysis", "Analgesia, hydration, and tamsulosin",
     "Noncontrast CT of the abdomen and pelvis",
     "Supersaturation of the urine with calcium oxalate"),
    ("Endocrinology", None, (12, 28, "year"), "d", "Diabetic ketoacidosis",
     ["excessive thirst", "frequent urination", "abdominal pain and vomiting",
      "fruity-smelling breath"],
     ["dry mucous membranes", "deep rapid breathing", "diffuse abdominal tenderness"],
     [("serum glucose concentration", "mg/dL", 420, 740, 0),
      ("serum bicarbonate concentration", "mEq/L", 8, 14, 0)],
     "An anion gap metabolic acidosis with ketonemia",
     "Intravenous fluids and an insulin infusion", "Intravenous isotonic saline",
     "Absolute insulin deficiency with unopposed lipolysis"),
    ("Endocrinology", "F", (24, 46, "year"), "wm", "Graves disease",
     ["heat intolerance", "palpitations", "weight loss despite an increased appetite"],
     ["a diffusely enlarged nontender thyroid gland", "bilateral proptosis",
      "a fine tremor of the outstretched hands"],
     [("serum thyroid-stimulating hormone concentration", "μU/mL", 0.01, 0.09, 2)],
     "Diffusely increased radioactive iodine uptake", "Methimazole",
     "Measurement of thyroid-stimulating immunoglobulins",
     "Autoantibodies stimulating the TSH receptor"),
    ("Endocrinology", "F", (30, 62, "year"), "m", "Hashimoto thyroiditis",
     ["fatigue", "cold intolerance", "constipation", "weight gain"],
     ["dry coarse skin", "delayed relaxation of the ankle reflexes",
      "a firm, nontender goiter"],
     [("serum thyroid-stimulating hormone concentration", "μU/mL", 12, 48, 1)],
     "Antithyroid peroxidase antibodies", "Levothyroxine", "Measurement of free thyroxine",
     "Autoimmune destruction of thyroid follicles"),
    ("Endocrinology", None, (38, 64, "year"), "m", "Cushing syndrome",
     ["weight gain around the abdomen", "easy bruising", "proximal muscle weakness"],
     ["purple abdominal striae", "a rounded face", "supraclavicular fat pads"],
     [("serum glucose concentration", "mg/dL", 140, 220, 0)],
     "Elevated 24-hour urine free cortisol", "Transsphenoidal resection of the adenoma",
     "Late-night salivary cortisol measurement", "Chronic excess glucocorticoid exposure"),
    ("Endocrinology", "F", (42, 72, "year"), "m", "Primary hyperparathyroidism",
     ["constipation", "generalized bone pain", "low mood"],
     ["mild diffuse bone tenderness", "a normal thyroid examination"],
     [("serum calcium concentration", "mg/dL", 11.0, 12.8, 1),
      ("serum phosphorus concentration", "mg/dL", 1.8, 2.4, 1)],
     "An elevated serum parathyroid hormone concentration", "Parathyroidectomy",
     "Measurement of serum parathyroid hormone",
     "Autonomous parathyroid hormone secretion by an adenoma"),
    ("Infectious Disease", None, (16, 28, "year"), "dw", "Infectious mononucleosis",
     ["a sore throat", "fever", "marked fatigue"],
     ["posterior cervical lymphadenopathy", "tonsillar exudates", "splenomegaly"],
     [("lymphocyte percentage", "%", 55, 72, 0)],
     "Atypical lymphocytes and a positive heterophile antibody test",
     "Supportive care and avoidance of contact sports", "Heterophile antibody testing",
     "Epstein-Barr virus infection of B lymphocytes through CD21"),
    ("Infectious Disease", None, (18, 40, "year"), "h", "Bacterial meningitis",
     ["a severe headache", "neck stiffness", "fever and confusion"],
     ["nuchal rigidity", "a positive Kernig sign", "photophobia"],
     [("cerebrospinal fluid leukocyte count", "/mm3", 1200, 4800, -1)],
     "Low cerebrospinal fluid glucose with neutrophilic pleocytosis",
     "Intravenous ceftriaxone, vancomycin, and dexamethasone",
     "Blood cultures followed by empiric antibiotics",
     "Hematogenous invasion of the meninges by encapsulated bacteria"),
    ("Infectious Disease", "F", (19, 48, "year"), "d", "Acute pyelonephritis",
     ["burning with urination", "left flank pain", "fever and chills"],
     ["left costovertebral angle tenderness", "suprapubic tenderness"],
     [("urine leukocyte count", "/hpf", 40, 100, 0)],
     "White blood cell casts on urinalysis", "Oral ciprofloxacin", "Urine culture",
     "Ascending infection with uropathogenic Escherichia coli"),
    ("Infectious Disease", None, (24, 56, "year"), "dw", "Falciparum malaria",
     ["cyclic fevers", "shaking chills", "headache and myalgias"],
     ["splenomegaly", "scleral icterus"],
     [("platelet count", "/mm3", 48000, 95000, -1)],
     "Intraerythrocytic ring forms on a blood smear", "Artemether-lumefantrine",
     "Thick and thin peripheral blood smears",
     "Infection of erythrocytes by Plasmodium species"),
    ("Infectious Disease", "M", (25, 52, "year"), "w", "Pneumocystis pneumonia",
     ["a progressive dry cough", "exertional dyspnea", "low-grade fever"],
     ["oral thrush", "diffuse fine crackles"],
     [("CD4+ T-lymphocyte count", "/mm3", 40, 180, 0)],
     "Bilateral interstitial infiltrates on chest x-ray", "Trimethoprim-sulfamethoxazole",
     "Bronchoalveolar lavage with silver staining",
     "Opportunistic fungal infection due to impaired cell-mediated immunity"),
    ("Neurology", None, (56, 86, "year"), "h", "Left middle cerebral artery stroke",
     ["sudden weakness of the right arm and face", "difficulty speaking"],
     ["right-sided facial droop", "expressive aphasia", "right upper extremity weakness"],
     [("fingerstick glucose concentration", "mg/dL", 95, 160, 0)],
     "A hypodense area in the left frontoparietal cortex", "Intravenous alteplase",
     "Noncontrast CT of the head", "Thromboembolic occlusion of a cerebral artery"),
    ("Neurology", "F", (20, 40, "year"), "dw", "Multiple sclerosis",
     ["blurred vision in the right eye", "pain with eye movement", "tingling in the legs"],
     ["a relative afferent pupillary defect", "hyperreflexia in the lower extremities",
      "internuclear ophthalmoplegia"],
     [],
     "Periventricular white matter plaques on MRI",
     "High-dose intravenous methylprednisolone", "MRI of the brain and spinal cord",
     "T-cell mediated demyelination of the central nervous system"),
    ("Neurology", "M", (58, 80, "year"), "m", "Parkinson disease",
     ["a resting tremor of the left hand", "slowness of movement", "small handwriting"],
     ["cogwheel rigidity", "a shuffling gait", "reduced facial expression"],
     [],
     "Loss of pigmented neurons in the substantia nigra", "Carbidopa-levodopa",
     "A therapeutic trial of levodopa",
     "Degeneration of dopaminergic neurons of the nigrostriatal pathway"),
    ("Neurology", "F", (24, 56, "year"), "wm", "Myasthenia gravis",
     ["drooping eyelids late in the day", "double vision", "fatigue when chewing"],
     ["bilateral ptosis that worsens with sustained upward gaze",
      "fatigable proximal muscle weakness"],
     [],
     "Antibodies against the acetylcholine receptor", "Pyridostigmine",
     "Measurement of acetylcholine receptor antibodies",
     "Autoantibodies blocking postsynaptic acetylcholine receptors"),
    ("Psychiatry", None, (18, 30, "year"), "m", "Schizophrenia",
     ["hearing voices that comment on daily activities", "social withdrawal",
      "the belief that neighbors are spying through the television"],
     ["a flat affect", "disorganized speech", "poor personal hygiene"],
     [],
     "Symptoms persisting for more than six months", "Risperidone",
     "Urine toxicology screening",
     "Excess dopaminergic activity in the mesolimbic pathway"),
    ("Psychiatry", None, (20, 55, "year"), "wm", "Major depressive disorder",
     ["low mood", "loss of interest in hobbies", "early morning awakening",
      "poor concentration at work"],
     ["psychomotor slowing", "a depressed affect"],
     [("serum thyroid-stimulating hormone concentration", "μU/mL", 0.9, 3.5, 1)],
     "Anhedonia lasting at least two weeks", "Sertraline", "Assessment of suicide risk",
     "Dysregulated serotonergic and noradrenergic signaling"),
    ("Toxicology", None, (19, 45, "year"), "h", "Opioid overdose",
     ["unresponsiveness", "slow shallow breathing"],
     ["pinpoint pupils", "respiratory depression", "needle track marks on the forearms"],
     [("arterial Pco2", "mm Hg", 55, 72, 0)],
     "Bilateral miosis", "Intravenous naloxone", "Immediate administration of naloxone",
     "Agonism at mu-opioid receptors in the brainstem"),
    ("Toxicology", None, (25, 60, "year"), "h", "Carbon monoxide poisoning",
     ["a throbbing headache", "dizziness", "nausea after hours in a closed cabin"],
     ["confusion", "a normal pulse oximetry reading despite dyspnea"],
     [("carboxyhemoglobin concentration", "%", 18, 35, 0)],
     "An elevated carboxyhemoglobin level on co-oximetry",
     "High-flow oxygen through a nonrebreather mask", "Hyperbaric oxygen therapy",
     "A left shift of the oxygen-hemoglobin dissociation curve"),
    ("Obstetrics", "P", (20, 38, "year"), "hd", "Preeclampsia with severe features",
     ["a persistent headache", "visual disturbances", "swelling of the hands and face"],
     ["brisk deep tendon reflexes", "edema of the hands and face"],
     [("urine protein:creatinine ratio", "", 0.4, 1.8, 1)],
     "Proteinuria with new-onset hypertension",
     "Intravenous magnesium sulfate and antihypertensive therapy",
     "Delivery after maternal stabilization",
     "Abnormal remodeling of the maternal spiral arteries"),
    ("Obstetrics", "F", (21, 38, "year"), "hd", "Ectopic pregnancy",
     ["lower abdominal pain", "vaginal spotting", "a missed menstrual period"],
     ["left adnexal tenderness", "cervical motion tenderness"],
     [("serum β-hCG concentration", "mIU/mL", 1800, 4200, 0)],
     "An empty uterus on transvaginal ultrasonography", "Intramuscular methotrexate",
     "Transvaginal ultrasonography", "Implantation of the blastocyst in the fallopian tube"),
    ("Gynecology", "F", (18, 34, "year"), "m", "Polycystic ovary syndrome",
     ["irregular menstrual periods", "unwanted hair growth on the chin", "acne"],
     ["hirsutism", "acanthosis nigricans on the neck", "truncal obesity"],
     [("serum total testosterone concentration", "ng/dL", 70, 140, 0)],
     "Multiple peripheral ovarian follicles on ultrasonography",
     "Combined oral contraceptives", "Pelvic ultrasonography",
     "Increased LH stimulation of ovarian theca cells"),
    ("Pediatrics", None, (6, 24, "month"), "h", "Intussusception",
     ["episodes of inconsolable crying with drawing up of the legs", "vomiting",
      "currant jelly stools"],
     ["a sausage-shaped mass in the right upper quadrant", "lethargy between episodes"],
     [],
     "A target sign on abdominal ultrasonography", "Air contrast enema reduction",
     "Abdominal ultrasonography",
     "Telescoping of a proximal bowel segment into a distal segment"),
    ("Pediatrics", None, (2, 7, "year"), "d", "Kawasaki disease",
     ["fever", "a diffuse rash", "red eyes"],
     ["bilateral nonexudative conjunctivitis", "a strawberry tongue",
      "desquamation of the fingertips", "cervical lymphadenopathy"],
     [("platelet count", "/mm3", 480000, 820000, -1)],
     "Coronary artery aneurysms on echocardiography",
     "Intravenous immunoglobulin and high-dose aspirin", "Echocardiography",
     "Medium-vessel vasculitis"),
    ("Pediatrics", None, (1, 4, "year"), "hd", "Croup",
     ["a barking cough", "hoarseness", "noisy breathing"],
     ["inspiratory stridor", "mild suprasternal retractions"],
     [],
     "Subglottic narrowing on an anteroposterior neck radiograph", "Oral dexamethasone",
     "Oral dexamethasone and observation",
     "Parainfluenza virus infection of the larynx and trachea"),
    ("Hematology", "F", (19, 42, "year"), "m", "Iron deficiency anemia",
     ["fatigue", "heavy menstrual periods", "a craving for ice"],
     ["pale conjunctivae", "spoon-shaped nails"],
     [("hemoglobin level", "g/dL", 7.8, 10.2, 1),
      ("serum ferritin concentration", "ng/mL", 3, 11, 0)],
     "Microcytic hypochromic erythrocytes", "Oral ferrous sulfate",
     "Measurement of serum ferritin", "Impaired heme synthesis from iron deficiency"),
    ("Hematology", None, (48, 82, "year"), "m", "Vitamin B12 deficiency",
     ["numbness of the feet", "an unsteady gait", "fatigue"],
     ["decreased vibration sense in the toes", "a positive Romberg sign", "glossitis"],
     [("mean corpuscular volume", "μm3", 108, 122, 0)],
     "Hypersegmented neutrophils on peripheral smear", "Intramuscular cyanocobalamin",
     "Measurement of serum methylmalonic acid", "Autoantibodies against intrinsic factor"),
    ("Oncology", None, (60, 86, "year"), "wm", "Multiple myeloma",
     ["back pain", "fatigue", "recurrent infections"],
     ["tenderness over the lumbar spine", "pallor"],
     [("serum calcium concentration", "mg/dL", 11.0, 13.0, 1),
      ("serum creatinine concentration", "mg/dL", 1.6, 2.8, 1)],
     "A monoclonal spike on serum protein electrophoresis",
     "Bortezomib, lenalidomide, and dexamethasone", "Serum protein electrophoresis",
     "Clonal proliferation of plasma cells"),
    ("Hematology", None, (15, 30, "year"), "hd", "Sickle cell vaso-occlusive crisis",
     ["severe pain in the back and legs", "fatigue"],
     ["scleral icterus", "tenderness of the long bones"],
     [("reticulocyte count", "%", 9, 18, 0)],
     "Sickled erythrocytes on peripheral smear",
     "Intravenous fluids and opioid analgesia", "Intravenous hydration and analgesia",
     "Polymerization of deoxygenated hemoglobin S"),
    ("Rheumatology", "F", (19, 40, "year"), "wm", "Systemic lupus erythematosus",
     ["joint pain in the hands", "a facial rash after sun exposure", "fatigue"],
     ["an erythematous malar rash sparing the nasolabial folds", "painless oral ulcers",
      "tenderness of the wrists"],
     [("serum C3 concentration", "mg/dL", 42, 70, 0)],
     "Antibodies against double-stranded DNA", "Hydroxychloroquine",
     "Antinuclear antibody testing",
     "Type III hypersensitivity from immune complex deposition"),
    ("Rheumatology", "F", (35, 62, "year"), "m", "Rheumatoid arthritis",
     ["morning stiffness lasting more than an hour", "painful swelling of the hands"],
     ["symmetric swelling of the metacarpophalangeal joints", "ulnar deviation of the fingers",
      "nodules over the extensor surfaces of the elbows"],
     [("erythrocyte sedimentation rate", "mm/h", 40, 80, 0)],
     "Antibodies against cyclic citrullinated peptides", "Methotrexate",
     "Rheumatoid factor and anti-CCP antibody testing",
     "Autoimmune synovial inflammation with pannus formation"),
    ("Rheumatology", "M", (44, 72, "year"), "h", "Acute gouty arthritis",
     ["acute pain and swelling of the right great toe", "waking at night from joint pain"],
     ["an erythematous, swollen first metatarsophalangeal joint",
      "exquisite tenderness to light touch"],
     [("serum uric acid concentration", "mg/dL", 8.2, 11.6, 1)],
     "Negatively birefringent needle-shaped crystals in synovial fluid", "Oral indomethacin",
     "Arthrocentesis with synovial fluid analysis",
     "Precipitation of monosodium urate crystals in the joint"),
    ("Dermatology", None, (52, 82, "year"), "m", "Cutaneous melanoma",
     ["a changing pigmented spot on the back", "itching of a dark mole"],
     ["an asymmetric lesion with irregular borders and variegated color"],
     [],
     "Atypical melanocytes invading the dermis", "Wide local excision",
     "Excisional biopsy", "Malignant proliferation of melanocytes"),
]

_NORMAL_LABS: list[_Lab] = [
    ("hemoglobin level", "g/dL", 12.1, 15.8, 1),
    ("leukocyte count", "/mm3", 4800, 10400, -1),
    ("platelet count", "/mm3", 170000, 390000, -1),
    ("serum sodium concentration", "mEq/L", 135, 145, 0),
    ("serum potassium concentration", "mEq/L", 3.6, 5.0, 1),
    ("serum chloride concentration", "mEq/L", 98, 106, 0),
    ("serum bicarbonate concentration", "mEq/L", 22, 28, 0),
    ("serum urea nitrogen concentration", "mg/dL", 8, 20, 0),
    ("serum creatinine concentration", "mg/dL", 0.6, 1.2, 1),
    ("serum glucose concentration", "mg/dL", 72, 108, 0),
    ("serum calcium concentration", "mg/dL", 8.6, 10.1, 1),
    ("serum alanine aminotransferase activity", "U/L", 12, 38, 0),
    ("serum aspartate aminotransferase activity", "U/L", 14, 36, 0),
    ("serum total bilirubin concentration", "mg/dL", 0.3, 1.1, 1),
    ("hemoglobin A1c", "%", 4.9, 6.3, 1),
    ("serum albumin concentration", "g/dL", 3.6, 4.9, 1),
    ("mean corpuscular volume", "μm3", 82, 96, 0),
]
_HISTORY = [
    "type 2 diabetes mellitus", "hypertension", "hyperlipidemia", "asthma",
    "gastroesophageal reflux disease", "hypothyroidism", "osteoarthritis of both knees",
    "major depressive disorder", "migraine without aura", "chronic kidney disease",
    "iron deficiency anemia", "paroxysmal atrial fibrillation", "gout", "plaque psoriasis",
    "obstructive sleep apnea", "generalized anxiety disorder", "chronic low back pain",
    "seasonal allergic rhinitis", "irritable bowel syndrome", "a seizure disorder",
    "peptic ulcer disease", "recurrent urinary tract infections", "eczema", "obesity",
    "hepatitis C infection", "a deep venous thrombosis", "nephrolithiasis",
    "fibromyalgia", "carpal tunnel syndrome", "glaucoma", "bipolar disorder",
    "celiac disease", "a prior transient ischemic attack", "chronic sinusitis",
]
_PROCEDURES = [
    "an appendectomy", "a cholecystectomy", "a left knee arthroscopy", "a tonsillectomy",
    "an inguinal hernia repair", "a cesarean delivery", "a lumbar discectomy",
    "cataract surgery", "a right hip replacement", "a thyroid lobectomy",
]
_MEDS = [
    "metformin", "lisinopril", "atorvastatin", "levothyroxine", "omeprazole", "amlodipine",
    "an albuterol inhaler", "sertraline", "hydrochlorothiazide", "metoprolol",
    "low-dose aspirin", "ibuprofen as needed", "fluoxetine", "losartan", "pantoprazole",
    "a combined oral contraceptive", "cetirizine", "gabapentin", "allopurinol",
    "simvastatin", "escitalopram", "a fluticasone nasal spray", "montelukast",
    "warfarin", "apixaban", "furosemide", "tamsulosin", "insulin glargine", "bupropion",
    "lamotrigine", "a multivitamin", "vitamin D", "ferrous sulfate", "sumatriptan",
    "trazodone", "prednisone",
]
_JOBS = [
    "an accountant", "a bus driver", "a nurse", "a construction worker", "a teacher",
    "a software engineer", "a farmer", "a chef", "a truck driver", "a hairdresser",
    "a warehouse supervisor", "a librarian", "a firefighter", "a dental hygienist",
    "an electrician", "a cashier", "a graduate student", "a paralegal", "a pharmacist",
    "a mail carrier", "a welder", "a real estate agent", "a daycare worker",
    "a veterinarian", "a painter", "a police officer", "a call center agent", "a plumber",
]
_PLACES = [
    "Nigeria", "India", "Brazil", "Thailand", "Guatemala", "Kenya", "Peru", "Vietnam",
    "Ghana", "the Philippines", "Haiti", "Indonesia", "Uganda", "Mexico", "Cambodia",
    "Honduras", "Bangladesh", "Senegal", "Bolivia", "Papua New Guinea",
]
_RELATIVES = [
    "mother", "father", "older brother", "older sister", "maternal grandmother",
    "paternal grandfather", "maternal uncle", "paternal aunt",
]
_FAMILY_DX = [
    "breast cancer", "a myocardial infarction", "type 2 diabetes mellitus", "colon cancer",
    "a stroke", "Alzheimer disease", "hypothyroidism", "rheumatoid arthritis",
    "prostate cancer", "ovarian cancer", "bipolar disorder", "a pulmonary embolism",
    "chronic kidney disease", "lymphoma", "multiple sclerosis",
]
_NEGATIVES = [
    "fever", "recent travel", "weight loss", "cough", "blood in the urine", "sick contacts",
    "headache", "vomiting", "night sweats", "chest pain", "rash", "joint pain", "diarrhea",
    "recent trauma", "changes in vision", "urinary symptoms", "numbness", "palpitations",
    "abdominal pain", "syncope",
]
_OTC = [
    "acetaminophen", "ibuprofen", "an over-the-counter antacid", "a herbal supplement",
    "diphenhydramine", "naproxen", "an antihistamine", "loperamide",
]
_ACTIVITIES = [
    "while watching television", "while at work", "after dinner", "during a basketball game",
    "while gardening", "shortly after waking", "while driving", "during a long flight",
    "while shoveling snow", "after a large meal", "during a family gathering", "at the gym",
]
_NORMAL_EXAM = [
    "The lungs are clear to auscultation bilaterally.",
    "Cardiac examination shows a regular rhythm without murmurs.",
    "The abdomen is soft without tenderness; bowel sounds are present.",
    "There is no cervical or axillary lymphadenopathy.",
    "Neurologic examination shows no focal deficits.",
    "The skin is warm and dry without rashes.",
    "There is no peripheral edema.",
    "The oropharynx is clear and the neck is supple.",
    "Capillary refill is less than two seconds.",
    "There is no costovertebral angle tenderness.",
    "The thyroid gland is not enlarged.",
    "Muscle strength and deep tendon reflexes are normal throughout.",
    "Pupils are equal and reactive to light.",
    "There is no hepatosplenomegaly.",
    "Distal pulses are palpable and symmetric.",
    "Mental status is unremarkable.",
]
_SETTINGS = [
    "emergency department", "physician", "clinic", "outpatient clinic", "urgent care center",
    "family medicine office", "community health center", "hospital", "walk-in clinic",
    "internal medicine clinic", "primary care clinic",
]
_COMPANIONS_ADULT = [
    "a coworker", "a neighbor", "paramedics", "emergency medical services", "a friend",
    "a roommate", "a family member",
]
_COMPANIONS_CHILD = ["parents", "mother", "father", "grandmother", "babysitter"]
_SETTINGS_CHILD = [
    "emergency department", "pediatric clinic", "pediatrician", "urgent care center",
    "children's hospital", "pediatric emergency department", "community health center",
]
_MEDS_CHILD = [
    "a multivitamin", "vitamin D drops", "an albuterol inhaler", "cetirizine",
    "a fluticasone nasal spray", "iron drops", "montelukast",
]
_LIVES = [
    "a partner", "two children", "a roommate", "an elderly parent", "a spouse", "no one",
    "three children", "a sister",
]
_EXERCISE = [
    "three times a week", "rarely", "daily", "on weekends", "twice a week",
]
# fmt: on
_DUR_UNITS = {"h": ("hour", 2, 20), "d": ("day", 1, 9), "w": ("week", 1, 8), "m": ("month", 2, 11)}
# Endings are deliberately not the benchmarks' stock phrasings, so that no 13-gram of a
# synthetic stem is shared with a real benchmark question.
_ENDINGS = {
    "dx": [
        "Which diagnosis best fits this presentation?",
        "What diagnosis should be suspected first?",
        "Which condition best accounts for this picture?",
        "Which single diagnosis explains these findings best?",
        "What is the leading diagnosis in this case?",
    ],
    "tx": [
        "Which therapy should be started now?",
        "What is the preferred treatment for this condition?",
        "Which treatment is best for this patient?",
        "Which drug or intervention should be chosen?",
    ],
    "next": [
        "What should be done next for this patient?",
        "Which step should come next in the workup?",
        "What is the best next move in this case?",
        "Which action is most appropriate at this point?",
    ],
    "hallmark": [
        "Further testing will most probably reveal what?",
        "Which additional finding is expected here?",
        "What will further workup most probably show?",
    ],
    "patho": [
        "What mechanism underlies this condition?",
        "Which process best describes the pathogenesis here?",
        "What is the underlying cause at the cellular level?",
    ],
}
_QTYPES = ["dx"] * 7 + ["tx"] * 4 + ["next"] * 4 + ["hallmark"] * 3 + ["patho"] * 2
_ATTR = {"dx": 4, "hallmark": 8, "tx": 9, "next": 10, "patho": 11}


def _distractor_pools() -> dict[tuple[int, str], tuple[list[str], list[str]]]:
    """For each (condition, question type): same-subject and global wrong-answer texts."""
    pools: dict[tuple[int, str], tuple[list[str], list[str]]] = {}
    for i, c in enumerate(_CONDITIONS):
        for qtype, k in _ATTR.items():
            right = c[k]
            same = sorted({d[k] for d in _CONDITIONS if d[0] == c[0] and d[k] != right})
            glob = sorted({d[k] for d in _CONDITIONS if d[k] != right})
            pools[i, qtype] = (same, glob)
    return pools


_POOLS = _distractor_pools()


def _lab_value(rng: random.Random, lo: float, hi: float, dec: int) -> str:
    if dec < 0:
        return f"{rng.randrange(int(lo) // 100, int(hi) // 100 + 1) * 100:,}"
    if dec == 0:
        return str(rng.randint(int(lo), int(hi)))
    return f"{rng.uniform(lo, hi):.{dec}f}"


def _lab_item(rng: random.Random, lab: _Lab) -> str:
    name, unit, lo, hi, dec = lab
    v = _lab_value(rng, lo, hi, dec)
    if not unit:
        return f"{name} of {v}"
    if unit[0] in "/%":
        return f"{name} of {v}{unit}"
    return f"{name} of {v} {unit}"


def _join(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    return ", ".join(items[:-1]) + ", and " + items[-1]


def _dur(rng: random.Random, units: str) -> tuple[int, str]:
    unit, lo, hi = _DUR_UNITS[rng.choice(units)]
    return rng.randint(lo, hi), unit


def _vitals(rng: random.Random, pos: str, acute: bool) -> str:
    c = rng.uniform(36.4, 39.9 if acute else 37.6)
    temp = f"{c:.1f}°C ({c * 9 / 5 + 32:.1f}°F)"
    hr = rng.randint(54, 134 if acute else 100)
    rr = rng.randint(11, 30 if acute else 20)
    sbp = rng.randint(88, 178)
    dbp = rng.randint(48, min(112, sbp - 25))
    style = rng.randrange(4)
    if style == 0:
        items = [
            f"temp, {temp}",
            f"heart rate, {hr}/min",
            f"breathing rate, {rr}/min",
            f"blood pressure, {sbp}/{dbp} mm Hg",
        ]
        if rng.random() < 0.5:
            items[1:] = rng.sample(items[1:], 3)
        return f"{rng.choice(_VITALS_WHEN)}, {pos} readings are: {'; '.join(items)}."
    if style == 1:
        items = [
            f"a {temp} temperature",
            f"a {rng.choice(('heart rate', 'pulse'))} at {hr}/min",
            f"{rr} breaths/min",
            f"blood pressure at {sbp}/{dbp} mm Hg",
        ]
        rng.shuffle(items)
        if rng.random() < 0.3:
            items.pop()
        return f"{rng.choice(_VITALS_LEADS)} {_join(items)}."
    if style == 2:
        items = [f"HR {hr}/min", f"BP {sbp}/{dbp} mm Hg", f"T {temp}"]
        rng.shuffle(items)
        sat = rng.randint(86 if acute else 94, 100)
        return (
            f"{rng.choice(_VITALS_WHEN)}, {pos} recorded values are {', '.join(items)}, and "
            f"RR {rr}/min; oxygen saturation is {sat}% on room air."
        )
    fever = "febrile" if c >= 38.0 else "afebrile"
    he = "he" if pos == "his" else "she"
    return (
        f"{rng.choice(_VITALS_WHEN)}, {he} is "
        f"{fever} ({temp}), with a {rng.choice(('regular', 'steady', 'bounding', 'thready'))} "
        f"pulse of {hr}/min and a blood pressure of {sbp}/{dbp} mm Hg"
        f"{rng.choice(('', f' in the {rng.choice(_ARMS)} arm'))}."
    )


_VITALS_LEADS = (
    "Vital signs show",
    "Vital signs include",
    "On arrival, vitals show",
    "Measured vital signs are",
    "The nurse records",
    "Initial vital signs reveal",
)
_VITALS_WHEN = (
    "At presentation",
    "Upon evaluation",
    "In triage",
    "On admission",
    "At the time of the visit",
    "During the examination",
)
_ARMS = ("right", "left", "seated right", "supine left")


def _make_question(rng: random.Random, qid: str) -> Question:
    ci = rng.randrange(len(_CONDITIONS))
    c = _CONDITIONS[ci]
    subject, sex, (alo, ahi, aunit), durs, _dx, complaints, findings, labs = c[:8]
    pregnant = sex == "P"
    if sex in ("F", "P") or (sex is None and rng.random() < 0.5):
        he, his, adult_noun, child_noun = "she", "her", "woman", "girl"
    else:
        he, his, adult_noun, child_noun = "he", "his", "man", "boy"
    age = rng.randint(alo, ahi)
    child = aunit == "month" or age < 18
    noun = child_noun if child else adult_noun
    age_s = f"{age}-{aunit}-old"
    art = "An" if age_s[0] == "8" or age in (11, 18) else "A"
    if pregnant:
        noun += rng.choice(("", f" G{rng.randint(1, 4)}P{rng.randint(0, 2)}")) + (
            f" at {rng.randint(24, 39)} weeks' gestation"
        )
    acute = durs[0] in "hd"
    cs = rng.sample(complaints, min(len(complaints), rng.randint(1, 3)))
    n, unit = _dur(rng, durs)
    plural = "s" if n != 1 else ""
    poss = "s'" if plural else "'s"
    setting = rng.choice(_SETTINGS_CHILD if child else _SETTINGS)
    c1 = cs[0]
    He, His = he.capitalize(), his.capitalize()
    # The opening sentence.
    r = rng.randrange(7)
    if setting in ("physician", "pediatrician") and r in (3, 6):
        setting += "'s office"
    # Phrasings chosen to differ from the benchmarks' stock openings ("is brought to the
    # emergency department by his mother because of...").
    if r == 0:
        intro = (
            f"{art} {age_s} {noun} comes to the {setting} for evaluation of {c1} lasting "
            f"{n} {unit}{plural}."
        )
    elif r == 1:
        intro = f"{art} {age_s} {noun} presents to the {setting} after {n} {unit}{plural} of {c1}."
    elif r == 2:
        who = rng.choice(_COMPANIONS_CHILD if child else _COMPANIONS_ADULT)
        who = f"{His} {who}" if child else who[:1].upper() + who[1:]
        intro = (
            f"{who} accompanies {art.lower()} {age_s} {noun} to the {setting}; {he} has had "
            f"{c1} since {n} {unit}{plural} ago."
        )
    elif r == 3:
        intro = (
            f"A previously healthy {age_s} {noun} is evaluated in the {setting} for {c1} "
            f"of {n} {unit}{poss} duration."
        )
    elif r == 4:
        intro = (
            f"{art} {age_s} {noun} visits the {setting} reporting {c1} that started "
            f"{n} {unit}{plural} ago {rng.choice(_ACTIVITIES)}."
        )
    elif r == 5:
        h = rng.choice(_HISTORY)
        intro = (
            f"{art} {age_s} {noun} known to have {h} attends the {setting} because of "
            f"{c1} over the past {n} {unit}{plural}."
        )
    else:
        intro = (
            f"{art} {age_s} {noun} is seen in the {setting} {n} {unit}{plural} after the "
            f"onset of {c1}."
        )
    detail: list[str] = []
    if len(cs) > 1:
        extra = _join(cs[1:])
        detail.append(
            rng.choice(
                (
                    f"{He} also reports {extra}.",
                    f"{He} has also noticed {extra}.",
                    f"These symptoms have been accompanied by {extra}.",
                    f"Over this period, {he} has also had {extra}.",
                )
            )
        )
    if rng.random() < 0.5:
        said = " ".join(cs)
        negs = [x for x in rng.sample(_NEGATIVES, rng.randint(1, 3)) if x not in said] or [
            "recent illness"
        ]
        detail.append(f"{He} denies {_join(negs)}.")
    if rng.random() < 0.35:
        detail.append(
            rng.choice(
                (
                    f"{He} rates the discomfort as {rng.randint(3, 10)} on a 10-point scale.",
                    f"{He} took {rng.choice(_OTC)} {rng.randint(2, 9)} hours ago without relief.",
                    f"{He} has missed {rng.randint(2, 12)} days of "
                    f"{'school' if child else 'work'} because of the symptoms.",
                    f"{He} has lost {rng.randint(2, 9)} kg over the past "
                    f"{rng.randint(2, 8)} months.",
                )
            )
        )
    hist: list[str] = []
    if rng.random() < 0.65:
        hs = rng.sample(_HISTORY, rng.randint(1, 2))
        if rng.random() < 0.5:
            hist.append(f"{He} has a history of {_join(hs)}.")
        else:
            hist.append(f"{His} past medical history is notable for {_join(hs)}.")
    if rng.random() < 0.25:
        hist.append(
            f"{He} underwent {rng.choice(_PROCEDURES)} {rng.randint(2, 25)} years ago."
            if not child
            else f"{He} was born at {rng.randint(36, 41)} weeks' gestation."
        )
    if rng.random() < 0.55:
        ms = rng.sample(_MEDS_CHILD if child else _MEDS, rng.randint(1, 3))
        if not child and rng.random() < 0.3:
            ms[0] = f"{ms[0]} {rng.choice((10, 20, 25, 40, 50))} mg daily"
        hist.append(
            rng.choice(
                (
                    f"Current medications include {_join(ms)}.",
                    f"{He} takes {_join(ms)}.",
                    f"{His} only medications are {_join(ms)}.",
                )
            )
        )
    if not child and rng.random() < 0.6:
        k = rng.randrange(5)
        if k == 0:
            hist.append(
                f"{He} smokes {rng.choice(('one pack', 'two packs', 'half a pack'))} a day "
                "and has done so for "
                f"{rng.randint(4, 40)} years."
            )
        elif k == 1:
            hist.append(
                f"{He} drinks {rng.randint(2, 14)} alcoholic beverages weekly and does not smoke."
            )
        elif k == 2:
            hist.append(f"{He} works as {rng.choice(_JOBS)} and lives with {rng.choice(_LIVES)}.")
        elif k == 3:
            hist.append(
                f"{He} returned from a {rng.randint(2, 6)}-week trip to "
                f"{rng.choice(_PLACES)} {rng.randint(1, 8)} weeks ago."
            )
        else:
            hist.append(
                f"{He} works as {rng.choice(_JOBS)} and exercises {_EXERCISE[rng.randrange(5)]}."
            )
    if rng.random() < 0.25:
        hist.append(
            f"{His} family history includes {rng.choice(_FAMILY_DX)} in {his} "
            f"{rng.choice(_RELATIVES)} (diagnosed at {rng.randint(38, 79)} years)."
        )
    rng.shuffle(hist)
    exam: list[str] = [_vitals(rng, his, acute)]
    if rng.random() < 0.25:
        exam.append(
            f"Oxygen saturation measures {rng.randint(88, 99)}% while {he} breathes ambient air."
        )
    fs = rng.sample(findings, min(len(findings), rng.randint(1, 2)))
    exam.append(
        rng.choice(
            (
                f"Physical examination shows {_join(fs)}.",
                f"Examination is notable for {_join(fs)}.",
                f"On examination, there is {_join(fs)}.",
                f"Physical examination reveals {_join(fs)}.",
            )
        )
    )
    if rng.random() < 0.6:
        exam.append(rng.choice(_NORMAL_EXAM))
    if rng.random() < 0.25:
        exam.append(rng.choice(_NORMAL_EXAM))
    if labs or rng.random() < 0.5:
        chosen = list(labs)
        names = {lab[0] for lab in chosen}
        for lab in rng.sample(_NORMAL_LABS, rng.randint(1, 3)):
            if lab[0] not in names:
                chosen.append(lab)
        rng.shuffle(chosen)
        lead = rng.choice(
            (
                "Blood work returns",
                "Labs drawn at the visit show",
                "Initial laboratory results include",
                "Blood tests reveal",
                "Testing returns",
            )
        )
        exam.append(f"{lead} a {_join([_lab_item(rng, lab) for lab in chosen])}.")
    qtype = rng.choice(_QTYPES)
    ending = rng.choice(_ENDINGS[qtype])
    target = rng.randint(50, 150)
    words = len(intro.split()) + len(ending.split())
    pool = detail + hist + exam
    keep = [False] * len(pool)
    kept = 0
    for i in rng.sample(range(len(pool)), len(pool)):
        w = len(pool[i].split())
        if words + w <= target or (kept < 2 and words + w <= 150):
            keep[i] = True
            words += w
            kept += 1
    body = [intro] + [s for s, k in zip(pool, keep, strict=True) if k]
    while words < 30:
        s = rng.choice(_NORMAL_EXAM)
        body.append(s)
        words += len(s.split())
    body.append(ending)
    stem = " ".join(body)
    # Options: the right text and three wrong ones of the same kind.
    right = c[_ATTR[qtype]]
    same, glob = _POOLS[ci, qtype]
    wrong = rng.sample(same, min(len(same), rng.randint(1, 3)))
    while len(wrong) < 3:
        t = rng.choice(glob)
        if t not in wrong:
            wrong.append(t)
    texts = [*wrong, right]
    rng.shuffle(texts)
    letters = "ABCD"
    options = dict(zip(letters, texts, strict=True))
    gold = letters[texts.index(right)]
    return Question(
        id=qid,
        source="synthetic",
        split="train",
        question=stem,
        options=options,
        gold=gold,
        subject=subject,
        meta={"condition": c[4], "qtype": qtype},
    )


def synthetic_questions(n: int, seed: int = 0) -> Iterator[Question]:
    """``n`` distinct template-built 4-option clinical vignettes (30-150-word stems).

    About 50 conditions across 17 subjects, with the patient, timing, history, medications,
    social and family history, vital signs, examination, laboratory values (all numbers drawn
    at random), sentence order and question type varied per question. Ids are
    ``syn<seed>-<index>``; the same ``(n, seed)`` always gives the same questions.
    """
    rng = random.Random(seed)
    seen: set[bytes] = set()
    i = 0
    while i < n:
        q = _make_question(rng, f"syn{seed}-{i:07d}")
        h = hashlib.blake2b(q.question.encode(), digest_size=8).digest()
        if h in seen:
            continue
        seen.add(h)
        i += 1
        yield q


# --------------------------------------------------------------------------------------------
# Synthetic teacher traces
# --------------------------------------------------------------------------------------------

TEACHER = "synthetic-teacher"
PARAMS = {"temperature": 0.7}
_PARAMS_JSON = json.dumps(PARAMS)
_COT = TEMPLATES["cot"]

_OPENERS = [
    "Let me work through this step by step.",
    "Let's break down the key findings in this case.",
    "I'll start by summarizing the presentation.",
    "First, let me identify the most important clinical clues.",
    "We need to figure out what ties these findings together.",
    "Okay, let's analyze this question carefully.",
]
_REASONING = [
    "The time course of the symptoms is an important clue here.",
    "The combination of these findings narrows the differential considerably.",
    "The vital signs suggest a systemic process rather than a purely local one.",
    "The patient's age and sex shift the pretest probability of several options.",
    "The laboratory values need to be interpreted in the context of the history.",
    "Nothing in the history points to a medication side effect.",
    "The examination findings are fairly specific for one category of disease.",
    "It is worth considering what would be dangerous to miss in this setting.",
    "The absence of certain findings is just as informative as their presence.",
    "This presentation is a classic pattern that exam questions like to test.",
    "We should consider both common and can't-miss diagnoses.",
    "The social history may be a distractor, but it could also be relevant.",
    "Acute onset favors a vascular, infectious, or toxic cause.",
    "A chronic course favors an inflammatory, neoplastic, or degenerative process.",
    "The heart rate and blood pressure tell us about hemodynamic stability.",
    "If the patient were unstable, the management priorities would change.",
    "The question asks for the single best answer, so several options may be partly true.",
    "Guidelines recommend confirming the diagnosis before committing to long-term therapy.",
    "The key discriminating feature is how the symptoms relate to each other.",
    "An infection would usually be accompanied by fever and leukocytosis.",
    "The pattern of laboratory abnormalities is consistent with end-organ involvement.",
    "Family history raises the possibility of a hereditary component.",
    "The distribution of the findings helps localize the problem.",
    "It helps to think about the underlying pathophysiology first.",
    "Medication history can reveal reversible causes that should be addressed.",
    "Age-specific epidemiology makes some options much less likely.",
    "The first step is always to stabilize the patient before further workup.",
    "Imaging should be chosen based on the suspected diagnosis and patient stability.",
    "A normal result on one test does not exclude the diagnosis on its own.",
    "Let me reconsider whether any finding contradicts this impression.",
    "The most specific finding should carry the most weight in the decision.",
    "Several options describe true facts but do not answer the question asked.",
    "This is essentially a question about recognizing the classic presentation.",
    "The exam findings and the labs point in the same direction.",
    "Next, I'll go through the answer choices one at a time.",
    "We can use the process of elimination for the remaining options.",
    "The stem gives us enough information to make a confident choice.",
    "Risk factors in the history support this line of reasoning.",
    "This would be unusual without a clear precipitating event.",
    "The chronology suggests the process has been developing for some time.",
]
_GOOD = [
    "this fits the presentation best",
    "this explains all of the key findings",
    "this is consistent with the history, examination, and labs",
    "this matches the classic picture described",
    "this is the most specific choice for this scenario",
]
_BAD = [
    "this does not fit the time course",
    "this would not explain the laboratory abnormalities",
    "this is possible but much less consistent with the findings",
    "this would present differently",
    "this is not supported by the examination",
    "this is a distractor that addresses a different condition",
    "this would be premature at this point",
    "there is no evidence for this in the stem",
]
_NO_FINAL_ENDS = [
    "Weighing everything, the most consistent explanation is the one that accounts for all "
    "of these findings together.",
    "Overall, the findings support one option more than the others, although some "
    "uncertainty remains.",
    "Taken together, the clinical picture is fairly characteristic.",
]
_LOOPS = [
    "Wait, let me re-check the vital signs.",
    "Let me reconsider the options again.",
    "Hmm, let me look at the labs once more.",
    "Actually, I should re-read the question.",
]
_REFUSALS = [
    "I cannot provide medical advice. Please consult a licensed healthcare professional "
    "for questions about diagnosis or treatment.",
    "I'm sorry, but I cannot provide medical advice or help with this question. Please speak "
    "with a qualified clinician.",
    "I cannot provide medical advice. If this is a real situation, please contact a doctor "
    "or emergency services.",
]
_REASONING_W = [(s, len(s.split())) for s in _REASONING]


def _reasoning_text(
    rng: random.Random, q: Question, intro: str, answer: str, target: int
) -> tuple[str, str]:
    """(body, conclusion) of a chain of thought about ``q`` that picks ``answer``."""
    lines = [f"{rng.choice(_OPENERS)} {intro}"]
    words = len(lines[0].split())
    opts = []
    for letter, text in q.options.items():
        why = rng.choice(_GOOD if letter == answer else _BAD)
        opts.append(f"- ({letter}) {text}: {why}.")
        words += len(text.split()) + len(why.split()) + 2
    concl = f"Putting this together, the best answer is {q.options[answer]}."
    words += len(concl.split())
    para: list[str] = []
    while words < target:
        s, w = rng.choice(_REASONING_W)
        para.append(s)
        words += w
        if len(para) >= 4 and rng.random() < 0.3:
            lines.append(" ".join(para))
            para = []
    if para:
        lines.append(" ".join(para))
    split = rng.randint(1, len(lines))
    lines[split:split] = ["\n".join(opts)]
    return "\n\n".join(lines), concl


def synthetic_trace_records(
    n_traces: int, samples_per_question: int = 4, seed: int = 0
) -> Iterator[TraceRecord]:
    """Stream ``n_traces`` teacher traces (``samples_per_question`` per synthetic question).

    The mix: ~3% truncated at the token limit (``finish_reason="length"``, no final line),
    ~2% no final answer line, ~1% degenerate repetition loops (a sentence repeated 20-60
    times, then a final line), ~1% refusals, the rest complete chains of thought (80-400
    words) ending ``The answer is (X).``. A per-question accuracy averaging ~70% decides
    whether ``X`` is the gold letter. The true kind is in ``endpoint``
    (``synthetic://<kind>``); keys are :func:`trace_key` values, so they are unique.
    """
    rng = random.Random(seed * 1_000_003 + 17)
    n_questions = -(-n_traces // samples_per_question)
    made = 0
    for q in synthetic_questions(n_questions, seed):
        content = _COT.user_message(q)
        messages = [{"role": "user", "content": content}]
        messages_json = json.dumps(messages, ensure_ascii=False)
        prompt_tokens = int(len(content.split()) * 1.3)
        intro = q.question.split(". ", 1)[0].rstrip(".") + "."
        gold = q.gold or "A"
        wrong = [x for x in q.options if x != gold]
        p_right = rng.betavariate(2.1, 0.9)
        for i in range(samples_per_question):
            if made >= n_traces:
                return
            r = rng.random()
            answer = gold if rng.random() < p_right else rng.choice(wrong)
            finish = "stop"
            if 0.06 <= r < 0.07:
                kind = "refusal"
                text = rng.choice(_REFUSALS)
            else:
                body, concl = _reasoning_text(
                    rng, q, intro, answer, int(rng.triangular(80, 400, 170))
                )
                if r < 0.03:
                    kind, finish = "truncated", "length"
                    cut = int(len(body) * rng.uniform(0.3, 0.95))
                    text = body[: body.rfind(" ", 0, cut)]
                elif r < 0.05:
                    kind = "no_final"
                    text = f"{body}\n\n{rng.choice(_NO_FINAL_ENDS)}"
                elif r < 0.06:
                    kind = "loop"
                    loop = " ".join([rng.choice(_LOOPS)] * rng.randint(20, 60))
                    head = body[: body.find("\n\n") if "\n\n" in body else len(body)]
                    text = f"{head}\n\n{loop}\n\nThe answer is ({answer})."
                else:
                    kind = "ok"
                    text = f"{body}\n\n{concl}\nThe answer is ({answer})."
            yield TraceRecord(
                key=trace_key(TEACHER, messages, PARAMS, i),
                question_id=q.id,
                sample_index=i,
                teacher=TEACHER,
                messages=messages_json,
                params=_PARAMS_JSON,
                text=text,
                finish_reason=finish,
                source="synthetic",
                question=q.question,
                options=q.options,
                gold=q.gold,
                subject=q.subject,
                prompt_tokens=prompt_tokens,
                completion_tokens=int(len(text.split()) * 1.3),
                latency_s=round(rng.uniform(2.0, 40.0), 2),
                endpoint=f"synthetic://{kind}",
                created_at=1_700_000_000.0 + made * 0.05,
            )
            made += 1


def write_synthetic_store(
    path: str | Path,
    n_traces: int,
    samples_per_question: int = 4,
    seed: int = 0,
    batch: int = 5000,
) -> int:
    """Write :func:`synthetic_trace_records` into a :class:`TraceStore` at ``path`` with
    ``put_many`` in batches of ``batch``; returns how many records were new."""
    written = 0
    buf: list[TraceRecord] = []
    with TraceStore(path) as store:
        for rec in synthetic_trace_records(n_traces, samples_per_question, seed):
            buf.append(rec)
            if len(buf) >= batch:
                written += store.put_many(buf)
                buf = []
        written += store.put_many(buf)
    return written
