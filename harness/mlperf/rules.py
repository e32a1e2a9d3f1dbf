"""The MLPerf Inference rules for the SDXL benchmark that `submission` builds for and `check-submission`
checks against, per round. Values are those of the official checker
(mlcommons/inference tools/submission/submission_checker/constants.py) and DESIGN.md.
"""

from __future__ import annotations

from dataclasses import dataclass

BENCHMARK = "stable-diffusion-xl"
SCENARIOS = ("Offline", "Server", "SingleStream")
DIVISIONS = ("closed", "open")
COMPLIANCE_TESTS = ("TEST01", "TEST04")

SEED_KEYS = ("qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed")


SYSTEM_TYPES = ("datacenter", "edge", "datacenter,edge", "edge,datacenter")


@dataclass(frozen=True)
class Round:
    """One MLPerf Inference round, as the official checker's MODEL_CONFIG[<round>] has it
    (tools/submission/submission_checker/constants.py)."""

    name: str
    seeds: tuple[int, int, int]  # qsl, sample_index, schedule ("seeds")
    loadgen_versions: str  # the mlcommons-loadgen wheels that embed these seeds
    image_ids: tuple[int, ...]  # accuracy/images/<id>.png the checker asks for (REQUIRED_ACC_BENCHMARK); () = none
    # Benchmarks of each category: the keys of "required-scenarios-datacenter" / "-edge".
    benchmarks: dict[str, tuple[str, ...]]
    # SDXL's required scenarios per system_type ("required-scenarios-<type>"); no entry: not a benchmark there.
    # The optional lists ("optional-scenarios-<type>") have no SDXL entry in v6.0 or v6.1.
    sdxl_scenarios: dict[str, tuple[str, ...]]


# Seeds and scenario sets: constants.py MODEL_CONFIG["v6.0"] and ["v6.1"] (inference repository HEAD
# b66003e1). SDXL is an edge benchmark from v6.0 on; the data-centre generative benchmark is wan-2.2.
_EDGE_SCENARIOS = ("SingleStream", "Offline")
_BOTH_SCENARIOS = ("SingleStream", "Offline", "Server")
ROUNDS: dict[str, Round] = {
    "v6.0": Round(
        name="v6.0",
        seeds=(2465351861681999779, 14276810075590677512, 3936089224930324775),
        loadgen_versions="mlcommons-loadgen 6.0.5 to 6.0.15",
        image_ids=(1311, 2476, 3644, 2188, 4114, 52, 388, 1195, 3427, 2289),
        benchmarks={
            "datacenter": (
                "dlrm-v3",
                "3d-unet-99",
                "3d-unet-99.9",
                "llama3.1-8b",
                "llama2-70b-99",
                "llama2-70b-99.9",
                "mixtral-8x7b",
                "llama3.1-405b",
                "rgat",
                "whisper",
                "deepseek-r1",
                "gpt-oss-120b",
                "qwen3-vl-235b-a22b",
                "wan-2.2-t2v-a14b",
            ),
            "edge": (
                "resnet",
                "bert-99",
                "bert-99.9",
                "3d-unet-99",
                "3d-unet-99.9",
                "llama3.1-8b-edge",
                "stable-diffusion-xl",
                "pointpainting",
                "whisper",
                "yolo-95",
                "yolo-99",
            ),
        },
        sdxl_scenarios={
            "edge": _EDGE_SCENARIOS,
            "datacenter,edge": _BOTH_SCENARIOS,
            "edge,datacenter": _BOTH_SCENARIOS,
        },
    ),
    "v6.1": Round(
        name="v6.1",
        seeds=(2085463073848966840, 2747215439041700203, 16159082839903944936),
        loadgen_versions="mlcommons-loadgen 6.0.16 and 6.0.17",
        image_ids=(),  # REQUIRED_ACC_BENCHMARK has no v6.1 entry for SDXL: the checker asks for no images
        benchmarks={
            "datacenter": (
                "dlrm-v3",
                "3d-unet-99",
                "3d-unet-99.9",
                "llama3.1-8b",
                "llama2-70b-99.9",
                "rgat",
                "whisper",
                "deepseek-r1",
                "gpt-oss-120b",
                "qwen3-vl-235b-a22b",
                "wan-2.2-t2v-a14b",
                "e2e-rag-qna",
                "e2e-rag-db",
            ),
            "edge": (
                "resnet",
                "bert-99",
                "bert-99.9",
                "3d-unet-99",
                "3d-unet-99.9",
                "llama3.1-8b-edge",
                "stable-diffusion-xl",
                "whisper",
                "yolo-95",
                "yolo-99",
                "qwen3.6-27b",
            ),
        },
        sdxl_scenarios={
            "edge": _EDGE_SCENARIOS,
            "datacenter,edge": _BOTH_SCENARIOS,
            "edge,datacenter": _BOTH_SCENARIOS,
        },
    ),
}


def round_of_seeds(seeds: tuple[int | None, ...]) -> str:
    """The round whose seeds these are, with the LoadGen wheels that carry them; "" if unknown."""
    for r in ROUNDS.values():
        if r.seeds == seeds:
            return f"{r.name} ({r.loadgen_versions})"
    return ""


def required_scenarios(r: Round, system_type: str) -> tuple[str, ...] | None:
    """SDXL's required scenarios for this system type in round `r`; None where SDXL is not a benchmark
    of that category (official: Config.get_required returns None and the checker crashes on it)."""
    return r.sdxl_scenarios.get(system_type)


# The benchmark's model and inputs (closed division, DESIGN.md "MLPerf SDXL facts"): a run whose model
# section departs from these is not a run of the benchmark (loadgen_settings.submission_blockers).
BENCHMARK_MODEL = {
    "pipeline": "StableDiffusionXLPipeline",
    "scheduler": "EulerDiscreteScheduler",
    "steps": 20,
    "guidance_scale": 8.0,
    "height": 1024,
    "width": 1024,
    "negative_prompt": "normal quality, low quality, worst quality, low res, blurry, nsfw, nude",
}
BENCHMARK_LATENTS_MODE = "shared"

# Performance (closed division).
MIN_DURATION_MS = 600_000
PERFORMANCE_SAMPLE_COUNT = 5000
OFFLINE_MIN_SAMPLES_PER_QUERY = 5000
# min_query_count applies to scenarios without early stopping (here: Offline).
MIN_QUERY_COUNT = {"Offline": 1, "SingleStream": 1024, "Server": 270336}
EARLY_STOPPING_SCENARIOS = ("SingleStream", "Server")
LATENCY_CONSTRAINT_NS = {"Server": 20_000_000_000}

# Accuracy.
DATASET_SIZE = 5000
CLIP_SCORE, FID_SCORE = "CLIP_SCORE", "FID_SCORE"
ACCURACY_WINDOW = {CLIP_SCORE: (31.68631873, 31.81331801), FID_SCORE: (23.01085758, 23.95007626)}
ACCURACY_PATTERN = {  # the checker's regular expressions for accuracy.txt (constants.py ACC_PATTERN)
    CLIP_SCORE: r".*'CLIP_SCORE':\s+'?([\d.]+).*",
    FID_SCORE: r".*'FID_SCORE':\s+'?([\d.]+).*",
}
# Any number the line holds, a sign included: ACC_PATTERN has no minus sign, so the official checker
# finds no score in "'CLIP_SCORE': '-3.1'"; this one reads it, to report the value rather than "none".
ANY_SCORE_PATTERN = r".*'{metric}':\s+'?([-+]?[\d.]+(?:[eE][-+]?\d+)?).*"
HASH_PATTERN = r"^hash=([\w\d]+)$"
MAX_ACCURACY_LOG_BYTES = 10 * 1024
TRUNCATE_VIEWABLE_BYTES = 4096  # head and tail kept by the official truncate_accuracy_log.py
TRUNCATION_MARKER = "\n\n...\n\n"

# TEST01: where the logged samples are not byte-identical, CLIP and FID of the sampled subset must be
# within these percentages of the accuracy run's (|1 - baseline / compliance| * 100).
TEST01_DELTA_PERCENT = {CLIP_SCORE: 1.0, FID_SCORE: 2.0}
PERFORMANCE_TOLERANCE = 0.10  # TEST01 and TEST04
PERFORMANCE_TOLERANCE_FAST_SINGLESTREAM = 0.20

# Files.
PERFORMANCE_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt")
ACCURACY_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "accuracy.txt", "mlperf_log_accuracy.json")
SCENARIO_FILES = ("user.conf", "README.md", "measurements.json")
TEST01_FALLBACK_FILES = ("mlperf_log_accuracy.json", "accuracy.txt", "baseline_accuracy.txt", "compliance_accuracy.txt")
IGNORED_FILES = ("mlperf_log_trace.json", "results.json", ".gitkeep")

SYSTEM_REQUIRED_FIELDS = (
    "division",
    "submitter",
    "status",
    "system_name",
    "number_of_nodes",
    "host_processor_model_name",
    "host_processors_per_node",
    "host_processor_core_count",
    "host_memory_capacity",
    "host_storage_capacity",
    "host_storage_type",
    "accelerators_per_node",
    "accelerator_model_name",
    "accelerator_memory_capacity",
    "framework",
    "operating_system",
    "system_type",
    "other_software_stack",
    "host_processor_frequency",
    "host_processor_caches",
    "host_memory_configuration",
    "host_processor_interconnect",
    "host_networking",
    "host_networking_topology",
    "accelerator_frequency",
    "accelerator_host_interconnect",
    "accelerator_interconnect",
    "accelerator_interconnect_topology",
    "accelerator_memory_configuration",
    "accelerator_on-chip_memories",
    "cooling",
    "hw_notes",
    "sw_notes",
    "host_network_card_count",
    "system_type_detail",
)
# Required fields that must also hold a value (the rest may be "").
SYSTEM_MEANINGFUL_FIELDS = (
    "division",
    "submitter",
    "system_type",
    "status",
    "system_name",
    "number_of_nodes",
    "host_processor_model_name",
    "host_processors_per_node",
    "host_processor_core_count",
    "host_memory_capacity",
    "host_memory_configuration",
    "host_storage_capacity",
    "host_storage_type",
    "host_networking",
    "host_network_card_count",
    "host_networking_topology",
    "accelerators_per_node",
    "accelerator_model_name",
    "accelerator_memory_capacity",
    "accelerator_host_interconnect",
    "accelerator_memory_configuration",
    "accelerator_interconnect",
    "cooling",
    "framework",
    "operating_system",
    "other_software_stack",
)
SYSTEM_STATUSES = ("available", "preview", "rdi")
MEASUREMENTS_REQUIRED_FIELDS = (
    "input_data_types",
    "retraining",
    "starting_weights_filename",
    "weight_data_types",
    "weight_transformations",
)
