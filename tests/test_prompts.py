"""Prompt packs (TOML) and the MLPerf COCO captions TSV."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest

from harness.data.prompts import (
    DEFAULT_PROMPT_PACK,
    PromptSet,
    load_coco_captions,
    load_prompt_pack,
    load_prompts,
)
from harness.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CAPTIONS_TSV = PROJECT_ROOT.parent / "shared" / "data" / "mlperf-sdxl" / "captions_source.tsv"
DEFAULT_CATEGORIES = {"portrait", "product", "stylized-art", "scene", "text-rendering", "hard-cases"}
TSV_HEADER = "id\timage_id\tcaption\theight\twidth\tfile_name\tcoco_url\n"

needs_captions = pytest.mark.skipif(
    not CAPTIONS_TSV.is_file(), reason=f"MLPerf captions not found at {CAPTIONS_TSV} (../shared is absent)"
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def tsv_row(caption: str, row_id: int = 1) -> str:
    return f"{row_id}\t{row_id + 100}\t{caption}\t640\t480\tCOCO_{row_id}.jpg\thttp://x/{row_id}.jpg\n"


# -- the default pack ------------------------------------------------------------------------------


def test_default_pack_loads_with_categories() -> None:
    prompts = load_prompt_pack(DEFAULT_PROMPT_PACK)
    assert prompts.name == "default"
    assert 60 <= len(prompts) <= 70
    assert set(prompts.categories) == DEFAULT_CATEGORIES
    counts = Counter(prompts.categories)
    assert min(counts.values()) >= 8, counts
    assert all(text.strip() for text in prompts.texts)
    assert len(set(prompts.texts)) == len(prompts.texts), "duplicate prompts in the default pack"
    assert prompts.sha256 == hashlib.sha256(DEFAULT_PROMPT_PACK.read_bytes()).hexdigest()
    assert prompts.source == str(DEFAULT_PROMPT_PACK)


def test_default_pack_first_line_is_the_command() -> None:
    first_line = DEFAULT_PROMPT_PACK.read_text(encoding="utf-8").splitlines()[0]
    assert first_line.startswith("# python -m harness")


def test_load_prompts_dispatch(tmp_path: Path) -> None:
    assert load_prompts("").texts == load_prompt_pack(DEFAULT_PROMPT_PACK).texts
    tsv = write(tmp_path, "c.tsv", TSV_HEADER + tsv_row("a dog"))
    assert load_prompts(str(tsv)).texts == ("a dog",)
    pack = write(tmp_path, "p.toml", '[[prompts]]\ntext = "a cat"\n')
    assert load_prompts(str(pack)).texts == ("a cat",)
    with pytest.raises(ConfigError, match=r"prompts\.json.*allowed.*\.toml.*\.tsv"):
        load_prompts(str(tmp_path / "prompts.json"))


# -- negative prompt precedence --------------------------------------------------------------------


def test_negative_prompt_precedence(tmp_path: Path) -> None:
    with_pack_default = write(
        tmp_path,
        "a.toml",
        'negative_prompt = "pack"\n'
        '[[prompts]]\ntext = "one"\nnegative_prompt = "own"\n'
        '[[prompts]]\ntext = "two"\n'
        '[[prompts]]\ntext = "three"\nnegative_prompt = ""\n',
    )
    assert load_prompt_pack(with_pack_default, "argument").negative_prompts == ("own", "pack", "")

    without_pack_default = write(tmp_path, "b.toml", '[[prompts]]\ntext = "one"\n')
    assert load_prompt_pack(without_pack_default, "argument").negative_prompts == ("argument",)
    assert load_prompt_pack(without_pack_default).negative_prompts == ("",)


def test_pack_name_and_category_defaults(tmp_path: Path) -> None:
    prompts = load_prompt_pack(write(tmp_path, "mine.toml", '[[prompts]]\ntext = "x"\n'))
    assert prompts.name == "mine"
    assert prompts.categories == ("uncategorized",)


# -- bad packs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        ('colour = "red"\n[[prompts]]\ntext = "x"\n', r"unknown top-level key.*'colour'.*allowed"),
        ('[[prompts]]\ntext = "x"\ncolour = "red"\n', r"prompts\[0\].*unknown key.*'colour'.*allowed"),
        ('[[prompts]]\ntext = "x"\n[[prompts]]\ncategory = "scene"\n', r"prompts\[1\].*missing required key 'text'"),
        ("[[prompts]]\ntext = 3\n", r"prompts\[0\].*'text' must be a string"),
        ('[[prompts]]\ntext = "  "\n', r"prompts\[0\].*'text' must be a non-empty string"),
        ('name = "empty"\n', r"has no prompts"),
        ("prompts = []\n", r"has no prompts"),
        ('prompts = "x"\n', r"array of tables"),
        ("[[prompts]\n", r"not valid UTF-8 TOML"),
    ],
)
def test_bad_pack_raises_naming_the_file(tmp_path: Path, body: str, pattern: str) -> None:
    path = write(tmp_path, "bad.toml", body)
    with pytest.raises(ConfigError, match=pattern) as info:
        load_prompt_pack(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_pack(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_prompt_pack(tmp_path / "nope.toml")


# -- COCO captions TSV -----------------------------------------------------------------------------


@needs_captions
def test_real_captions_tsv() -> None:
    prompts = load_coco_captions(CAPTIONS_TSV, "low quality")
    assert len(prompts) == 5000
    assert prompts.texts[0] == "A city at night with people walking around."
    assert prompts.texts[1] == "The large clock was prominently displaying the time."
    assert set(prompts.categories) == {"coco"}
    assert set(prompts.negative_prompts) == {"low quality"}
    assert prompts.sha256 == hashlib.sha256(CAPTIONS_TSV.read_bytes()).hexdigest()
    # Quoted captions lose their outer quotes and "" becomes ", as pandas.read_csv(sep="\t") gives them.
    assert 'The street sign says "Can\'t Stop The Dance".' in prompts.texts
    assert not any(text.startswith('"') for text in prompts.texts)


def test_tsv_quoting_matches_pandas(tmp_path: Path) -> None:
    body = (
        TSV_HEADER
        + tsv_row('"A sign that reads ""car parking"" in front of cows."', 1)
        + tsv_row("plain  caption with two spaces ", 2)
        + "\n"
        + tsv_row("it's a 5\" ruler", 3)
    )
    prompts = load_coco_captions(write(tmp_path, "c.tsv", body))
    assert prompts.texts == (
        'A sign that reads "car parking" in front of cows.',
        "plain  caption with two spaces ",
        "it's a 5\" ruler",
    )
    assert prompts.name == "c"


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        ("id\timage_id\ttext\n1\t2\tx\n", r"no 'caption' column; columns found: \['id', 'image_id', 'text'\]"),
        ("id,image_id,caption\n1,2,x\n", r"no 'caption' column; columns found: \['id,image_id,caption'\]"),
        ("", r"is empty"),
        (TSV_HEADER, r"no caption rows"),
        (TSV_HEADER + "1\t2\tonly three fields\n", r"line 2: 3 fields, the header has 7"),
        (TSV_HEADER + tsv_row(""), r"line 2: empty 'caption'"),
        (TSV_HEADER + tsv_row('"unterminated'), r"malformed TSV"),
    ],
)
def test_malformed_tsv_raises(tmp_path: Path, body: str, pattern: str) -> None:
    path = write(tmp_path, "bad.tsv", body)
    with pytest.raises(ConfigError, match=pattern) as info:
        load_coco_captions(path)
    assert str(path) in str(info.value)


def test_missing_tsv(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"captions file .*missing\.tsv.*does not exist"):
        load_coco_captions(tmp_path / "missing.tsv")


def test_prompt_set_lengths_must_agree() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        PromptSet(name="x", texts=("a", "b"), categories=("c",), negative_prompts=("", ""), source="", sha256="")
