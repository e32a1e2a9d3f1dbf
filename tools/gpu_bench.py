"""GPU benchmark of full-size text-to-image pipelines built from published configs, random weights.

    python -m tools.gpu_bench [--quick] [--only sdxl|flux] [--out DIR] [--device cuda|cpu]

What it measures (bf16 on CUDA):

* SDXL base 1.0 (`configs/components/sdxl/`): StableDiffusionXLPipeline with EulerDiscrete, the
  MLPerf recipe (1024 x 1024, 20 steps, guidance 8.0 so the UNet batch is doubled, the MLPerf
  negative prompt, one fixed latent), batch 1 and 8, diffusers eager and then the UNet under
  torch.compile (default mode, fullgraph, static shapes: one compile per batch size).
* FLUX.2-klein-4B (`configs/components/flux2-klein-4b/`): Flux2KleinPipeline, 4 steps, distilled
  (no CFG), 512 and 1024, batch 1 and 4, eager; then the transformer compiled at batch 1 while
  the time budget lasts. The Qwen3-4B text encoder is built at full size and runs on every batch
  (512-token padded prompts, as in the pipeline); only its tokenizer is a stub.

Weights are random (seeded), which costs the same FLOPs and time as trained weights. Every module is
created directly on the device in float32 and then cast, so no CPU-side initialisation of billions of
parameters is needed. The tokenizers are built in code (no hub): a byte-level CLIP vocabulary and a
byte-level stand-in for the Qwen tokenizer; they only have to produce valid ids of the right length.

Each measurement: two warm-up calls with few steps (the first one triggers compilation; compile_s =
first - second), then several timed batches with the device synchronised at the boundaries
(time.perf_counter_ns). The timed region is the whole pipeline call, from prompts to uint8 H x W x 3
images on the host (what the harness returns). Per-step latency comes from CUDA events recorded in
`callback_on_step_end`, taken between consecutive steps (steps 2..N), so it is the UNet/transformer
forward plus the scheduler step.

The top level (orchestrator) only uses the standard library: it runs each model in its own child
process with a time limit, so an overrunning compile cannot starve the other model, and every result
is written to `OUT/gpu_bench.json` as soon as it is measured. `--quick` shrinks everything (tiny
configs, 256 x 256, 3 steps, batches 1 and 2) so that the control flow runs on a CPU in a minute or
two; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CFG_DIR = ROOT / "configs" / "components"
RESULTS_NAME = "gpu_bench.json"
SCHEMA = "gpu_bench/1"

SDXL_DIR = "sdxl"
FLUX_DIR = "flux2-klein-4b"

MLPERF_NEGATIVE_PROMPT = "normal quality, low quality, worst quality, low res, blurry, nsfw, nude"
PROMPTS = [
    "A man riding a wave on top of a surfboard.",
    "A kitchen with wooden cabinets and a white refrigerator.",
    "Two giraffes standing next to each other in a grassy field.",
    "A red double decker bus driving down a city street.",
    "A plate of food with broccoli, rice and chicken on a table.",
    "A cat sleeping on top of a laptop keyboard.",
    "A group of people flying kites on a sunny beach.",
    "A clock tower in the middle of a town square at dusk.",
]

# DESIGN.md anchor: 13.5 TFLOP per SDXL UNet step at 1024 x 1024 with CFG (per image).
SDXL_UNET_TFLOP_PER_STEP_1024_CFG = 13.5

# Full-size run plan. `timed` = number of timed batches; `est_s` = the time a phase is expected to
# need on one H100/H200 (an estimate used only to skip a phase that would not fit the budget).
SDXL_PLAN = {
    "resolution": 1024,
    "steps": 20,
    "guidance": 8.0,
    "warmup_steps": 3,
    "runs": [  # (backend, batch, timed batches, est_s)
        ("eager", 1, 5, 25),
        ("eager", 8, 2, 45),
        ("compile", 1, 5, 150),
        ("compile", 8, 2, 130),
    ],
}
FLUX_PLAN = {
    "steps": 4,
    "warmup_steps": 2,
    "max_sequence_length": 512,
    "runs": [  # (backend, resolution, batch, timed batches, est_s)
        ("eager", 512, 1, 8, 10),
        ("eager", 1024, 1, 6, 15),
        ("eager", 512, 4, 3, 10),
        ("eager", 1024, 4, 3, 20),
        ("compile", 1024, 1, 6, 100),
        ("compile", 512, 1, 8, 80),
    ],
}
QUICK_SDXL_PLAN = {
    "resolution": 256,
    "steps": 3,
    "guidance": 8.0,
    "warmup_steps": 2,
    "runs": [("eager", 1, 2, 0), ("eager", 2, 1, 0), ("compile", 1, 2, 0), ("compile", 2, 1, 0)],
}
QUICK_FLUX_PLAN = {
    "steps": 3,
    "warmup_steps": 2,
    "max_sequence_length": 64,
    "runs": [("eager", 128, 1, 2, 0), ("eager", 256, 1, 2, 0), ("eager", 256, 2, 1, 0), ("compile", 256, 1, 2, 0)],
}

# --quick: scaled-down architectures (same classes, same code paths, tiny widths/depths).
QUICK_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    SDXL_DIR: {
        "unet": {
            "block_out_channels": [32, 64, 64],
            "attention_head_dim": [1, 2, 2],
            "transformer_layers_per_block": [1, 1, 1],
            "layers_per_block": 1,
            "cross_attention_dim": 64,
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 32 + 6 * 8,
            "norm_num_groups": 16,
            "sample_size": 32,
        },
        "vae": {
            "block_out_channels": [16, 32, 32, 32],
            "layers_per_block": 1,
            "norm_num_groups": 8,
            "sample_size": 256,
        },
        "text_encoder": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "projection_dim": 32,
        },
        "text_encoder_2": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "projection_dim": 32,
        },
    },
    FLUX_DIR: {
        "transformer": {
            "num_layers": 1,
            "num_single_layers": 1,
            "num_attention_heads": 2,
            "attention_head_dim": 32,
            "axes_dims_rope": [8, 8, 8, 8],
            "joint_attention_dim": 3 * 64,
        },
        "vae": {"block_out_channels": [16, 32, 32, 32], "layers_per_block": 1, "norm_num_groups": 8},
        "text_encoder": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 3,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 32,
            "layer_types": ["full_attention"] * 3,
            "max_window_layers": 3,
        },
    },
}
QUICK_FLUX_TEXT_LAYERS = (1, 2, 3)
FULL_FLUX_TEXT_LAYERS = (9, 18, 27)


# --------------------------------------------------------------------------------------------
# results file (written after every measurement; children append to it in turn)
# --------------------------------------------------------------------------------------------


class Results:
    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / RESULTS_NAME

    def load(self) -> dict[str, Any]:
        if self.path.exists():
            try:
                return json.loads(self.path.read_text())
            except (OSError, ValueError):
                pass
        return {"schema": SCHEMA, "runs": [], "events": []}

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".gpu_bench.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, default=str)
            f.write("\n")
        os.replace(tmp, self.path)

    def update(self, **fields: Any) -> None:
        data = self.load()
        data.update(fields)
        self._write(data)

    def merge(self, key: str, value: dict[str, Any]) -> None:
        data = self.load()
        data.setdefault(key, {}).update(value)
        self._write(data)

    def add_run(self, rec: dict[str, Any]) -> None:
        data = self.load()
        data.setdefault("runs", []).append(rec)
        self._write(data)

    def event(self, kind: str, **fields: Any) -> None:
        data = self.load()
        data.setdefault("events", []).append({"t_utc": _utc(), "kind": kind, **fields})
        self._write(data)


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --------------------------------------------------------------------------------------------
# printing
# --------------------------------------------------------------------------------------------

_COLS = [
    ("model", 16),
    ("res", 5),
    ("steps", 5),
    ("cfg", 4),
    ("batch", 5),
    ("backend", 8),
    ("img/s", 7),
    ("s/img", 7),
    ("step_ms", 8),
    ("peak_GiB", 8),
    ("compile_s", 9),
    ("status", 8),
]


def _fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def table_header() -> str:
    return " ".join(name.rjust(w) for name, w in _COLS)


def table_row(r: dict[str, Any]) -> str:
    vals = [
        r.get("model"),
        r.get("resolution"),
        r.get("steps"),
        r.get("guidance"),
        r.get("batch"),
        r.get("backend"),
        r.get("images_per_s"),
        r.get("s_per_image"),
        r.get("step_ms_mean"),
        r.get("peak_mem_gib"),
        r.get("compile_s"),
        r.get("status"),
    ]
    out = []
    for (name, w), v in zip(_COLS, vals, strict=True):
        s = _fmt(v, 1 if name in ("compile_s", "step_ms", "cfg") else 3)
        out.append(s[:w].rjust(w))
    return " ".join(out)


def print_table(runs: list[dict[str, Any]], title: str = "summary") -> None:
    print(f"\n=== {title} ===")
    print(table_header())
    for r in runs:
        print(table_row(r))
        if r.get("status") != "ok" and r.get("error"):
            print(f"      -> {r['error'][:300]}")
    print(flush=True)


# --------------------------------------------------------------------------------------------
# configs and tokenizers
# --------------------------------------------------------------------------------------------


def load_component_config(model_dir: str, name: str, quick: bool) -> dict[str, Any]:
    path = CFG_DIR / model_dir / f"{name}.json"
    cfg = json.loads(path.read_text())
    cfg = {k: v for k, v in cfg.items() if k != "_source"}
    if quick:
        cfg.update(QUICK_OVERRIDES.get(model_dir, {}).get(name, {}))
    return cfg


def _transformers_config(cls: Any, cfg: dict[str, Any]) -> Any:
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    return cls.from_dict(cfg)


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP byte-to-unicode table: the 256 characters a byte-level BPE vocabulary starts from."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\u00a1"), ord("\u00ac") + 1))
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def make_clip_tokenizer(workdir: Path, pad_token: str | None = None) -> Any:
    """A real CLIPTokenizer over a byte-level vocabulary (514 ids) and no merges: valid ids, 77 long."""
    from transformers import CLIPTokenizer

    chars = _bytes_to_unicode()
    vocab: dict[str, int] = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "vocab.json").write_text(json.dumps(vocab))
    (workdir / "merges.txt").write_text("#version: 0.2\n")
    kw: dict[str, Any] = {"model_max_length": 77}
    if pad_token is not None:
        kw["pad_token"] = pad_token
    return CLIPTokenizer(str(workdir / "vocab.json"), str(workdir / "merges.txt"), **kw)


class QwenTokenizerStub:
    """Stands in for Qwen2TokenizerFast in Flux2KleinPipeline: the same chat template text, one id per
    UTF-8 byte (inside Qwen3's vocabulary), padded to max_length with an attention mask. The text
    encoder then runs the same sequence length (512) as with the real tokenizer."""

    pad_token_id = 151643
    model_max_length = 512

    def apply_chat_template(
        self, messages: list[dict[str, str]], tokenize: bool = False, add_generation_prompt: bool = True, **_: Any
    ) -> str:
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        if add_generation_prompt:
            text += "<|im_start|>assistant\n<think>\n\n</think>\n\n"
        return text

    def __call__(
        self,
        text: str | list[str],
        return_tensors: str = "pt",
        padding: Any = "max_length",
        truncation: bool = True,
        max_length: int = 512,
        **_: Any,
    ) -> dict[str, Any]:
        import torch

        texts = [text] if isinstance(text, str) else list(text)
        ids = torch.full((len(texts), max_length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(texts), max_length), dtype=torch.long)
        for i, t in enumerate(texts):
            b = list(t.encode("utf-8"))[:max_length]
            ids[i, : len(b)] = torch.tensor([1000 + x for x in b], dtype=torch.long)
            mask[i, : len(b)] = 1
        return {"input_ids": ids, "attention_mask": mask}


# --------------------------------------------------------------------------------------------
# device helpers
# --------------------------------------------------------------------------------------------


def setup_torch(device: str) -> None:
    import torch

    torch.manual_seed(0)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    # The summary says what ran; the libraries' own chatter (truncation warnings for the byte-level
    # tokenizer, progress bars) only clutters the log.
    try:
        from diffusers.utils import logging as dlog

        dlog.set_verbosity_error()
    except Exception:
        pass
    try:
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()
    except Exception:
        pass


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def gib(n: int | float) -> float:
    return round(float(n) / 2**30, 3)


def mem_now(device: str) -> float | None:
    import torch

    return gib(torch.cuda.memory_allocated()) if device.startswith("cuda") else None


def reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def peak(device: str) -> tuple[float | None, float | None]:
    import torch

    if not device.startswith("cuda"):
        return None, None
    return gib(torch.cuda.max_memory_allocated()), gib(torch.cuda.max_memory_reserved())


@contextlib.contextmanager
def on_device(device: str):
    """Create modules directly on the device (random init there is fast; no CPU copy)."""
    import torch

    with torch.device(device):
        yield


def n_params(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def env_info(device: str, dtype_name: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "device": device,
        "dtype": dtype_name,
    }
    for mod in ("diffusers", "transformers", "triton"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception as exc:  # noqa: BLE001
            info[mod] = f"unavailable: {exc.__class__.__name__}"
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(0)
        info.update(
            {
                "device_name": torch.cuda.get_device_name(0),
                "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
                "multiprocessors": p.multi_processor_count,
                "total_mem_gib": gib(p.total_memory),
                "cuda_runtime": torch.version.cuda,
            }
        )
        try:
            q = subprocess.run(
                [
                    "nvidia-smi",
                    "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
                    "--format=csv,noheader",
                ],
                capture_output=True,
                text=True,
                timeout=20,
            )
            info["nvidia_smi"] = q.stdout.strip() or q.stderr.strip()
        except Exception as exc:  # noqa: BLE001
            info["nvidia_smi"] = f"failed: {exc}"
    else:
        info["device_name"] = platform.processor() or "cpu"
        info["cpu_count"] = os.cpu_count()
        info["torch_threads"] = torch.get_num_threads()
    return info


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------


class StepTimer:
    """`callback_on_step_end` that stamps the end of every denoising step (CUDA events on a GPU)."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.marks: list[Any] = []

    def __call__(self, pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.cuda:
            import torch

            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self.marks.append(ev)
        else:
            self.marks.append(time.perf_counter_ns())
        return {}

    def intervals_ms(self) -> list[float]:
        """Durations of steps 2..N (the first step also holds the prompt encoding and setup)."""
        out = []
        for a, b in zip(self.marks, self.marks[1:], strict=False):
            out.append(a.elapsed_time(b) if self.cuda else (b - a) / 1e6)
        return out


def images_to_host_uint8(images: Any) -> Any:
    """Pipeline output (output_type='pt', N x 3 x H x W in [0, 1]) -> uint8 N x H x W x 3 on the host."""
    import torch

    x = images if isinstance(images, torch.Tensor) else torch.stack(list(images))
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu()


def timed_call(pipe: Any, kwargs: dict[str, Any], device: str) -> tuple[float, Any]:
    sync(device)
    t0 = time.perf_counter_ns()
    out = pipe(**kwargs)
    host = images_to_host_uint8(out.images)
    sync(device)
    return (time.perf_counter_ns() - t0) / 1e9, host


def measure(
    pipe: Any,
    make_kwargs: Any,
    *,
    batch: int,
    steps: int,
    warmup_steps: int,
    n_timed: int,
    device: str,
    n_warmup: int = 2,
) -> dict[str, Any]:
    """Warm-up calls (few steps) then `n_timed` timed batches of the full recipe."""
    import torch

    res: dict[str, Any] = {}
    warm = []
    reset_peak(device)
    for _ in range(n_warmup):
        dt, _img = timed_call(pipe, make_kwargs(batch, warmup_steps), device)
        warm.append(round(dt, 4))
    res["warmup_s"] = warm
    res["peak_mem_warmup_gib"] = peak(device)[0]
    reset_peak(device)
    batch_s: list[float] = []
    step_ms: list[float] = []
    step_ms_per_batch: list[float] = []
    host = None
    for _ in range(n_timed):
        timer = StepTimer(device)
        kw = make_kwargs(batch, steps)
        kw["callback_on_step_end"] = timer
        dt, host = timed_call(pipe, kw, device)
        batch_s.append(dt)
        iv = timer.intervals_ms()
        step_ms.extend(iv)
        step_ms_per_batch.append(round(sum(iv) / len(iv), 3) if iv else None)
    total = sum(batch_s)
    pk, pr = peak(device)
    res.update(
        {
            "n_timed_batches": n_timed,
            "batch_s": [round(x, 4) for x in batch_s],
            "batch_s_mean": round(total / n_timed, 4),
            "batch_s_min": round(min(batch_s), 4),
            "images_per_s": round(batch * n_timed / total, 4),
            "s_per_image": round(total / (batch * n_timed), 4),
            "step_ms_mean": round(sum(step_ms) / len(step_ms), 3) if step_ms else None,
            "step_ms_per_batch": step_ms_per_batch,
            "peak_mem_gib": pk,
            "peak_reserved_gib": pr,
        }
    )
    if res["step_ms_mean"] is not None:
        # What the batch spends outside the denoising loop (prompt encoding, VAE decode, copy-out).
        res["non_step_s_mean"] = round(res["batch_s_mean"] - steps * res["step_ms_mean"] / 1e3, 4)
    if n_warmup >= 2:
        res["first_call_extra_s"] = round(warm[0] - warm[1], 3)
    if host is not None:
        res["output_shape"] = list(host.shape)
        res["output_dtype"] = str(host.dtype)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return res


# --------------------------------------------------------------------------------------------
# SDXL
# --------------------------------------------------------------------------------------------


def build_sdxl(device: str, dtype: Any, quick: bool, workdir: Path) -> tuple[Any, dict[str, Any]]:
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    info: dict[str, Any] = {"config_dir": str((CFG_DIR / SDXL_DIR).relative_to(ROOT)), "quick": quick}
    t0 = time.perf_counter()
    cfg = {
        n: load_component_config(SDXL_DIR, n, quick)
        for n in ("unet", "vae", "text_encoder", "text_encoder_2", "scheduler")
    }
    torch.manual_seed(0)
    with on_device(device):
        unet = UNet2DConditionModel.from_config(cfg["unet"]).to(dtype).eval()
        vae = AutoencoderKL.from_config(cfg["vae"]).to(dtype).eval()
        te1 = CLIPTextModel(_transformers_config(CLIPTextConfig, cfg["text_encoder"])).to(dtype).eval()
        te2 = CLIPTextModelWithProjection(_transformers_config(CLIPTextConfig, cfg["text_encoder_2"])).to(dtype).eval()
    sched = EulerDiscreteScheduler.from_config(cfg["scheduler"])
    tok1 = make_clip_tokenizer(workdir / "clip_tok")
    tok2 = make_clip_tokenizer(workdir / "clip_tok_2", pad_token="!")
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=te1,
        text_encoder_2=te2,
        tokenizer=tok1,
        tokenizer_2=tok2,
        unet=unet,
        scheduler=sched,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    sync(device)
    info.update(
        {
            "build_s": round(time.perf_counter() - t0, 2),
            "params_M": {
                "unet": round(n_params(unet) / 1e6, 1),
                "vae": round(n_params(vae) / 1e6, 1),
                "text_encoder": round(n_params(te1) / 1e6, 1),
                "text_encoder_2": round(n_params(te2) / 1e6, 1),
            },
            "weights_gib": mem_now(device),
            "attn_processor": type(next(iter(unet.attn_processors.values()))).__name__,
            "text_encoder_attn": getattr(te1.config, "_attn_implementation", None),
            "vae_upcast": "no (force_upcast only applies to float16; the VAE runs in the model dtype)",
            "tokenizers": "CLIPTokenizer over a byte-level vocab (514 ids, no merges), padded to 77",
            "unet_key_config": {
                k: cfg["unet"][k]
                for k in (
                    "block_out_channels",
                    "transformer_layers_per_block",
                    "attention_head_dim",
                    "cross_attention_dim",
                    "addition_time_embed_dim",
                    "projection_class_embeddings_input_dim",
                    "use_linear_projection",
                    "sample_size",
                )
            },
        }
    )
    return pipe, info


def sdxl_kwargs_factory(pipe: Any, plan: dict[str, Any], device: str, dtype: Any) -> Any:
    import torch

    res = plan["resolution"]
    g = torch.Generator("cpu").manual_seed(0)
    c = pipe.unet.config.in_channels
    s = res // pipe.vae_scale_factor
    # One fixed latent for every prompt, as in MLPerf (their latents.npy is (1, 4, 128, 128)).
    base_latent = torch.randn((1, c, s, s), generator=g, dtype=torch.float32).to(device, dtype)

    def make(batch: int, steps: int) -> dict[str, Any]:
        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
        return {
            "prompt": prompts,
            "negative_prompt": [MLPERF_NEGATIVE_PROMPT] * batch,
            "num_inference_steps": steps,
            "guidance_scale": plan["guidance"],
            "height": res,
            "width": res,
            "latents": base_latent.expand(batch, -1, -1, -1).clone(),
            "output_type": "pt",
        }

    return make


def run_sdxl(args: argparse.Namespace, results: Results, deadline: float) -> None:
    import torch

    device, dtype, dtype_name = args.device, _dtype(args), args.dtype_name
    plan = QUICK_SDXL_PLAN if args.quick else SDXL_PLAN
    workdir = Path(tempfile.mkdtemp(prefix="gpu_bench_sdxl_"))
    try:
        pipe, info = build_sdxl(device, dtype, args.quick, workdir)
    except Exception as exc:  # noqa: BLE001
        results.add_run(_error_rec("sdxl-base-1.0", "build", exc, resolution=plan["resolution"]))
        print(f"[sdxl] build failed: {exc!r}", flush=True)
        traceback.print_exc()
        return
    results.merge("builds", {"sdxl-base-1.0": info})
    print(
        f"[sdxl] built in {info['build_s']} s, params (M) {info['params_M']}, weights {info['weights_gib']} GiB",
        flush=True,
    )
    make = sdxl_kwargs_factory(pipe, plan, device, dtype)
    eager_unet = pipe.unet
    compiled = None
    runs: list[dict[str, Any]] = []
    for backend, batch, n_timed, est_s in plan["runs"]:
        rec = {
            "model": "sdxl-base-1.0",
            "pipeline": "StableDiffusionXLPipeline",
            "dtype": dtype_name,
            "resolution": plan["resolution"],
            "steps": plan["steps"],
            "guidance": plan["guidance"],
            "unet_batch": batch * 2,
            "batch": batch,
            "backend": backend,
            "scheduler": "EulerDiscrete",
            "negative_prompt": "MLPerf",
            "text_encoders": "full size (random weights), run every batch",
            "compile_s": None,
            "notes": [],
        }
        left = deadline - time.time()
        if not args.quick and left < est_s:
            rec.update(status="skipped", error=f"time budget: {left:.0f} s left, phase needs ~{est_s} s")
            results.add_run(rec)
            runs.append(rec)
            print(table_row(rec), flush=True)
            continue
        results.event("phase_start", model=rec["model"], backend=backend, batch=batch, resolution=rec["resolution"])
        try:
            if backend == "compile":
                if compiled is None:
                    compiled = _compile(eager_unet, args, rec)
                pipe.unet = compiled
                rec["compile"] = {
                    "target": "unet",
                    "mode": args.compile_mode,
                    "fullgraph": args.fullgraph,
                    "dynamic": False,
                    "backend": args.compile_backend,
                }
            else:
                pipe.unet = eager_unet
            m = _measure_with_fallback(pipe, make, batch, n_timed, plan, device, args, rec, eager_unet, attr="unet")
            rec.update(m)
            if backend == "compile" and "first_call_extra_s" in m:
                rec["compile_s"] = m["first_call_extra_s"]
                rec["notes"].append(
                    "compile_s = first warm-up call - second warm-up call "
                    f"({plan['warmup_steps']} steps each): compilation for this shape"
                )
            if plan["resolution"] == 1024 and rec.get("step_ms_mean"):
                tf = SDXL_UNET_TFLOP_PER_STEP_1024_CFG * batch / (rec["step_ms_mean"] / 1e3)
                rec["unet_tflops_achieved"] = round(tf, 1)
                rec["notes"].append(
                    "unet_tflops_achieved uses the DESIGN.md anchor of 13.5 TFLOP per UNet step per image with CFG"
                )
            rec["status"] = "ok"
        except Exception as exc:  # noqa: BLE001
            rec.update(
                status="error",
                error=f"{exc.__class__.__name__}: {exc}"[:2000],
                traceback=traceback.format_exc()[-4000:],
            )
            traceback.print_exc()
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
        results.add_run(rec)
        runs.append(rec)
        print(table_row(rec), flush=True)
    pipe.unet = eager_unet
    print_table(runs, "sdxl")


# --------------------------------------------------------------------------------------------
# FLUX.2-klein-4B
# --------------------------------------------------------------------------------------------


def build_flux(device: str, dtype: Any, quick: bool) -> tuple[Any, dict[str, Any]]:
    import torch
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Qwen3Config, Qwen3ForCausalLM

    info: dict[str, Any] = {"config_dir": str((CFG_DIR / FLUX_DIR).relative_to(ROOT)), "quick": quick}
    t0 = time.perf_counter()
    cfg = {
        n: load_component_config(FLUX_DIR, n, quick)
        for n in ("transformer", "vae", "text_encoder", "scheduler", "model_index")
    }
    torch.manual_seed(0)
    # One component at a time: float32 on the device, then cast (keeps the float32 peak to one model).
    with on_device(device):
        te = Qwen3ForCausalLM(_transformers_config(Qwen3Config, cfg["text_encoder"])).to(dtype).eval()
        transformer = Flux2Transformer2DModel.from_config(cfg["transformer"]).to(dtype).eval()
        vae = AutoencoderKLFlux2.from_config(cfg["vae"]).to(dtype).eval()
    sched = FlowMatchEulerDiscreteScheduler.from_config(cfg["scheduler"])
    pipe = Flux2KleinPipeline(
        scheduler=sched,
        vae=vae,
        text_encoder=te,
        tokenizer=None,
        transformer=transformer,
        is_distilled=bool(cfg["model_index"].get("is_distilled", True)),
    )
    # The tokenizer is a stub object, set after registration so that the pipeline's config does not
    # have to describe it.
    object.__setattr__(pipe, "tokenizer", QwenTokenizerStub())
    pipe.set_progress_bar_config(disable=True)
    sync(device)
    info.update(
        {
            "build_s": round(time.perf_counter() - t0, 2),
            "params_M": {
                "transformer": round(n_params(transformer) / 1e6, 1),
                "text_encoder": round(n_params(te) / 1e6, 1),
                "vae": round(n_params(vae) / 1e6, 1),
            },
            "weights_gib": mem_now(device),
            "is_distilled": pipe.config.is_distilled,
            "text_encoder": "Qwen3ForCausalLM at full published size, random weights, runs every batch "
            "(prompts padded to max_sequence_length as the pipeline does)",
            "text_encoder_attn": getattr(te.config, "_attn_implementation", None),
            "tokenizer": "byte-level stub (QwenTokenizerStub): valid ids + attention mask, not Qwen's BPE",
            "transformer_key_config": {
                k: cfg["transformer"][k]
                for k in (
                    "num_layers",
                    "num_single_layers",
                    "num_attention_heads",
                    "attention_head_dim",
                    "joint_attention_dim",
                    "in_channels",
                    "mlp_ratio",
                )
            },
        }
    )
    return pipe, info


def flux_kwargs_factory(plan: dict[str, Any], resolution: int, device: str, quick: bool) -> Any:
    import torch

    layers = QUICK_FLUX_TEXT_LAYERS if quick else FULL_FLUX_TEXT_LAYERS

    def make(batch: int, steps: int) -> dict[str, Any]:
        return {
            "prompt": [PROMPTS[i % len(PROMPTS)] for i in range(batch)],
            "height": resolution,
            "width": resolution,
            "num_inference_steps": steps,
            "guidance_scale": 1.0,
            "generator": torch.Generator(device).manual_seed(0),
            "output_type": "pt",
            "max_sequence_length": plan["max_sequence_length"],
            "text_encoder_out_layers": layers,
        }

    return make


def run_flux(args: argparse.Namespace, results: Results, deadline: float) -> None:
    import torch

    device, dtype, dtype_name = args.device, _dtype(args), args.dtype_name
    plan = QUICK_FLUX_PLAN if args.quick else FLUX_PLAN
    try:
        pipe, info = build_flux(device, dtype, args.quick)
    except Exception as exc:  # noqa: BLE001
        results.add_run(_error_rec("flux2-klein-4b", "build", exc))
        print(f"[flux] build failed: {exc!r}", flush=True)
        traceback.print_exc()
        return
    results.merge("builds", {"flux2-klein-4b": info})
    print(
        f"[flux] built in {info['build_s']} s, params (M) {info['params_M']}, weights {info['weights_gib']} GiB",
        flush=True,
    )
    eager_tr = pipe.transformer
    compiled = None
    runs: list[dict[str, Any]] = []
    for backend, res, batch, n_timed, est_s in plan["runs"]:
        rec = {
            "model": "flux2-klein-4b",
            "pipeline": "Flux2KleinPipeline",
            "dtype": dtype_name,
            "resolution": res,
            "steps": plan["steps"],
            "guidance": None,
            "batch": batch,
            "backend": backend,
            "scheduler": "FlowMatchEulerDiscrete",
            "text_encoders": "Qwen3-4B full size (random weights), run every batch; tokenizer stubbed",
            "max_sequence_length": plan["max_sequence_length"],
            "compile_s": None,
            "notes": ["distilled model: no CFG (guidance ignored), transformer batch = batch"],
        }
        left = deadline - time.time()
        if not args.quick and left < est_s:
            rec.update(status="skipped", error=f"time budget: {left:.0f} s left, phase needs ~{est_s} s")
            results.add_run(rec)
            runs.append(rec)
            print(table_row(rec), flush=True)
            continue
        results.event("phase_start", model=rec["model"], backend=backend, batch=batch, resolution=res)
        try:
            if backend == "compile":
                if compiled is None:
                    compiled = _compile(eager_tr, args, rec)
                pipe.transformer = compiled
                rec["compile"] = {
                    "target": "transformer",
                    "mode": args.compile_mode,
                    "fullgraph": args.fullgraph,
                    "dynamic": False,
                    "backend": args.compile_backend,
                }
            else:
                pipe.transformer = eager_tr
            make = flux_kwargs_factory(plan, res, device, args.quick)
            m = _measure_with_fallback(
                pipe, make, batch, n_timed, plan, device, args, rec, eager_tr, attr="transformer"
            )
            rec.update(m)
            if backend == "compile" and "first_call_extra_s" in m:
                rec["compile_s"] = m["first_call_extra_s"]
                rec["notes"].append("compile_s = first warm-up call - second warm-up call: compilation for this shape")
            rec["status"] = "ok"
        except Exception as exc:  # noqa: BLE001
            rec.update(
                status="error",
                error=f"{exc.__class__.__name__}: {exc}"[:2000],
                traceback=traceback.format_exc()[-4000:],
            )
            traceback.print_exc()
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
        results.add_run(rec)
        runs.append(rec)
        print(table_row(rec), flush=True)
    pipe.transformer = eager_tr
    print_table(runs, "flux2-klein-4b")


# --------------------------------------------------------------------------------------------
# shared pieces of the phases
# --------------------------------------------------------------------------------------------


def _dtype(args: argparse.Namespace) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype_name]


def _compile(module: Any, args: argparse.Namespace, rec: dict[str, Any]) -> Any:
    import torch

    kw: dict[str, Any] = {"fullgraph": args.fullgraph, "dynamic": False, "backend": args.compile_backend}
    if args.compile_mode != "default":
        kw["mode"] = args.compile_mode
    return torch.compile(module, **kw)


def _measure_with_fallback(
    pipe: Any,
    make: Any,
    batch: int,
    n_timed: int,
    plan: dict[str, Any],
    device: str,
    args: argparse.Namespace,
    rec: dict[str, Any],
    eager_module: Any,
    attr: str,
) -> dict[str, Any]:
    """measure(); if a fullgraph compile fails, retry once without fullgraph and say so."""
    kw = dict(batch=batch, steps=plan["steps"], warmup_steps=plan["warmup_steps"], n_timed=n_timed, device=device)
    try:
        return measure(pipe, make, **kw)
    except Exception as exc:  # noqa: BLE001
        if rec["backend"] != "compile" or not args.fullgraph:
            raise
        import torch

        rec["notes"].append(
            f"fullgraph=True failed ({exc.__class__.__name__}: {str(exc)[:300]}); retried with fullgraph=False"
        )
        print(f"[{rec['model']}] fullgraph compile failed, retrying without fullgraph: {exc!r}"[:500], flush=True)
        torch._dynamo.reset()
        setattr(
            pipe,
            attr,
            torch.compile(
                eager_module,
                fullgraph=False,
                dynamic=False,
                backend=args.compile_backend,
                **({} if args.compile_mode == "default" else {"mode": args.compile_mode}),
            ),
        )
        rec["compile"]["fullgraph"] = False
        return measure(pipe, make, **kw)


def _error_rec(model: str, phase: str, exc: BaseException, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "backend": phase,
        "status": "error",
        "error": f"{exc.__class__.__name__}: {exc}"[:2000],
        "traceback": traceback.format_exc()[-4000:],
        **extra,
    }


# --------------------------------------------------------------------------------------------
# child process: one model
# --------------------------------------------------------------------------------------------


def child_main(args: argparse.Namespace) -> int:
    results = Results(Path(args.out))
    setup_torch(args.device)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        results.event("error", model=args.child, error="CUDA requested but torch.cuda.is_available() is False")
        print("CUDA not available", flush=True)
        return 2
    data = results.load()
    if "env" not in data:
        results.update(env=env_info(args.device, args.dtype_name))
        env = results.load()["env"]
        print("[env] " + json.dumps(env), flush=True)
    results.event("child_start", model=args.child, pid=os.getpid())
    deadline = args.deadline or (time.time() + 1e9)
    if args.child == "sdxl":
        run_sdxl(args, results, deadline)
    else:
        run_flux(args, results, deadline)
    results.event("child_end", model=args.child)
    return 0


# --------------------------------------------------------------------------------------------
# orchestrator (standard library only)
# --------------------------------------------------------------------------------------------


def _run_child(model: str, args: argparse.Namespace, deadline: float, results: Results) -> int | None:
    cmd = [
        sys.executable,
        "-m",
        "tools.gpu_bench",
        "--child",
        model,
        "--out",
        str(args.out),
        "--device",
        args.device,
        "--dtype",
        args.dtype_name,
        "--deadline",
        f"{deadline:.3f}",
        "--compile-mode",
        args.compile_mode,
        "--compile-backend",
        args.compile_backend,
    ]
    if args.quick:
        cmd.append("--quick")
    if not args.fullgraph:
        cmd.append("--no-fullgraph")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    timeout = max(5.0, deadline - time.time() + args.grace_s)
    limit = "none (--quick)" if args.quick else f"{timeout:.0f} s"
    print(f"\n[orchestrator] {model}: starting child (time limit {limit})", flush=True)
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, start_new_session=True)
    try:
        rc = proc.wait(timeout=None if args.quick else timeout)
    except subprocess.TimeoutExpired:
        # The child and whatever it started (compile workers) share its new process group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        results.event("child_timeout", model=model, after_s=round(time.time() - t0, 1))
        _record_killed_phase(results, model)
        print(f"[orchestrator] {model}: killed after {time.time() - t0:.0f} s (time limit)", flush=True)
        return None
    results.event("child_exit", model=model, rc=rc, wall_s=round(time.time() - t0, 1))
    print(f"[orchestrator] {model}: child exited rc={rc} after {time.time() - t0:.0f} s", flush=True)
    return rc


def _record_killed_phase(results: Results, model: str) -> None:
    """A child killed at its time limit: record the phase it was in as a 'timeout' run."""
    data = results.load()
    name = {"sdxl": "sdxl-base-1.0", "flux": "flux2-klein-4b"}[model]
    starts = [e for e in data.get("events", []) if e.get("kind") == "phase_start" and e.get("model") == name]
    if not starts:
        results.add_run(
            {
                "model": name,
                "backend": "build",
                "status": "timeout",
                "error": "child killed at its time limit before the first measurement",
            }
        )
        return
    last = starts[-1]
    key = (last.get("backend"), last.get("batch"), last.get("resolution"))
    done = {
        (r.get("backend"), r.get("batch"), r.get("resolution")) for r in data.get("runs", []) if r.get("model") == name
    }
    if key not in done:
        results.add_run(
            {
                "model": name,
                "backend": key[0],
                "batch": key[1],
                "resolution": key[2],
                "status": "timeout",
                "error": "child killed at its time limit during this "
                "phase (a compile that did not finish, or a slow measurement)",
            }
        )


def orchestrate(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = Results(out)
    if results.path.exists():
        results.path.rename(results.path.with_suffix(f".{int(time.time())}.old.json"))
    t0 = time.time()
    results.update(
        schema=SCHEMA,
        started_utc=_utc(),
        quick=args.quick,
        budget_s=args.budget_s,
        argv=sys.argv[1:],
        runs=[],
        events=[],
        method=(
            "random weights from published configs; bf16 on CUDA; timed region = whole "
            "pipeline call to uint8 images on host, device synchronised at both ends; "
            "2 warm-up calls with few steps first; step_ms from CUDA events in "
            "callback_on_step_end between consecutive steps (steps 2..N)"
        ),
    )
    models = [args.only] if args.only else ["sdxl", "flux"]
    end = t0 + args.budget_s
    for model in models:
        if model == "sdxl" and "flux" in models:
            deadline = end - args.flux_reserve_s
        else:
            deadline = end
        if not args.quick and deadline - time.time() < 30:
            results.event("skipped", model=model, reason="time budget")
            print(f"[orchestrator] {model}: skipped (time budget)", flush=True)
            continue
        _run_child(model, args, deadline, results)
    data = results.load()
    data["finished_utc"] = _utc()
    data["wall_s"] = round(time.time() - t0, 1)
    results.update(finished_utc=data["finished_utc"], wall_s=data["wall_s"])
    env = data.get("env", {})
    print(
        f"\n[orchestrator] device: {env.get('device_name')} | driver/nvidia-smi: "
        f"{env.get('nvidia_smi', '-')} | torch {env.get('torch')} | diffusers {env.get('diffusers')} "
        f"| transformers {env.get('transformers')} | dtype {env.get('dtype')}"
    )
    print_table(
        data.get("runs", []),
        f"all runs ({'QUICK, numbers meaningless' if args.quick else 'full'})"
        f", wall {data['wall_s']} s, results in {results.path}",
    )
    bad = [r for r in data.get("runs", []) if r.get("status") == "error"]
    return 1 if bad and len(bad) == len(data.get("runs", [])) else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.gpu_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny configs and sizes (CPU control-flow check)")
    p.add_argument("--only", choices=["sdxl", "flux"], help="run one model only")
    p.add_argument("--out", default=None, help="output folder (default: $OUT, else ./gpu_bench_out)")
    p.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    p.add_argument(
        "--dtype",
        dest="dtype_name",
        choices=["bf16", "fp16", "fp32"],
        default=None,
        help="default: bf16 on cuda, fp32 on cpu",
    )
    p.add_argument("--budget-s", type=float, default=430.0, help="total time for all models (ignored with --quick)")
    p.add_argument("--flux-reserve-s", type=float, default=120.0, help="time kept for FLUX when SDXL runs first")
    p.add_argument("--grace-s", type=float, default=20.0, help="extra time before a child is killed")
    p.add_argument(
        "--compile-mode",
        default="default",
        help="torch.compile mode: default | max-autotune-no-cudagraphs | reduce-overhead ...",
    )
    p.add_argument("--compile-backend", default="inductor")
    p.add_argument("--no-fullgraph", dest="fullgraph", action="store_false")
    p.add_argument("--child", choices=["sdxl", "flux"], help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.out is None:
        args.out = os.environ.get("OUT") or str(Path.cwd() / "gpu_bench_out")
    args.out = str(Path(args.out).resolve())
    if args.device is None:
        args.device = _default_device()
    if args.dtype_name is None:
        args.dtype_name = "bf16" if args.device.startswith("cuda") else "fp32"
    return args


def _default_device() -> str:
    """cuda if nvidia-smi lists a GPU (checked without importing torch in the orchestrator)."""
    try:
        q = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
        if q.returncode == 0 and "GPU" in q.stdout:
            return "cuda"
    except (OSError, subprocess.SubprocessError):
        pass
    return "cpu"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
