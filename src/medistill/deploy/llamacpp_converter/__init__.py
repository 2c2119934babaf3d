"""llama.cpp's Hugging Face -> GGUF converter, shipped so that GGUF export needs no network.

``convert_hf_to_gguf.py``, its ``conversion`` package and its ``gguf-py`` (as ``gguf/``, next to
the script, so that it shadows any other installed ``gguf``: the converter needs the constants
of its own llama.cpp, which the ``gguf`` on PyPI lags), unchanged, from
``vendor/llama.cpp`` of the llama-cpp-python :data:`SHIPPED_VERSION` sdist. Left out: gguf-py's
command-line tools and llama.cpp's ``models/templates`` (chat templates the converter adds
only to models that come without one: Mistral-format, RWKV, MiniMax-M1, Kimi-K3, DeepSeek-V4).
Run as a script (``python convert_hf_to_gguf.py``) by :func:`medistill.deploy.gguf.to_gguf`,
never imported. Not linted or formatted by this project (``ruff.toml``).

llama.cpp is MIT-licensed (``LICENSE`` beside this file)::

    MIT License

    Copyright (c) 2023-2026 The ggml authors

    Permission is hereby granted, free of charge, to any person obtaining a copy of this
    software and associated documentation files (the "Software"), to deal in the Software
    without restriction, including without limitation the rights to use, copy, modify, merge,
    publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons
    to whom the Software is furnished to do so, subject to the following conditions:

    The above copyright notice and this permission notice shall be included in all copies or
    substantial portions of the Software.

    THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED,
    INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR
    PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE
    FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR
    OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
    DEALINGS IN THE SOFTWARE.

To move to another llama-cpp-python (with ``LLAMA_CPP_VERSION`` in ``tests/conftest.py``; a
test checks that the two agree)::

    pip download llama-cpp-python==X --no-deps --no-binary :all: -d /tmp/sdist
    python -m medistill.deploy.gguf fetch --sdist /tmp/sdist/llama_cpp_python-X.tar.gz \\
        --dest /tmp/converter
    rsync -a --delete --exclude __init__.py --exclude ruff.toml /tmp/converter/ \\
        src/medistill/deploy/llamacpp_converter/

then set :data:`SHIPPED_VERSION` to X.
"""

#: The llama-cpp-python whose sdist this converter comes from.
SHIPPED_VERSION = "0.3.36"
