"""Where batches run: in-process, a process pool, Ray actors."""
