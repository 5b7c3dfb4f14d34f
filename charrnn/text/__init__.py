"""Text in and out: vocabularies of every kind (char, word, byte), reading files and folders, the token cache, stats, the corpus catalog."""
