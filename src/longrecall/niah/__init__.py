"""The needle-in-a-haystack task generator and its scoring (pure, seeded)."""
from .families import FAMILIES, get_family
from .generate import GenSpec, Sample, generate_sample, generate_samples
from .scoring import METRICS, score, score_details

__all__ = ["FAMILIES", "get_family", "GenSpec", "Sample", "generate_sample", "generate_samples", "METRICS", "score", "score_details"]
