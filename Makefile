check:
	.venv/bin/python -m ruff check .
	.venv/bin/python -m pytest

.PHONY: check
