"""Several runs as one study: sweep plans, batch fitting and ramps, backend comparison."""
