# Written for medistill (original text, not copied from any dataset).
"""Hand-labelled answer-extraction cases: (text, options, expected_letter).

expected is what a careful human labeller assigns: the one option the response commits to
(final commitment wins; first commitment before a runaway continuation wins), else None.
"""

MED = {
    "A": "Hypothyroidism",
    "B": "Iron deficiency anemia",
    "C": "Vitamin B12 deficiency",
    "D": "Hepatitis C infection",
}
DRUG = {
    "A": "Metformin",
    "B": "Insulin glargine",
    "C": "Glipizide",
    "D": "Sitagliptin",
    "E": "Empagliflozin",
}
PQA = {"A": "yes", "B": "no", "C": "maybe"}
MICRO = {
    "A": "Staphylococcus aureus",
    "B": "Streptococcus pneumoniae",
    "C": "Haemophilus influenzae",
    "D": "Moraxella catarrhalis",
}
MGMT = {
    "A": "Observation",
    "B": "Intravenous antibiotics",
    "C": "Surgical drainage",
    "D": "Oral corticosteroids",
}
VIT = {
    "A": "Vitamin A",
    "B": "Vitamin C",
    "C": "Vitamin D",
    "D": "Vitamin K",
}
ONCO = {
    "A": "Grade A",
    "B": "Grade B",
    "C": "Grade C",
    "D": "Grade D",
}

THINK_LONG = (
    "Okay, so I need to figure out this question about a 45-year-old woman with fatigue. "
    "Option A is hypothyroidism, which could cause fatigue. Option B, iron deficiency... "
    "Wait, the MCV is 110, so macrocytic. That points to C. But hepatitis C could also... "
    "no, the answer should be C."
)

CASES = [
    # ---------------------------------------------------------------- explicit statements
    ("The answer is B.", MED, "B"),
    ("Answer: B) Iron deficiency anemia", MED, "B"),
    ("Correct option: B", MED, "B"),
    ("The correct choice is (b).", MED, "B"),
    ("Correct Answer: c", MED, "C"),
    ("Option (B) is the correct answer.", MED, "B"),
    ("**B. Iron deficiency anemia**", MED, "B"),
    (
        "**Answer: C. Vitamin B12 deficiency**\n\nThe macrocytosis and neuropathy point to B12.",
        MED,
        "C",
    ),
    (
        "The answer is B. Option A is unlikely because TSH is normal, and C and D do not explain the microcytosis.",
        MED,
        "B",
    ),
    ("The answer is A, since the TSH is elevated. B, C and D are less likely.", MED, "A"),
    ("Final answer: (D)", MED, "D"),
    ("Answer:\nC", MED, "C"),
    ("The best answer is D — hepatitis C infection explains the elevated ALT.", MED, "D"),
    ("I'd pick B.", MED, "B"),
    ("My answer: C", MED, "C"),
    ("The most appropriate answer is option D.", MED, "D"),
    ("The right answer here is C.", MED, "C"),
    ("So the answer must be A.", MED, "A"),
    ("Answer - B", MED, "B"),
    ("ANSWER: D", MED, "D"),
    ("The correct response is B.", MED, "B"),
    ("Therefore, the correct option is B: Iron deficiency anemia.", MED, "B"),
    ("Choice C is correct.", MED, "C"),
    ("The answer is (A) Hypothyroidism.", MED, "A"),
    ("Answer: [B]", MED, "B"),
    ("The correct answer is: **D**", MED, "D"),
    ("The answer is C: Vitamin B12 deficiency", MED, "C"),
    ("So I'll go with B.", MED, "B"),
    ("I will select option C.", MED, "C"),
    ("Based on the above, B is the best choice.", MED, "B"),
    ("The most likely diagnosis is B. Iron deficiency anemia.", MED, "B"),
    ("The correct answer is A) Metformin.", DRUG, "A"),
    ("The answer is E.", DRUG, "E"),
    ("The answer is (E) Empagliflozin, given her heart failure.", DRUG, "E"),
    ("The correct answer is A. Metformin is first-line therapy for type 2 diabetes.", DRUG, "A"),
    ("Answer: A. A 45-year-old with new diabetes should start metformin.", DRUG, "A"),
    # ---------------------------------------------------------------- option text answers
    ("The answer is Streptococcus pneumoniae.", MICRO, "B"),
    ("Streptococcus pneumoniae", MICRO, "B"),
    (
        "The most common cause of community-acquired pneumonia in adults is Streptococcus pneumoniae.",
        MICRO,
        "B",
    ),
    ("Surgical drainage is indicated because the abscess is larger than 5 cm.", MGMT, "C"),
    ("The most appropriate next step is intravenous antibiotics.", MGMT, "B"),
    ("Answer: Observation", MGMT, "A"),
    ("The answer is Vitamin K.", VIT, "D"),
    ("The deficiency described is vitamin D deficiency, causing rickets.", VIT, "C"),
    ("Glipizide", DRUG, "C"),
    # ---------------------------------------------------------------- PubMedQA yes/no/maybe
    ("Yes.", PQA, "A"),
    ("yes", PQA, "A"),
    ("No.", PQA, "B"),
    ("The answer is maybe.", PQA, "C"),
    ("The answer is yes.", PQA, "A"),
    ("Maybe", PQA, "C"),
    ("Answer: no", PQA, "B"),
    ("Yes, the study shows that early mobilisation reduces length of stay.", PQA, "A"),
    ("No, there was no significant difference between the groups (p=0.42).", PQA, "B"),
    ("Based on the results, the answer is no.", PQA, "B"),
    ("Final answer: yes", PQA, "A"),
    (
        "The study suggests that statins may reduce mortality, but the evidence is inconclusive. Answer: maybe",
        PQA,
        "C",
    ),
    ("The answer is (A) yes.", PQA, "A"),
    ("**Answer:** Maybe", PQA, "C"),
    ('{"answer": "yes"}', PQA, "A"),
    ("The results do not support this hypothesis. The answer is no.", PQA, "B"),
    # ---------------------------------------------------------------- JSON
    ('{"step_by_step_thinking": "The MCV is high ...", "answer_choice": "C"}', MED, "C"),
    ('```json\n{\n  "reasoning": "Low ferritin.",\n  "answer": "B"\n}\n```', MED, "B"),
    (
        '{"step_by_step_thinking": "The patient has "low ferritin" and microcytosis", "answer_choice": "B"}',
        MED,
        "B",
    ),
    (
        '{"answer_choice": "B", "step_by_step_thinking": "Microcytic anemia with low ferritin',
        MED,
        "B",
    ),
    ('{"answer": "D. Hepatitis C infection"}', MED, "D"),
    ('Here is my answer in JSON:\n{"answer_choice": "A"}', MED, "A"),
    ('{"step_by_step_thinking": "The answer is A, no wait", "answer_choice": "D"}', MED, "D"),
    ('{"answer_choice": "I cannot determine"}', MED, None),
    ('{"final_answer": "(C)"}', MED, "C"),
    ('{"step_by_step_thinking": "Ferritin is low so iron deficiency', MED, None),
    ('{"answer_choice": "B or C"}', MED, None),
    # ---------------------------------------------------------------- think blocks
    (
        "<think>\nThe patient is 45. Maybe A. Actually the MCV is high so C.\n</think>\n\nThe answer is C.",
        MED,
        "C",
    ),
    (THINK_LONG + "\n</think>\n\n**Answer: C. Vitamin B12 deficiency**", MED, "C"),
    (THINK_LONG + "\n</think>\n\n", MED, None),
    (
        "<think>\nLet me consider each option. A: hypothyroidism... B: iron deficiency... the answer is B",
        MED,
        None,
    ),
    (THINK_LONG, MED, "C"),
    ("<think>\nOk.\n</think>\n\nThe final answer is \\(\\boxed{D}\\).", MED, "D"),
    ("<think>A seems right</think>\n\nAfter reflection, the answer is B.", MED, "B"),
    (
        "## Thinking\n\nThe patient has microcytic anemia and low ferritin. Option A doesn't fit.\n\n## Final Response\n\nThe most likely diagnosis is **B. Iron deficiency anemia**.",
        MED,
        "B",
    ),
    (
        "## Thinking\n\nHmm, B12 or folate... macrocytosis with neuro signs.\n\n## Final Response\n\nThe answer is C.",
        MED,
        "C",
    ),
    (
        "## Thinking\n\nOkay, let's think. Ferritin low means iron deficiency. The answer is B.\n\n## Final Response\n\nConsidering everything, the patient has vitamin B12 deficiency (C).",
        MED,
        "C",
    ),
    # ---------------------------------------------------------------- runaway generations
    (
        "Answer: B\n\n### Human: What is the first-line treatment for hypertension?\n### Assistant: Thiazides. Answer: A",
        MED,
        "B",
    ),
    (
        "The answer is C.\n\nQuestion 2: A 30-year-old man presents with chest pain. Which of the following is the most likely diagnosis?\nA. MI\nB. PE\nC. Pericarditis\nD. GERD\nAnswer: B",
        MED,
        "C",
    ),
    (
        "B. Iron deficiency anemia\n\nA 60-year-old man presents with jaundice. Which is the most likely cause?\nA. Gallstones\nB. Pancreatic cancer\nC. Hepatitis\nD. Cirrhosis\nAnswer: B",
        MED,
        "B",
    ),
    (
        "Answer: D\nExplanation: Hepatitis C is the commonest cause.\n\nQ: Which vitamin deficiency causes scurvy?\nA. Vitamin A\nB. Vitamin C\nAnswer: B",
        MED,
        "D",
    ),
    (
        "The answer is A.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nThanks! Next: The answer is C.",
        MED,
        "A",
    ),
    (
        "C\n\nA. Hypothyroidism\nB. Iron deficiency anemia\nC. Vitamin B12 deficiency\nD. Hepatitis C infection\n\nAnswer: C",
        MED,
        "C",
    ),
    (
        "The correct answer is B.\n\nInput: A 25-year-old woman has a rash... Output: The correct answer is D.",
        MED,
        "B",
    ),
    (
        "Answer: C. Vitamin B12 deficiency\n\nThe following are multiple choice questions (with answers) about medicine.\n\nQuestion: Which organism causes... Answer: A",
        MED,
        "C",
    ),
    (
        "B\n\nExplanation: Iron deficiency anemia is microcytic.\n\nNext question: A 70-year-old presents with... The answer is D.",
        MED,
        "B",
    ),
    (
        "The answer is D.\n\n<end_of_turn>\n<start_of_turn>user\nWhat about this one? The answer is A.",
        MED,
        "D",
    ),
    ("Answer: B\n\nUSER: Another question. ASSISTANT: Answer: C", MED, "B"),
    (
        "The answer is C.\n\n2. A 34-year-old woman presents with a goiter. The answer is A.",
        MED,
        "C",
    ),
    ("Answer: A\n\n[Question]: A 50-year-old man ... [Answer]: D", MED, "A"),
    (
        "The answer is B.\n\nA 62-year-old woman presents to the clinic with fatigue and pallor. Laboratory studies show... Which of the following is the most likely diagnosis?\n(A) Hypothyroidism\n(B) Iron deficiency anemia\n(C) Vitamin B12 deficiency\n(D) Hepatitis C infection\nAnswer: (C)",
        MED,
        "B",
    ),
    ("Answer: C\n\n\nQuestion:\nA 5-year-old child... Answer: A", MED, "C"),
    ("The answer is A.\n\n**Question 3:** A 40-year-old woman... **Answer:** D", MED, "A"),
    ("Answer: B\n\n### Instruction:\nAnswer the following.\n\n### Response:\nAnswer: D", MED, "B"),
    ("Answer: (C)\n\nContext: In a randomized trial of 200 patients ... Answer: (A)", MED, "C"),
    # ---------------------------------------------------------------- several mentions, changes of mind
    ("Initially I considered A, but given the low ferritin, the answer is B.", MED, "B"),
    (
        "The answer is C. Hmm, wait. Actually, re-reading the labs, the MCV is 72, so the answer is B.",
        MED,
        "B",
    ),
    (
        "Answer: A\n\nWait, that's not right. The TSH is normal. Let me reconsider.\n\nAnswer: B",
        MED,
        "B",
    ),
    (
        "Option A is incorrect because TSH is normal. Option C is incorrect because MCV is low. Option D is incorrect. Therefore, B.",
        MED,
        "B",
    ),
    ("- A: no\n- B: yes\n- C: no\n- D: no\n\nSo the answer is B.", MED, "B"),
    (
        "Let's analyze each option:\n\nA. Hypothyroidism - unlikely.\nB. Iron deficiency anemia - consistent with low ferritin.\nC. Vitamin B12 deficiency - MCV would be high.\nD. Hepatitis C infection - no.\n\nThe correct answer is B.",
        MED,
        "B",
    ),
    (
        "Let's analyze each option:\n\nA. Hypothyroidism - unlikely.\nB. Iron deficiency anemia - consistent with low ferritin.\nC. Vitamin B12 deficiency - MCV would be high.\nD. Hepatitis C infection - no.",
        MED,
        None,
    ),
    (
        "Let's go through the options:\n\n**A. Hypothyroidism**: TSH normal.\n**B. Iron deficiency anemia**: Fits.\n**C. Vitamin B12 deficiency**: No.\n**D. Hepatitis C infection**: No.\n\n**Conclusion:** The most likely diagnosis is **B. Iron deficiency anemia**.",
        MED,
        "B",
    ),
    (
        "| Option | Fits? |\n|---|---|\n| A | No |\n| B | Yes |\n| C | No |\n| D | No |\n\n**Answer: B**",
        MED,
        "B",
    ),
    (
        "### Analysis\n\n- **Option A** is wrong.\n- **Option B** fits.\n\n### Final Answer\n\n**B**",
        MED,
        "B",
    ),
    (
        "### Answer\nC. Vitamin B12 deficiency\n\n### Explanation\nMacrocytosis and neuropathy suggest B12 deficiency rather than iron deficiency (B).",
        MED,
        "C",
    ),
    (
        "**Correct Answer: D) Hepatitis C infection**\n\n**Why not the others:**\n- A) Hypothyroidism: TSH normal\n- B) Iron deficiency: ferritin normal\n- C) B12: MCV normal",
        MED,
        "D",
    ),
    ("The answer is B, not C.", MED, "B"),
    ("It is not A, and it is not C or D. The answer is B.", MED, "B"),
    ("The correct answer is not D but B.", MED, "B"),
    # ---------------------------------------------------------------- hedges
    ("The answer is probably B, but C is possible.", MED, "B"),
    ("It's either B or C.", MED, None),
    ("The answer is B or C.", MED, None),
    ("Between B and C, I'd lean towards B.", MED, "B"),
    ("Both B and C could be correct depending on the MCV.", MED, None),
    ("I think it's B, although C cannot be excluded.", MED, "B"),
    ("The answer could be A or D; more information is needed.", MED, None),
    ("Options B and C are both plausible.", MED, None),
    ("I'm torn between B and C.", MED, None),
    ("Answer: B/C", MED, None),
    ("The most likely answer is B, with C as a close second.", MED, "B"),
    ("B and C are both wrong, so the answer is A.", MED, "A"),
    # ---------------------------------------------------------------- refusals, empties, cut-offs
    ("", MED, None),
    (None, MED, None),
    (
        "I'm sorry, but I can't provide a diagnosis. Please consult a healthcare professional.",
        MED,
        None,
    ),
    ("As an AI language model, I cannot give medical advice.", MED, None),
    (
        "None of the options is correct; the patient most likely has anemia of chronic disease.",
        MED,
        None,
    ),
    ("The question does not provide enough information to choose between the options.", MED, None),
    (
        "To answer this question, we need to consider the patient's laboratory findings. The MCV is",
        MED,
        None,
    ),
    (
        "Let's think step by step. The patient is a 45-year-old woman with fatigue. Her hemoglobin is 9 g/dL and",
        MED,
        None,
    ),
    ("The answer is", MED, None),
    ("Answer:", MED, None),
    ("</s>", MED, None),
    ("...", MED, None),
    # ---------------------------------------------------------------- false-positive probes
    (
        "A 45-year-old woman presents with fatigue and pallor. Her ferritin is low and her hemoglobin is 9 g/dL.",
        MED,
        None,
    ),
    ("Vitamin A toxicity can cause hepatotoxicity, and hepatitis C can also raise ALT.", MED, None),
    ("The patient's HbA1c is 8.2%, consistent with poorly controlled type 2 diabetes.", DRUG, None),
    ("Grade D esophagitis on the Los Angeles classification requires PPI therapy.", MED, None),
    ("I. Introduction\nII. Pathophysiology\nIII. Management", MED, None),
    ("Plan A would be to treat empirically; plan B would be to biopsy.", MED, None),
    ("This is a type B aortic dissection, which is usually managed medically.", MED, None),
    ("The most likely diagnosis is hepatitis C.", MED, "D"),
    ("The patient has hepatitis B, not C.", MED, None),
    (
        "Answer: A 45-year-old woman with microcytic anemia most likely has iron deficiency.",
        MED,
        "B",
    ),
    (
        "A. Hypothyroidism\nB. Iron deficiency anemia\nC. Vitamin B12 deficiency\nD. Hepatitis C infection",
        MED,
        None,
    ),
    (
        "Question: A 45-year-old woman presents with fatigue.\nA. Hypothyroidism\nB. Iron deficiency anemia\nC. Vitamin B12 deficiency\nD. Hepatitis C infection\nAnswer:",
        MED,
        None,
    ),
    ("Child-Pugh class C cirrhosis carries a poor prognosis.", MED, None),
    ("The patient has group A streptococcal pharyngitis.", MICRO, None),
    ("A. Hypothyroidism is unlikely because TSH is normal.", MED, None),
    ("Vitamin C", VIT, "B"),
    (
        "The child's symptoms of bleeding gums and perifollicular hemorrhage indicate a deficiency of vitamin C.",
        VIT,
        "B",
    ),
    ("Grade C", ONCO, "C"),
    ("This is a Grade B recommendation.", ONCO, "B"),
    ("Explanation: Hypothyroidism is unlikely as the TSH is normal. A CBC would help.", MED, None),
    ("E. coli is the most common cause of UTI.", DRUG, None),
    ("Stage D heart failure requires advanced therapies such as LVAD.", MED, None),
    ("A", MED, "A"),
    ("a", MED, "A"),
    ("(c)", MED, "C"),
    ("b) Iron deficiency anemia", MED, "B"),
    ("The answer is a vitamin deficiency.", MED, None),
    ("The answer is A patient with low ferritin needs iron.", MED, None),
    ("A is the answer.", MED, "A"),
    ("I would recommend option B.", MED, "B"),
    ("Best option - C", MED, "C"),
    ("Correct option is C.", MED, "C"),
    ("The correct option would be (D).", MED, "D"),
    ("Hence, option C.", MED, "C"),
    (
        "Therefore, the answer is option (B) Iron deficiency anemia, because ferritin is low.",
        MED,
        "B",
    ),
    ("\\boxed{\\text{B. Iron deficiency anemia}}", MED, "B"),
    ("The final answer is $\\boxed{\\text{(C)}}$", MED, "C"),
    ("\\[\n\\boxed{D}\n\\]", MED, "D"),
    ("Answer: The correct answer is B.", MED, "B"),
    (
        "The correct answer is B. Iron deficiency anemia. Answer A is incorrect since TSH is normal; answer C is incorrect because MCV is low.",
        MED,
        "B",
    ),
    ("**Answer**: **(B)**", MED, "B"),
    (
        "The correct answer is **(C) Vitamin B12 deficiency**. Option (A) and option (B) don't fit.",
        MED,
        "C",
    ),
    (
        "Answer: B.\n\nReason: In choice A the TSH would be elevated; choice D would show raised ALT.",
        MED,
        "B",
    ),
    (
        "The answer is B, iron deficiency anemia, because ferritin is low. Hypothyroidism (A) and B12 deficiency (C) are less likely.",
        MED,
        "B",
    ),
]

CDIFF = {
    "A": "Clostridioides difficile",
    "B": "Bacillus cereus",
    "C": "Escherichia coli",
    "D": "Salmonella enterica",
}

CASES += [
    # ---------------------------------------------------------------- base-model / PMC-LLaMA styles
    ("OPTION B IS CORRECT.", MED, "B"),
    (
        "###Answer: OPTION C IS CORRECT.\n###Explanation: Macrocytic anemia with neuropathy.",
        MED,
        "C",
    ),
    (
        "The answer is B.[INST] Next question: what causes scurvy? [/INST] The answer is B.",
        MED,
        "B",
    ),
    (
        "The answer is: B. Iron deficiency anemia\n\nThe answer is: B. Iron deficiency anemia\n\nThe answer is: B",
        MED,
        "B",
    ),
    (
        "The answer is C.\nA. Hypothyroidism\nB. Iron deficiency anemia\nC. Vitamin B12 deficiency\nD. Hepatitis C infection\nThe answer is A.",
        MED,
        "C",
    ),
    (
        "C. Vitamin B12 deficiency\n\nWhich of the following is the most common cause of pancreatitis?\nA. Alcohol\nB. Gallstones\nAnswer: B",
        MED,
        "C",
    ),
    (
        '{"answer_choice": "B"}\n\nQuestion: Which drug is first line?\n{"answer_choice": "D"}',
        MED,
        "B",
    ),
    # ---------------------------------------------------------------- chat-model markdown
    (
        "Based on the information provided, the most likely diagnosis is (B) Iron deficiency anemia.",
        MED,
        "B",
    ),
    (
        "**The answer is (B).**\n\nHere's why:\n* **Iron deficiency anemia** explains the low ferritin.\n* **Why other options are incorrect:**\n  * **(A) Hypothyroidism:** TSH is normal.\n  * **(C) Vitamin B12 deficiency:** MCV is low.",
        MED,
        "B",
    ),
    (
        "Looking at this case, the key findings are microcytosis and low ferritin.\n\n**The answer is B.**",
        MED,
        "B",
    ),
    (
        "**Answer:** (C) Vitamin B12 deficiency\n\n**Explanation:** The elevated MCV and methylmalonic acid confirm it.",
        MED,
        "C",
    ),
    ("<think>\n\n</think>\n\nB", MED, "B"),
    (
        "reasoning here...\n</think>\n\n**Final Answer**\nThe correct answer is \\boxed{B}.",
        MED,
        "B",
    ),
    ("(B) Iron deficiency anemia", MED, "B"),
    (
        "**B. Iron deficiency anemia**\n\nExplanation: Low ferritin and microcytosis are diagnostic.",
        MED,
        "B",
    ),
    ('The answer is "B".', MED, "B"),
    ("The answer is 'C'.", MED, "C"),
    ("The answer is *B*.", MED, "B"),
    ("*Answer: D*", MED, "D"),
    ("Answer: Choice (C)", MED, "C"),
    ("answer: (b)", MED, "B"),
    ("the answer is a.", MED, "A"),
    (
        "Hypothyroidism (A) is less likely; iron deficiency anemia (B) best explains the findings.",
        MED,
        "B",
    ),
    ("The answer is C, and D is wrong because the ALT is normal.", MED, "C"),
    ("The answer is B, and C is incorrect because the MCV is low.", MED, "B"),
    ("The answer is B, but C is also reasonable.", MED, "B"),
    ("The answer is B.\n\nHmm, actually no — C.", MED, "C"),
    ("Option B is not correct; option C is correct.", MED, "C"),
    ("The answer is A, B, and C.", MED, None),
    ("Both A and C.", MED, None),
    ("Answer: E", MED, None),
    ("The answer is not B.", MED, None),
    ("I would not choose A.", MED, None),
    (
        "The answer is based on the ferritin level. Iron deficiency anemia is the diagnosis.",
        MED,
        "B",
    ),
    ("Answer: B12 deficiency", MED, "C"),
    (
        "Answer: Vitamin A deficiency is not the cause; the child has vitamin D deficiency.",
        VIT,
        "C",
    ),
    ("The answer is vitamin C deficiency (scurvy).", VIT, "B"),
    ("The most likely organism is C. difficile.", CDIFF, "A"),
    ("The answer is C. difficile.", CDIFF, "A"),
    ("E. coli", DRUG, None),
    # ---------------------------------------------------------------- PubMedQA more
    ("**Yes**\n\nThe data indicate a significant reduction in readmissions (p<0.01).", PQA, "A"),
    ("Yes.", ["yes", "no", "maybe"], "A"),
    ("The answer is: Yes", PQA, "A"),
    ("The answer is uncertain.", PQA, None),
    ("Yes, I can help with that. Based on the abstract, the answer is no.", PQA, "B"),
    ("Answer: (B) no", PQA, "B"),
    ("Final answer: Maybe.", PQA, "C"),
    # ---------------------------------------------------------------- JSON more
    (
        '{"reasoning": "Low ferritin points to iron deficiency.", "answer": "The correct answer is B"}',
        MED,
        "B",
    ),
    ('{"answer": "B", "confidence": "high"', MED, "B"),
    ('{"answer_choice": "C. Vitamin B12 deficiency", "explanation": "The MCV is', MED, "C"),
    ('```json\n{"answer": "D", "reason": "ALT elevated"}\n```\nThe answer is D.', MED, "D"),
]

NOTA = dict(DRUG, E="None of the above")

CASES += [
    # ---------------------------------------------------------------- runaway right after the letter line
    (
        "Answer: B\n\n### Human: What is the first-line treatment?\n### Assistant: Thiazides are first line.",
        MED,
        "B",
    ),
    (
        "The answer is B\n\n### Question 2\nA 30-year-old man has chest pain. The answer is D because of ST elevation.",
        MED,
        "B",
    ),
    ("Answer: C\n<|im_end|>\n<|im_start|>user\nExplain why the others are wrong.", MED, "C"),
    (
        "Answer: B\n\n[INST] Another one: which vitamin prevents scurvy? [/INST] Vitamin C.",
        MED,
        "B",
    ),
    # ---------------------------------------------------------------- HuatuoGPT cut before the final response
    (
        "## Thinking\n\nLow ferritin, microcytosis... the answer is B.\n\n## Final Response\n\n",
        MED,
        None,
    ),
    # ---------------------------------------------------------------- misc commitments
    ("Option D", MED, "D"),
    ("I cannot answer definitively, but the answer is most likely B.", MED, "B"),
    ("I'm not able to give medical advice, but for exam purposes: Answer: C", MED, "C"),
    ("The answer is none of the above.", NOTA, "E"),
    ("Answer: I don't know.", MED, None),
    ("In summary, the D-dimer is normal, so further imaging is unnecessary.", MED, None),
    (
        "The answer is A.\n\nB is incorrect because ferritin is normal. C is incorrect because MCV is low.",
        MED,
        "A",
    ),
    # ---------------------------------------------------------------- an answer, then degenerate junk
    ("The answer is B.\n" + "```\n```\n" * 400, MED, "B"),
    ("Answer: C\n\n" + "```python\ndef solve():\n    pass\n```\n" * 150, MED, "C"),
    (
        "Iron studies point to iron deficiency. The answer is B.\n"
        + "```python\n# The answer is A\nprint('A')\n```\n" * 120,
        MED,
        "B",
    ),
    ("The answer is D.\n" + "The answer is A.\n" * 600, MED, "D"),
    ("Final answer: (A)\n" + "\n".join(["Option C", "Option B"] * 500), MED, "A"),
    ("**Answer: B**\n" + "{}\n" * 300 + "...\n" * 300, MED, "B"),
    # ---------------------------------------------------------------- an answer key whose quote and brace were lost
    ('The low MCV and ferritin fit iron deficiency. answer_choice": "B"}', MED, "B"),
    ('so the deficiency is of cobalamin. answer_choice": "C"}', MED, "C"),
    ('... which makes hypothyroidism the cause. "answer": "A"', MED, "A"),
    # ---------------------------------------------------------------- no option is correct, then a commitment
    # A careful labeller reads a pick made after rejecting every option as the answer; a
    # denial that is the response's last word on the answer is no answer.
    (
        "None of the options is correct. The closest answer would be C, but I am not sure.",
        MED,
        "C",
    ),
    ("The correct diagnosis is not listed. If I had to choose, I would pick B.", MED, "B"),
    ("None of the given options are entirely accurate; the closest is probably D.", MED, "D"),
    ("The true answer, sarcoidosis, is not among the options. Best guess: A.", MED, "A"),
    ("None of the above is correct here, so the answer is E.", NOTA, "E"),
    # ---------------------------------------------------------------- the conclusion names option text only, emphasised
    (
        "Rituximab alone is not enough, and chlorambucil suits frail patients.\n\n"
        "**Insulin glargine** is the most appropriate choice.",
        DRUG,
        "B",
    ),
    (
        'Metformin is contraindicated with this eGFR.\n\nTherefore, "Empagliflozin" is the '
        "most appropriate choice for this patient.",
        DRUG,
        "E",
    ),
    (
        "While glipizide lowers glucose quickly, **Sitagliptin** is the most appropriate choice "
        "given his hypoglycaemia.",
        DRUG,
        "D",
    ),
    ("The best next step is *Intravenous antibiotics*, not surgical drainage.", MGMT, "B"),
    ("Metformin and glipizide are less suitable here.\n\nSo we are left with insulin.", DRUG, None),
]

EARLY = (
    "Step 1: option B seems plausible at first; the answer could be B.\nStep 2: but the MCV "
    "is 112.\nStep 3: so this is macrocytosis.\nStep 4: with a new neuropathy.\n\n"
)

# Issue 28's four families, fresh cases written for medistill in the spirit of the held-out
# misses (benchmarks/extraction_agreement.py reports agreement per family).
FAMILIES: dict[str, list] = {
    # a final answer, then degenerate blocks (code fences, tables, assignments)
    "degenerate_tail": [
        ("**Final Answer:** The final answer is $\\boxed{C}$\n" + "```\n\n```\n" * 300, MED, "C"),
        ("Answer: B\n" + "```tool_code\n```\n" * 120, MED, "B"),
        ("The answer is D.\n\n" + "```python\nanswer = 'A'\nchoice = \"B\"\n```\n" * 80, MED, "D"),
        ("Final answer: (A)\n" + "``` ```\n" * 200, MED, "A"),
        (
            "The correct answer is C.\n"
            + "\n".join(["```", "", "```", "", "```json", "{}", "```"] * 60),
            MED,
            "C",
        ),
        ("Answer: B\r\n" + "```\r\n```\r\n" * 100, MED, "B"),
        ("The answer is B.\n" + "```\nThe answer is: \n```\n" * 100, MED, "B"),
        ("Final answer: D\n\n" + "| | |\n|---|---|\n" * 100, MED, "D"),
        ("So the answer is A.\n\n" + "$$\n$$\n" * 150 + "```\n```\n" * 50, MED, "A"),
        # the held-out shape: a tentative early pick, the final answer, then pages of junk
        (
            EARLY + "### Final Answer: C\n" + "```python\n# The answer is A\nprint(1)\n```\n" * 300,
            MED,
            "C",
        ),
        (EARLY + "**Final Answer:** C\n" + "```\n```\n" * 400, MED, "C"),
        (EARLY + "Final answer: (C)\n\n" + '```json\n{"answer": "A"}\n```\n' * 150, MED, "C"),
        (EARLY + "The answer is C.\n" + "answer = 'A'\n" * 300, MED, "C"),
        (EARLY + "Answer: C\n" + "I hope this helps!\n" * 250, MED, "C"),
        (EARLY + "Answer: C\n" + "```tool_code\nprint(search(query='B'))\n```\n" * 120, MED, "C"),
    ],
    # a hedge, then a commitment
    "hedge_then_commit": [
        (
            "None of the options fits this picture exactly. Still, the macrocytosis and the "
            "neuropathy overlap most with a cobalamin problem, so I will choose C.",
            MED,
            "C",
        ),
        (
            "No option is a perfect match, but the closest match is B, iron deficiency anemia.",
            MED,
            "B",
        ),
        (
            "Strictly speaking none of the choices is entirely correct. The nearest option is D.",
            MED,
            "D",
        ),
        (
            "None of these options perfectly describes the lesion; option A comes closest, and "
            "I'll go with A.",
            MED,
            "A",
        ),
        ("I am not fully convinced by any option here. The best fit is C.", MED, "C"),
        (
            "None of the options perfectly fit, but the closest one would be vitamin B12 "
            "deficiency, given the MCV of 112.",
            MED,
            "C",
        ),
        (
            "The most likely diagnosis is not listed among the options, but the closest match "
            "would be Hypothyroidism.",
            MED,
            "A",
        ),
    ],
    # "none is correct", then an explicit answer; or a rejection as the last word
    "none_then_commit": [
        (
            "None of the options is correct as written.\n\nOn reflection, the stem asks for the "
            "most likely cause of the fatigue, and the TSH is 14.\n\nAnswer: A",
            MED,
            "A",
        ),
        (
            "At first glance none of the answers seem right. Re-reading the stem, the MCV is 112 "
            "and the neuropathy is new.\n\nFinal answer: C",
            MED,
            "C",
        ),
        (
            "The true diagnosis, autoimmune hepatitis, is not listed among the options. Of what "
            "is offered, the ALT pattern still follows the viral serology.\n\n**Answer: D**",
            MED,
            "D",
        ),
        # ... and a rejection that is the last word: no answer, whatever the analysis named
        (
            "A is unlikely because the TSH is normal. Iron deficiency anemia fits the low "
            "ferritin. C needs a high MCV. D is unrelated.\n\nTherefore, the correct answer is "
            "not among the options provided.",
            MED,
            None,
        ),
        (
            "Iron deficiency anemia explains the microcytosis, but the ferritin is high, so it is "
            "not that either. None of the listed options is correct.",
            MED,
            None,
        ),
        (
            "The answer is B.\n\nOn second thought, none of the options is correct: the ferritin "
            "of 300 rules out iron deficiency.",
            MED,
            None,
        ),
        ("Therefore, among A through D, the answer is none of the above.", MED, None),
    ],
    # answers to questions it invented (no answer to the question asked)
    "invented_question": [
        (
            "Follow-up question: What would be the next step in management?\n"
            "Answer: C. Surgical drainage",
            MGMT,
            None,
        ),
        (
            "Here is a related question to test your understanding:\n\nWhich vitamin deficiency "
            "causes night blindness?\nA. Vitamin A\nB. Vitamin C\nC. Vitamin D\nD. Vitamin K\n\n"
            "Answer: A",
            VIT,
            None,
        ),
        (
            "Sure! Let's practice with another case. A 45-year-old man presents with crushing "
            "chest pain.\nThe answer is C.",
            MED,
            None,
        ),
        ("Next question: Which drug lowers HbA1c the most? Answer: B", DRUG, None),
        (
            "Q: What is the first-line drug for type 2 diabetes?\nA: Metformin.\n\n"
            "Q: What is its main side effect?\nA: Lactic acidosis.",
            DRUG,
            None,
        ),
        # ... and the asked question answered first, then invented follow-ups: the answer stands
        (
            "The low ferritin points to iron deficiency. The answer is B.\n\n"
            "Follow-up question: what is the first-line treatment?\nAnswer: A. Oral iron",
            MED,
            "B",
        ),
        (
            "Question: a 45-year-old woman with fatigue and a ferritin of 5.\n\nThe answer is B.",
            MED,
            "B",
        ),
    ],
}
CASES += [case for cases in FAMILIES.values() for case in cases]
