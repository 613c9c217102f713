"""Fetching dataset files from the internet with a bounded wait (no torch at import time).

Every download first checks that a host answers (``reachable``), so an offline machine fails within
seconds with the reason, never after a long socket timeout. The loaders in utils/data.py,
utils/features.py and utils/adult.py call ``download`` and turn its reason into their one-line error.
"""
from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import urlparse

NETWORK_TIMEOUT = 10.0  # seconds per connection attempt; an offline machine fails well inside 30 s

MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
FASHION_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
CIFAR_URLS = ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)
WEIGHTS_URLS = ("https://download.pytorch.org/models/resnet18-f37072fd.pth",)
# the hosts torchvision's dataset classes download from, per class name
TORCHVISION_URLS = {"MNIST": MNIST_URLS, "FashionMNIST": FASHION_URLS, "CIFAR10": CIFAR_URLS}


def reachable(urls: Iterable[str], timeout: float = NETWORK_TIMEOUT) -> bool:
    """True when a TCP connection to one of the urls' hosts opens within timeout (DNS included)."""
    def probe(url, out):
        u = urlparse(url)
        try:
            socket.create_connection((u.hostname, u.port or (443 if u.scheme == "https" else 80)), timeout).close()
            out.append(True)
        except OSError:
            pass

    for url in urls:
        out: list = []
        t = threading.Thread(target=probe, args=(url, out), daemon=True)  # getaddrinfo ignores timeouts
        t.start()
        t.join(timeout)
        if out:
            return True
    return False


@contextmanager
def socket_timeout(seconds: float = NETWORK_TIMEOUT):
    """Every new socket of the block times out after ``seconds`` (torchvision and torch.hub set none)."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def download(what: str, urls: Iterable[str], fetch: Callable[[], None]) -> str:
    """Run fetch() when the hosts answer, with a socket timeout; '' on success, else the reason it failed."""
    if not reachable(urls):
        return f"the download of {what} failed (no internet?)"
    with socket_timeout():
        try:
            fetch()
        except Exception as exc:  # torchvision raises many kinds (URLError, RuntimeError, checksum errors)
            first = str(exc).splitlines()[0] if str(exc) else ""
            return f"the download of {what} failed ({type(exc).__name__}: {first})"
    return ""


def torchvision_dataset(kind: str, data_dir: Path) -> str:
    """Download torchvision's ``kind`` (MNIST, FashionMNIST, CIFAR10) into data_dir; '' or the reason it failed."""
    def fetch():
        import torchvision
        getattr(torchvision.datasets, kind)(root=str(data_dir), train=True, download=True)
    return download(kind if kind != "CIFAR10" else "CIFAR-10", TORCHVISION_URLS[kind], fetch)
