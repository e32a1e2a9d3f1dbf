"""Export an SDXL-family pipeline to ONNX: both text encoders, the UNet and the VAE decoder.

Shared by the onnxruntime and tensorrt backends, which run the same files in the same loop
(backends/onnx_family/sdxl_loop.py). Supported: `StableDiffusionXLPipeline` folders (two CLIP text encoders,
the second with a projection; a UNet with SDXL's "text_time" added conditioning; an AutoencoderKL),
which is what the tiny model and SDXL base 1.0 are. Any other pipeline is refused with a
BackendError naming what is supported.

Exports are cached under `$HARNESS_CACHE_DIR/onnx/<key>/` (default `~/.cache/t2i-harness`), one
folder per component holding `model.onnx` and its external weights, plus `export.json`. The key is
a hash of the exported components' files (configs and weights, by content), the export options,
the image size, and the torch / diffusers / transformers / onnx versions: any change exports anew.

    onnx = ensure_onnx(spec, ExportOptions(dtype="float32"), folder=read_sdxl_folder(spec, "onnxruntime"),
                       who="onnxruntime")
    onnx.files["unet"]  # Path to unet/model.onnx

The I/O names below are the contract between the export, the loop and the engines.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from backends.base import BackendError, ModelSpec

logger = logging.getLogger(__name__)

SUPPORTED_PIPELINES = ("StableDiffusionXLPipeline",)
EXPORTERS = ("torchscript", "dynamo")
EXPORT_DTYPES = ("float32", "float16", "bfloat16")
COMPONENTS = ("text_encoder", "text_encoder_2", "unet", "vae_decoder")
# Which folder of the pipeline each exported component comes from.
SOURCE_FOLDER = {
    "text_encoder": "text_encoder",
    "text_encoder_2": "text_encoder_2",
    "unet": "unet",
    "vae_decoder": "vae",
}
INPUTS: dict[str, tuple[str, ...]] = {
    "text_encoder": ("input_ids",),
    "text_encoder_2": ("input_ids",),
    "unet": ("sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"),
    "vae_decoder": ("latent",),
}
# Text encoders always give "hidden_states" (the penultimate layer's, as SDXL uses); the one whose
# first output is 2-D (CLIPTextModelWithProjection) also gives "text_embeds", the pooled projection.
UNET_OUTPUTS = ("noise_pred",)
VAE_OUTPUTS = ("image",)
# Bump when the export code changes what it writes.
_EXPORT_VERSION = 1
_EXAMPLE_BATCH = 2


@dataclass(frozen=True)
class ExportOptions:
    dtype: str = "float32"  # of the exported graphs (the VAE stays float32 where SDXL upcasts it)
    # "torchscript": torch.onnx.export's tracer: seconds for the tiny model, long used for SDXL
    # (NVIDIA's TensorRT SDXL demo), deprecated by torch. "dynamo": the torch.export-based exporter
    # torch now recommends; needs onnxscript, about ten times slower here. Tests check that both
    # give the same outputs.
    exporter: str = "torchscript"
    opset: int = 18
    device: str = "cpu"  # where the torch modules run while exporting; not part of the cache key

    def check(self, who: str) -> None:
        if self.dtype not in EXPORT_DTYPES:
            raise BackendError(
                f"{who}: export dtype {self.dtype!r} is not supported; choose one of: {', '.join(EXPORT_DTYPES)}"
            )
        if self.exporter not in EXPORTERS:
            raise BackendError(
                f"{who}: exporter {self.exporter!r} is not supported; choose one of: {', '.join(EXPORTERS)}"
            )
        if not 17 <= self.opset <= 23:
            raise BackendError(f"{who}: opset {self.opset} is not supported; choose 17 to 23")


@dataclass(frozen=True)
class SDXLFolder:
    """What the export and the loop read from an SDXL pipeline folder (no weights)."""

    path: Path
    index: dict[str, Any]  # model_index.json
    unet: dict[str, Any]  # unet/config.json
    vae: dict[str, Any]  # vae/config.json
    text_encoder_2: dict[str, Any]  # text_encoder_2/config.json

    def class_of(self, folder: str) -> tuple[str, str]:
        """(library, class name) of a component, from model_index.json."""
        library, name = self.index[folder]
        return str(library), str(name)

    @property
    def vae_scale_factor(self) -> int:
        return int(2 ** (len(self.vae["block_out_channels"]) - 1))


def check_supported(model: ModelSpec, who: str) -> None:
    """Refuse, from the ModelSpec alone (no file read), a model this export cannot take."""
    if model.weights != "pretrained":
        raise BackendError(
            f"{who}: model weights {model.weights!r} are not supported: the ONNX export needs a weights "
            "folder (weights = pretrained); run random-weight architectures with diffusers-eager or torch-compile"
        )
    if model.pipeline not in SUPPORTED_PIPELINES:
        raise BackendError(
            f"{who}: pipeline {model.pipeline!r} is not supported (model {model.name!r}); "
            f"supported: {', '.join(SUPPORTED_PIPELINES)}"
        )
    if model.latent_layout != "nchw":
        raise BackendError(f"{who}: latent layout {model.latent_layout!r} is not supported; only nchw")


def read_sdxl_folder(model: ModelSpec, who: str) -> SDXLFolder:
    """Check that `model` is a pipeline folder this export supports, and read its configs."""
    check_supported(model, who)
    path = Path(model.path)
    if not (path / "model_index.json").is_file():
        raise BackendError(
            f"{who}: {path} has no model_index.json, so it is not a diffusers pipeline folder (model {model.name!r})"
        )
    index = _read_json(path / "model_index.json", who)
    if index.get("_class_name") not in SUPPORTED_PIPELINES:
        raise BackendError(
            f"{who}: {path} holds a {index.get('_class_name')!r}; supported: {', '.join(SUPPORTED_PIPELINES)}"
        )
    needed = ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet", "vae", "scheduler")
    missing = [name for name in needed if not (isinstance(index.get(name), list) and index[name][0])]
    if missing:
        raise BackendError(
            f"{who}: {path} has no {', '.join(missing)}; an SDXL pipeline needs all of: {', '.join(needed)}"
        )
    unet = _read_json(path / "unet" / "config.json", who)
    if unet.get("addition_embed_type") != "text_time":
        raise BackendError(
            f"{who}: the UNet in {path} has addition_embed_type {unet.get('addition_embed_type')!r}; "
            "only SDXL's 'text_time' is supported"
        )
    if unet.get("time_cond_proj_dim") is not None:
        raise BackendError(f"{who}: UNets with a guidance embedding (time_cond_proj_dim, LCM) are not supported")
    return SDXLFolder(
        path=path,
        index=index,
        unet=unet,
        vae=_read_json(path / "vae" / "config.json", who),
        text_encoder_2=_read_json(path / "text_encoder_2" / "config.json", who),
    )


def component_dtypes(folder: SDXLFolder, dtype: str) -> dict[str, str]:
    """The dtype each component is exported in. As the SDXL pipeline does, a float16 model keeps
    its VAE in float32 when the VAE's config says `force_upcast` (SDXL's VAE overflows in float16)."""
    vae = "float32" if dtype == "float16" and folder.vae.get("force_upcast", True) else dtype
    return {"text_encoder": dtype, "text_encoder_2": dtype, "unet": dtype, "vae_decoder": vae}


@dataclass(frozen=True)
class OnnxModel:
    """An exported pipeline: one ONNX file per component."""

    folder: Path
    key: str
    files: dict[str, Path]
    outputs: dict[str, tuple[str, ...]]
    dtypes: dict[str, str]
    cache_hit: bool
    export_s: float  # spent in this process (0 on a cache hit)

    def describe(self) -> dict[str, Any]:
        return {
            "dir": str(self.folder),
            "key": self.key,
            "cache_hit": self.cache_hit,
            "export_s": round(self.export_s, 3),
            "dtypes": dict(self.dtypes),
        }


def default_cache_dir() -> Path:
    """`$HARNESS_CACHE_DIR`, else `~/.cache/t2i-harness` (the harness's cache; backends do not import harness)."""
    env = os.environ.get("HARNESS_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "t2i-harness"


def export_key(
    model: ModelSpec, folder: SDXLFolder, options: ExportOptions, seq_lens: dict[str, int], cache: Path
) -> str:
    import diffusers
    import onnx
    import transformers

    content = {
        "export_version": _EXPORT_VERSION,
        "folder_sha256": folder_digest(folder.path, [SOURCE_FOLDER[c] for c in COMPONENTS], cache),
        "dtype": options.dtype,
        "exporter": options.exporter,
        "opset": options.opset,
        "height": model.height,
        "width": model.width,
        "seq_lens": seq_lens,
        "versions": [torch.__version__, diffusers.__version__, transformers.__version__, onnx.__version__],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def folder_digest(root: Path, subfolders: list[str], cache: Path) -> str:
    """SHA-256 over the files of `subfolders` of `root` (relative names and bytes, sorted).

    Hashing several GB takes a while, so the digest is memoised under `cache`, keyed by each
    file's path, size and modification time."""
    files = sorted(p for sub in subfolders for p in (root / sub).rglob("*") if p.is_file())
    stamp = [(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    memo = cache / "folder-hash" / (hashlib.sha256(json.dumps([str(root.resolve()), stamp]).encode()).hexdigest()[:24])
    if memo.is_file():
        return memo.read_text().strip()
    digest = hashlib.sha256()
    for p in files:
        digest.update(str(p.relative_to(root)).encode())
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    result = digest.hexdigest()
    with contextlib.suppress(OSError):  # a read-only cache only costs the re-hash next time
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(result)
    return result


def ensure_onnx(
    model: ModelSpec,
    options: ExportOptions,
    *,
    folder: SDXLFolder,
    seq_lens: dict[str, int],
    who: str,
    cache_dir: Path | None = None,
) -> OnnxModel:
    """The ONNX export of `model`, from the cache or made now (then cached).

    `seq_lens` maps each text encoder to its token count (the tokenizer's model_max_length)."""
    options.check(who)
    cache = (cache_dir or default_cache_dir()) / "onnx"
    key = export_key(model, folder, options, seq_lens, cache)
    target = cache / key
    if (target / "export.json").is_file():
        return _from_folder(target, key, cache_hit=True, export_s=0.0)

    cache.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=cache))
    try:
        record = _export_all(model, options, folder, seq_lens, tmp, who)
        record["key"] = key
        (tmp / "export.json").write_text(json.dumps(record, indent=2))
        tmp.chmod(0o755)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished the same export first
            if not (target / "export.json").is_file():
                raise
            logger.info("onnx export: another process wrote %s first; using it", target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
    export_s = time.perf_counter() - start
    logger.info("onnx export: %s to %s in %.2f s", model.name, target, export_s)
    return _from_folder(target, key, cache_hit=False, export_s=export_s)


def _from_folder(target: Path, key: str, *, cache_hit: bool, export_s: float) -> OnnxModel:
    record = json.loads((target / "export.json").read_text())
    comps = record["components"]
    return OnnxModel(
        folder=target,
        key=key,
        files={name: target / comps[name]["file"] for name in COMPONENTS},
        outputs={name: tuple(comps[name]["outputs"]) for name in COMPONENTS},
        dtypes={name: comps[name]["dtype"] for name in COMPONENTS},
        cache_hit=cache_hit,
        export_s=export_s,
    )


# -- the export itself ----------------------------------------------------------------------------


def _export_all(
    model: ModelSpec, options: ExportOptions, folder: SDXLFolder, seq_lens: dict[str, int], out: Path, who: str
) -> dict[str, Any]:
    record: dict[str, Any] = {"options": asdict(options), "model": model.path, "components": {}}
    for name in COMPONENTS:
        start = time.perf_counter()
        (out / name).mkdir()
        entry = export_component(name, model, options, folder, seq_lens, out / name / "model.onnx", who)
        entry["file"] = f"{name}/model.onnx"
        entry["export_s"] = round(time.perf_counter() - start, 3)
        logger.info("onnx export: %s (%s) in %.2f s", name, entry["dtype"], entry["export_s"])
        record["components"][name] = entry
    return record


def export_component(
    name: str,
    model: ModelSpec,
    options: ExportOptions,
    folder: SDXLFolder,
    seq_lens: dict[str, int],
    path: Path,
    who: str,
) -> dict[str, Any]:
    """Export one component to `path` (no cache); what export.json records about it."""
    dtype = component_dtypes(folder, options.dtype)[name]
    device = torch.device(options.device)
    module, args, outputs = _wrapped(
        name, folder, seq_lens, latent_size(model, folder), device, getattr(torch, dtype), who
    )
    _export(module, args, path, INPUTS[name], outputs, options, who, name)
    del module, args
    gc.collect()
    return {"inputs": list(INPUTS[name]), "outputs": list(outputs), "dtype": dtype}


def _wrapped(
    name: str,
    folder: SDXLFolder,
    seq_lens: dict[str, int],
    latent_hw: tuple[int, int],
    device: Any,
    dtype: Any,
    who: str,
) -> tuple[Any, tuple[Any, ...], tuple[str, ...]]:
    """The component as a module with positional tensor inputs, example inputs, output names."""
    module = _load_component(folder, SOURCE_FOLDER[name], who).to(device).eval()
    if module.dtype != dtype:  # only then: diffusers warns on every dtype cast
        module = module.to(dtype)
    shapes = input_shapes(name, _EXAMPLE_BATCH, folder, seq_lens, latent_hw)
    args = tuple(
        torch.zeros(shapes[n], dtype=getattr(torch, input_dtype(n, dtype_name(dtype))), device=device)
        for n in INPUTS[name]
    )
    if name in ("text_encoder", "text_encoder_2"):
        with torch.inference_mode():
            pooled = module(args[0], output_hidden_states=True)[0].ndim == 2
        outputs = ("hidden_states", "text_embeds") if pooled else ("hidden_states",)
        return _TextEncoder(module, pooled).eval(), args, outputs
    if name == "unet":
        return _UNet(module).eval(), args, UNET_OUTPUTS
    return _VaeDecoder(module).eval(), args, VAE_OUTPUTS


def input_shapes(
    component: str, rows: int, folder: SDXLFolder, seq_lens: dict[str, int], latent_hw: tuple[int, int]
) -> dict[str, tuple[int, ...]]:
    """The shape of each input of `component` for a batch of `rows` (what the engines' profiles use)."""
    if component in ("text_encoder", "text_encoder_2"):
        return {"input_ids": (rows, seq_lens[component])}
    if component == "unet":
        return {
            "sample": (rows, int(folder.unet["in_channels"]), *latent_hw),
            "timestep": (rows,),
            "encoder_hidden_states": (rows, seq_lens["text_encoder"], int(folder.unet["cross_attention_dim"])),
            "text_embeds": (rows, int(folder.text_encoder_2["projection_dim"])),
            "time_ids": (rows, 6),
        }
    if component == "vae_decoder":
        return {"latent": (rows, int(folder.vae["latent_channels"]), *latent_hw)}
    raise ValueError(f"unknown component {component!r}; one of: {', '.join(COMPONENTS)}")


def input_dtype(name: str, component_dtype: str) -> str:
    """Token ids are int64 and the timestep float32 in every export; the rest take the component's dtype."""
    return {"input_ids": "int64", "timestep": "float32"}.get(name, component_dtype)


def component_rows(component: str, batch: int, guidance: bool) -> int:
    """Rows a component sees for a batch of `batch` prompts: the text encoders and the UNet run the
    negative and the positive prompts together under classifier-free guidance; the VAE decodes once."""
    return 2 * batch if guidance and component != "vae_decoder" else batch


def latent_size(model: ModelSpec, folder: SDXLFolder) -> tuple[int, int]:
    f = folder.vae_scale_factor
    return (model.height // f, model.width // f)


def dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def _load_component(folder: SDXLFolder, sub: str, who: str) -> Any:
    import diffusers
    import transformers
    from transformers.utils import logging as transformers_logging

    library, class_name = folder.class_of(sub)
    lib = {"diffusers": diffusers, "transformers": transformers}.get(library)
    cls = getattr(lib, class_name, None) if lib is not None else None
    if cls is None:
        raise BackendError(f"{who}: {folder.path}/{sub} needs {library}.{class_name}, which is not available")
    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # its "Loading weights" bar, once per component
    try:
        return cls.from_pretrained(str(folder.path / sub), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise BackendError(f"{who}: could not load {class_name} from {folder.path / sub}: {exc}") from exc
    finally:
        if bars:
            transformers_logging.enable_progress_bar()


def _export(
    module: Any,
    args: tuple[Any, ...],
    path: Path,
    inputs: tuple[str, ...],
    outputs: tuple[str, ...],
    options: ExportOptions,
    who: str,
    name: str,
) -> None:
    captured = io.StringIO()
    try:
        with (
            torch.inference_mode(False),
            torch.no_grad(),
            warnings.catch_warnings(record=True) as caught,
            contextlib.redirect_stdout(captured),
            _quiet_loggers("onnxscript", "onnx_ir", "torch.onnx"),
        ):
            warnings.simplefilter("always")
            if options.exporter == "dynamo":
                batch = torch.export.Dim("batch", min=1, max=1024)
                torch.onnx.export(
                    module,
                    args,
                    str(path),
                    input_names=list(inputs),
                    output_names=list(outputs),
                    opset_version=options.opset,
                    dynamo=True,
                    dynamic_shapes=tuple({0: batch} for _ in args),
                    external_data=True,
                    verbose=False,
                )
            else:
                torch.onnx.export(
                    module,
                    args,
                    str(path),
                    input_names=list(inputs),
                    output_names=list(outputs),
                    opset_version=options.opset,
                    dynamo=False,
                    dynamic_axes={n: {0: "batch"} for n in (*inputs, *outputs)},
                    do_constant_folding=True,
                )
    except Exception as exc:  # the exporters raise many types; name the component and the exporter
        raise BackendError(
            f"{who}: the {options.exporter} ONNX export of {name} failed: {type(exc).__name__}: {exc}"
        ) from exc
    for w in caught:
        logger.debug("onnx export %s: %s", name, w.message)
    if captured.getvalue().strip():
        logger.debug("onnx export %s printed: %s", name, captured.getvalue().strip())


class _TextEncoder(torch.nn.Module):
    def __init__(self, encoder: Any, pooled: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooled = pooled

    def forward(self, input_ids: Any) -> Any:
        out = self.encoder(input_ids, output_hidden_states=True)
        if self.pooled:
            return out.hidden_states[-2], out[0]
        return out.hidden_states[-2]


class _UNet(torch.nn.Module):
    def __init__(self, unet: Any) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, sample: Any, timestep: Any, encoder_hidden_states: Any, text_embeds: Any, time_ids: Any) -> Any:
        return self.unet(
            sample,
            timestep,
            encoder_hidden_states=encoder_hidden_states,
            added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids},
            return_dict=False,
        )[0]


class _VaeDecoder(torch.nn.Module):
    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latent: Any) -> Any:
        return self.vae.decode(latent, return_dict=False)[0]


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """The exporters' libraries log every graph pass at INFO; keep them to warnings while exporting."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _read_json(path: Path, who: str) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise BackendError(f"{who}: could not read {path}: {exc}") from exc
