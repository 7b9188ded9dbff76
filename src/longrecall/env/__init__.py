"""The Atropos environment for needle-in-a-haystack tasks, the local OpenAI-compatible server, and rollout datasets.

    python -m longrecall.env.niah_env process --env.total_steps 2 --openai.base_url http://127.0.0.1:8000/v1

Submodules are imported on use: `niah_env` and `rollouts` pull in atroposlib (and wandb), `server` does not.
"""
