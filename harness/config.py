"""Layered run configuration: typed sections, TOML files, `--set key=value` overrides.

Layers, lowest first: the dataclass defaults below, `configs/models/<model>.toml`, the user's
`--config FILE.toml`, the explicit CLI flags, then `--set` overrides. LoadGen settings are layered
the same way, except that the user.conf file (LoadGen's own format) is applied by LoadGen between
the TOML layers and the `--set loadgen.*` overrides (see harness/loadgen/settings.py).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.mlperf.rules import ROUNDS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = PROJECT_ROOT / "configs" / "models"

SCENARIOS = ("SingleStream", "Offline", "Server")
MODES = ("performance", "accuracy")
LATENT_MODES = ("shared", "per-sample")
MODEL_WEIGHTS = ("pretrained", "random")
LATENT_LAYOUTS = ("nchw", "flux-packed")
SUT_KINDS = ("auto", "native", "python")


@dataclass(frozen=True)
class RunSection:
    scenario: str = "Offline"
    mode: str = "performance"
    backend: str = "diffusers-eager"
    output_dir: str = "runs"
    progress: bool = True  # rich progress bars on stderr
    # A LoadGen audit.config (compliance tests, `python -m harness compliance`): copied into the run
    # directory, where LoadGen finds it, and applied after every other layer (harness/loadgen/audit_config.py).
    audit_config: str = ""


@dataclass(frozen=True)
class ModelSection:
    name: str = "tiny"
    path: str = ""  # local diffusers folder; "" means the built-in tiny model's cache
    pipeline: str = "StableDiffusionXLPipeline"
    scheduler: str = ""  # "" keeps the checkpoint's scheduler
    steps: int = 8
    guidance_scale: float = 8.0
    height: int = 64
    width: int = 64
    latent_channels: int = 4
    vae_scale_factor: int = 4
    negative_prompt: str = ""
    mlperf_name: str = ""  # LoadGen's model name in user.conf, e.g. "stable-diffusion-xl"
    development_only: bool = False  # never valid for an MLPerf submission (the tiny model)
    hub_id: str = ""  # where the real weights are published, named in the "weights missing" error
    builder: str = ""  # builds the weights in code instead (backends/models/tiny_families.py BUILDERS)
    weights: str = "pretrained"  # "pretrained": a folder; "random": full size from `components`
    components: str = ""  # published component configs (model_index.json, ...) for weights = "random"
    latent_layout: str = "nchw"  # what the pipeline's latents= takes; "flux-packed": 2x2 patches packed
    max_sequence_length: int = 0  # T5/Qwen prompt length for pipelines that take it; 0 = pipeline default
    pretokenize: bool = False  # tokenize prompts when the QSL loads them, outside the timed path
    clip_score_min: float = 0.0  # accuracy targets where published (MLPerf SDXL); 0 = none
    clip_score_max: float = 0.0
    fid_min: float = 0.0
    fid_max: float = 0.0


@dataclass(frozen=True)
class DatasetSection:
    path: str = ""  # "" = the embedded prompt pack; .toml = a prompt pack; .tsv = MLPerf captions
    count: int = 0  # use the first `count` samples; 0 = all
    performance_sample_count: int = 0  # samples LoadGen may keep loaded; 0 = all


@dataclass(frozen=True)
class LatentsSection:
    mode: str = "shared"  # "shared": one latent for every sample (MLPerf); "per-sample"
    file: str = ""  # .npy or .pt; "" = generate from `seed`
    seed: int = 0


@dataclass(frozen=True)
class SutSection:
    batch_size: int = 8  # Offline: fixed batch size
    max_batch_size: int = 8  # Server: upper bound of a dynamic batch
    max_wait_ms: float = 50.0  # Server: how long the oldest query may wait for a batch to fill
    drain_timeout_s: float = 10.0  # after a failure, how long LoadGen gets to finish
    # Which system under test answers LoadGen: "python" (harness/sut/python_sut.py), "native" (the C++ core
    # in native/, bound to Python; needs the source-built LoadGen) or "auto": native where it is built.
    kind: str = "auto"


@dataclass(frozen=True)
class WorkersSection:
    count: int = 1  # workers; more than one runs each in its own process
    devices: str = ""  # comma-separated, one worker per device, e.g. "cuda:0,cuda:1" (overrides count)
    processes: bool = False  # run even a single worker in a child process (as a pool of one)
    threads_per_worker: int = 0  # CPU backends: torch threads per worker; 0 = split the cores
    retries: int = 0  # re-send a failed batch to another worker up to this many times per run
    load_timeout_s: float = 600.0  # how long a worker process may take to load and warm up
    ray_address: str = ""  # "auto" or "ray://host:port": one Ray actor per GPU (see harness/workers/ray_actors.py)


@dataclass(frozen=True)
class AccuracySection:
    sample_images: int = 4  # accuracy mode: PNGs of the first samples of each prompt category (contact sheets)
    # Scoring after an accuracy run (harness/run/accuracy_step.py, accuracy/): CLIP score and FID.
    score: bool = True  # false: only log the images (LoadGen AccuracyOnly), no CLIP/FID
    # Scorer files: a path; "" = where `python -m tools.fetch_assets` puts the real file;
    # "standin" = seeded random stand-ins built on first use (meaningless numbers; the tiny model).
    clip_weights: str = ""  # OpenAI CLIP ViT-B-32.pt (open_clip "openai")
    inception_weights: str = ""  # pytorch-fid pt_inception-2015-12-05-6726825d.pth
    fid_stats: str = ""  # reference statistics .npz (mu, sigma), e.g. MLPerf's val2014.npz
    fid_method: str = "pytorch-fid"  # "pytorch-fid" (scipy sqrtm, MLPerf) or "eigen" (fast, not bit-exact)
    batch_size: int = 8  # images per CLIP / Inception forward pass
    device: str = "cpu"  # cpu, cuda or cuda:N; never falls back
    # The absolute window is the model's: model.clip_score_min/max, model.fid_min/max (0 and 0: none).
    # Relative: a scored run directory; each score within the tolerance (% of the reference's score).
    reference: str = ""
    clip_tolerance_pct: float = 1.0  # MLPerf TEST01's SDXL tolerances
    fid_tolerance_pct: float = 2.0
    # Sample ids saved as images/<id>.png with images/captions.txt (default: the v6.0 checker's ten).
    compliance_ids: list = field(default_factory=lambda: [1311, 2476, 3644, 2188, 4114, 52, 388, 1195, 3427, 2289])


@dataclass(frozen=True)
class ProfileSection:
    # Where the time goes (issue 9). All off by default; the manifest records what was on.
    trace: bool = False  # torch.profiler Chrome trace (open in Perfetto) of a few batches after warm-up
    trace_batches: int = 3  # batches the trace covers
    nvtx: bool = False  # NVTX ranges around the stages (CUDA only), for Nsight Systems; on with `trace`
    loadgen_trace: bool = False  # LoadGen's own trace log, mlperf_log_trace.json


@dataclass(frozen=True)
class CostSection:
    # Cost per image from measured throughput (issue 6): a price per device-hour, given directly or by
    # naming an instance in `instances` (name -> USD per device-hour).
    gpu_hour_usd: float = 0.0  # 0 = no cost figures
    instance: str = ""
    instances: dict = field(default_factory=dict)
    # acceptance rule for "cost per accepted image": CLIP score >= this; 0 = none (stand-in scores are negative)
    accept_clip_min: float = 0.0


@dataclass(frozen=True)
class QualitySection:
    # Quality beyond the accuracy gate (issue 6): per-category CLIP and LPIPS diversity.
    # torchvision's AlexNet (alexnet-owt-7be5be79.pth), the LPIPS trunk; the linear layers ship with the
    # lpips package. "" = where tools.fetch_assets puts it; "standin" = seeded random weights (tests)
    lpips_weights: str = ""
    diversity_seeds: int = 0  # images per prompt with different seeds for LPIPS diversity; 0 = off
    diversity_prompts: int = 4  # prompts (the first of each category first) that get those seeds


@dataclass(frozen=True)
class MlperfSection:
    # The MLPerf round this run is made for ("v6.0", "v6.1"; harness/mlperf/rules.py ROUNDS): LoadGen gets
    # that round's seeds (harness/loadgen/settings.py), whatever the installed wheel embeds. "" = none:
    # the wheel's built-in seeds, and the run is not a submission candidate.
    round: str = ""


@dataclass(frozen=True)
class HistorySection:
    # The run history (harness/history/, docs/history.md): every run records itself when it ends.
    enabled: bool = True
    # SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db for a shared one; "" = SQLite at
    # <run.output_dir>/history.sqlite
    url: str = ""


@dataclass(frozen=True)
class ServeSection:
    # `python -m harness serve` (harness/serve/): the limits a request is checked against before it queues.
    max_n: int = 8  # images per request
    max_prompt_chars: int = 4096
    max_body_bytes: int = 1_048_576


@dataclass(frozen=True)
class RunConfig:
    run: RunSection = field(default_factory=RunSection)
    model: ModelSection = field(default_factory=ModelSection)
    dataset: DatasetSection = field(default_factory=DatasetSection)
    latents: LatentsSection = field(default_factory=LatentsSection)
    sut: SutSection = field(default_factory=SutSection)
    accuracy: AccuracySection = field(default_factory=AccuracySection)
    workers: WorkersSection = field(default_factory=WorkersSection)
    profile: ProfileSection = field(default_factory=ProfileSection)
    cost: CostSection = field(default_factory=CostSection)
    quality: QualitySection = field(default_factory=QualitySection)
    mlperf: MlperfSection = field(default_factory=MlperfSection)
    history: HistorySection = field(default_factory=HistorySection)
    serve: ServeSection = field(default_factory=ServeSection)
    # Validated against the chosen backend's Options dataclass when the backend is built.
    backend: dict[str, Any] = field(default_factory=dict)
    # LoadGen TestSettings attribute -> value, from the TOML layers (model+scenario defaults, --config).
    loadgen: dict[str, Any] = field(default_factory=dict)
    # From `--set loadgen.*`: applied after user.conf, so they win over it.
    loadgen_overrides: dict[str, Any] = field(default_factory=dict)
    user_conf: str = ""  # LoadGen user.conf file, applied between the two layers above

    def to_dict(self) -> dict[str, Any]:
        """Every setting, as written into config.toml and manifest.json: a password in history.url is
        replaced by *** (the run directory is shared and archived; the database keeps its own secret)."""
        data = dataclasses.asdict(self)
        data["history"]["url"] = redact_url(self.history.url)
        return data


def redact_url(url: str) -> str:
    """scheme://user:secret@host/db -> scheme://user:***@host/db; a URL without a password unchanged."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


_SECTIONS: dict[str, type] = {
    f.name: typing.get_type_hints(RunConfig)[f.name]
    for f in dataclasses.fields(RunConfig)
    if dataclasses.is_dataclass(typing.get_type_hints(RunConfig)[f.name])
}


def available_models() -> list[str]:
    return sorted(p.stem for p in MODELS_DIR.glob("*.toml"))


def read_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {p} is not valid TOML: {exc}") from exc


def parse_set(item: str) -> tuple[list[str], Any]:
    """`section.key=value` -> (["section", "key"], value). Values parse as TOML, else as text."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set expects section.key=value, got {item!r}")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # bare words such as cuda or bfloat16 are strings
    return key.split("."), value


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {'.'.join(path)}: {part!r} is a value, not a section")
    node[path[-1]] = value


def _type_name(tp: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list like [1, 2]"}
    return names.get(tp, str(tp))


def check_value(where: str, value: Any, tp: Any) -> Any:
    """Return `value` if it has type `tp` (ints are accepted as floats), else raise ConfigError.

    `tuple[T, ...]` takes a TOML array whose items are each a T, and returns it as a tuple."""
    if typing.get_origin(tp) is tuple:
        item_tp = typing.get_args(tp)[0]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(
                f"config key {where!r} must be an array (e.g. [1, 2]) of items each {_type_name(item_tp)}, "
                f"got {value!r} ({type(value).__name__})"
            )
        return tuple(check_value(f"{where}[{i}]", item, item_tp) for i, item in enumerate(value))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool):
        ok = False
    else:
        ok = isinstance(value, tp)
    if not ok:
        raise ConfigError(f"config key {where!r} must be {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    return value


def build_dataclass(cls: type, values: dict[str, Any], where: str) -> Any:
    """Instantiate `cls` from a dict, rejecting unknown keys and wrong types by name."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(f"unknown config key '{where}.{key}'; allowed keys in [{where}]: {', '.join(names)}")
        kwargs[key] = check_value(f"{where}.{key}", value, hints[key])
    return cls(**kwargs)


def _choice(where: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{where} {value!r} is not allowed; choose one of: {', '.join(allowed)}")


def resolve_config(
    model: str = "tiny",
    config_file: str | None = None,
    cli: dict[str, Any] | None = None,
    sets: list[str] | None = None,
) -> RunConfig:
    """Layer defaults, the model's TOML, --config, CLI flags and --set into one RunConfig.

    `cli` maps dotted keys (e.g. "run.scenario") to the values of explicit CLI flags.
    """
    models = available_models()
    if model not in models:
        raise ConfigError(f"unknown model {model!r}; choose one of: {', '.join(models)}")
    tree = read_toml(MODELS_DIR / f"{model}.toml")
    model_backend = tree.get("backend", {})  # defaults for the backends that take them (see below)
    user_backend: set[str] = set()  # backend keys the user gave (--config, --set): always checked
    if config_file:
        layer = read_toml(config_file)
        user_backend |= set(layer.get("backend", {}) if isinstance(layer.get("backend"), dict) else {})
        tree = _deep_merge(tree, layer)
    for dotted, value in (cli or {}).items():
        if value is not None:
            _set_path(tree, dotted.split("."), value)
    overrides: dict[str, Any] = {}
    for item in sets or []:
        path, value = parse_set(item)
        if path[0] == "loadgen" and len(path) == 2 and path[1] != "user_conf":
            overrides[path[1]] = value
        else:
            _set_path(tree, path, value)
            if path[0] == "backend":
                user_backend |= {path[1]} if len(path) > 1 else set(model_backend)
    _drop_foreign_backend_defaults(tree, model, model_backend, user_backend)
    return _from_tree(tree, overrides)


def _drop_foreign_backend_defaults(
    tree: dict[str, Any], model: str, model_backend: Any, user_backend: set[str]
) -> None:
    """A model config's [backend] keys (device, dtype) are defaults for the backends that have such an
    option: `--model sdxl --backend fake` must not fail on `backend.device`. Keys the user gave stay,
    and an unknown one is still an error when the backend's options are built."""
    backend = tree.get("backend")
    if not isinstance(model_backend, dict) or not model_backend or not isinstance(backend, dict):
        return
    name = str(tree.get("run", {}).get("backend", RunSection.backend))
    from backends.base import BackendError
    from backends.registry import option_names

    try:
        options = option_names(name)
    except BackendError:  # unknown backend or missing extra: building the backend reports it
        return
    for key in sorted(set(model_backend) - user_backend - options):
        if key in backend and backend[key] == model_backend[key]:
            del backend[key]
            log.info("configs/models/%s.toml: backend.%s is not an option of backend %r; not used", model, key, name)


def _from_tree(tree: dict[str, Any], loadgen_overrides: dict[str, Any]) -> RunConfig:
    allowed_top = list(_SECTIONS) + ["backend", "loadgen"]
    for key in tree:
        if key not in allowed_top:
            raise ConfigError(f"unknown config section {key!r}; allowed: {', '.join(allowed_top)}")
    sections = {}
    for name, cls in _SECTIONS.items():
        raw = tree.get(name, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"config key {name!r} must be a section, got {raw!r}")
        sections[name] = build_dataclass(cls, raw, name)
    run: RunSection = sections["run"]
    _choice("scenario", run.scenario, SCENARIOS)
    _choice("mode", run.mode, MODES)
    _choice("latents.mode", sections["latents"].mode, LATENT_MODES)
    _choice("model.weights", sections["model"].weights, MODEL_WEIGHTS)
    _choice("model.latent_layout", sections["model"].latent_layout, LATENT_LAYOUTS)
    if sections["mlperf"].round:
        _choice("mlperf.round", sections["mlperf"].round, tuple(ROUNDS))
    if sections["model"].max_sequence_length < 0:
        raise ConfigError(
            f"model.max_sequence_length must be >= 0 (0 = the pipeline's default), "
            f"got {sections['model'].max_sequence_length}"
        )
    for key in ("steps", "height", "width", "latent_channels", "vae_scale_factor"):
        if getattr(sections["model"], key) <= 0:
            raise ConfigError(f"model.{key} must be positive, got {getattr(sections['model'], key)}")
    for key in ("batch_size", "max_batch_size"):
        if getattr(sections["sut"], key) < 1:
            raise ConfigError(f"sut.{key} must be at least 1, got {getattr(sections['sut'], key)}")
    w = sections["workers"]
    if w.count < 1 or w.retries < 0 or w.threads_per_worker < 0:
        raise ConfigError(
            f"workers.count must be >= 1, workers.retries and workers.threads_per_worker >= 0; "
            f"got {w.count}, {w.retries}, {w.threads_per_worker}"
        )
    if sections["profile"].trace_batches < 1:
        raise ConfigError(f"profile.trace_batches must be at least 1, got {sections['profile'].trace_batches}")
    cost = sections["cost"]
    if cost.gpu_hour_usd < 0 or any(not isinstance(v, (int, float)) or v < 0 for v in cost.instances.values()):
        raise ConfigError(f"cost prices must be numbers >= 0, got {cost.gpu_hour_usd} and {cost.instances}")
    if cost.instance and cost.instance not in cost.instances:
        raise ConfigError(
            f"cost.instance {cost.instance!r} is not in cost.instances; known: {', '.join(cost.instances) or 'none'}"
        )
    if sections["quality"].diversity_seeds < 0 or sections["quality"].diversity_prompts < 1:
        raise ConfigError(
            f"quality.diversity_seeds must be >= 0 and quality.diversity_prompts >= 1, got "
            f"{sections['quality'].diversity_seeds} and {sections['quality'].diversity_prompts}"
        )
    _choice("sut.kind", sections["sut"].kind, SUT_KINDS)
    srv = sections["serve"]
    if srv.max_n < 1 or srv.max_prompt_chars < 1 or srv.max_body_bytes < 1024:
        raise ConfigError(
            f"serve.max_n and serve.max_prompt_chars must be >= 1 and serve.max_body_bytes >= 1024; "
            f"got {srv.max_n}, {srv.max_prompt_chars}, {srv.max_body_bytes}"
        )
    if sections["sut"].max_wait_ms < 0:
        raise ConfigError(f"sut.max_wait_ms must be >= 0, got {sections['sut'].max_wait_ms}")

    backend = tree.get("backend", {})
    if not isinstance(backend, dict):
        raise ConfigError(f"config key 'backend' must be a section, got {backend!r}")

    # [loadgen] holds keys for every scenario plus [loadgen.<Scenario>] tables; keep the chosen one.
    raw_lg = dict(tree.get("loadgen", {}))
    user_conf = raw_lg.pop("user_conf", "")
    check_value("loadgen.user_conf", user_conf, str)
    loadgen: dict[str, Any] = {}
    for key, value in raw_lg.items():
        if key in SCENARIOS:
            continue
        loadgen[key] = value
    scenario_table = raw_lg.get(run.scenario, {})
    if not isinstance(scenario_table, dict):
        raise ConfigError(f"[loadgen.{run.scenario}] must be a table")
    loadgen.update(scenario_table)
    return RunConfig(
        backend=dict(backend),
        loadgen=loadgen,
        loadgen_overrides=loadgen_overrides,
        user_conf=user_conf,
        **sections,
    )


def build_options(options_cls: type, values: dict[str, Any]) -> Any:
    """The chosen backend's Options from the [backend] section (unknown keys name the allowed)."""
    return build_dataclass(options_cls, values, "backend")


def to_toml(data: dict[str, Any]) -> str:
    """A small TOML writer for the resolved config (tomllib reads but cannot write)."""
    lines: list[str] = []

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        raise TypeError(f"cannot write {type(v).__name__} to TOML")

    def table(prefix: str, d: dict[str, Any]) -> None:
        plain = {k: v for k, v in d.items() if not isinstance(v, dict)}
        nested = {k: v for k, v in d.items() if isinstance(v, dict)}
        if prefix:
            lines.append(f"[{prefix}]")
        for k, v in plain.items():
            lines.append(f"{k} = {scalar(v)}")
        if prefix or plain:
            lines.append("")
        for k, v in nested.items():
            table(f"{prefix}.{k}" if prefix else k, v)

    table("", data)
    return "\n".join(lines).rstrip() + "\n"
