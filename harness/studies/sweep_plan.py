"""What a sweep measures: resolutions x steps x batch sizes x scenarios, from flags or a TOML plan.

    # python -m harness sweep --plan sweep.toml
    resolutions = [512, 1024]   # square side in pixels: model.height = model.width
    steps = [4, 8]
    batch_sizes = [1, 4]        # Offline (and Server max batch); SingleStream always runs batch 1;
                                # "fit" = the largest batch that fits (python -m harness fit), found
                                # per resolution and steps: [1, "fit"], or "1,fit" on the command line
    scenarios = ["SingleStream", "Offline"]
    ramp = true                 # the batch-size ramp (harness/studies/batch_ramp.py)
    max_batch = 64
    fit_memory_fraction = 0.85  # fit's cap on torch's CUDA allocator (python -m harness fit --memory-fraction)
    ramp_min_gain = 0.03
    quality = false             # one accuracy-mode run per (resolution, steps): CLIP per steps

Flags given on the command line win over the plan file. Unknown keys and bad values are errors.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from harness.config import SCENARIOS
from harness.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class SweepPlan:
    resolutions: tuple[int, ...] = ()  # () = the model config's height (which must equal its width)
    steps: tuple[int, ...] = ()  # () = the model config's steps
    batch_sizes: tuple[int, ...] = (1,)  # may be () when `fit` gives the only batch size
    fit: bool = False  # add the largest batch that fits to batch_sizes, per resolution and steps
    scenarios: tuple[str, ...] = ("SingleStream", "Offline")
    ramp: bool = False
    max_batch: int = 64
    fit_memory_fraction: float = 0.85
    ramp_min_gain: float = 0.03
    quality: bool = False


def int_list(key: str, value: Any) -> tuple[int, ...]:
    """A comma-separated string or a list of integers >= 1."""
    items = [x.strip() for x in value.split(",") if x.strip()] if isinstance(value, str) else value
    error = ConfigError(f"{key} must be comma-separated integers >= 1 (e.g. 512,1024), got {value!r}")
    if not isinstance(items, list) or not items or any(isinstance(x, (bool, float)) for x in items):
        raise error
    try:
        numbers = tuple(int(x) for x in items)
    except (TypeError, ValueError):
        raise error from None
    if min(numbers) < 1:
        raise error
    return numbers


def batch_size_list(value: Any) -> tuple[tuple[int, ...], bool]:
    """Integers >= 1 and the word "fit" (the largest batch that fits): (the integers, whether "fit" was there)."""
    items = [x.strip() for x in value.split(",") if x.strip()] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ConfigError(f"batch_sizes must be comma-separated integers >= 1 or fit (e.g. 1,fit), got {value!r}")
    fit = "fit" in items
    numbers = [x for x in items if x != "fit"]
    if not numbers and fit:
        return (), True
    try:
        return int_list("batch_sizes", numbers), fit
    except ConfigError:
        raise ConfigError(
            f"batch_sizes must be comma-separated integers >= 1 or fit (e.g. 1,fit), got {value!r}"
        ) from None


def scenario_list(value: Any) -> tuple[str, ...]:
    names = [x.strip() for x in value.split(",") if x.strip()] if isinstance(value, str) else list(value)
    bad = [n for n in names if n not in SCENARIOS]
    if bad or not names:
        raise ConfigError(f"unknown scenario(s) {bad or value!r} in the sweep; choose from {', '.join(SCENARIOS)}")
    return tuple(names)


def _check(plan: SweepPlan) -> SweepPlan:
    if plan.max_batch < 1:
        raise ConfigError(f"max_batch must be >= 1, got {plan.max_batch}")
    if not 0 < plan.fit_memory_fraction <= 1:
        raise ConfigError(f"fit_memory_fraction must be in (0, 1], got {plan.fit_memory_fraction}")
    if not 0 <= plan.ramp_min_gain < 1:
        raise ConfigError(f"ramp_min_gain must be in [0, 1) (0.03 = 3%), got {plan.ramp_min_gain}")
    return plan


def load_plan(path: str | Path) -> SweepPlan:
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the sweep plan {str(path)!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"sweep plan {str(path)!r} is not valid TOML: {exc}") from None
    known = {f.name for f in fields(SweepPlan)} - {"fit"}  # "fit" is written in batch_sizes
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)} in sweep plan {str(path)!r}; known: {', '.join(known)}")
    return override(SweepPlan(), data)


def override(plan: SweepPlan, values: dict[str, Any]) -> SweepPlan:
    """`plan` with `values` (None = keep) parsed and checked."""
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if key == "batch_sizes":
            changes["batch_sizes"], changes["fit"] = batch_size_list(value)
        elif key in ("resolutions", "steps"):
            changes[key] = int_list(key, value)
        elif key == "scenarios":
            changes[key] = scenario_list(value)
        elif key in ("ramp", "quality"):
            if not isinstance(value, bool):
                raise ConfigError(f"{key} must be true or false, got {value!r}")
            changes[key] = value
        elif key == "max_batch":
            (changes[key],) = int_list(key, [value])
        elif key in ("ramp_min_gain", "fit_memory_fraction"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{key} must be a number, got {value!r}")
            changes[key] = float(value)
        else:
            raise ConfigError(f"unknown sweep plan key {key!r}")
    return _check(replace(plan, **changes))
