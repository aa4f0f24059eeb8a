"""The four training stages, each a short script over training.engine and training.common."""
