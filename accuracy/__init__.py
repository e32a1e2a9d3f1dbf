"""Metrics only: CLIP score, FID and its statistics, thresholds, the streaming accuracy-log reader and
the accuracy.txt / accuracy.json writer, computed as the MLPerf SDXL scorer does.

Never imports a backend, LoadGen or `harness`: the harness calls in (harness/run/accuracy_step.py), and
`python -m accuracy --log PATH` rescores an existing log on its own.
"""
