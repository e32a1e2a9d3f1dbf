"""compare's labels: one backend under several configurations (`LABEL=BACKEND` in --backends)."""

from __future__ import annotations

import pytest

from harness.commands.compare import _parse


def test_labels_name_configurations_of_one_backend() -> None:
    parsed = _parse(
        [
            "--backends",
            "diffusers-eager,compiled=torch-compile,int8=torch-compile",
            "--backend-set",
            "int8:backend.quantize=int8_dynamic",
        ]
    )
    assert not isinstance(parsed, str), parsed
    _, label_backend, per_label = parsed
    assert label_backend == {"diffusers-eager": "diffusers-eager", "compiled": "torch-compile", "int8": "torch-compile"}
    assert per_label == {"diffusers-eager": [], "compiled": [], "int8": ["backend.quantize=int8_dynamic"]}


@pytest.mark.parametrize(
    ("backends", "extra", "message"),
    [
        ("fake,a=nope", [], "unknown backend 'nope'"),
        ("fake,fake", [], "at least two different backends or labels"),
        ("fake,a/b=fake", [], "label 'a/b' must be a plain name"),
        (
            "fake,slow=fake",
            ["--reference", "fake", "--backend-set", "x:backend.latency_ms=5"],
            "NAME one of fake, slow",
        ),
        ("fake,slow=fake", ["--reference", "torch-compile"], "--reference 'torch-compile' is not in --backends"),
    ],
)
def test_bad_labels_are_one_clear_message(backends: str, extra: list[str], message: str) -> None:
    parsed = _parse(["--backends", backends, *extra])
    assert isinstance(parsed, str) and message in parsed, parsed
