"""The value model: axes schema, profiles, item bank, adaptive IRT engine, personas."""
