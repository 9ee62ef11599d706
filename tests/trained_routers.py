"""Small trained routers for tests that need a checkpoint on disk."""

from __future__ import annotations

from pathlib import Path


def knn_checkpoint(folder: Path) -> None:
    """A small knn router trained on models `s` and `w`, saved in `folder`."""
    from interlock.routing.data import OutcomeTable
    from interlock.routing.features import HashedNgramFeaturizer
    from interlock.routing.learned import make_router

    knn = make_router("knn", k=2)
    knn.fit(OutcomeTable(["a b", "c d", "e f"], ["s", "w"], [[1, 0], [1, 1], [0, 1]]),
            HashedNgramFeaturizer(n_features=2**8, dim=4))
    knn.save(folder)
