"""User communities for ICPNS: k-means on learned user representations, and what each community likes.

The assignment is computed once from the pre-trained model (the official ICPNS code clusters the final
user representations, e.g. LightGCN's layer mean, with scikit-learn's KMeans) and then frozen, unless
``sampler.recluster_every`` asks for communities that follow the model during fine-tuning: ``recluster``
then runs k-means again on the current representations, warm-started from the previous centroids so
that community ids stay comparable, and ``assignment_change`` says how much moved.
In-community popularity is counted on the training split only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from raysearch.data.interactions import Interactions


def cluster_users(representations: np.ndarray, n_communities: int, seed: int) -> np.ndarray:
    """int64 (n_users,) community ids in [0, n_communities) from k-means on (n_users, d) representations.

    ``n_communities == 1`` skips k-means (the "no clustering" ablation). Raw representations are used
    (no normalisation), as the official code does.
    """
    return kmeans(representations, n_communities, seed)[0]


def kmeans(representations: np.ndarray, n_communities: int, seed: int,
           init: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(int64 (n_users,) community ids, float64 (n_communities, d) centroids) of k-means on float
    (n_users, d) representations.

    ``init`` None: scikit-learn's k-means++ seeded with ``seed`` (``cluster_users``' assignment). ``init``
    float (n_communities, d) centroids: Lloyd's iterations from them (one run), until no user changes
    community (``tol=0``): from centroids that are already a fixed point on these representations the
    assignment comes back unchanged, and a community keeps its id as long as it keeps its centroid's
    neighbourhood. ``n_communities == 1``: every user in community 0, the centroid is the mean.
    """
    reps = np.asarray(representations, dtype=np.float64)
    if n_communities < 1:
        raise ValueError("n_communities must be >= 1")
    if n_communities == 1:
        return np.zeros(reps.shape[0], dtype=np.int64), reps.mean(axis=0, keepdims=True)
    if n_communities > reps.shape[0]:
        raise ValueError(f"n_communities={n_communities} exceeds the number of users ({reps.shape[0]})")
    from sklearn.cluster import KMeans

    if init is None:
        fitted = KMeans(n_clusters=n_communities, random_state=seed, n_init="auto").fit(reps)
    else:
        init = np.asarray(init, dtype=np.float64)
        if init.shape != (n_communities, reps.shape[1]):
            raise ValueError(f"init centroids of shape {init.shape}, expected {(n_communities, reps.shape[1])}")
        fitted = KMeans(n_clusters=n_communities, init=init, n_init=1, tol=0.0, random_state=seed).fit(reps)
    return fitted.labels_.astype(np.int64), np.asarray(fitted.cluster_centers_, dtype=np.float64)


def recluster(representations: np.ndarray, centroids: np.ndarray, seed: int,
              warm_start: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(int64 (n_users,) ids, float64 (K, d) centroids): k-means on the current float (n_users, d)
    representations with K = ``len(centroids)`` (the previous float64 (K, d) centroids).

    ``warm_start``: Lloyd's iterations from ``centroids`` (ids stay comparable across versions);
    otherwise a fresh k-means++ run seeded with ``seed`` (ids are arbitrary from one version to the next).
    """
    centroids = np.asarray(centroids, dtype=np.float64)
    return kmeans(representations, centroids.shape[0], seed, init=centroids if warm_start else None)


def soft_membership(representations: np.ndarray, centroids: np.ndarray, top: int, temperature: float,
                    chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Each user's ``top`` nearest communities and their weights (``sampler.membership=soft``).

    ``representations`` float (n_users, d), ``centroids`` float (K, d), 1 <= ``top`` <= K. Returns (int64
    (n_users, top) community ids, nearest first; float64 (n_users, top) weights, a softmax over the
    negative Euclidean distances divided by ``temperature`` (in the representations' units: small makes
    the nearest community dominate, large spreads evenly over the ``top``); each row sums to 1). Users
    are processed ``chunk`` at a time, so memory stays O(chunk x K).
    """
    reps = np.asarray(representations, dtype=np.float64)
    centroids = np.asarray(centroids, dtype=np.float64)
    if not 1 <= top <= centroids.shape[0]:
        raise ValueError(f"top={top} must be in [1, {centroids.shape[0]}]")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    ids = np.empty((reps.shape[0], top), dtype=np.int64)
    dist = np.empty((reps.shape[0], top), dtype=np.float64)
    c_sq = (centroids**2).sum(axis=1)
    for lo in range(0, reps.shape[0], chunk):  # a loop over chunks of users, not over users
        block = reps[lo:lo + chunk]
        d2 = (block**2).sum(axis=1)[:, None] - 2.0 * block @ centroids.T + c_sq
        order = np.argsort(d2, axis=1, kind="stable")[:, :top]
        ids[lo:lo + chunk] = order
        dist[lo:lo + chunk] = np.sqrt(np.maximum(np.take_along_axis(d2, order, axis=1), 0.0))
    logits = -(dist - dist[:, :1]) / temperature  # shifted by the nearest: exp never overflows
    weights = np.exp(logits)
    weights /= weights.sum(axis=1, keepdims=True)
    return ids, weights


def assignment_change(previous: np.ndarray, current: np.ndarray) -> dict[str, Any]:
    """How much an assignment moved, both int (n_users,): users whose community id changed (meaningful
    when ids are comparable, i.e. warm-started k-means) and the adjusted Rand index (1: the same
    partition, whatever the ids; about 0: no more agreement than chance)."""
    from sklearn.metrics import adjusted_rand_score

    previous, current = np.asarray(previous), np.asarray(current)
    return {"changed_users": int(np.count_nonzero(previous != current)),
            "adjusted_rand_index": float(adjusted_rand_score(previous, current))}


def community_item_counts(train: Interactions, communities: np.ndarray, n_communities: int) -> np.ndarray:
    """int64 (n_communities, n_items): count_c(i) = number of users of c who interacted with i (train)."""
    users, items = train.pairs()
    keys = communities[users] * np.int64(train.n_items) + items
    return np.bincount(keys, minlength=n_communities * train.n_items).reshape(n_communities, train.n_items)


def community_summary(train: Interactions, communities: np.ndarray, top: int = 10) -> dict[str, Any]:
    """Sizes and, per community, its top items by in-community count next to their global count."""
    communities = np.asarray(communities, dtype=np.int64)
    n_comm = int(communities.max()) + 1 if communities.size else 0
    counts = community_item_counts(train, communities, n_comm)
    global_counts = train.item_counts()
    sizes = np.bincount(communities, minlength=n_comm)
    out = []
    for c in range(n_comm):  # one entry per community: a handful, not a hot path
        order = np.lexsort((np.arange(train.n_items), -counts[c]))[:top]
        order = order[counts[c, order] > 0]
        out.append({
            "community": c,
            "users": int(sizes[c]),
            "interactions": int(counts[c].sum()),
            "support": int((counts[c] > 0).sum()),
            "top_items": order.tolist(),
            "top_item_counts": counts[c, order].tolist(),
            "top_item_global_counts": global_counts[order].tolist(),
        })
    return {"n_communities": n_comm, "sizes": sizes.tolist(), "communities": out}
