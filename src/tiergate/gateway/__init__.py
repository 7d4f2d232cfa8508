"""The OpenAI-compatible cascade gateway."""
