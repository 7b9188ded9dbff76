"""LIFT (Long Input Fine-Tuning): store a long input in an adapter (Gated Memory or LoRA), then ask about it."""
