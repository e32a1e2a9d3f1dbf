"""One benchmark run: model resolution, the run itself, its accuracy/quality steps and its records."""
