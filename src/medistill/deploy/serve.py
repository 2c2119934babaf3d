"""``medistill serve``: start an existing engine on this machine, and optionally the explain page.

- a ``.gguf`` file: llama.cpp's OpenAI-compatible server (llama-cpp-python), on CPU;
- a model folder: vLLM (``vllm serve``) where vLLM and a GPU are present, otherwise the folder is
  converted once to GGUF (``--quant``, llama.cpp's converter) and served by llama.cpp.

The engine reads the student's chat template from the model (GGUF metadata, or the folder's
tokenizer files). Bound to 127.0.0.1 unless ``--host`` says otherwise. ``medistill eval
--backend openai --base-url http://127.0.0.1:PORT/v1 --model NAME`` evaluates what is served.
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from medistill.deploy.explain import Explainer, create_app
from medistill.deploy.gguf import llama_cpp_version, to_gguf
from medistill.deploy.measured import served_file
from medistill.errors import MedistillError
from medistill.models import default_cache_dir, model_name, resolve_model

log = logging.getLogger(__name__)

ENGINES = ("auto", "llamacpp", "vllm")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class ServeConfig:
    """``medistill serve``'s options, and a recipe's ``serve:`` section."""

    model: str | None = field(
        default=None,
        metadata={"help": "a .gguf file, a model folder, or 'smollm2'; none with --base-url"},
    )
    engine: Literal["auto", "llamacpp", "vllm"] = field(
        default="auto",
        metadata={
            "help": "auto: llama.cpp for GGUF, vLLM for a folder on a GPU, else the "
            "folder converted to GGUF for llama.cpp"
        },
    )
    host: str = field(default="127.0.0.1", metadata={"help": "address the engine listens on"})
    port: int = field(default=8000, metadata={"help": "engine port (OpenAI API at /v1)"})
    name: str | None = field(
        default=None, metadata={"help": "model name clients send; none: the file or folder name"}
    )
    quant: str = field(
        default="q8_0", metadata={"help": "GGUF type when a folder is served by llama.cpp"}
    )
    n_ctx: int = field(default=4096, metadata={"help": "llama.cpp context length (tokens)"})
    n_threads: int | None = field(
        default=None, metadata={"help": "llama.cpp threads; none: every core"}
    )
    engine_args: list[str] = field(
        default_factory=list,
        metadata={"help": "extra arguments for the engine, e.g. --engine-args=--n_batch=256"},
    )
    ui: bool = field(default=False, metadata={"help": "also serve the explain page"})
    ui_port: int = field(default=8001, metadata={"help": "explain page port"})
    base_url: str | None = field(
        default=None,
        metadata={
            "help": "explain page only: use this running OpenAI-compatible server "
            "(e.g. http://127.0.0.1:8000/v1) and start no engine"
        },
    )
    max_new_tokens: int = field(
        default=1024, metadata={"help": "explain page: token budget per answer"}
    )
    template: str = field(default="cot", metadata={"help": "explain page: prompt template"})
    api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": "env var with the key the explain page sends to --base-url"},
    )
    startup_timeout_s: float = field(
        default=600.0, metadata={"help": "seconds to wait for the engine to answer"}
    )

    def served_name(self) -> str:
        """The model name the engine answers to."""
        if self.name:
            return self.name
        path = Path(str(self.model))
        return path.stem if path.suffix == ".gguf" else model_name(str(self.model)) or "model"


@dataclass
class Engine:
    """A started engine: its process and its OpenAI base URL."""

    process: subprocess.Popen
    base_url: str
    name: str
    log_tail: collections.deque = field(default_factory=lambda: collections.deque(maxlen=40))
    #: the file (or folder) the engine loaded: a folder served by llama.cpp is its GGUF
    model_path: Path | None = None

    def drain_log(self) -> None:
        """Read the engine's stderr in a thread (debug log + a tail for error messages), so
        its pipe never fills and stalls the engine."""

        def drain() -> None:
            for line in self.process.stderr or ():
                self.log_tail.append(line.rstrip())
                log.debug("engine: %s", line.rstrip())

        threading.Thread(target=drain, daemon=True, name="engine-log").start()

    def stop(self) -> None:
        """Terminate the engine (then kill it if it lingers)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def choose_engine(cfg: ServeConfig, model: Path) -> str:
    """The engine for ``model`` under ``cfg.engine`` (see :class:`ServeConfig`)."""
    if cfg.engine not in ENGINES:
        choices = ", ".join(ENGINES)
        raise MedistillError(f"unknown --engine {cfg.engine!r}; choose one of: {choices}")
    if cfg.engine != "auto":
        if cfg.engine == "vllm" and model.suffix == ".gguf":
            raise MedistillError("--engine vllm serves model folders; use llamacpp for .gguf")
        return cfg.engine
    if model.suffix == ".gguf":
        return "llamacpp"
    return "vllm" if _vllm_and_gpu() else "llamacpp"


def _vllm_and_gpu() -> bool:
    import importlib.util

    if importlib.util.find_spec("vllm") is None or shutil.which("vllm") is None:
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def engine_command(cfg: ServeConfig, model: Path, engine: str) -> list[str]:
    """The engine's command line (an existing server: llama-cpp-python's or vLLM's)."""
    if engine == "llamacpp":
        threads = cfg.n_threads or os.cpu_count() or 1
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model)]
        cmd += ["--host", cfg.host, "--port", str(cfg.port), "--n_ctx", str(cfg.n_ctx)]
        cmd += ["--n_threads", str(threads), "--model_alias", cfg.served_name()]
    else:
        cmd = ["vllm", "serve", str(model), "--host", cfg.host, "--port", str(cfg.port)]
        cmd += ["--served-model-name", cfg.served_name()]
    return cmd + list(cfg.engine_args)


def gguf_for(cfg: ServeConfig, folder: Path) -> Path:
    """A GGUF file of ``folder`` (converted once, kept beside the cache's other models)."""
    cache = default_cache_dir()
    stamp = max(f.stat().st_mtime_ns for f in folder.glob("*.safetensors"))
    out = cache / "gguf" / f"{folder.resolve().name}-{stamp}-{cfg.quant}.gguf"
    if not out.is_file():
        log.info("converting %s to GGUF %s for llama.cpp (once)", folder, cfg.quant)
        tmp = out.with_suffix(".partial.gguf")
        to_gguf(folder, tmp, cfg.quant)
        os.replace(tmp, out)
    return out


def start_engine(cfg: ServeConfig) -> Engine:
    """Start the engine for ``cfg.model`` and wait until it answers ``GET /v1/models``."""
    if not cfg.model:
        raise MedistillError("--model is required (or --base-url with --ui for the page alone)")
    model = Path(resolve_model(cfg.model))
    if not model.exists():
        raise MedistillError(f"--model {cfg.model}: no such file or folder")
    if model.is_dir() and not list(model.glob("*.safetensors")):
        raise MedistillError(f"{model}: no *.safetensors weights to serve")
    if model.is_file() and model.suffix != ".gguf":
        raise MedistillError(f"--model {model}: expected a .gguf file or a model folder")
    engine = choose_engine(cfg, model)
    if engine == "llamacpp":
        llama_cpp_version("serving on CPU")
        if model.is_dir():
            model = gguf_for(cfg, model)
    if cfg.host not in LOCAL_HOSTS:
        log.warning(
            "--host %s: the engine is reachable from the network, without authentication "
            "unless you pass one to the engine; the model is not for clinical use",
            cfg.host,
        )
    cmd = engine_command(cfg, model, engine)
    log.info("starting %s: %s", engine, " ".join(cmd))
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    host = "127.0.0.1" if cfg.host in ("0.0.0.0", "::") else cfg.host
    base_url = f"http://{host}:{cfg.port}/v1"
    started = Engine(process, base_url, cfg.served_name(), model_path=model)
    started.drain_log()
    try:
        _wait_ready(started, cfg.startup_timeout_s)
    except BaseException:
        started.stop()
        raise
    return started


def _wait_ready(engine: Engine, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code = engine.process.poll()
        if code is not None:
            time.sleep(0.2)  # let the log thread read the last lines
            tail = "\n".join(list(engine.log_tail)[-12:])
            raise MedistillError(f"the engine exited with status {code}: {tail[-1500:]}")
        try:
            with urllib.request.urlopen(f"{engine.base_url}/models", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise MedistillError(f"the engine did not answer at {engine.base_url} in {timeout_s:.0f} s")


def serve(cfg: ServeConfig, *, announce: Callable[[str], None] = log.info) -> None:
    """Serve until interrupted: the engine, the explain page, or both."""
    if cfg.base_url and not cfg.ui:
        raise MedistillError("--base-url is for --ui alone (the page in front of a running server)")
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # a plain kill stops the engine too
    engine = None if cfg.base_url else start_engine(cfg)
    try:
        base_url = cfg.base_url or engine.base_url
        name = engine.name if engine else (cfg.name or cfg.served_name())
        if engine:
            announce(f"serving {name} at {engine.base_url} (OpenAI API; model name {name!r})")
        if cfg.ui:
            served = engine.model_path if engine else _named_model(cfg)
            run_explain_page(cfg, base_url, name, announce=announce, served=served)
        else:
            engine.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if engine:
            engine.stop()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _named_model(cfg: ServeConfig) -> Path | None:
    """With ``--base-url``, the file ``--model`` names (the page then states its figures),
    when it is a local file or folder."""
    if not cfg.model:
        return None
    path = Path(resolve_model(cfg.model))
    return path if path.exists() else None


def run_explain_page(
    cfg: ServeConfig,
    base_url: str,
    model: str,
    *,
    announce: Callable[[str], None] = log.info,
    served: Path | None = None,
) -> None:
    """Run the explain page in this process until interrupted. ``served``: the file the
    engine loaded; the page states it (name, quant, sha256, size) and its as-deployed
    figures from the nearest ``measured.json`` (:func:`medistill.deploy.measured.served_file`)."""
    try:
        import uvicorn
    except ImportError as e:
        raise MedistillError("the explain page needs: pip install 'medistill[ui]'") from e
    explainer = Explainer(
        base_url,
        model,
        max_new_tokens=cfg.max_new_tokens,
        template=cfg.template,
        api_key_env=cfg.api_key_env,
        served=served_file(served) if served is not None else None,
    )
    if served is not None and explainer.served and not explainer.served.get("measured"):
        announce(f"{served}: not measured as deployed (no measured.json names this file)")
    announce(f"explain page at http://{_display(cfg.host)}:{cfg.ui_port}/")
    uvicorn.run(create_app(explainer), host=cfg.host, port=cfg.ui_port, log_level="warning")


def _display(host: str) -> str:
    return f"[{host}]" if ":" in host else host
