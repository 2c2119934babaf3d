"""Stages 3-4: SFT, GRPO and on-policy distillation on TRL -> a standalone model folder.

Each stage reads a curated dataset (``format_version`` 3, or 2) or a model folder and writes a model
folder that ``medistill eval --model DIR`` loads as it is. The modules import TRL, PEFT and
torch lazily (``rewards`` and ``safety`` not at all), so importing this package stays cheap.
"""
