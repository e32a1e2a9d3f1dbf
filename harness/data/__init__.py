"""The run's inputs: prompts, latents, and the query sample library over them."""
