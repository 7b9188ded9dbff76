"""longrecall: turn a small open LLM into a long-term memory for very long texts."""
__version__ = "0.1.0"
