# Written for medistill (original text, not copied from any dataset).
"""Blind hand-labelled answer-extraction cases.

These cases were written by someone who did NOT see the extractor's rules, its
source code, or the existing extraction tests and cases.  Each label is what a
careful human labeller assigns: the one option letter that the response commits
to as its answer to the question that was asked, or ``None`` when it commits to
no single listed option (refusal, unresolved hedge, "not listed" as the last
word, an answer only to a question the model invented, cut-off reasoning...).

Each family maps to a list of ``(response_text, options, expected)`` tuples.
Long degenerate tails are built with string multiplication.
"""

from __future__ import annotations

# --- junk used for degenerate tails -------------------------------------------------

EMPTY_FENCES = "```\n```\n" * 300
TOOL_CODE = "```tool_code\nprint(get_answer(question))\n```\n" * 80
HTML_JUNK = "<div></div>\n<p></p>\n<br>\n" * 150 + "<p>Answer</p>\n" * 20
EMPTY_TABLE = "| | |\n|---|---|\n" + "| | |\n" * 300
LATEX_JUNK = "$$\n$$\n" * 150 + "$$ t_{1/2} = \\frac{0.693 \\cdot V_d}{CL} $$\n" * 40
PLACEHOLDER_CODE = "```python\n# TODO: implement\npass\n```\n" * 100
BLANK_LINES = "\n" * 2000
EMPTY_ANSWER_LINES = "Answer:\n" * 200
EMPTY_BOXES = "The final answer is: $\\boxed{}$\n" * 120
JSON_JUNK = "{}\n[]\n" * 250
ELLIPSES = "...\n" * 400

# --- option sets --------------------------------------------------------------------

HF_DRUGS = {"A": "Digoxin", "B": "Furosemide", "C": "Carvedilol", "D": "Amlodipine"}
HEPARIN = {
    "A": "Vitamin K",
    "B": "Protamine sulfate",
    "C": "Fresh frozen plasma",
    "D": "Idarucizumab",
}
CAP = {
    "A": "Staphylococcus aureus",
    "B": "Streptococcus pneumoniae",
    "C": "Klebsiella pneumoniae",
    "D": "Mycoplasma pneumoniae",
}
TRIANGLE = {"A": "3 years", "B": "4 years", "C": "5 years", "D": "6 years"}
ECLAMPSIA = {
    "A": "Diazepam",
    "B": "Phenytoin",
    "C": "Magnesium sulfate",
    "D": "Labetalol",
}
OCD = {"A": "Haloperidol", "B": "Fluoxetine", "C": "Lithium", "D": "Buspirone"}
STEADY_STATE = {"A": "4 hours", "B": "8 hours", "C": "16-20 hours", "D": "48 hours"}
ORAL_SCC = {
    "A": "Lateral border of the tongue",
    "B": "Hard palate",
    "C": "Buccal mucosa",
    "D": "Attached gingiva",
}
WARFARIN_INR = {
    "A": "Continue warfarin and recheck INR in 1 week",
    "B": "Hold warfarin and give oral vitamin K",
    "C": "Give IV vitamin K and four-factor PCC",
    "D": "Give protamine sulfate",
}
PHEO = {
    "A": "Carcinoid syndrome",
    "B": "Pheochromocytoma",
    "C": "Graves disease",
    "D": "Panic disorder",
}
SYPHILIS = {
    "A": "Doxycycline",
    "B": "Ceftriaxone",
    "C": "Benzathine penicillin G",
    "D": "Azithromycin",
}
BOTULINUM = {
    "A": "Inhibits release of acetylcholine at the neuromuscular junction",
    "B": "Blocks nicotinic acetylcholine receptors",
    "C": "Inhibits acetylcholinesterase",
    "D": "Inhibits release of glycine from Renshaw cells",
}
GLAUCOMA = {
    "A": "Topical pilocarpine alone",
    "B": "Topical timolol alone",
    "C": "Intravenous acetazolamide",
    "D": "Laser peripheral iridotomy",
}
MI_DEATH = {
    "A": "Myocardial rupture",
    "B": "Cardiogenic shock",
    "C": "Acute heart failure",
    "D": "Ventricular arrhythmia",
}
BIRTH_VACCINE = {"A": "BCG", "B": "MMR", "C": "DTaP", "D": "Varicella"}
HYPERKALEMIA = {
    "A": "Intravenous calcium gluconate",
    "B": "Sodium polystyrene sulfonate",
    "C": "Intravenous furosemide",
    "D": "Nebulized salbutamol",
}

# 1. degenerate_tail -----------------------------------------------------------------

DEGENERATE_TAIL = [
    (
        "Carvedilol is a beta-blocker with proven mortality benefit in heart failure with "
        "reduced ejection fraction (COPERNICUS trial). Digoxin reduces hospitalizations but "
        "not mortality, furosemide only relieves congestion, and amlodipine is neutral.\n\n"
        "**Final Answer: C**\n\n" + EMPTY_FENCES,
        HF_DRUGS,
        "C",
    ),
    (
        "At first, A (vitamin K) looks right because it reverses anticoagulation. But vitamin K "
        "reverses warfarin, not heparin. Heparin is reversed by protamine sulfate, a positively "
        "charged protein that binds the negatively charged heparin molecule. Idarucizumab is for "
        "dabigatran.\n\nFinal answer: B\n\n" + TOOL_CODE,
        HEPARIN,
        "B",
    ),
    (
        "<think>\nCommunity-acquired pneumonia. In young adults Mycoplasma is common, so D is "
        "tempting. But the question asks about the most common cause overall, which is "
        "pneumococcus.\n</think>\n\nThe answer is B. Streptococcus pneumoniae.\n\n"
        + "Streptococcus pneumoniae\n"
        * 200,
        CAP,
        "B",
    ),
    (
        "Let's recall the fine motor milestones for copying shapes:\n"
        "- Circle: 3 years\n- Cross: 4 years\n- Square: 4-5 years\n\n"
        "Now the triangle comes after the square, so we need to think about which of the "
        "options matches. Option B is 4 years, option C is 5 years and option D is 6 years.\n\n"
        + EMPTY_FENCES,
        TRIANGLE,
        None,
    ),
    (
        "Eclampsia is defined as new-onset seizures in a woman with preeclampsia. The drug of "
        "choice both to treat and to prevent recurrence of eclamptic seizures is magnesium "
        "sulfate (Pritchard or Zuspan regimen). Diazepam and phenytoin are inferior; labetalol "
        "controls blood pressure only.\n\nAnswer: C) Magnesium sulfate\n\n" + HTML_JUNK,
        ECLAMPSIA,
        "C",
    ),
    (
        "First-line pharmacotherapy for obsessive-compulsive disorder is an SSRI, usually at "
        "higher doses than used for depression. Among the options, fluoxetine is the SSRI.\n\n"
        "The correct answer is **B. Fluoxetine**.\n\n" + EMPTY_TABLE,
        OCD,
        "B",
    ),
    (
        "Steady state is reached after about 4 to 5 half-lives regardless of dose.\n\n"
        "$$ 4 \\times 4\\,h = 16\\,h, \\quad 5 \\times 4\\,h = 20\\,h $$\n\n"
        "**Answer: C**\n\n" + LATEX_JUNK,
        STEADY_STATE,
        "C",
    ),
    (
        "Option C, buccal mucosa, was my first thought, because gingivobuccal cancers dominate "
        "in tobacco chewers in South Asia. However, the question asks about the most common site "
        "overall, and worldwide the lateral border of the tongue is the most common site of oral "
        "squamous cell carcinoma.\n\nFinal answer: A\n\n" + PLACEHOLDER_CODE,
        ORAL_SCC,
        "A",
    ),
    (
        "The patient has an INR of 9 with active gastrointestinal bleeding. This is major "
        "bleeding, so warfarin must be reversed immediately with IV vitamin K plus a "
        "prothrombin complex concentrate. Oral vitamin K alone (option B) is for an elevated INR "
        "without bleeding.\n\nThe answer is C.\n\n"
        + "```python\ndef solve(options):\n    # placeholder\n    return options['A']\n```\n"
        * 60,
        WARFARIN_INR,
        "C",
    ),
    (
        "To answer this we need to consider each option.\n\n"
        "A. Carcinoid syndrome causes flushing, diarrhea and wheezing.\n"
        "B. Pheochromocytoma causes paroxysmal headache, sweating and palpitations.\n"
        "C. Graves disease causes heat intolerance and weight loss.\n"
        "D. Panic disorder causes episodic fear.\n\n" + EMPTY_BOXES,
        PHEO,
        None,
    ),
    (
        "<think>\nEpisodic headache, palpitations, diaphoresis and severe hypertension: the "
        "classic triad of a catecholamine-secreting tumor.\n</think>\n\n"
        "**Answer: B. Pheochromocytoma**\n\nExplanation: the paroxysmal triad together with "
        "hypertension points to a catecholamine-secreting adrenal tumor; confirm with plasma "
        "free metanephrines.\n" + BLANK_LINES + "</s></s></s>\n" * 50,
        PHEO,
        "B",
    ),
    (
        "Initially I thought of A, doxycycline, since it is used for syphilis. But doxycycline "
        "is only the alternative for penicillin-allergic patients. The drug of choice for all "
        "stages of syphilis is penicillin, and for primary syphilis a single IM dose of "
        "benzathine penicillin G.\n\nSo the answer is C.\n\n" + EMPTY_ANSWER_LINES,
        SYPHILIS,
        "C",
    ),
    (
        "Botulinum toxin is a protease that cleaves SNARE proteins (SNAP-25, synaptobrevin, "
        "syntaxin), preventing vesicle fusion and thus preventing the release of acetylcholine "
        "at the neuromuscular junction. Option D describes tetanus toxin.\n\nAnswer: A\n\n"
        + JSON_JUNK,
        BOTULINUM,
        "A",
    ),
    (
        "I need to look up the current guideline for this.\n\n"
        + "```tool_code\nsearch('acute angle closure glaucoma initial management')\n```\n"
        + "```tool_outputs\n```\n" * 60,
        GLAUCOMA,
        None,
    ),
    (
        "My first instinct is B, cardiogenic shock, since it is a major killer after MI. But "
        "within the first hour the dominant cause of death is ventricular fibrillation. "
        "Cardiogenic shock and rupture occur later (rupture typically days 3-7).\n\n"
        "Final answer: D\n\n"
        + (
            "A. Myocardial rupture\nB. Cardiogenic shock\nC. Acute heart failure\n"
            "D. Ventricular arrhythmia\n"
        )
        * 80,
        MI_DEATH,
        "D",
    ),
    (
        "BCG is given at birth in countries with a high tuberculosis burden, along with the "
        "birth dose of hepatitis B and OPV-0. MMR, DTaP and varicella are given later.\n\n"
        "Answer: (A)\n\n" + ELLIPSES,
        BIRTH_VACCINE,
        "A",
    ),
    (
        "Let's analyze each option for hyperkalemia with ECG changes.\n\nA." + EMPTY_FENCES,
        HYPERKALEMIA,
        None,
    ),
    (
        "ECG shows peaked T waves and widened QRS, so the myocardium must be stabilized first. "
        "Salbutamol and insulin shift potassium, and binders remove it, but they do not protect "
        "the heart immediately.\n\nThe answer is A: intravenous calcium gluconate.\n\n"
        + "| Option | Drug | Onset |\n|---|---|---|\n"
        + "| A | | |\n| B | | |\n| C | | |\n| D | | |\n" * 70,
        HYPERKALEMIA,
        "A",
    ),
]

# 2. hedge_then_commit ---------------------------------------------------------------

HEDGE_THEN_COMMIT = [
    (
        "A 6-year-old with a honey-colored crusted lesion around the nose is classic impetigo. "
        "None of the options fits exactly, since first-line treatment for limited impetigo is "
        "topical mupirocin, which is not offered. However, the closest match is B, because "
        "cephalexin covers both Staphylococcus aureus and Streptococcus pyogenes.",
        {
            "A": "Oral penicillin V",
            "B": "Oral cephalexin",
            "C": "Intravenous vancomycin",
            "D": "Oral fluconazole",
        },
        "B",
    ),
    (
        "I'm torn between B and C. Lithium has the strongest evidence for reducing suicide risk "
        "in bipolar disorder, while valproate is often preferred for rapid cycling. The question "
        "mentions a history of two suicide attempts, so suicide prevention is the priority.\n\n"
        "I will choose C.",
        {
            "A": "Haloperidol",
            "B": "Valproate",
            "C": "Lithium",
            "D": "Sertraline",
        },
        "C",
    ),
    (
        "No option is perfect here: the drug of choice for absence seizures in a child is "
        "ethosuximide, and valproate is used when generalized tonic-clonic seizures coexist. "
        "Carbamazepine and phenytoin can worsen absence seizures. The vignette does not say "
        "whether there are other seizure types.\n\nIf I must pick, D.",
        {
            "A": "Carbamazepine",
            "B": "Phenytoin",
            "C": "Phenobarbital",
            "D": "Ethosuximide",
        },
        "D",
    ),
    (
        "Hmm, this one is tricky. Both misoprostol and oxytocin are uterotonics. Oxytocin is "
        "first line for postpartum hemorrhage due to atony, but the patient is already on an "
        "oxytocin infusion. Methylergometrine is contraindicated because of her hypertension. "
        "Carboprost is reasonable, but she has asthma.\n\nGiven all that, none of them is "
        "ideal, so I'll go with A.",
        {
            "A": "Misoprostol",
            "B": "Methylergometrine",
            "C": "Carboprost",
            "D": "Dinoprostone",
        },
        "A",
    ),
    (
        "The patient is a newly diagnosed type 2 diabetic with an HbA1c of 7.4% and normal "
        "renal function. Guidelines would also consider an SGLT2 inhibitor given his heart "
        "failure, and none of the drugs listed is a perfect answer. The closest one would be "
        "metformin, which remains the usual first-line agent.",
        {
            "A": "Glipizide",
            "B": "Insulin glargine",
            "C": "Metformin",
            "D": "Pioglitazone",
        },
        "C",
    ),
    (
        "Fever, neck stiffness and a petechial rash in a college student suggest meningococcal "
        "meningitis, but pneumococcus is still possible. It could be B or C; more data are "
        "needed (Gram stain and CSF culture) before we can say which organism is responsible.",
        {
            "A": "Listeria monocytogenes",
            "B": "Neisseria meningitidis",
            "C": "Streptococcus pneumoniae",
            "D": "Haemophilus influenzae type b",
        },
        None,
    ),
    (
        "Both A and D are reasonable. Amiodarone is preferred in structural heart disease, while "
        "flecainide is used in patients with a structurally normal heart. The vignette does not "
        "give an echocardiogram, so I cannot determine a single best answer without knowing "
        "whether the left ventricular function is normal.",
        {
            "A": "Amiodarone",
            "B": "Digoxin",
            "C": "Verapamil",
            "D": "Flecainide",
        },
        None,
    ),
    (
        "<think>\nOkay, a child with a barking cough and inspiratory stridor: croup. A or C? "
        "Dexamethasone is given to all, nebulized epinephrine only for moderate to severe. The "
        "child has stridor at rest, so moderate. Hmm, both. Which is the single best next step? "
        "Epinephrine acts faster for stridor at rest. I'll say C.\n</think>\n\n"
        "Honestly neither A nor C alone is complete, since a child with stridor at rest should "
        "receive both. But the best immediate step is nebulized epinephrine.\n\n**Answer: C**",
        {
            "A": "Oral dexamethasone",
            "B": "Intravenous ceftriaxone",
            "C": "Nebulized racemic epinephrine",
            "D": "Emergency tracheostomy",
        },
        "C",
    ),
    (
        "This is a difficult question, and I am not fully certain. Clozapine is indicated for "
        "treatment-resistant schizophrenia, but it requires blood monitoring, and the patient "
        "has only failed one antipsychotic, which is not yet treatment resistance. Switching to "
        "another second-generation agent is also defensible.\n\nIf forced to choose, I'd lean "
        "toward olanzapine (B).",
        {
            "A": "Clozapine",
            "B": "Olanzapine",
            "C": "Lorazepam",
            "D": "Electroconvulsive therapy",
        },
        "B",
    ),
    (
        "The right choice depends on renal function, which the stem does not provide. If the "
        "creatinine clearance is below 30 mL/min, option B (unfractionated heparin) is "
        "appropriate; otherwise option A (enoxaparin) is preferred. Please check the renal "
        "function before deciding.",
        {
            "A": "Enoxaparin",
            "B": "Unfractionated heparin",
            "C": "Warfarin alone",
            "D": "Aspirin alone",
        },
        None,
    ),
    (
        "The question appears flawed: in a patient with a pulseless ventricular tachycardia the "
        "first step is defibrillation, which is not offered. Among the choices given, "
        "epinephrine is the least wrong, because it is part of the cardiac arrest algorithm. "
        "So B.",
        {
            "A": "Synchronized cardioversion",
            "B": "Epinephrine 1 mg IV",
            "C": "Adenosine 6 mg IV push",
            "D": "Atropine 0.5 mg IV",
        },
        "B",
    ),
    (
        "I'm not confident about this. It might be A or D; both the submandibular and the "
        "parotid gland can harbor calculi, though submandibular stones are far more common. "
        "I'd recommend consulting a standard oral pathology textbook.",
        {
            "A": "Submandibular gland",
            "B": "Sublingual gland",
            "C": "Minor salivary glands",
            "D": "Parotid gland",
        },
        None,
    ),
    (
        "Let me weigh the two strongest options.\n\n"
        "- **B. Ceftriaxone**: covers gonococcal urethritis.\n"
        "- **D. Azithromycin**: covers chlamydia.\n\n"
        "The patient likely has both infections, and the correct regimen uses both drugs. "
        "Neither alone is sufficient.\n\n**Final answer: B or D**",
        {
            "A": "Metronidazole",
            "B": "Ceftriaxone",
            "C": "Fluconazole",
            "D": "Azithromycin",
        },
        None,
    ),
    (
        "None of these options describes the mechanism perfectly: aspirin irreversibly "
        "acetylates COX-1 and COX-2, which decreases thromboxane A2 synthesis in platelets. "
        "Option D is closest to the truth, since it captures the irreversible COX inhibition "
        "that gives aspirin its antiplatelet effect.",
        {
            "A": "Reversible inhibition of COX-1",
            "B": "Blockade of the P2Y12 ADP receptor",
            "C": "Inhibition of glycoprotein IIb/IIIa",
            "D": "Irreversible inhibition of cyclooxygenase",
        },
        "D",
    ),
    (
        "### Analysis\n\nPainless vaginal bleeding in the third trimester suggests placenta "
        "previa, but the vignette also mentions mild uterine tenderness, which is more typical "
        "of abruption. The findings overlap.\n\n### Verdict\n\nThere is no single best answer "
        "on the data given. That said, for exam purposes the painless bleeding is the key "
        "feature, so **A** is what is expected.",
        {
            "A": "Placenta previa",
            "B": "Placental abruption",
            "C": "Vasa previa",
            "D": "Uterine rupture",
        },
        "A",
    ),
    (
        "I'll pick C, although B could also be argued, since a thyroid storm is treated with "
        "propranolol as well. The first drug to block new hormone synthesis is "
        "propylthiouracil, which is option C.",
        {
            "A": "Levothyroxine",
            "B": "Propranolol",
            "C": "Propylthiouracil",
            "D": "Radioactive iodine",
        },
        "C",
    ),
    (
        "Between B (inferior wall MI) and C (pericarditis) I can't decide without seeing the "
        "ECG: ST elevation in II, III and aVF would suggest B, while diffuse ST elevation with "
        "PR depression would suggest C. The description in the question is not specific enough.",
        {
            "A": "Aortic dissection",
            "B": "Inferior wall myocardial infarction",
            "C": "Acute pericarditis",
            "D": "Pulmonary embolism",
        },
        None,
    ),
]

# 3. none_then_commit ----------------------------------------------------------------

NONE_THEN_COMMIT = [
    (
        "None of the options is fully correct. The treatment of choice for a first episode of "
        "Clostridioides difficile infection is oral fidaxomicin or oral vancomycin; IV "
        "vancomycin does not reach the colon. Of the options given, oral vancomycin is what "
        "the question intends.\n\nAnswer: D",
        {
            "A": "Intravenous vancomycin",
            "B": "Oral clindamycin",
            "C": "Intravenous ceftriaxone",
            "D": "Oral vancomycin",
        },
        "D",
    ),
    (
        "The exact answer is not listed among the options: the most common cause of "
        "secondary hypertension in a young woman with a renal bruit is fibromuscular dysplasia, "
        "which is not given. However, the best available option is renal artery stenosis, "
        "which is the category fibromuscular dysplasia belongs to.\n\nFinal answer: (B)",
        {
            "A": "Primary hyperaldosteronism",
            "B": "Renal artery stenosis",
            "C": "Cushing syndrome",
            "D": "Coarctation of the aorta",
        },
        "B",
    ),
    (
        "Strictly speaking, none of the options are correct as stated, because the Parkland "
        "formula gives 4 mL x kg x %TBSA over 24 hours, half in the first 8 hours. For a 70 kg "
        "man with 30% burns: 4 x 70 x 30 = 8400 mL, of which 4200 mL in the first 8 hours. "
        "Rounding, the option that matches is:\n\n$$\\boxed{C}$$",
        {"A": "2100 mL", "B": "3000 mL", "C": "4200 mL", "D": "8400 mL"},
        "C",
    ),
    (
        "Option A, propranolol, is indeed a nonselective beta-blocker and it is used for "
        "migraine prophylaxis and essential tremor. Option B, metoprolol, is cardioselective. "
        "Option C, atenolol, is renally cleared. Option D, esmolol, is ultra-short acting. "
        "However, the question asks which beta-blocker has intrinsic sympathomimetic activity, "
        "and that would be pindolol or acebutolol.\n\nTherefore, the correct answer is not "
        "among the options provided.",
        {"A": "Propranolol", "B": "Metoprolol", "C": "Atenolol", "D": "Esmolol"},
        None,
    ),
    (
        "Let's check each option:\n- A. Erythromycin: not first line for Lyme disease in "
        "adults.\n- B. Ciprofloxacin: not active against Borrelia.\n- C. Vancomycin: no.\n"
        "- D. Gentamicin: no.\n\nThe right drug is doxycycline, which is not offered. So none "
        "of the above is correct, answer E.",
        {
            "A": "Erythromycin",
            "B": "Ciprofloxacin",
            "C": "Vancomycin",
            "D": "Gentamicin",
            "E": "None of the above",
        },
        "E",
    ),
    (
        "Koplik spots are pathognomonic of measles (rubeola), which is not rubella, roseola or "
        "erythema infectiosum. Since measles is not among the first three choices, the correct "
        "choice is none of the above.",
        {
            "A": "Rubella",
            "B": "Roseola infantum",
            "C": "Erythema infectiosum",
            "D": "None of the above",
        },
        "D",
    ),
    (
        "None of these options is correct. Typhoid fever in a traveler returning from South "
        "Asia is increasingly resistant to fluoroquinolones, and the correct empirical choice "
        "is ceftriaxone or azithromycin. The correct answer is azithromycin.",
        {
            "A": "Ciprofloxacin",
            "B": "Chloramphenicol",
            "C": "Ampicillin",
            "D": "Trimethoprim-sulfamethoxazole",
        },
        None,
    ),
    (
        "The patient's confusion, ataxia and ophthalmoplegia are Wernicke encephalopathy, "
        "which requires IV thiamine before glucose. Dextrose alone, naloxone and flumazenil "
        "are all inappropriate.\n\nAnswer: None",
        {
            "A": "IV dextrose",
            "B": "IV naloxone",
            "C": "IV flumazenil",
            "D": "Oral multivitamin",
        },
        None,
    ),
    (
        "<think>\nThe question asks for the nerve injured in a fracture of the surgical neck of "
        "the humerus. That's the axillary nerve. Options: radial, median, ulnar, "
        "musculocutaneous. None match... wait, let me re-read. Oh, it says midshaft fracture, "
        "not surgical neck. Midshaft fracture injures the radial nerve in the spiral groove. "
        "So A.\n</think>\n\nAnswer: A",
        {
            "A": "Radial nerve",
            "B": "Median nerve",
            "C": "Ulnar nerve",
            "D": "Musculocutaneous nerve",
        },
        "A",
    ),
    (
        "Initially it seems that none of the answers is right, because the most common "
        "congenital heart defect overall is a ventricular septal defect and that is not listed. "
        "On re-reading the question, it asks about the most common cyanotic congenital heart "
        "disease presenting after the neonatal period, which is tetralogy of Fallot. The answer "
        "is B.",
        {
            "A": "Transposition of the great arteries",
            "B": "Tetralogy of Fallot",
            "C": "Tricuspid atresia",
            "D": "Truncus arteriosus",
        },
        "B",
    ),
    (
        "A - Incorrect. Clavulanic acid is a beta-lactamase inhibitor, not an antibiotic with "
        "activity against MRSA.\nB - Incorrect. Cefazolin does not cover MRSA.\nC - Partially "
        "correct. Vancomycin covers MRSA, but the question specifies an oral agent for an "
        "outpatient.\nD - Incorrect. Nafcillin does not cover MRSA.\n\nTherefore, none of the "
        "given options is the correct answer.",
        {
            "A": "Amoxicillin-clavulanate",
            "B": "Cefazolin",
            "C": "Intravenous vancomycin",
            "D": "Nafcillin",
        },
        None,
    ),
    (
        "Pulpotomy with formocresol is the classic answer for a vital carious exposure in a "
        "primary molar, but modern guidelines favor MTA. The options listed are all for "
        "permanent teeth, so the correct answer, MTA pulpotomy, is not listed.\n\n"
        "**Final Answer: None of the above**",
        {
            "A": "Direct pulp capping with calcium hydroxide",
            "B": "Apexification",
            "C": "Root canal treatment with gutta-percha",
            "D": "Extraction and space maintainer",
        },
        None,
    ),
    (
        "'None of the above' is tempting here, because the textbook answer for the drug of "
        "choice in absence seizures is ethosuximide. But valproate is listed, and it is an "
        "accepted first-line drug too, particularly when generalized tonic-clonic seizures "
        "coexist, as in this patient. So the answer is C, valproate, not D.",
        {
            "A": "Carbamazepine",
            "B": "Phenytoin",
            "C": "Valproate",
            "D": "None of the above",
        },
        "C",
    ),
    (
        "## Explanation\n\nNone of the options is correct. The antidote for acetaminophen "
        "overdose is N-acetylcysteine, and the options offer only treatments for other "
        "poisonings. The closest mechanism, restoring glutathione, is associated with option A, "
        "since methionine is a glutathione precursor used in some countries.\n\n"
        "**Answer: (A)**\n\n*Note: the answer key most likely intends A.*",
        {
            "A": "Methionine",
            "B": "Fomepizole",
            "C": "Deferoxamine",
            "D": "Flumazenil",
        },
        "A",
    ),
    (
        "After reviewing the options, none of them is the recommended initial test for "
        "suspected acute pulmonary embolism in a hemodynamically stable patient with a high "
        "pretest probability (CT pulmonary angiography).\n\n"
        '```json\n{"answer": null, "reason": "correct answer not among options"}\n```',
        {
            "A": "D-dimer",
            "B": "Chest X-ray",
            "C": "Ventilation-perfusion scan during pregnancy only",
            "D": "Lower limb venous Doppler",
        },
        None,
    ),
    (
        "Alpha-fetoprotein is elevated in yolk sac tumor, and hCG in choriocarcinoma. Pure "
        "seminoma usually has normal AFP. Since the question asks which tumor never raises "
        "AFP, and neither A, B nor C fits, the answer is D (none of the above).",
        {
            "A": "Yolk sac tumor",
            "B": "Embryonal carcinoma",
            "C": "Mixed germ cell tumor",
            "D": "None of the above",
        },
        "D",
    ),
    (
        "Honestly none of these is right; the most common site of ectopic pregnancy is the "
        "ampulla and the options mention isthmus, fimbria, ovary and cervix. Wait, let me look "
        "again at option A: 'Ampullary part of the fallopian tube'. I misread it. So A is "
        "correct after all.\n\nFinal answer: A",
        {
            "A": "Ampullary part of the fallopian tube",
            "B": "Isthmus of the fallopian tube",
            "C": "Ovary",
            "D": "Cervix",
        },
        "A",
    ),
]

# 4. invented_question ---------------------------------------------------------------

INVENTED_QUESTION = [
    (
        "Great question! Statins are a cornerstone of cardiovascular prevention.\n\n"
        "Follow-up question: Which enzyme do statins inhibit?\n"
        "A. HMG-CoA synthase\nB. Lipoprotein lipase\nC. HMG-CoA reductase\n"
        "D. Cholesterol ester transfer protein\n\nAnswer: C",
        {
            "A": "Myopathy",
            "B": "Hypoglycemia",
            "C": "Ototoxicity",
            "D": "Pulmonary fibrosis",
        },
        None,
    ),
    (
        "Here's a similar question to help you practice:\n\n"
        "A 30-year-old woman presents with heat intolerance, weight loss and a diffuse goiter "
        "with a bruit. What is the most likely diagnosis?\n"
        "A. Hashimoto thyroiditis\nB. Graves disease\nC. Toxic multinodular goiter\n"
        "D. Subacute thyroiditis\n\nAnswer: B",
        {
            "A": "Anti-TPO antibodies",
            "B": "TSH receptor antibodies",
            "C": "Anti-thyroglobulin antibodies",
            "D": "Anti-centromere antibodies",
        },
        None,
    ),
    (
        "Q: What is the most common cause of neonatal sepsis in the first week of life?\n"
        "A: Group B Streptococcus.\n\n"
        "Q: Which antibiotics are used empirically?\n"
        "A: Ampicillin plus gentamicin.\n\n"
        "Q: What is the most common cause of late-onset sepsis in the NICU?\n"
        "A: Coagulase-negative staphylococci.",
        {
            "A": "Escherichia coli",
            "B": "Group B Streptococcus",
            "C": "Listeria monocytogenes",
            "D": "Staphylococcus aureus",
        },
        None,
    ),
    (
        "The answer is D. Lithium toxicity is precipitated by thiazide diuretics, NSAIDs and "
        "ACE inhibitors, which reduce renal lithium clearance.\n\n"
        "Follow-up question: Which of the following is the treatment of choice for severe "
        "lithium toxicity?\nA. Hemodialysis\nB. Activated charcoal\nC. Forced diuresis with "
        "furosemide\nD. N-acetylcysteine\n\nAnswer: A",
        {
            "A": "Amlodipine",
            "B": "Valproate",
            "C": "Olanzapine",
            "D": "Hydrochlorothiazide",
        },
        "D",
    ),
    (
        "**Answer: B**\n\nPenicillin-binding proteins are altered in MRSA (PBP2a encoded by "
        "mecA).\n\n### Practice Question 2\n\nWhich gene confers vancomycin resistance in "
        "enterococci?\nA. mecA\nB. blaZ\nC. vanA\nD. ermB\n\n**Answer: C**\n\n"
        "### Practice Question 3\n\nWhich drug is used for VRE bacteremia?\nA. Linezolid\n"
        "B. Cefazolin\nC. Aztreonam\nD. Clindamycin\n\n**Answer: A**",
        {
            "A": "Beta-lactamase production",
            "B": "Altered penicillin-binding protein",
            "C": "Efflux pump",
            "D": "Decreased porin channels",
        },
        "B",
    ),
    (
        "Question: A 45-year-old man presents with sudden severe pain, swelling and redness "
        "of the first metatarsophalangeal joint after a night of heavy drinking. Joint "
        "aspiration shows needle-shaped negatively birefringent crystals. Which drug should be "
        "avoided in the acute attack?\n"
        "A. Indomethacin\nB. Colchicine\nC. Allopurinol (initiation)\nD. Prednisolone\n\n"
        "Answer: C\n\nExplanation: starting allopurinol during an acute flare can prolong it.",
        {
            "A": "Monosodium urate",
            "B": "Calcium pyrophosphate dihydrate",
            "C": "Calcium oxalate",
            "D": "Cholesterol",
        },
        None,
    ),
    (
        "Question: Which vitamin deficiency causes night blindness?\nOptions: A) Vitamin A "
        "B) Vitamin C C) Vitamin D D) Vitamin K\nAnswer: A\n\n"
        "Question: Which vitamin deficiency causes scurvy?\nOptions: A) Vitamin A "
        "B) Vitamin C C) Vitamin D D) Vitamin K\nAnswer: B\n\n"
        "Question: Which vitamin deficiency causes rickets?\nOptions: A) Vitamin A "
        "B) Vitamin C C) Vitamin D D) Vitamin K\nAnswer: C\n\n"
        "Question: Which vitamin deficiency causes a bleeding tendency in newborns?\n"
        "Options: A) Vitamin A B) Vitamin C C) Vitamin D D) Vitamin K\nAnswer: D",
        {
            "A": "Thiamine",
            "B": "Niacin",
            "C": "Pyridoxine",
            "D": "Cobalamin",
        },
        None,
    ),
    (
        "The most likely diagnosis is Kawasaki disease, given five days of fever, bilateral "
        "non-exudative conjunctivitis, strawberry tongue, and desquamation of the fingers.\n\n"
        "Let's test your knowledge with a related question:\n"
        "What is the most feared complication of this disease?\n"
        "(A) Coronary artery aneurysm\n(B) Renal failure\n(C) Encephalitis\n(D) Hepatitis\n\n"
        "Answer: (A)",
        {
            "A": "Scarlet fever",
            "B": "Kawasaki disease",
            "C": "Measles",
            "D": "Toxic shock syndrome",
        },
        "B",
    ),
    (
        "<think>\nThe user wants help with pharmacology. Maybe I should provide some practice "
        "questions on anticoagulants.\n</think>\n\n"
        "Here are some related questions to help you study:\n\n"
        "1. Which anticoagulant is a direct thrombin inhibitor?\n   Answer: Dabigatran (B)\n\n"
        "2. Which drug reverses rivaroxaban?\n   Answer: Andexanet alfa (D)\n\n"
        "3. Which test monitors unfractionated heparin?\n   Answer: aPTT (A)",
        {
            "A": "Warfarin",
            "B": "Dabigatran",
            "C": "Apixaban",
            "D": "Enoxaparin",
        },
        None,
    ),
    (
        "I can create a quiz question for you on this topic!\n\n"
        "**Quiz:** A 25-year-old woman on oral contraceptives develops a swollen, painful left "
        "calf. What is the best initial imaging test?\n\n"
        "- A) CT venography\n- B) Compression ultrasonography\n- C) MRI\n- D) Contrast "
        "venography\n\n**Correct answer: B) Compression ultrasonography**",
        {
            "A": "Factor V Leiden",
            "B": "Protein C deficiency",
            "C": "Antithrombin deficiency",
            "D": "Prothrombin gene mutation",
        },
        None,
    ),
    (
        "Correct option: A (Tetracycline)\n\nTetracyclines chelate calcium in developing teeth "
        "and cause permanent gray-brown discoloration, so they are avoided in children under 8 "
        "and in pregnancy.\n\nSimilar MCQ: Which antibiotic causes a gray baby syndrome?\n"
        "A. Tetracycline\nB. Chloramphenicol\nC. Erythromycin\nD. Amoxicillin\n\n"
        "Correct option: B",
        {
            "A": "Tetracycline",
            "B": "Amoxicillin",
            "C": "Erythromycin",
            "D": "Metronidazole",
        },
        "A",
    ),
    (
        "To make sure you understand the concept, try answering these:\n\n"
        "1. Which nerve is most at risk in a fracture of the surgical neck of the humerus?\n"
        "2. Which muscle is paralyzed in winged scapula?\n"
        "3. What is the nerve root of the biceps reflex?\n\n"
        "Options for all: A. Axillary B. Long thoracic C. C5-C6 D. Radial\n\n"
        "Answers: 1-A, 2-B, 3-C",
        {
            "A": "Axillary nerve",
            "B": "Radial nerve",
            "C": "Ulnar nerve",
            "D": "Median nerve",
        },
        None,
    ),
    (
        "Explanation: The Apgar score is assessed at 1 and 5 minutes, and the five parameters "
        "are heart rate, respiratory effort, muscle tone, reflex irritability and color. "
        "Temperature is not one of them. The answer to your question is C.\n\n"
        "Q: What Apgar score at 5 minutes is considered normal?\nA: 7 to 10.\n\n"
        "Q: Which parameter is scored first?\nA: Heart rate (option A in most lists).",
        {
            "A": "Heart rate",
            "B": "Muscle tone",
            "C": "Temperature",
            "D": "Color",
        },
        "C",
    ),
    (
        "Let's solve a simpler version first.\n\nQuestion 2: A 60-year-old smoker has a "
        "central lung mass and hypercalcemia. Which tumor type is most likely?\n"
        "A. Small cell carcinoma\nB. Squamous cell carcinoma\nC. Adenocarcinoma\n"
        "D. Large cell carcinoma\n\nSquamous cell carcinoma produces PTHrP, so the answer to "
        "Question 2 is B.",
        {
            "A": "SIADH",
            "B": "Cushing syndrome",
            "C": "Lambert-Eaton syndrome",
            "D": "Hypertrophic osteoarthropathy",
        },
        None,
    ),
    (
        "B\n\nExplanation: Pyloric stenosis causes hypochloremic, hypokalemic metabolic "
        "alkalosis due to loss of gastric HCl.\n\nNext question: What is the classic physical "
        "finding?\nA. Sausage-shaped mass\nB. Olive-shaped mass\nC. Currant jelly stool\n"
        "D. Bilious vomiting\n\nAnswer: B\n\nNext question: Definitive treatment?\n"
        "A. Ramstedt pyloromyotomy\nB. Gastrojejunostomy\nC. Endoscopic dilation\n"
        "D. Nasogastric decompression\n\nAnswer: A",
        {
            "A": "Hyperchloremic metabolic acidosis",
            "B": "Hypochloremic hypokalemic metabolic alkalosis",
            "C": "Respiratory alkalosis",
            "D": "High anion gap metabolic acidosis",
        },
        "B",
    ),
    (
        "This is a good case to think about variations. In a variant where the patient is "
        "pregnant, ACE inhibitors would be contraindicated and the answer would be C "
        "(methyldopa). In a variant where the patient has gout, thiazides should be avoided, "
        "so the answer would be A. In a variant with asthma, beta-blockers should be avoided.",
        {
            "A": "Amlodipine",
            "B": "Lisinopril",
            "C": "Methyldopa",
            "D": "Hydrochlorothiazide",
        },
        None,
    ),
    (
        "Sure! Here is a USMLE-style question:\n\nA 3-year-old boy has recurrent bacterial "
        "infections since 6 months of age and absent B cells on flow cytometry. Which gene is "
        "mutated?\nA. BTK\nB. ADA\nC. WAS\nD. CD40L\n\n<details><summary>Answer</summary>\n"
        "A. BTK - X-linked agammaglobulinemia\n</details>",
        {
            "A": "Bruton agammaglobulinemia",
            "B": "DiGeorge syndrome",
            "C": "Severe combined immunodeficiency",
            "D": "Chronic granulomatous disease",
        },
        None,
    ),
]

# 5. general -------------------------------------------------------------------------

GENERAL = [
    (
        "Subacute combined degeneration involves the dorsal columns and lateral corticospinal "
        "tracts, which is characteristic of vitamin B12 deficiency. The answer is (B).",
        {
            "A": "Folate deficiency",
            "B": "Vitamin B12 deficiency",
            "C": "Vitamin E deficiency",
            "D": "Thiamine deficiency",
        },
        "B",
    ),
    (
        "**Answer: C. Metformin**\n\nMetformin is first-line in type 2 diabetes: it lowers "
        "hepatic gluconeogenesis, is weight-neutral and does not cause hypoglycemia.",
        {
            "A": "Glyburide",
            "B": "Insulin glargine",
            "C": "Metformin",
            "D": "Sitagliptin",
        },
        "C",
    ),
    (
        "The combination of paroxysmal hypertension, headache, palpitations and sweating, "
        "together with elevated urinary metanephrines, is diagnostic. The most likely "
        "diagnosis is pheochromocytoma.",
        {
            "A": "Primary hyperaldosteronism",
            "B": "Cushing syndrome",
            "C": "Pheochromocytoma",
            "D": "Essential hypertension",
        },
        "C",
    ),
    (
        '{"answer": "D", "explanation": "Ondansetron blocks 5-HT3 receptors in the '
        'chemoreceptor trigger zone and on vagal afferents."}',
        {
            "A": "Metoclopramide",
            "B": "Promethazine",
            "C": "Aprepitant",
            "D": "Ondansetron",
        },
        "D",
    ),
    (
        "I'm sorry, but I can't help with choosing a medication. Please consult a licensed "
        "healthcare professional for advice specific to your situation.",
        {
            "A": "Sertraline",
            "B": "Bupropion",
            "C": "Mirtazapine",
            "D": "Trazodone",
        },
        None,
    ),
    (
        "B or C",
        {
            "A": "Anterior cruciate ligament",
            "B": "Medial meniscus",
            "C": "Medial collateral ligament",
            "D": "Posterior cruciate ligament",
        },
        None,
    ),
    (
        "<think>\nThe patient is a 4-year-old with a palpable abdominal mass that does not "
        "cross the midline and hematuria. Wilms tumor usually does not cross the midline, "
        "while neuroblastoma often does and is associated with elevated catecholamines. Let me "
        "also consider hepatoblastoma, which would present with a right upper quadrant mass "
        "and elevated AFP. The hematuria points to a renal origin, so we need to compare",
        {
            "A": "Neuroblastoma",
            "B": "Wilms tumor",
            "C": "Hepatoblastoma",
            "D": "Rhabdomyosarcoma",
        },
        None,
    ),
    (
        "answer: a\n\nbecause the mandibular canine is the last tooth to be extracted in "
        "complete extraction cases to preserve arch form",
        {
            "A": "Mandibular canine",
            "B": "Maxillary first molar",
            "C": "Mandibular central incisor",
            "D": "Maxillary second premolar",
        },
        "A",
    ),
    (
        "<think>\nAn elderly woman on chronic PPI therapy with fatigue, macrocytic anemia and "
        "glossitis. PPIs reduce acid, which is needed to release B12 from food proteins. "
        "Folate deficiency is also macrocytic but no neurological signs are expected. Iron "
        "deficiency would be microcytic. Hmm, she also has paresthesias, which favors B12. "
        "Alright.\n</think>\n\nThe clinical picture of macrocytic anemia with paresthesias in "
        "a patient on a long-term PPI fits cobalamin deficiency.\n\nSo the answer is D.",
        {
            "A": "Iron deficiency",
            "B": "Folate deficiency",
            "C": "Anemia of chronic disease",
            "D": "Vitamin B12 deficiency",
        },
        "D",
    ),
    (
        "This is an EXCEPT question. Ototoxicity, nephrotoxicity and neuromuscular blockade are "
        "all adverse effects of aminoglycosides. Disulfiram-like reaction is not; that is seen "
        "with metronidazole and some cephalosporins. So the exception, and the answer, is C.",
        {
            "A": "Ototoxicity",
            "B": "Nephrotoxicity",
            "C": "Disulfiram-like reaction",
            "D": "Neuromuscular blockade",
        },
        "C",
    ),
    (
        "A is wrong because lactulose is used in hepatic encephalopathy, not to lower portal "
        "pressure. B is wrong because furosemide alone is not the treatment of choice for "
        "ascites. D is wrong because octreotide is for acute variceal bleeding. Hence C.",
        {
            "A": "Lactulose",
            "B": "Furosemide alone",
            "C": "Propranolol",
            "D": "Octreotide",
        },
        "C",
    ),
    (
        "Rheumatic fever follows group A streptococcal pharyngitis; the Jones criteria include "
        "carditis, polyarthritis, chorea, erythema marginatum and subcutaneous nodules.\n\n"
        "**Final Answer:** The final answer is $\\boxed{B}$",
        {
            "A": "Staphylococcus aureus",
            "B": "Streptococcus pyogenes",
            "C": "Streptococcus agalactiae",
            "D": "Enterococcus faecalis",
        },
        "B",
    ),
    (
        "Correct answer: (d) Ondansetron\n\nIt is the preferred antiemetic for "
        "chemotherapy-induced nausea.",
        {
            "A": "Domperidone",
            "B": "Metoclopramide",
            "C": "Prochlorperazine",
            "D": "Ondansetron",
        },
        "D",
    ),
    (
        "Answer:",
        {
            "A": "Cleft lip",
            "B": "Cleft palate",
            "C": "Macroglossia",
            "D": "Micrognathia",
        },
        None,
    ),
    (
        "A 28-year-old woman with amenorrhea and galactorrhea. What is the most likely cause?\n"
        "A. Prolactinoma\nB. Pregnancy\nC. Hypothyroidism\nD. Polycystic ovary syndrome",
        {
            "A": "Prolactinoma",
            "B": "Pregnancy",
            "C": "Hypothyroidism",
            "D": "Polycystic ovary syndrome",
        },
        None,
    ),
    (
        "I think it's A, since atropine is the antidote for organophosphate poisoning. But let "
        "me reconsider: the question asks which drug regenerates acetylcholinesterase, and "
        "atropine only blocks muscarinic receptors. Pralidoxime reactivates the enzyme if given "
        "before aging.\n\nAnswer: B",
        {
            "A": "Atropine",
            "B": "Pralidoxime",
            "C": "Physostigmine",
            "D": "Neostigmine",
        },
        "B",
    ),
    (
        "| Option | Fits the picture? |\n|---|---|\n"
        "| A. Acute cholecystitis | No, Murphy sign is negative |\n"
        "| B. Acute pancreatitis | No, lipase is normal |\n"
        "| C. Acute appendicitis | Yes, periumbilical pain migrating to the right iliac "
        "fossa |\n| D. Ectopic pregnancy | No, beta-hCG is negative |\n\n"
        "Hence option C.",
        {
            "A": "Acute cholecystitis",
            "B": "Acute pancreatitis",
            "C": "Acute appendicitis",
            "D": "Ectopic pregnancy",
        },
        "C",
    ),
    (
        "La respuesta correcta es la B. La isoniazida puede causar neuropatía periférica por "
        "déficit de piridoxina, por eso se administra vitamina B6 junto con ella.",
        {
            "A": "Rifampicin",
            "B": "Isoniazid",
            "C": "Pyrazinamide",
            "D": "Ethambutol",
        },
        "B",
    ),
    (
        "Answer: E",
        {
            "A": "Trisomy 21",
            "B": "Trisomy 18",
            "C": "Trisomy 13",
            "D": "Turner syndrome",
        },
        None,
    ),
    (
        "Acute otitis media in a 2-year-old without penicillin allergy is treated with "
        "high-dose oral amoxicillin (80-90 mg/kg/day). Azithromycin has high pneumococcal "
        "resistance, and ceftriaxone is reserved for treatment failure or when oral therapy "
        "is not possible. Therefore, amoxicillin is the drug of choice.",
        {
            "A": "Azithromycin",
            "B": "Intramuscular ceftriaxone",
            "C": "Amoxicillin",
            "D": "Ciprofloxacin ear drops",
        },
        "C",
    ),
    (
        "C. Because the anterior interventricular branch of the left coronary artery supplies "
        "the anterior two-thirds of the septum, unlike A and B, which supply the inferior and "
        "lateral walls, and D, which supplies the sinoatrial node in most people.",
        {
            "A": "Right coronary artery",
            "B": "Left circumflex artery",
            "C": "Left anterior descending artery",
            "D": "Sinoatrial nodal artery",
        },
        "C",
    ),
    (
        "As an AI language model, I cannot diagnose medical conditions. The symptoms you "
        "describe could be consistent with several conditions, including A, B, C or D. Please "
        "see a doctor.",
        {
            "A": "Migraine",
            "B": "Tension-type headache",
            "C": "Cluster headache",
            "D": "Subarachnoid hemorrhage",
        },
        None,
    ),
]

FAMILIES_BLIND: dict[str, list[tuple[str, dict[str, str], str | None]]] = {
    "degenerate_tail": DEGENERATE_TAIL,
    "hedge_then_commit": HEDGE_THEN_COMMIT,
    "none_then_commit": NONE_THEN_COMMIT,
    "invented_question": INVENTED_QUESTION,
    "general": GENERAL,
}
