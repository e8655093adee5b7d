"""Query / gallery evaluation of a model during training (mAP, CMC, mINP in percent)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


def evaluate_query_gallery(model: nn.Module, dataset, transform, batch_size: int, device: torch.device,
                           metric: str, protocol: str, amp: torch.dtype | None = None,
                           **extract_options: Any) -> dict[str, float]:
    """mAP, R1, R5, R10, mINP (percent) of ``model`` on ``dataset.query`` against ``dataset.gallery``.
    ``extract_options`` (``flip``, ``num_workers``, ``progress``) go to ``extract_features``."""
    from reidkit.evaluation.extract import extract_features
    from reidkit.evaluation.metrics import evaluate

    kw = dict(transform=transform, batch_size=batch_size, device=device, amp_dtype=amp, **extract_options)
    q = extract_features(model, dataset.query, description="extract query", **kw)
    g = extract_features(model, dataset.gallery, description="extract gallery", **kw)
    m = evaluate(query=q, gallery=g, metric=metric, protocol=protocol)
    cmc = m["cmc"]
    rank = lambda r: float(cmc[min(r, len(cmc)) - 1]) * 100  # noqa: E731
    return {"mAP": float(m["mAP"]) * 100, "R1": rank(1), "R5": rank(5), "R10": rank(10),
            "mINP": float(m["mINP"]) * 100}
