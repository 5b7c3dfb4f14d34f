"""Training runs and what they leave on disk: configs, the trainer and its loop, sizing, checkpoints and run folders."""
