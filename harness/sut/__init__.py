"""The system under test LoadGen drives, and its batcher."""
