"""Training methods: LongLoRA (S²-Attn, LoRA+, position scaling), losses and recipes."""
