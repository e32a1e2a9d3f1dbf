"""Full-size pipelines built from published component configs, with seeded random weights.

`configs/components/<model>/` holds the model's `model_index.json` and one `<component>.json` per
component: copies of the published `config.json` / `scheduler_config.json` files, each with a
`_source` key saying where it was copied from. `build_pipeline` reads them and builds every model
directly on the target device in the target dtype (nothing is initialised on the CPU first, nothing
is written to disk), the tokenizers offline in code, and the scheduler from its config.

Random weights cost the same FLOPs and memory traffic as trained ones, so such a pipeline is good for
performance runs where no weights are available, and for nothing else: its images are noise. The
harness flags these runs and accuracy mode refuses them.

The same builder makes the tiny test pipelines of `backends/models/tiny_families.py` from small configs,
so the code path that builds a full-size FLUX.2 on a GPU is the one the CPU tests exercise.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from backends.base import BackendError

logger = logging.getLogger(__name__)

# Components a text-to-image run never needs; the harness turns the safety checker off, as the
# MLPerf reference does.
SKIPPED_COMPONENTS = ("safety_checker", "feature_extractor", "image_encoder")
# Pipeline __init__ arguments set whatever model_index.json says: the watermarker changes the
# images and needs an extra package; the safety checker is off.
FORCED_PIPELINE_ARGS = {"add_watermarker": False, "requires_safety_checker": False}


# -- reading the published configs ----------------------------------------------------------------


def read_component_configs(folder: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """`model_index.json` and the config of each model/scheduler component it lists, `_source` removed.

    Tokenizers have no config file here: they are built in code (see `offline_tokenizer`).
    """
    root = Path(folder)
    index_path = root / "model_index.json"
    if not index_path.is_file():
        raise BackendError(
            f"random weights: {index_path} does not exist; a component folder needs model_index.json "
            "and one <component>.json per model and scheduler (see configs/components/)"
        )
    model_index = _strip(json.loads(index_path.read_text(encoding="utf-8")))
    configs: dict[str, dict[str, Any]] = {}
    for name, (library, class_name) in component_entries(model_index).items():
        if _is_tokenizer(class_name):
            continue
        path = root / f"{name}.json"
        if not path.is_file():
            raise BackendError(
                f"random weights: {root} lists component {name!r} ({library}.{class_name}) in "
                f"model_index.json but has no {name}.json"
            )
        configs[name] = _strip(json.loads(path.read_text(encoding="utf-8")))
    return model_index, configs


def component_entries(model_index: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """name -> (library, class name) for every component the pipeline is built from."""
    out: dict[str, tuple[str, str]] = {}
    for name, value in model_index.items():
        if name.startswith("_") or not isinstance(value, list) or len(value) != 2:
            continue
        library, class_name = value
        if library is None or class_name is None or name in SKIPPED_COMPONENTS:
            continue
        out[name] = (str(library), str(class_name))
    return out


def _strip(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != "_source"}


def _is_tokenizer(class_name: str) -> bool:
    return "Tokenizer" in class_name


# -- building ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _creating_on(device: Any, dtype: Any) -> Iterator[None]:
    """Parameters created inside are allocated on `device` in `dtype` (torch's default dtype and
    device, restored afterwards)."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def _seeded(seed: int, device: Any) -> contextlib.AbstractContextManager[Any]:
    """Fork the RNG of the CPU and of `device` and seed both: the caller's RNG state is untouched."""
    import torch

    device = torch.device(device)
    cuda = [device.index or 0] if device.type == "cuda" else []
    ctx = torch.random.fork_rng(devices=cuda)

    @contextlib.contextmanager
    def seeded() -> Iterator[None]:
        with ctx:
            torch.manual_seed(seed)
            yield

    return seeded()


def build_component(name: str, library: str, class_name: str, config: dict[str, Any], device: Any, dtype: Any) -> Any:
    """One model or scheduler from its config: diffusers models via `from_config`, transformers
    models via their config class. Random weights; nothing is downloaded."""
    import diffusers
    import transformers

    if library == "diffusers":
        cls = getattr(diffusers, class_name, None)
        if cls is None:
            raise BackendError(
                f"random weights: component {name!r} is diffusers.{class_name}, which diffusers "
                f"{diffusers.__version__} does not have"
            )
        if issubclass(cls, diffusers.SchedulerMixin):
            return cls.from_config(config)
        with _creating_on(device, dtype):
            model = cls.from_config(config)
        return _in_dtype(model, dtype).eval()
    if library == "transformers":
        cls = getattr(transformers, class_name, None)
        if cls is None or not hasattr(cls, "config_class"):
            raise BackendError(
                f"random weights: component {name!r} is transformers.{class_name}, which is not a "
                f"model class in transformers {transformers.__version__}"
            )
        model_config = cls.config_class.from_dict(config)
        with _creating_on(device, dtype):
            model = cls(model_config)
        return _in_dtype(model, dtype).eval()
    raise BackendError(
        f"random weights: component {name!r} comes from library {library!r}; supported: diffusers, transformers"
    )


def _in_dtype(model: Any, dtype: Any) -> Any:
    """Cast what the constructor made in another dtype (a buffer computed in float32, say)."""
    if any(t.is_floating_point() and t.dtype != dtype for t in (*model.parameters(), *model.buffers())):
        model = model.to(dtype=dtype)
    return model


def build_pipeline(
    pipeline: str,
    model_index: Mapping[str, Any],
    configs: Mapping[str, dict[str, Any]],
    *,
    device: Any = "cpu",
    dtype: Any = None,
    seed: int = 0,
    tokenizer_max_length: Mapping[str, int] | None = None,
) -> Any:
    """Build `diffusers.<pipeline>` from a model index and component configs, random weights.

    Every model is created on `device` in `dtype` (float32 if None), each from `seed` (so changing one
    component does not change the weights of the others). `device="meta"` builds the architecture
    without allocating memory: useful to count parameters of a full-size model anywhere.
    """
    import diffusers
    import torch

    dtype = torch.float32 if dtype is None else dtype
    pipeline_cls = getattr(diffusers, pipeline, None)
    if not (isinstance(pipeline_cls, type) and issubclass(pipeline_cls, diffusers.DiffusionPipeline)):
        raise BackendError(
            f"random weights: {pipeline!r} is not a diffusers pipeline class in diffusers {diffusers.__version__}"
        )
    declared = model_index.get("_class_name")
    if declared and declared != pipeline:
        raise BackendError(
            f"random weights: the model config names pipeline {pipeline!r} but the component "
            f"configs are for {declared!r} (model_index.json _class_name)"
        )

    start_ns = time.perf_counter_ns()
    entries = component_entries(model_index)
    components: dict[str, Any] = {}
    for name, (library, class_name) in entries.items():
        if _is_tokenizer(class_name):
            continue
        if name not in configs:
            raise BackendError(f"random weights: no config for component {name!r} ({library}.{class_name})")
        with _seeded(seed, device):
            components[name] = build_component(name, library, class_name, configs[name], device, dtype)
    for name, (_, class_name) in entries.items():
        if _is_tokenizer(class_name):
            encoder = components.get(name.replace("tokenizer", "text_encoder"))
            max_length = (tokenizer_max_length or {}).get(name)
            components[name] = offline_tokenizer(class_name, model_max_length=max_length)
            _check_vocab(name, components[name], encoder)

    params = inspect.signature(pipeline_cls.__init__).parameters
    kwargs: dict[str, Any] = {}
    for key, value in model_index.items():
        if key.startswith("_") or key in entries or key not in params:
            continue
        if not isinstance(value, list):  # pipeline options such as force_zeros_for_empty_prompt, is_distilled
            kwargs[key] = value
    for key, value in FORCED_PIPELINE_ARGS.items():
        if key in params:
            kwargs[key] = value
    for key in SKIPPED_COMPONENTS:
        if key in params and key not in components:
            kwargs[key] = None
    try:
        pipe = pipeline_cls(**components, **kwargs)
    except TypeError as exc:
        raise BackendError(
            f"random weights: cannot build {pipeline} from components {sorted(components)}: {exc}"
        ) from exc
    pipe.set_progress_bar_config(disable=True)  # type: ignore[attr-defined]  # DiffusionPipeline's, not in its hints
    logger.info(
        "random weights: built %s (%s) on %s in %s in %.2f s, %.1f M parameters",
        pipeline,
        ", ".join(f"{k}={type(v).__name__}" for k, v in components.items()),
        device,
        str(dtype).replace("torch.", ""),
        (time.perf_counter_ns() - start_ns) / 1e9,
        count_parameters(pipe) / 1e6,
    )
    return pipe


def build_from_folder(pipeline: str, folder: str | Path, **kwargs: Any) -> Any:
    """`build_pipeline` from `configs/components/<model>/`-style folder."""
    model_index, configs = read_component_configs(folder)
    return build_pipeline(pipeline, model_index, configs, **kwargs)


def count_parameters(pipe: Any) -> int:
    import torch

    total = 0
    for value in pipe.components.values():
        if isinstance(value, torch.nn.Module):
            total += sum(p.numel() for p in value.parameters())
    return total


def _check_vocab(name: str, tokenizer: Any, encoder: Any) -> None:
    """Token ids must index the encoder's embedding table."""
    if encoder is None:
        return
    vocab_size = getattr(encoder.config, "vocab_size", None)
    if vocab_size is not None and len(tokenizer) > vocab_size:
        raise BackendError(
            f"random weights: {name} has {len(tokenizer)} tokens but its text encoder's vocab_size is {vocab_size}"
        )


# -- offline tokenizers ------------------------------------------------------------------------------
#
# Real tokenizers are vocabulary files from the model hub. These are built in code, small, and of the
# class the pipeline expects: they produce valid ids of the right length (padded as the pipeline asks),
# which is all a random-weight model or a tiny test model needs.

CLIP_MAX_LENGTH = 77
T5_MAX_LENGTH = 512
QWEN_MAX_LENGTH = 40960

QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# Qwen3's chat template reduced to what the pipelines use: one user turn and the generation prompt
# with thinking disabled (an empty think block), as Flux2KleinPipeline asks for.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)


def offline_tokenizer(class_name: str, model_max_length: int | None = None) -> Any:
    """A tokenizer of the class `class_name` (as model_index.json names it), built in code."""
    if class_name.startswith("CLIPTokenizer"):
        return offline_clip_tokenizer(model_max_length or CLIP_MAX_LENGTH)
    if class_name.startswith("T5Tokenizer"):
        return offline_t5_tokenizer(model_max_length or T5_MAX_LENGTH)
    if class_name.startswith("Qwen2Tokenizer"):
        return offline_qwen2_tokenizer(model_max_length or QWEN_MAX_LENGTH)
    raise BackendError(
        f"random weights: no offline tokenizer for {class_name!r}; supported: CLIPTokenizer, "
        "T5TokenizerFast, Qwen2TokenizerFast"
    )


def offline_clip_tokenizer(model_max_length: int = CLIP_MAX_LENGTH) -> Any:
    """CLIPTokenizer over the tiny model's byte-level vocabulary (common words merged)."""
    from transformers import CLIPTokenizer

    from backends.models.tiny_model import BOS_TOKEN, EOS_TOKEN, write_tokenizer_files

    with tempfile.TemporaryDirectory(prefix="offline-clip-") as tmp:
        write_tokenizer_files(tmp)
        return CLIPTokenizer.from_pretrained(
            tmp,
            model_max_length=model_max_length,
            bos_token=BOS_TOKEN,
            eos_token=EOS_TOKEN,
            unk_token=EOS_TOKEN,
            pad_token=EOS_TOKEN,
        )


def _word_list() -> list[str]:
    from backends.models.tiny_model import _WHOLE_WORDS

    return list(dict.fromkeys(_WHOLE_WORDS))


def offline_t5_tokenizer(model_max_length: int = T5_MAX_LENGTH) -> Any:
    """T5TokenizerFast over a small unigram vocabulary: T5's special ids (<pad> 0, </s> 1, <unk> 2),
    common words whole, every printable ASCII character as a fallback piece."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import T5TokenizerFast  # type: ignore[attr-defined]  # a lazy export mypy cannot see

    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [("\u2581" + word, -5.0) for word in _word_list()]
    pieces += [(chr(c), -10.0) for c in range(33, 127)]
    pieces += [("\u2581" + chr(c), -9.0) for c in range(33, 127)]
    backend = Tokenizer(Unigram(pieces, unk_id=2, byte_fallback=False))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")]
    )
    backend.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return T5TokenizerFast(
        tokenizer_object=backend,
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_ids=0,
        model_max_length=model_max_length,
    )


def offline_qwen2_tokenizer(model_max_length: int = QWEN_MAX_LENGTH) -> Any:
    """Qwen2TokenizerFast over a byte-level BPE vocabulary (the 256 byte characters, common words
    merged) with Qwen's chat special tokens and a chat template."""
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE
    from transformers import Qwen2TokenizerFast  # type: ignore[attr-defined]  # a lazy export mypy cannot see

    from backends.models.tiny_model import _bytes_to_unicode

    byte_chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(byte_chars)}
    merges: list[tuple[str, str]] = []
    space = _bytes_to_unicode()[ord(" ")]
    for word in _word_list():
        prefix = space
        for ch in word:
            token = prefix + ch
            if token not in vocab:
                vocab[token] = len(vocab)
                merges.append((prefix, ch))
            prefix = token
    backend = Tokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True) for t in QWEN_SPECIALS])
    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=model_max_length,
    )
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer
