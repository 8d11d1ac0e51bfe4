"""Language-model backends behind one small interface: generate and score."""
