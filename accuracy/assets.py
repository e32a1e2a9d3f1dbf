"""The public files the MLPerf SDXL accuracy check is defined on, where each comes from, and how a copy
is checked. `python -m tools.fetch_assets` downloads them; the scorer only reads local files.

What is verified, and from where (nothing here was downloaded on the machines this was written on):
- captions, latents: SHA-256 of the byte-identical copies in ../shared/data/mlperf-sdxl (copied from
  mlcommons/inference); the URLs are pinned to commits that hold those files.
- clip: SHA-256 published in the URL itself; OpenAI's `clip._download` and open_clip's
  `download_pretrained_from_url` both check the download against it.
- inception: only the first 8 hex digits of the SHA-256 are published (`-6726825d` in the file name,
  the torch.hub `check_hash` convention). The full SHA-256 is not known here and is not invented.
- alexnet (the LPIPS backbone, quality.lpips_weights): torchvision's ImageNet AlexNet; as for inception,
  only the first 8 hex digits of its SHA-256 are published (`-7be5be79` in the file name, torch.hub's
  convention); the full digest is not known here and is not invented.
- fid-stats (val2014.npz): no published SHA-256. mlcommons/inference records the file's git blob id
  (SHA-1 of "blob <size>\\0" + content) in text_to_image/tools/val2014.npz.REMOVED.git-id; the fetch
  tool checks that, and that the file holds `mu` (2048) and `sigma` (2048 x 2048). The blob id was
  not checked against a download here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Asset:
    name: str  # what `--only NAME` selects
    filename: str
    url: str
    what: str
    sha256: str = ""  # full hex digest, when published
    sha256_prefix: str = ""  # only a prefix is published
    git_blob_sha1: str = ""  # git's blob id of the file
    size_bytes: int = 0  # 0 = not known in advance

    @property
    def verification(self) -> str:
        if self.sha256:
            return "sha256"
        if self.git_blob_sha1:
            return "git blob id (no published SHA-256)"
        if self.sha256_prefix:
            return f"sha256 prefix {self.sha256_prefix} only (no published full SHA-256)"
        return "none"


_MLPERF = "https://github.com/mlcommons/inference/raw"

ASSETS: dict[str, Asset] = {
    a.name: a
    for a in (
        Asset(
            name="captions",
            filename="captions_source.tsv",
            url=f"{_MLPERF}/c78a252610a3453e54ceed58bf0e59f1a61fe4f9/text_to_image/coco2014/captions/captions_source.tsv",
            what="the 5000 COCO-2014 captions of the SDXL benchmark (dataset.path)",
            sha256="2eeb95637b30fe5af26dd644bafa7affe4e5472ad0bda32d0feb1bd261280d5e",
            size_bytes=862324,
        ),
        Asset(
            name="latents",
            filename="latents.npy",
            url=f"{_MLPERF}/f1ddd995916f7d01512ee2dda48d4c7257d00097/text_to_image/tools/latents.npy",
            what="the fixed initial latent, float32 (1, 4, 128, 128) (latents.file)",
            sha256="78cac10a20ea287f88b5851382e21504a755338d3f8ba8ffd2bcf9e9bf2404f9",
            size_bytes=262272,
        ),
        Asset(
            name="fid-stats",
            filename="val2014.npz",
            url=f"{_MLPERF}/4b1d1156c23965172ae56eacdd8372f8897eb771/text_to_image/tools/val2014.npz",
            what="FID reference statistics of COCO val2014 (accuracy.fid_stats)",
            git_blob_sha1="806479d0693a33110526b6689aa26baddd995c7b",
        ),
        Asset(
            name="inception",
            filename="pt_inception-2015-12-05-6726825d.pth",
            url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
            what="pytorch-fid's InceptionV3 FID weights (accuracy.inception_weights)",
            sha256_prefix="6726825d",
        ),
        Asset(
            name="clip",
            filename="ViT-B-32.pt",
            url=(
                "https://openaipublic.azureedge.net/clip/models/"
                "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt"
            ),
            what="OpenAI CLIP ViT-B/32 weights, open_clip's 'openai' tag (accuracy.clip_weights)",
            sha256="40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
        ),
        Asset(
            name="alexnet",
            filename="alexnet-owt-7be5be79.pth",
            url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
            what="torchvision's ImageNet AlexNet, the LPIPS diversity backbone (quality.lpips_weights)",
            sha256_prefix="7be5be79",
        ),
    )
}

# Which config key each scorer asset fills when it is left empty.
SCORER_ASSETS = {"clip_weights": "clip", "inception_weights": "inception", "fid_stats": "fid-stats"}


def fetch_command(asset_name: str) -> str:
    return f"python -m tools.fetch_assets --only {asset_name}"


def digests(path: str | Path, chunk_bytes: int = 1 << 20) -> tuple[str, str]:
    """(SHA-256, git blob SHA-1) of a file, in one pass."""
    path = Path(path)
    sha = hashlib.sha256()
    blob = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(chunk_bytes), b""):
            sha.update(chunk)
            blob.update(chunk)
    return sha.hexdigest(), blob.hexdigest()


_SHA256_MEMO: dict[str, str] = {}


def file_sha256(path: str | Path, cache_file: Path | None = None) -> str:
    """SHA-256 of a file, remembered by (absolute path, size, mtime) in this process and, with
    `cache_file`, across processes (hashing the CLIP weights takes about a second)."""
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    if key in _SHA256_MEMO:
        return _SHA256_MEMO[key]
    cache: dict[str, str] = {}
    if cache_file is not None and cache_file.is_file():
        try:
            cache = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            cache = {}
        if key in cache:
            _SHA256_MEMO[key] = cache[key]
            return cache[key]
    digest = _SHA256_MEMO[key] = digests(path)[0]
    if cache_file is not None:
        cache[key] = digest
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache, indent=1))
            tmp.replace(cache_file)
        except OSError:
            log.debug("could not write the hash cache %s", cache_file)
    return digest


def default_cache_dir() -> Path:
    """The harness cache (same rule as harness.run.manifest.cache_dir; `accuracy` does not import harness)."""
    return Path(os.environ.get("HARNESS_CACHE_DIR") or Path.home() / ".cache" / "t2i-harness")


def default_asset_dir(cache_dir: Path | None = None) -> Path:
    """Where `python -m tools.fetch_assets` puts files unless told otherwise."""
    return (cache_dir or default_cache_dir()) / "assets"
