"""Reinforcement learning on the NIAH reward: GRPO via TRL, or as the trainer side of an Atropos API.

    longrecall train grpo --config configs/grpo-cpu-smoke.yaml [--via trl|atropos]
"""
