"""Metrics and plotting helpers shared by the trainer, services and notebooks."""
