"""Looking at what a model knows: bits per character of a text, the surprise of each character, interpretable cells."""
