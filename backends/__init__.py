"""Model side: the Backend protocol, the registry, one file per backend, the tiny model builder."""
