"""StableDiffusionXLPipeline.__call__ as a plain loop over exported components.

The onnxruntime and tensorrt backends run the ONNX files of backends/onnx_family/export.py through this
loop; only how a component runs differs (`RunFn`: a component name and its named input tensors in,
its named output tensors out). It follows diffusers' SDXL pipeline step for step, so that with the
same latents the images match diffusers eager within the parity tolerance:

1. encode: both CLIP tokenizers (or the ids pre-tokenized when the QSL loaded the samples), both
   text encoders on the negative and the positive prompts together, penultimate hidden states
   concatenated, the second encoder's pooled projection;
2. the scheduler from the pipeline's own scheduler config (or `ModelSpec.scheduler` over it),
   its timesteps, and the fixed latents times `init_noise_sigma`;
3. SDXL's added time ids (original size, crop (0, 0), target size);
4. denoise: the UNet on the doubled batch, classifier-free guidance, `scheduler.step`;
5. decode: latents / scaling_factor (or SDXL's latents mean and std where the VAE has them), the
   VAE decoder, then (x * 0.5 + 0.5).clamp(0, 1) as diffusers' image processor does.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

import diffusers
import numpy as np
import torch
import transformers

from backends import pretokenize
from backends.base import BackendError, ModelSpec, PromptBatch
from backends.onnx_family.export import SDXLFolder
from backends.stage_timer import StageTimer

logger = logging.getLogger(__name__)

# component name, named inputs -> named outputs (same device as the inputs)
RunFn = Callable[[str, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


class SDXLLoop:
    """Tokenizers, scheduler and configs of one SDXL folder; `__call__` makes images."""

    def __init__(self, model: ModelSpec, folder: SDXLFolder, device: torch.device, who: str) -> None:
        self.model = model
        self.folder = folder
        self.device = device
        self.who = who
        # `tokenizer` / `tokenizer_2` by these names: backends/pretokenize.py tokenizes through them.
        self.tokenizer = self._load_tokenizer("tokenizer")
        self.tokenizer_2 = self._load_tokenizer("tokenizer_2")
        self.scheduler = self._load_scheduler()
        self.guidance = model.guidance_scale > 1  # SDXL's do_classifier_free_guidance (no time_cond_proj_dim)
        self._check_added_conditioning()

    @property
    def seq_lens(self) -> dict[str, int]:
        """Token count of each text encoder's input: the tokenizer's model_max_length."""
        return {"text_encoder": self.tokenizer.model_max_length, "text_encoder_2": self.tokenizer_2.model_max_length}

    def tokenize(self, batch: PromptBatch) -> list[dict[str, Any]]:
        """The batch's token ids, pre-tokenized ones if the QSL made them."""
        if batch.encoded:
            return list(batch.encoded)
        return pretokenize.tokenize(self, batch.prompts, batch.negative_prompts)

    def __call__(
        self, batch: PromptBatch, run: RunFn, dtypes: dict[str, torch.dtype], timer: StageTimer | None = None
    ) -> torch.Tensor:
        """Images (N, 3, H, W) in [0, 1], float, on `self.device`. `dtypes` is each component's
        input dtype (the loop keeps latents in the UNet's, as the pipeline keeps them in the model's).
        `timer`, started by the backend at "text_encode", gets the loop's stage boundaries and steps."""
        timer = timer or StageTimer(False)
        n = len(batch)
        unet_dtype = dtypes["unet"]
        device = self.device
        scheduler = self.scheduler

        # 1. Encode prompts: [negative; positive] in one batch per encoder.
        entries = self.tokenize(batch)
        embeds, pooled = [], None
        for k, name in enumerate(("text_encoder", "text_encoder_2")):
            ids = np.stack([e["ids"][k] for e in entries])
            if self.guidance:
                ids = np.concatenate([np.stack([e["negative_ids"][k] for e in entries]), ids])
            out = run(name, {"input_ids": torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)).to(device)})
            embeds.append(out["hidden_states"])
            if pooled is None and "text_embeds" in out:
                pooled = out["text_embeds"]
        if pooled is None:
            raise BackendError(f"{self.who}: neither text encoder gave a pooled projection (text_embeds)")
        prompt_embeds = torch.cat(embeds, dim=-1).to(unet_dtype)
        pooled = pooled.to(unet_dtype)
        timer.mark("denoise")

        # 2. Timesteps and the initial latents (a copy: the QSL's array must not change).
        scheduler.set_timesteps(self.model.steps, device=device)
        timesteps = scheduler.timesteps
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(0)
        self._check_latents(batch.latents)
        host = np.array(batch.latents, dtype=np.float32, order="C", copy=True)
        latents = torch.from_numpy(host).to(device, unet_dtype) * scheduler.init_noise_sigma
        step_kwargs = self._step_kwargs()

        # 3. Added conditioning: (original size, crop top-left, target size), the same for both halves.
        h, w = self.model.height, self.model.width
        rows = 2 * n if self.guidance else n
        time_ids = torch.tensor([[h, w, 0, 0, h, w]], dtype=unet_dtype, device=device).repeat(rows, 1)

        # 4. Denoise.
        for t in timesteps:
            model_input = torch.cat([latents] * 2) if self.guidance else latents
            model_input = scheduler.scale_model_input(model_input, t)
            timestep = t.to(device=device, dtype=torch.float32).expand(model_input.shape[0]).contiguous()
            noise_pred = run(
                "unet",
                {
                    "sample": model_input.contiguous(),
                    "timestep": timestep,
                    "encoder_hidden_states": prompt_embeds,
                    "text_embeds": pooled,
                    "time_ids": time_ids,
                },
            )["noise_pred"]
            if self.guidance:
                noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
                noise_pred = noise_pred_uncond + self.model.guidance_scale * (noise_pred_text - noise_pred_uncond)
            latents = scheduler.step(noise_pred, t, latents, **step_kwargs, return_dict=False)[0]
            timer.step()

        # 5. Decode.
        timer.mark("vae_decode")
        vae = self.folder.vae
        vae_dtype = dtypes["vae_decoder"]
        latents = latents.to(vae_dtype)
        mean, std = vae.get("latents_mean"), vae.get("latents_std")
        if mean is not None and std is not None:
            c = latents.shape[1]
            mean_t = torch.tensor(mean, device=device, dtype=vae_dtype).view(1, c, 1, 1)
            std_t = torch.tensor(std, device=device, dtype=vae_dtype).view(1, c, 1, 1)
            latents = latents * std_t / vae["scaling_factor"] + mean_t
        else:
            latents = latents / vae["scaling_factor"]
        image = run("vae_decoder", {"latent": latents.contiguous()})["image"]
        return (image * 0.5 + 0.5).clamp(0, 1)

    # -- helpers -----------------------------------------------------------------------------

    def _load_tokenizer(self, sub: str) -> Any:
        library, class_name = self.folder.class_of(sub)
        cls = getattr(transformers, class_name, None) if library == "transformers" else None
        if cls is None:
            raise BackendError(
                f"{self.who}: tokenizer class {library}.{class_name} in {self.folder.path} is not available"
            )
        try:
            return cls.from_pretrained(str(self.folder.path / sub), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise BackendError(f"{self.who}: could not load {class_name} from {self.folder.path / sub}: {exc}") from exc

    def _load_scheduler(self) -> Any:
        """As diffusers-eager: the folder's scheduler, replaced by `ModelSpec.scheduler` from its config."""
        _, class_name = self.folder.class_of("scheduler")
        scheduler = _scheduler_class(class_name, self.who).from_pretrained(str(self.folder.path), subfolder="scheduler")
        if self.model.scheduler:
            scheduler = _scheduler_class(self.model.scheduler, self.who).from_config(scheduler.config)
        return scheduler

    def _step_kwargs(self) -> dict[str, Any]:
        """What the pipeline's prepare_extra_step_kwargs passes: eta 0 and diffusers-eager's generator."""
        params = inspect.signature(self.scheduler.step).parameters
        kwargs: dict[str, Any] = {}
        if "eta" in params:
            kwargs["eta"] = 0.0
        if "generator" in params:
            kwargs["generator"] = torch.Generator(self.device).manual_seed(0)
        return kwargs

    def _check_added_conditioning(self) -> None:
        unet = self.folder.unet
        passed = int(unet["addition_time_embed_dim"]) * 6 + int(self.folder.text_encoder_2["projection_dim"])
        expected = unet.get("projection_class_embeddings_input_dim")
        if expected is not None and int(expected) != passed:
            raise BackendError(
                f"{self.who}: the UNet expects an added embedding of {expected}, but 6 time ids and the "
                f"text projection make {passed}; the model's configs disagree"
            )

    def _check_latents(self, latents: np.ndarray) -> None:
        f = self.folder.vae_scale_factor
        expected = (int(self.folder.unet["in_channels"]), self.model.height // f, self.model.width // f)
        if tuple(latents.shape[1:]) != expected:
            raise BackendError(
                f"{self.who}: latents of shape {tuple(latents.shape)} do not fit the model: expected "
                f"(N, {', '.join(map(str, expected))}) for {self.model.height} x {self.model.width} images"
            )


def _scheduler_class(name: str, who: str) -> Any:
    cls = getattr(diffusers, name, None) if name.isidentifier() else None
    if not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
        raise BackendError(
            f"{who}: {name!r} is not a diffusers scheduler class in diffusers {diffusers.__version__}; "
            "use a class name such as 'EulerDiscreteScheduler'"
        )
    return cls
