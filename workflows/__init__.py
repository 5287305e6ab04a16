"""Workflows: what each email means, which ticket it belongs to, and what approving it does."""
