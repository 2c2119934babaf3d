"""medistill: distil medical reasoning from a teacher LLM into a small student model."""

__version__ = "0.1.0"
