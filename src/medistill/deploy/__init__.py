"""Deployment: a standalone model folder or a GGUF file (llama.cpp's own converter and
quantiser), served locally. Heavy tools (llama-cpp-python) are imported where used."""
