"""Foundations every layer stands on: errors, atomic files, text made safe to show, the console, signals."""
