"""Training data builders: SFT, DPO, packed pretraining blocks, LIFT segments and auxiliary QA."""
