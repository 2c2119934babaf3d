"""TRL's fused LM head: the one setting medistill passes to it, and what that setting is.

TRL 1.16 scores tokens through ``ChunkedLogProbFunction`` without materialising the logits:
tiles of up to ``TOKEN_CHUNK_SIZE`` (4,096) tokens by ``chunk_size`` vocabulary entries, each
folded into an online softmax. ``chunk_size`` is the module constant
``trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE``; medistill's ``lm_head_vocab_chunk`` sets it.
"""

from __future__ import annotations

from medistill.errors import MedistillError

#: TRL 1.16's module constant for the fused LM head's tile width, and its value there.
TRL_LM_HEAD_CONSTANT = "_CHUNKED_LOGPROB_CHUNK_SIZE"
TRL_LM_HEAD_VOCAB_CHUNK = 32768
#: The width on CPU, where TRL folds each tile in torch and materialises its softmax (measured:
#: BENCHMARKS.md, SFT memory).
CPU_LM_HEAD_VOCAB_CHUNK = 1024


def lm_head_vocab_chunk_default() -> int:
    """The fused LM head's tile width for this machine: TRL's own on a GPU, where its Triton
    kernel folds each tile (a narrow tile there only multiplies the kernel launches: 1,024
    made 149 tiles per 4,096 tokens of a 152k vocabulary), the measured CPU width elsewhere."""
    return TRL_LM_HEAD_VOCAB_CHUNK if _cuda() else CPU_LM_HEAD_VOCAB_CHUNK


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def apply_lm_head_vocab_chunk(width: int) -> None:
    """Set TRL's tile width to ``width`` vocabulary columns (process-wide: a module constant).

    A TRL without the constant is refused: the recipe's setting would otherwise be dropped
    silently.
    """
    import trl.trainer.utils as trl_utils

    if not hasattr(trl_utils, TRL_LM_HEAD_CONSTANT):  # pragma: no cover - another TRL
        raise MedistillError(
            f"lm_head_vocab_chunk: this TRL has no trl.trainer.utils.{TRL_LM_HEAD_CONSTANT}; "
            f"install the TRL pinned by medistill"
        )
    setattr(trl_utils, TRL_LM_HEAD_CONSTANT, width)
