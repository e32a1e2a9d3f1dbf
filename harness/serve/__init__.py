"""`python -m harness serve`: one loaded backend behind an HTTP API (docs/serve.md).

service.py loads and warms the backend the way a run does (harness/run/); generator.py batches the
requests' images with the run's own Batcher on a generation thread; schema.py checks a request against
the served model and its limits; app.py is the FastAPI app (endpoints, errors, Server-Timing);
metrics.py the Prometheus metrics; auth.py the bearer key.
"""
