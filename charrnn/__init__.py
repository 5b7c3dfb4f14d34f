"""charrnn: character-level recurrent language models that learn to write like any text."""

__version__ = "0.1.0"
