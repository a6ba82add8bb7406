"""In-batch negatives: each negative is the positive item of another row of the same batch.

Definition (documented choice): for row b, pick a uniformly random other row b' != b and return its
positive item, rejecting it if it is one of the user's training positives (or row b's own positive item);
rejected slots are redrawn in batch. So an item appears in proportion to how many rows of the batch hold
it (the in-batch popularity bias, as intended). Rows still rejected after the retry cap get the exact
distribution: uniform over the qualifying other rows. A row with no qualifying other row (a batch of
one row, or every other positive is one of the user's positives) falls back to uniform over the user's
non-positives (RNS).
"""

from __future__ import annotations

import numpy as np

from raysearch.samplers.base import Sampler, ScoreFn, register
from raysearch.samplers.exclusion import first_accepted

_EXACT_CELLS = 1 << 22  # rows x batch cells per chunk of the exact fallback


@register
class InBatch(Sampler):
    """In-batch negative sampling."""

    name = "inbatch"
    has_log_q = True

    def _sample(
        self, users: np.ndarray, pos_items: np.ndarray, k: int, rng: np.random.Generator, score_fn: ScoreFn | None
    ) -> np.ndarray:
        rows = np.arange(users.size) if k == 1 else np.repeat(np.arange(users.size), k)
        return self.draw_rows(rows, users, pos_items, rng).reshape(users.size, k)

    def draw_rows(
        self, rows: np.ndarray, users: np.ndarray, pos_items: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """int64 (R,): one in-batch negative for each batch row index in ``rows`` (R,)."""
        b = users.size
        if b == 1:
            return self.complement.uniform(users[rows], rng)
        row_users, row_pos = users[rows], pos_items[rows]

        def trial(idx: np.ndarray | None, g: np.random.Generator) -> np.ndarray:
            at = rows if idx is None else rows.take(idx)
            shift = (g.random(at.size) * (b - 1)).astype(np.int64)  # < b - 1: floor(u * n) < n
            return pos_items.take((at + 1 + shift) % b)  # a uniform row other than its own

        def rejected(idx: np.ndarray | None, cand: np.ndarray) -> np.ndarray:
            if idx is None:
                return (cand == row_pos) | self.complement.contains(row_users, cand)
            return (cand == row_pos.take(idx)) | self.complement.contains(row_users.take(idx), cand)

        out, left = first_accepted(rows.size, trial, rejected, rng)
        if left.size:
            out[left] = self._exact(rows[left], users, pos_items, rng)
        return out

    def _exact(
        self, rows: np.ndarray, users: np.ndarray, pos_items: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Uniform over each row's qualifying other rows (chunked R x B tests); RNS when there is none."""
        b = users.size
        out = np.empty(rows.size, dtype=np.int64)
        step = max(1, _EXACT_CELLS // b)
        for lo in range(0, rows.size, step):  # a loop over chunks of rows, not over rows
            r = rows[lo : lo + step]
            ok = ~self.complement.contains(users[r][:, None], pos_items[None, :])
            ok &= pos_items[None, :] != pos_items[r][:, None]
            ok[np.arange(r.size), r] = False
            count = ok.sum(axis=1)
            pick = np.minimum((rng.random(r.size) * count).astype(np.int64), np.maximum(count - 1, 0))
            col = (np.cumsum(ok, axis=1) > pick[:, None]).argmax(axis=1)
            chunk = pos_items[col]
            none = np.flatnonzero(count == 0)
            if none.size:
                chunk[none] = self.complement.uniform(users[r[none]], rng)
            out[lo : lo + r.size] = chunk
        return out

    def _log_q(self, users: np.ndarray, pos_items: np.ndarray, negatives: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):  # an item no other row holds: q = 0, log q = -inf
            return np.log(self.probability(users, pos_items, negatives))

    def probability(self, users: np.ndarray, pos_items: np.ndarray, negatives: np.ndarray) -> np.ndarray:
        """float64 (B, k): the probability that a slot of row b draws ``negatives[b, s]``, given the batch.

        A draw picks a uniform other row and keeps its positive unless it is one of the user's positives
        or row b's own positive, so q(j | b) = c_j / Q_b: c_j rows of the batch hold j, Q_b rows hold a
        positive that row b may take. Rows with Q_b = 0 (and batches of one row) draw uniformly from the
        user's non-positives. Membership is tested per distinct user of the batch against the batch's
        positives, in chunks (U x B tests, not B x B).
        """
        b = users.size
        uniform = 1.0 / self.complement.n_free[users].astype(np.float64)
        if b == 1:
            return np.broadcast_to(uniform[:, None], negatives.shape).copy()
        items, inverse, counts = np.unique(pos_items, return_inverse=True, return_counts=True)
        # rows of the batch whose positive is one of the user's positives, per distinct user
        distinct, user_of_row = np.unique(users, return_inverse=True)
        blocked = np.empty(distinct.size, dtype=np.int64)
        step = max(1, _EXACT_CELLS // items.size)
        for lo in range(0, distinct.size, step):  # a loop over chunks of users, not over rows
            hit = self.complement.contains(distinct[lo : lo + step, None], items[None, :])
            blocked[lo : lo + step] = hit @ counts
        blocked = blocked[user_of_row]
        # row b's own positive blocks its copies too, when it is not already one of the user's positives
        own = ~self.complement.contains(users, pos_items)
        blocked[own] += counts[inverse[own]]
        allowed = b - blocked  # Q_b
        slot = np.searchsorted(items, negatives)
        np.minimum(slot, items.size - 1, out=slot)
        c = np.where(items[slot] == negatives, counts[slot], 0)
        q = c / np.where(allowed > 0, allowed, 1)[:, None]
        none = allowed <= 0
        if none.any():
            q[none] = uniform[none, None]
        return q
