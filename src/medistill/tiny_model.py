"""A tiny, deterministic, randomly initialised causal LM with a ChatML tokenizer, built offline
in about a second: for unit tests, SFT/GRPO smoke runs and rehearsals (a stand-in of the same
architecture as a Hub student). ``build_tiny_model`` builds it, ``tiny_kind`` tells which
architecture a model spec names.

``torch``, ``transformers`` and ``tokenizers`` are imported inside the functions that need
them: importing this module stays cheap.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from medistill.errors import MedistillError
from medistill.models import CHATML_TEMPLATE, END_OF_TEXT, IM_END, IM_START, save_model

__all__ = ["TINY_KINDS", "build_tiny_model", "tiny_kind"]

logger = logging.getLogger(__name__)

# Corpus for the tiny tokenizer: enough English/medical text that common words become tokens,
# plus letters A-E, digits, "The answer is" and punctuation for multiple-choice answers.
_TINY_CORPUS: tuple[str, ...] = (
    "The answer is (A).",
    "The answer is (B).",
    "The answer is (C).",
    "The answer is (D).",
    "The answer is (E).",
    "The answer is A. The answer is B. The answer is C. The answer is D. The answer is E.",
    "Options: A) aspirin B) ibuprofen C) paracetamol D) morphine E) codeine",
    "A 45-year-old man presents with chest pain radiating to the left arm.",
    "A 23-year-old woman has fever, headache and a stiff neck for 2 days.",
    "The patient is a 67-year-old woman with type 2 diabetes and hypertension.",
    "Blood pressure is 150/95 mmHg, heart rate 110/min, temperature 38.5 C.",
    "Which of the following is the most likely diagnosis?",
    "Which of the following is the best next step in management?",
    "What is the most appropriate treatment for this patient?",
    "Myocardial infarction is caused by occlusion of a coronary artery.",
    "Insulin lowers blood glucose; glucagon raises it.",
    "Pneumonia often presents with cough, fever and shortness of breath.",
    "Antibiotics treat bacterial infections, not viral infections.",
    "The kidney filters blood and produces urine.",
    "Iron deficiency anemia causes fatigue and pale skin.",
    "Let's think step by step. First, the symptoms suggest an infection.",
    "Second, the laboratory results show a high white blood cell count.",
    "Therefore, the most likely diagnosis is bacterial meningitis.",
    "Explanation: the drug inhibits cyclooxygenase, which reduces inflammation.",
    "Question: What is the capital of France? Answer: Paris.",
    "The heart has 4 chambers: 2 atria and 2 ventricles.",
    "Normal values: sodium 135-145 mmol/L, potassium 3.5-5.0 mmol/L.",
    "Dose: 500 mg every 8 hours for 7 days; maximum 4 g per day.",
    "Is this correct? Yes, it is correct! No, it is not correct...",
    'He said: "Take 1 tablet twice a day," and left.',
    "Risk factors include smoking, obesity, age > 60 and family history.",
    "Symptoms: nausea, vomiting, diarrhoea & abdominal pain [mild].",
    "The liver metabolises many drugs via cytochrome P450 enzymes.",
    "Digits 0 1 2 3 4 5 6 7 8 9 and 10, 25, 100, 2024.",
    "You are a helpful AI assistant.",
    "The answer is (B). The answer is (B). The answer is (B).",
)


def _train_tiny_tokenizer(vocab_size: int) -> Any:
    """Train a byte-level BPE ``tokenizers.Tokenizer`` on the built-in corpus.

    Byte-level means every string round-trips exactly, whatever the small vocabulary learned.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=[END_OF_TEXT, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(_TINY_CORPUS), trainer=trainer)
    return tokenizer


#: Architectures a tiny stand-in can be built for (transformers ``model_type``), and the
#: model-id fragments that name them: a rehearsal (``medistill run --rehearse``) swaps a Hub
#: student for a tiny random model of the same architecture without reaching the Hub.
TINY_KINDS = {
    "qwen3": ("qwen3",),
    "qwen2": ("qwen2", "qwq", "deepseek-r1-distill-qwen", "huatuogpt-o1-7b"),
    "gemma2": ("gemma-2",),
    "gemma3_text": ("gemma-3", "medgemma"),
    "mistral": ("mistral", "ministral"),
    "phi3": ("phi-3", "phi-4"),
    "llama": ("llama", "smollm", "huatuogpt-o1-8b", "m1-"),
}


def tiny_kind(spec: str) -> tuple[str, str]:
    """The architecture (``model_type``) of the model ``spec`` names, and how it was told.

    A local folder's ``config.json`` says it; a Hub id is matched against
    :data:`TINY_KINDS` (offline: the Hub is not asked); anything else is taken for Llama, and
    the second value says so.
    """
    folder = Path(spec).expanduser()
    if (folder / "config.json").is_file():
        try:
            kind = json.loads((folder / "config.json").read_text(encoding="utf-8"))["model_type"]
            return str(kind), f"{spec}/config.json"
        except (OSError, ValueError, KeyError):
            pass
    if spec == "smollm2":
        return "llama", "SmolLM2 is a Llama"
    low = spec.lower()
    for kind, fragments in TINY_KINDS.items():
        if any(f in low for f in fragments):
            return kind, f"its name ({spec})"
    return "llama", f"unknown architecture for {spec}: taken for a Llama"


def build_tiny_model(
    out_dir: str | Path, *, seed: int = 0, vocab_size: int = 512, model_type: str = "llama"
) -> Path:
    """Build and save a tiny random causal LM with a ChatML tokenizer; return ``out_dir``.

    For unit tests, SFT/GRPO smoke runs and rehearsals: it builds in about a second without
    network, loads with ``AutoModelForCausalLM``/``AutoTokenizer.from_pretrained`` and
    generates (batched, left padding) like SmolLM2, whose special tokens and chat-template
    shape it copies. ``model_type`` picks the architecture (Llama by default; any of
    :data:`TINY_KINDS`), so a rehearsal trains the same model class a GPU run will. The same
    ``seed`` gives identical weights and every build the same tokenizer (a student and its
    distillation teacher share it); the caller's torch RNG state is left untouched.
    ``vocab_size`` must leave room for the 256 byte symbols and 3 special tokens.
    """
    if vocab_size < 259:
        raise MedistillError(
            f"vocab_size must be at least 259 (256 bytes + 3 special tokens), not {vocab_size}"
        )
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_train_tiny_tokenizer(vocab_size),
        eos_token=IM_END,
        pad_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        additional_special_tokens=[IM_START, IM_END],
        chat_template=CHATML_TEMPLATE,
        model_max_length=1024,
        clean_up_tokenization_spaces=False,
    )
    pad_id = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    eos_id = tokenizer.convert_tokens_to_ids(IM_END)

    sizes: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": True,
        "bos_token_id": None,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
    }
    if model_type != "llama":
        sizes["head_dim"] = 16  # Qwen3, Gemma: a head size of their own, not hidden / heads
    try:
        config = AutoConfig.for_model(model_type, **sizes)
    except ValueError as e:
        raise MedistillError(f"no tiny model for model_type {model_type!r}: {e}") from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    model.eval()
    gen = model.generation_config
    gen.eos_token_id = eos_id
    gen.pad_token_id = pad_id
    gen.bos_token_id = None

    save_model(model, out)
    tokenizer.save_pretrained(out)
    logger.info(
        "Built tiny model (%d parameters, vocab %d) at %s in %.2fs",
        sum(p.numel() for p in model.parameters()),
        len(tokenizer),
        out,
        time.perf_counter() - start,
    )
    return out
