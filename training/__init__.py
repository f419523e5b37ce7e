"""Training pipeline: corpora -> YAMNet embedding cache -> trained heads -> accuracy reports."""
