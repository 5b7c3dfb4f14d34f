"""`charrnn bench`: speed and memory measured as ratios against plain PyTorch, kept apart from the library."""
