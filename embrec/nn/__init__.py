"""Reusable PyTorch pieces: towers (encoders), losses, negative samplers."""
