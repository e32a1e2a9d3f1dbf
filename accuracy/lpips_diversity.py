"""LPIPS diversity: how different the images of one prompt are across seeds (higher = more diverse).

The metric is richzhang's `lpips` package (LPIPS v0.1, AlexNet trunk). Nothing is downloaded: the
package is built with a random trunk (`pnet_rand=True`, so torchvision fetches nothing) and its
calibrated linear layers from the copy that ships inside the pip package (`lpips/weights/v0.1/alex.pth`);
then the AlexNet trunk is loaded from a local file with torchvision's `alexnet-owt-7be5be79.pth` keys
(`python -m tools.fetch_assets --only alexnet`, or the seeded stand-in of accuracy/standins.py).

Images are uint8 N x H x W x 3, scaled to [-1, 1] as LPIPS expects. The mean pairwise distance of a
prompt's images runs the trunk once per image (in batches) and then compares every pair i < j from the
cached features, which is the same arithmetic as `lpips.LPIPS.forward` on the pair.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from accuracy.assets import ASSETS, fetch_command
from accuracy.errors import AccuracyError, MissingAssetError

log = logging.getLogger(__name__)

LPIPS_NET = "alex"
LPIPS_VERSION = "0.1"
ALEXNET_ASSET = "alexnet"
ALEXNET_FILENAME = ASSETS[ALEXNET_ASSET].filename
# torchvision AlexNet `features` index -> the LPIPS trunk slice that holds it (lpips.pretrained_networks.alexnet).
_TRUNK_SLICES = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}


def alexnet_trunk_keys() -> list[str]:
    """The torchvision keys the LPIPS trunk needs (the five convolutions of `features`)."""
    return [f"features.{i}.{p}" for i in _TRUNK_SLICES for p in ("weight", "bias")]


def check_lpips_weights(backbone_path: str | Path) -> None:
    """A missing AlexNet file: one line naming it and the fetch command."""
    path = Path(backbone_path)
    if not path.is_file():
        raise MissingAssetError(
            f"LPIPS AlexNet weights file {str(path)!r} not found (quality.lpips_weights); fetch it with "
            f"`{fetch_command(ALEXNET_ASSET)}` or set quality.lpips_weights=PATH"
        )


def load_lpips(backbone_path: str | Path, device: str = "cpu") -> Any:
    """An `lpips.LPIPS` (AlexNet, v0.1) in eval mode, its trunk from `backbone_path`; never downloads."""
    check_lpips_weights(backbone_path)
    path = Path(backbone_path)
    import lpips
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file (pickle, zip, runtime errors)
        raise AccuracyError(f"LPIPS AlexNet weights {str(path)!r} are not a readable torch file: {exc}") from exc
    if not isinstance(state, dict):
        raise AccuracyError(f"LPIPS AlexNet weights {str(path)!r} hold {type(state).__name__}, not a state dict")
    missing = [k for k in alexnet_trunk_keys() if k not in state]
    if missing:
        raise AccuracyError(
            f"LPIPS AlexNet weights {str(path)!r} lack {missing}; expected torchvision's alexnet-owt-7be5be79.pth keys"
        )

    with warnings.catch_warnings():  # torchvision's "pretrained is deprecated" for the random trunk
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=LPIPS_NET, version=LPIPS_VERSION, pretrained=True, pnet_rand=True, verbose=False)
    _check_linear_layers(model)
    trunk = {
        f"slice{s}.{i}.{p}": state[f"features.{i}.{p}"] for i, s in _TRUNK_SLICES.items() for p in ("weight", "bias")
    }
    try:
        model.net.load_state_dict(trunk, strict=True)
    except RuntimeError as exc:  # wrong shapes: another network saved under AlexNet's keys
        raise AccuracyError(f"LPIPS AlexNet weights {str(path)!r} do not fit torchvision's AlexNet: {exc}") from exc
    return model.to(device).eval()


def _check_linear_layers(model: Any) -> None:
    """LPIPS loads its linear layers with strict=False; make sure they came from the packaged file."""
    import inspect

    import lpips
    import torch

    packaged = Path(inspect.getfile(lpips.LPIPS)).parent / "weights" / f"v{LPIPS_VERSION}" / f"{LPIPS_NET}.pth"
    expected = torch.load(packaged, map_location="cpu", weights_only=True)
    ours = model.state_dict()
    if not expected or any(k not in ours or not torch.equal(ours[k], v) for k, v in expected.items()):
        raise AccuracyError(f"the lpips package's linear layers ({packaged}) did not load; reinstall lpips")


@dataclass(frozen=True)
class PairwiseResult:
    mean: float  # mean LPIPS distance over all pairs
    pairs: int


class LpipsDiversity:
    """Mean pairwise LPIPS distance between images (one prompt's images across seeds)."""

    def __init__(self, model: Any, device: str = "cpu", batch_size: int = 8) -> None:
        if batch_size < 1:
            raise AccuracyError(f"LPIPS batch size must be at least 1, got {batch_size}")
        self.model, self.device, self.batch_size = model, device, batch_size

    @classmethod
    def from_file(cls, backbone_path: str | Path, device: str = "cpu", batch_size: int = 8) -> LpipsDiversity:
        return cls(load_lpips(backbone_path, device), device, batch_size)

    def _to_input(self, images: np.ndarray) -> Any:
        import torch

        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise AccuracyError(f"LPIPS takes uint8 N x H x W x 3 images, got {images.dtype} {images.shape}")
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device).permute(0, 3, 1, 2).float()
        return x / 127.5 - 1.0

    def features(self, images: np.ndarray) -> list[Any]:
        """Unit-normalised trunk features of each image, five tensors of N x C_k x h_k x w_k."""
        import lpips
        import torch

        chunks: list[list[Any]] = []
        with torch.no_grad():
            for i in range(0, len(images), self.batch_size):
                x = self.model.scaling_layer(self._to_input(images[i : i + self.batch_size]))
                chunks.append([lpips.normalize_tensor(f) for f in self.model.net(x)])
        return [torch.cat(layer) for layer in zip(*chunks, strict=True)]

    def distance_from_features(self, a: Sequence[Any], b: Sequence[Any]) -> np.ndarray:
        """LPIPS distances of row-matched feature sets: as `lpips.LPIPS.forward`, one float per row."""
        import lpips
        import torch

        with torch.no_grad():
            total: Any = 0
            for lin, fa, fb in zip(self.model.lins, a, b, strict=True):
                total = total + lpips.spatial_average(lin((fa - fb) ** 2), keepdim=False)
        return np.asarray(total.reshape(-1).cpu().numpy(), dtype=np.float64)

    def distances(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """LPIPS distance of a[i] to b[i] for each i (float64)."""
        if a.shape != b.shape:
            raise AccuracyError(f"LPIPS compares images of one shape, got {a.shape} and {b.shape}")
        return self.distance_from_features(self.features(a), self.features(b))

    def mean_pairwise(self, images: np.ndarray) -> PairwiseResult:
        """Mean LPIPS distance over every pair i < j of `images` (at least two)."""
        import torch

        n = len(images)
        if n < 2:
            raise AccuracyError(f"LPIPS diversity needs at least two images of a prompt, got {n}")
        feats = self.features(images)
        left, right = np.triu_indices(n, k=1)
        dists: list[np.ndarray] = []
        for s in range(0, len(left), self.batch_size):
            i = torch.as_tensor(left[s : s + self.batch_size], device=feats[0].device)
            j = torch.as_tensor(right[s : s + self.batch_size], device=feats[0].device)
            dists.append(self.distance_from_features([f[i] for f in feats], [f[j] for f in feats]))
        all_d = np.concatenate(dists)
        return PairwiseResult(mean=float(all_d.mean()), pairs=int(all_d.size))
