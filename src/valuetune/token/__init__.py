"""Preference tokens: signed/encrypted PASETO tokens, key ring, revocation, aliases, précis."""
