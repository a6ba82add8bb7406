"""User communities for ICPNS: k-means on learned user representations, and what each community likes.

The assignment is computed once from the pre-trained model (the official ICPNS code clusters the final
user representations, e.g. LightGCN's layer mean, with scikit-learn's KMeans) and then frozen.
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
    reps = np.asarray(representations, dtype=np.float64)
    if n_communities < 1:
        raise ValueError("n_communities must be >= 1")
    if n_communities == 1:
        return np.zeros(reps.shape[0], dtype=np.int64)
    if n_communities > reps.shape[0]:
        raise ValueError(f"n_communities={n_communities} exceeds the number of users ({reps.shape[0]})")
    from sklearn.cluster import KMeans

    labels = KMeans(n_clusters=n_communities, random_state=seed, n_init="auto").fit_predict(reps)
    return labels.astype(np.int64)


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
