"""CLIP score as MLPerf computes it: open_clip ViT-B-32 from an OpenAI-format file (QuickGELU, as
open_clip 2.x loads `pretrained="openai"`), open_clip's preprocessing and tokenizer, 100 x cosine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from accuracy.clip_score import ClipScorer, clip_preprocess, load_clip_model
from accuracy.standins import StandinFiles, ensure_standin_files, standin_clip_state_dict, synthetic_images

CAPTIONS = [
    "A city at night with people walking around.",
    "The large clock was prominently displaying the time.",
    'A sign that reads "car parking" next to a road.',
    "A woman is picking bananas from a basket.",
]


@pytest.fixture(scope="module")
def standins(harness_cache: Path) -> StandinFiles:
    return ensure_standin_files(harness_cache / "accuracy-standins")


@pytest.fixture(scope="module")
def scorer(standins: StandinFiles) -> ClipScorer:
    return ClipScorer.from_file(standins.clip_weights)


def _mlperf_clip_score(scorer: ClipScorer, caption: str, image: np.ndarray) -> float:
    """mlcommons/inference text_to_image/tools/clip/clip_encoder.py get_clip_score, one image at a time."""
    import open_clip
    from PIL import Image

    model = scorer.model
    with torch.no_grad():
        pixels = scorer.preprocess(Image.fromarray(image)).unsqueeze(0)
        image_features = model.encode_image(pixels).float()
        image_features /= image_features.norm(dim=-1, keepdim=True)
        text = open_clip.tokenize([caption])
        text_features = model.encode_text(text).float()
        text_features /= text_features.norm(dim=-1, keepdim=True)
        similarity = image_features @ text_features.T
    return 100 * similarity.item()


def test_the_stand_in_file_has_the_openai_checkpoints_keys(standins: StandinFiles) -> None:
    import open_clip
    from open_clip.model import CLIP

    state = torch.load(standins.clip_weights, weights_only=True)
    reference = CLIP(**open_clip.get_model_config("ViT-B-32"), quick_gelu=True).state_dict()
    assert set(state) == set(reference) | {"input_resolution", "context_length", "vocab_size"}
    for key, value in reference.items():
        assert state[key].shape == value.shape, key
    assert state["visual.conv1.weight"].dtype == torch.float16  # stored like OpenAI's half-precision file
    assert int(state["context_length"]) == 77 and int(state["vocab_size"]) == 49408


def test_the_model_loads_as_open_clip_loads_the_openai_tag(scorer: ClipScorer) -> None:
    from open_clip.transformer import QuickGELU

    model = scorer.model
    assert any(isinstance(m, QuickGELU) for m in model.modules()), "OpenAI weights need QuickGELU"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert scorer.image_size == 224
    assert not model.training


def test_a_file_of_another_model_is_a_clear_error(tmp_path: Path) -> None:
    from accuracy.errors import AccuracyError

    state = standin_clip_state_dict(seed=1)
    del state["visual.proj"]  # no longer a ViT state dict
    path = tmp_path / "odd.pt"
    torch.save(state, path)
    with pytest.raises(AccuracyError, match="not an OpenAI-format ViT-B-32 checkpoint"):
        load_clip_model(path)


def test_preprocessing_is_the_openai_eval_transform() -> None:
    """Resize the shorter side to 224 (bicubic, on the PIL image), centre-crop, OpenAI mean / std."""
    import torchvision.transforms as T
    from PIL import Image

    explicit = T.Compose(
        [
            T.Resize(224, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
        ]
    )
    ours = clip_preprocess(224)
    for h, w in ((64, 64), (48, 80), (300, 200)):
        image = Image.fromarray(synthetic_images(1, max(h, w), seed=h)[0][:h, :w])
        assert torch.equal(ours(image), explicit(image))


def test_batched_scores_equal_the_mlperf_scorer_one_image_at_a_time(scorer: ClipScorer) -> None:
    images = synthetic_images(3, 64, seed=7)
    batched = scorer.scores(images, CAPTIONS[:3])
    reference = [_mlperf_clip_score(scorer, c, img) for c, img in zip(CAPTIONS[:3], images, strict=True)]
    np.testing.assert_allclose(batched, reference, atol=1e-4)
    assert float(np.mean(batched)) == pytest.approx(float(np.mean(reference)), abs=1e-4)
    assert len(set(np.round(batched, 6))) == 3  # the stand-in tells the pairs apart


def test_scores_agree_with_numpy_on_the_same_features(scorer: ClipScorer) -> None:
    import open_clip
    from PIL import Image

    images = synthetic_images(2, 32, seed=8)
    with torch.no_grad():
        pixels = torch.stack([scorer.preprocess(Image.fromarray(i)) for i in images])
        img = scorer.model.encode_image(pixels).numpy().astype(np.float64)
        txt = scorer.model.encode_text(open_clip.tokenize(CAPTIONS[:2])).numpy().astype(np.float64)
    cosine = np.sum(img * txt, axis=1) / (np.linalg.norm(img, axis=1) * np.linalg.norm(txt, axis=1))
    np.testing.assert_allclose(scorer.scores(images, CAPTIONS[:2]), 100 * cosine, atol=1e-4)


def test_swapping_one_image_changes_the_score(scorer: ClipScorer) -> None:
    images = synthetic_images(2, 32, seed=9)
    before = scorer.scores(images, CAPTIONS[:2])
    swapped = images.copy()
    swapped[1] = synthetic_images(1, 32, seed=1234)[0]
    after = scorer.scores(swapped, CAPTIONS[:2])
    assert after[0] == pytest.approx(before[0], abs=1e-5)
    assert abs(after[1] - before[1]) > 1e-3
    assert np.mean(after) != np.mean(before)


def test_the_openai_checkpoints_float16_weights_load_unchanged(scorer: ClipScorer) -> None:
    precision = scorer.precision
    assert set(precision["file_dtypes"]) == {"float16", "float32"}  # the OpenAI layout: partly float16
    assert precision["rounded_to_float16"] == 0
    assert "float16 precision" in precision["loaded"]


@pytest.mark.slow  # 15 s: a full-size CLIP state dict in float32, saved and loaded
def test_a_float32_state_dict_is_rounded_to_float16_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """open_clip's OpenAI loader (as MLPerf's scorer calls it) rounds Linear/Conv/attention weights to
    float16 whatever the file holds: a float32 file must not pass for float32 weights."""
    generator = torch.Generator().manual_seed(3)
    fp16_layout = 0
    state = {}
    for key, value in standin_clip_state_dict(seed=3).items():
        if value.is_floating_point():
            fp16_layout += value.numel() if value.dtype == torch.float16 else 0
            # values float16 cannot hold, as in a checkpoint trained or saved in float32
            value = value.float() + 1e-3 * torch.randn(value.shape, generator=generator)
        state[key] = value
    path = tmp_path / "ViT-B-32-fp32.pt"
    torch.save(state, path)
    with caplog.at_level("WARNING", logger="accuracy.clip_score"):
        precision = ClipScorer.from_file(path).precision
    assert list(precision["file_dtypes"]) == ["float32"]
    # nearly every value of the weights the loader holds in float16 changed; none of the others
    assert 0.9 * fp16_layout < precision["rounded_to_float16"] <= fp16_layout
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("rounded" in w and "to float16" in w and str(path) in w for w in warnings), warnings


def test_the_docs_name_the_open_clip_version_mlperf_pins() -> None:
    import re

    from accuracy.clip_score import MLPERF_OPEN_CLIP_PIN

    root = Path(__file__).resolve().parent.parent
    docs = "\n".join(p.read_text() for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))])
    pins = re.findall(r"mlcommons/inference pins open-clip-torch (\d+\.\d+\.\d+)", docs)
    assert pins == [MLPERF_OPEN_CLIP_PIN], pins  # said once, in docs/accuracy.md
    assert "2.7.0 (MLPerf's" not in docs  # 2.7.0 is what its scorer was written against, not the pin
