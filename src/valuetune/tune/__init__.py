"""Aligning a model to a token: scenario bank, personal pairs, précis / steer / dpo / soup."""
