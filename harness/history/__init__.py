"""The run history: every run recorded in a database (SQLite by default, PostgreSQL for a team), `diff`
between two runs with significance judged on per-sample latencies, and a regression `gate`.

    schema.py   tables and the schema version          db.py      open a database, migrate, errors
    record.py   a run directory -> rows (import)       query.py   list runs, resolve A/B references
    stats.py    per-metric deltas and significance     gate.py    conditions that must match, thresholds
"""
