"""The CUDA allocator default: set when the user set nothing, never over what the user set."""

from __future__ import annotations

import pytest

from harness.run.cuda_allocator import apply_default_allocator_settings


def test_the_default_is_expandable_segments_when_nothing_is_set() -> None:
    env = {"HOME": "/root"}
    assert apply_default_allocator_settings(env) is True
    assert env == {"HOME": "/root", "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}


@pytest.mark.parametrize(
    "user",
    [
        {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:False"},
        {"PYTORCH_CUDA_ALLOC_CONF": ""},  # empty: PyTorch's own default, chosen on purpose
        {"PYTORCH_ALLOC_CONF": "max_split_size_mb:512"},
    ],
)
def test_what_the_user_set_is_kept(user: dict[str, str]) -> None:
    env = dict(user)
    assert apply_default_allocator_settings(env) is False
    assert env == user
