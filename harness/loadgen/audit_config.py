"""LoadGen audit.config files for the compliance tests, and how a run applies one.

LoadGen reads `audit.config` itself at StartTest (the runner passes `<run dir>/audit.config`), but it
looks keys up under the model name `*` only: a line such as TEST04's
`stable-diffusion-xl.Offline.min_query_count = 500` is never applied that way. So the run also loads
the file into its TestSettings with the model's MLPerf name, as the last layer, through
`FromConfig(path, model, scenario, 2)`: conf_type 2 is LoadGen's audit-config type, which, unlike a
second user.conf (conf_type 1), does not log "Multiple conf files are used" (an error that fails the
submission checker). LoadGen then logs "Found Audit Config file", the proof the checker's reviewers
look for.

The texts are the official ones (mlcommons/inference compliance/TEST01/stable-diffusion-xl/audit.config
and compliance/TEST04/audit.config).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

log = logging.getLogger(__name__)

AUDIT_FILE = "audit.config"

_HEADER = """\
# The format of this config file is 'key = value'.
# The key has the format 'model.scenario.key'. Value is mostly int64_t.
# Model maybe '*' as wildcard. In that case the value applies to all models.
# All times are in milli seconds
"""

AUDIT_CONFIGS: dict[str, str] = {
    # Accuracy logging during a performance run: about 128 sampled responses go to
    # mlperf_log_accuracy.json, chosen with the official seed.
    "TEST01": _HEADER
    + """
# mode dictionary (0 = submission, 1 = accuracy, 2 = performance, 3 = find peak perf)
*.*.mode = 2
*.*.accuracy_log_rng_seed = 720381539243781796
*.*.accuracy_log_sampling_target = 128
""",
    # No caching: every query carries the same sample (index 3); a SUT that caches results gets faster.
    "TEST04": _HEADER
    + """*.MultiStream.mode = 2
*.MultiStream.performance_issue_unique = 0
*.MultiStream.performance_issue_same = 1
*.MultiStream.performance_issue_same_index = 3
*.Offline.mode = 2
*.Offline.performance_issue_unique = 0
*.Offline.performance_issue_same = 1
*.Offline.performance_issue_same_index = 3
*.SingleStream.mode = 2
*.SingleStream.performance_issue_unique = 0
*.SingleStream.performance_issue_same = 1
*.SingleStream.performance_issue_same_index = 3
*.Server.mode = 2
*.Server.performance_issue_unique = 0
*.Server.performance_issue_same = 1
*.Server.performance_issue_same_index = 3
stable-diffusion-xl.Offline.min_query_count = 500
""",
}


def write_audit_config(test: str, path: Path, source: str | Path | None = None) -> Path:
    """Write the audit.config of `test` (or a copy of the file `source`) to `path`."""
    if test not in AUDIT_CONFIGS:
        raise ConfigError(f"unknown compliance test {test!r}; choose one of: {', '.join(AUDIT_CONFIGS)}")
    if source:
        src = Path(source).expanduser()
        if not src.is_file():
            raise ConfigError(f"audit config file not found: {str(src)!r}")
        shutil.copyfile(src, path)
    else:
        path.write_text(AUDIT_CONFIGS[test], encoding="utf-8")
    return path


def apply_audit_config(settings: Any, source: str | Path, run_dir: Path, model: str, scenario: str) -> Path:
    """Put the audit config at `<run_dir>/audit.config` (where LoadGen looks) and apply it to `settings`
    as the last layer, under the model's own name, with FromConfig's audit type (conf_type 2)."""
    src = Path(source).expanduser()
    if not src.is_file():
        raise ConfigError(f"run.audit_config {str(source)!r}: file not found")
    dst = run_dir / AUDIT_FILE
    if not dst.exists() or not dst.samefile(src):
        shutil.copyfile(src, dst)
    if settings.FromConfig(str(dst), model, scenario, 2) != 0:
        raise ConfigError(
            f"LoadGen could not read the audit config {str(src)!r}; expected lines 'model.scenario.key = value'"
        )
    log.info("audit config %s applied (model %s, scenario %s)", src, model, scenario)
    return dst
