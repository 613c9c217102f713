"""CIFAR-10's ResNet-18 features (docs/METHOD.md §1.1): the images through ImageNet weights, fc removed.

torch and torchvision are imported only when features are extracted; utils/data.py calls
``build_cifar10_features`` when its cached features file is missing.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from utils import downloads
from utils.data import FEATURE_KEYS, DataError

CIFAR_DIR = "cifar-10-batches-py"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHTS_FILE = Path(urlparse(downloads.WEIGHTS_URLS[0]).path).name  # resnet18-f37072fd.pth


def extract_resnet18_features(images, *, weights="IMAGENET1K_V1", batch_size=64, device="cpu",
                              model_dir=None, progress=False) -> np.ndarray:
    """ResNet-18 avgpool features (fc removed, eval, no grad) of uint8 NHWC RGB images after
    Resize(224), ToTensor, Normalize(ImageNet mean/std) (docs/METHOD.md §1.1); float32 (N, 512)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"images of dtype {images.dtype} and shape {images.shape} "
                        f"(allowed: uint8 array (N, H, W, 3))")
    if weights not in ("IMAGENET1K_V1", None):
        raise DataError(f"weights={weights!r} (allowed: 'IMAGENET1K_V1' or None for a random initialisation)")
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise DataError(f"batch_size={batch_size!r} (allowed: an integer >= 1)")
    import torch
    import torchvision
    from torchvision.transforms import functional as TF

    model = torchvision.models.resnet18(weights=None)
    if weights is not None:
        w = torchvision.models.ResNet18_Weights[weights]
        model.load_state_dict(w.get_state_dict(progress=progress, model_dir=model_dir))
    model.fc = torch.nn.Identity()
    model.eval().to(device)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    starts = range(0, len(images), batch_size)
    if progress:
        from tqdm import tqdm
        starts = tqdm(starts, desc="ResNet-18 features", unit="batch",  # on a terminal only
                      disable=True if os.environ.get("UNLEARN_NO_PROGRESS") == "1" else None)
    out = []
    with torch.inference_mode():
        for s in starts:
            x = torch.from_numpy(np.ascontiguousarray(images[s:s + batch_size])).to(device).permute(0, 3, 1, 2)
            # resize in uint8 like Resize(224) on a PIL image (rounds to bytes), then ToTensor's / 255
            x = TF.resize(x, 224, interpolation=TF.InterpolationMode.BILINEAR, antialias=True).float() / 255.0
            out.append(model((x - mean) / std).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 512), dtype=np.float32)


def _weights_dir(data_dir: Path) -> Path:
    """torch hub's checkpoint folder when the weights are already there, else data_dir/models."""
    import torch

    hub = Path(torch.hub.get_dir()) / "checkpoints"
    return hub if (hub / WEIGHTS_FILE).is_file() else data_dir / "models"


def build_cifar10_features(data_dir: Path, path: Path, download: bool) -> None:
    """Write ``path`` (.npz: all 10 classes, raw features, labels 0..9) from the CIFAR-10 images in
    data_dir, downloading the images and the ImageNet weights when missing and allowed."""
    hint = (f"copy {CIFAR_DIR}/ into {data_dir}/ and the ResNet-18 weights {WEIGHTS_FILE} into "
            f"{data_dir / 'models'}/, or pass --features FILE (.npz with {', '.join(FEATURE_KEYS)})")
    cifar = data_dir / CIFAR_DIR
    if not cifar.is_dir():
        why = "download=False" if not download else downloads.torchvision_dataset("CIFAR10", data_dir)
        if why or not cifar.is_dir():
            raise DataError(f"CIFAR-10 features {path} and images {cifar}/ not found and "
                            f"{why or 'the download left no images'}: {hint}")
    model_dir = _weights_dir(data_dir)
    if not (model_dir / WEIGHTS_FILE).is_file():
        why = "download=False" if not download else downloads.download("ResNet-18 weights", downloads.WEIGHTS_URLS,
                                                                       lambda: None)
        if why:
            raise DataError(f"ResNet-18 ImageNet weights not found in {model_dir}/ and {why}: {hint}")
    import torchvision

    try:
        train = torchvision.datasets.CIFAR10(root=str(data_dir), train=True, download=False)
        test = torchvision.datasets.CIFAR10(root=str(data_dir), train=False, download=False)
    except RuntimeError as exc:
        raise DataError(f"CIFAR-10 images in {cifar}/ are incomplete or corrupt ({exc}): {hint}") from None
    try:
        with downloads.socket_timeout():
            feats = [extract_resnet18_features(part.data, model_dir=str(model_dir), progress=True)
                     for part in (train, test)]
    except OSError as exc:  # the weights download (URLError is an OSError)
        raise DataError(f"ResNet-18 weights download failed ({exc}): {hint}") from None
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez(tmp, X_train=feats[0], y_train=np.asarray(train.targets, dtype=np.int64),
             X_test=feats[1], y_test=np.asarray(test.targets, dtype=np.int64))
    os.replace(tmp, path)  # atomic: an interrupted extraction never leaves a truncated cache
