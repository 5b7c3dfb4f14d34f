"""Writing text with a model: the sampling settings, sampling, beam search, chat and stop strings."""
