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


@dataclass(frozen=True)
class Round:
    name: str
    seeds: tuple[int, int, int]  # qsl, sample_index, schedule
    loadgen_versions: str  # the mlcommons-loadgen wheels that embed these seeds
    image_ids: tuple[int, ...]  # accuracy/images/<id>.png the checker asks for


ROUNDS: dict[str, Round] = {
    "v6.0": Round(
        name="v6.0",
        seeds=(2465351861681999779, 14276810075590677512, 3936089224930324775),
        loadgen_versions="mlcommons-loadgen 6.0.5 to 6.0.15",
        image_ids=(1311, 2476, 3644, 2188, 4114, 52, 388, 1195, 3427, 2289),
    ),
}
# Seeds of rounds this tool cannot build for, to name them when a log carries them.
OTHER_SEEDS: dict[tuple[int, int, int], str] = {
    (2085463073848966840, 2747215439041700203, 16159082839903944936): "v6.1 (mlcommons-loadgen 6.0.16 and 6.0.17)",
}


def round_of_seeds(seeds: tuple[int, int, int]) -> str:
    """The round whose seeds these are, with the LoadGen wheels that carry them; "" if unknown."""
    for r in ROUNDS.values():
        if r.seeds == seeds:
            return f"{r.name} ({r.loadgen_versions})"
    return OTHER_SEEDS.get(seeds, "")


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
ACCURACY_PATTERN = {  # the checker's regular expressions for accuracy.txt
    CLIP_SCORE: r".*'CLIP_SCORE':\s+'?([\d.]+).*",
    FID_SCORE: r".*'FID_SCORE':\s+'?([\d.]+).*",
}
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
SYSTEM_TYPES = ("datacenter", "edge", "datacenter,edge", "edge,datacenter")
MEASUREMENTS_REQUIRED_FIELDS = (
    "input_data_types",
    "retraining",
    "starting_weights_filename",
    "weight_data_types",
    "weight_transformations",
)
