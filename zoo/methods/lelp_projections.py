"""The pseudo-subclass maps of LELP, fitted once from the teacher's embeddings of the training split and stored.

A ``SubclassMap`` turns a teacher embedding h ∈ R^d into per-class subclass scores u(x) ∈ R^{C×S}, standardised so
that one subclass temperature β means the same on every data set. Fitting (``fit_subclass_map``), for each class c
on the training examples labelled c:

    P   = I − Wᵀ (W Wᵀ)⁺ W                  the null space of the teacher's head W ∈ R^{C×d}: what it does not read
    ĥ   = P h,  μ_c = mean of ĥ over class c
    pca:    U_c = top-S principal directions of {ĥ − μ_c}, V_c = U_c Q_c with Q_c a seeded Haar rotation in R^{S×S}
            (PCA variances decrease; the rotation gives every direction the same variance in expectation)
    random: V_c = an orthonormal basis of P G_c, G_c ∈ R^{d×S} seeded Gaussian (the paper's ablation)
            u_c(x) = V_cᵀ (ĥ − μ_c) / σ_c, σ_c the standard deviation of those projections over class c
    kmeans: centroids m_{c,1..S} of {ĥ} by k-means (the paper's clustering baseline),
            u_{c,s}(x) = − ‖ĥ − m_{c,s}‖² / σ_c², σ_c² the mean squared distance to the nearest centroid

``oracle`` fits nothing: its subclasses are the data's hidden classes (``subclass`` in the batch).

The stored file (safetensors, under ZOO_HOME/teacher_outputs/lelp/) is named by a hash of its key: the teacher's
weights, the data and its transform, the embedding and head paths, S, the directions and their seed, the fitting
subset. Its metadata repeats the key and a sha256 of the tensors; a file whose key or digest does not match is
refitted and rewritten, never used.
"""

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from zoo.errors import ConfigError
from zoo.teacher_cache import hash_tensors

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
DIRECTIONS = ("pca", "random", "kmeans", "oracle")
MIN_PER_SUBCLASS = 10  # PCA or k-means of a class needs at least this many examples per subclass


@dataclass
class SubclassMap:
    """Fitted tensors (float32): ``projector`` P [d, d], ``means`` μ [C, d], ``scale`` σ [C], and ``directions``
    V [C, d, S] (pca, random) or ``centroids`` m [C, S, d] (kmeans)."""

    tensors: dict[str, torch.Tensor]
    directions: str

    def to(self, device: torch.device | str) -> "SubclassMap":
        return SubclassMap({name: value.to(device) for name, value in self.tensors.items()}, self.directions)

    def scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        """u(x) [B, C, S] for embeddings [B, d] on the map's device (see the module docstring)."""
        t = self.tensors
        null = embeddings.float() @ t["projector"]  # P is symmetric
        if self.directions == "kmeans":
            squared = torch.cdist(null.unsqueeze(0).expand(len(t["centroids"]), -1, -1), t["centroids"]) ** 2
            return -(squared / t["scale"].view(-1, 1, 1) ** 2).permute(1, 0, 2)  # [C, B, S] -> [B, C, S]
        centred = null.unsqueeze(1) - t["means"].unsqueeze(0)  # [B, C, d]
        return torch.einsum("bcd,cds->bcs", centred, t["directions"]) / t["scale"].view(1, -1, 1)


def null_space_projector(head_weight: torch.Tensor) -> torch.Tensor:
    """P = I − Wᵀ (W Wᵀ)⁺ W in float64 (W Wᵀ is C×C and can be ill-conditioned for C = 2: a pseudo-inverse)."""
    w = head_weight.double()
    return torch.eye(w.shape[1], dtype=torch.float64) - w.T @ torch.linalg.pinv(w @ w.T) @ w


def haar_rotation(size: int, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random orthogonal matrix: QR of a Gaussian, with R's diagonal signs moved into Q."""
    q, r = torch.linalg.qr(torch.randn(size, size, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r)).unsqueeze(0)


def principal_directions(centred: torch.Tensor, count: int) -> torch.Tensor:
    """The top ``count`` right singular vectors [d, count], each signed so its largest entry is positive (SVD's
    signs are arbitrary; fixing them makes a refit give the same file)."""
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    top = vh[:count].T
    signs = torch.sign(top.gather(0, top.abs().argmax(dim=0, keepdim=True)))
    return top * signs


def fit_subclass_map(embeddings: torch.Tensor, labels: torch.Tensor, head_weight: torch.Tensor, subclasses: int,
                     directions: str, seed: int) -> SubclassMap:
    """Fit the map of the module docstring from training embeddings [N, d] and their labels [N]."""
    if directions not in DIRECTIONS or directions == "oracle":
        raise ConfigError(f"cannot fit pseudo-subclasses by '{directions}'",
                          "method.directions is one of pca, random, kmeans (oracle reads the data's subclasses)")
    num_classes, dim = head_weight.shape
    projector = null_space_projector(head_weight)
    free = dim - int(torch.linalg.matrix_rank(head_weight.double()))
    if subclasses > free:
        raise ConfigError(f"method.subclasses={subclasses} directions per class do not fit the teacher's {dim}-d "
                          f"embedding, which leaves {free} dimensions outside its classifier",
                          f"choose method.subclasses <= {free}")
    null = embeddings.double() @ projector
    generator = torch.Generator().manual_seed(int(seed))
    means, scales, fitted = [], [], []
    for c in range(num_classes):
        members = null[labels == c]
        if len(members) < MIN_PER_SUBCLASS * subclasses:
            raise ConfigError(f"class {c} has {len(members)} training examples, fewer than {MIN_PER_SUBCLASS}·S = "
                              f"{MIN_PER_SUBCLASS * subclasses} needed to fit {subclasses} pseudo-subclasses",
                              "lower method.subclasses or train on more data")
        mean = members.mean(dim=0)
        if directions == "kmeans":
            centroids, scale = kmeans_centroids(members, subclasses, seed + c)
            fitted.append(centroids)
        else:
            if directions == "pca":
                basis = principal_directions(members - mean, subclasses) @ haar_rotation(subclasses, generator)
            else:
                basis, _ = torch.linalg.qr(projector @ torch.randn(dim, subclasses, generator=generator,
                                                                    dtype=torch.float64))
            fitted.append(basis)
            scale = ((members - mean) @ basis).std()
        means.append(mean)
        scales.append(scale.clamp_min(1e-8))
    tensors = {"projector": projector, "means": torch.stack(means), "scale": torch.stack(scales),
               ("centroids" if directions == "kmeans" else "directions"): torch.stack(fitted)}
    return SubclassMap({name: value.float().contiguous() for name, value in tensors.items()}, directions)


def kmeans_centroids(points: torch.Tensor, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means centroids [count, d] in a fixed order (by first coordinate) and σ = the root mean squared distance
    of the points to their nearest centroid."""
    from sklearn.cluster import KMeans

    model = KMeans(n_clusters=count, n_init=4, random_state=int(seed)).fit(points.numpy())
    centroids = torch.from_numpy(model.cluster_centers_).double()
    centroids = centroids[torch.argsort(centroids[:, 0])]
    return centroids, torch.tensor(model.inertia_ / len(points)).sqrt()


# -- the stored file --------------------------------------------------------------------------------------------
def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    hash_tensors(digest, tensors)
    return digest.hexdigest()


def versioned(key: dict) -> dict:
    """The key as stored: the caller's fields and the file format."""
    return {**key, "format": FORMAT_VERSION}


def stored_path(root: Path, key: dict) -> Path:
    name = hashlib.sha256(json.dumps(versioned(key), sort_keys=True).encode()).hexdigest()[:20]
    return Path(root) / f"{name}.safetensors"


def load_stored(path: Path, key: dict) -> SubclassMap | None:
    """The map stored at ``path`` when its key and digest match; None (with a warning) when absent or not."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        log.warning("LELP projections %s unreadable (%s): refitting them", path, err)
        return None
    if json.loads(metadata.get("key", "null")) != versioned(key):
        log.warning("LELP projections %s were fitted for another teacher or data: refitting them", path)
        return None
    if metadata.get("sha256") != tensors_digest(tensors):
        log.warning("LELP projections %s do not match their checksum: refitting them", path)
        return None
    return SubclassMap(tensors, key["directions"])


def store(path: Path, key: dict, fitted: SubclassMap) -> None:
    """Write the map atomically (temp file, then rename) with its key and digest in the metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{np.random.default_rng().integers(1 << 30)}.tmp")
    metadata = {"key": json.dumps(versioned(key), sort_keys=True),
                "sha256": tensors_digest(fitted.tensors)}
    save_file(fitted.tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
