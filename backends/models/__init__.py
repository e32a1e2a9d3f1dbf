"""Model builders: the tiny families built in code, and full-size architectures with random weights,
saved as diffusers folders and loaded like real weights."""
