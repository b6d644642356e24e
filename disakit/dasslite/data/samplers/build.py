"""Index samplers for the data loaders (Dassl's ``dassl.data.samplers``).

Only the two samplers prompt learners use are provided. Dassl's domain/class-balanced samplers
(``RandomDomainSampler``, ``SeqDomainSampler``, ``RandomClassSampler``) serve DA/DG/SSL trainers
and are out of scope for this engine.
"""
from __future__ import annotations

from typing import Optional, Sequence

from torch.utils.data import RandomSampler, Sampler, SequentialSampler
from yacs.config import CfgNode

__all__ = ["build_sampler", "AVAI_SAMPLERS"]

AVAI_SAMPLERS = ["RandomSampler", "SequentialSampler"]


def _items(sampler_type: str, data_source: Optional[Sequence]) -> Sequence:
    """``data_source`` (optional in the signature only, as in Dassl) or a clear error."""
    if data_source is None:
        raise TypeError(f"{sampler_type} needs a data_source (the items to sample from)")
    return data_source


def build_sampler(
    sampler_type: str,
    cfg: Optional[CfgNode] = None,
    data_source: Optional[Sequence] = None,
    batch_size: int = 32,
    n_domain: int = 0,
    n_ins: int = 16,
) -> Sampler:
    """Return the sampler named by ``DATALOADER.<SPLIT>.SAMPLER``.

    Why: the config names the sampler by string. ``RandomSampler`` draws its permutation from
    torch's global RNG, so a seeded run visits training items in Dassl's order. ``cfg``,
    ``batch_size``, ``n_domain`` and ``n_ins`` are accepted for Dassl signature compatibility.
    """
    if sampler_type == "RandomSampler":
        return RandomSampler(_items(sampler_type, data_source))
    if sampler_type == "SequentialSampler":
        return SequentialSampler(_items(sampler_type, data_source))
    raise ValueError(
        f"Unknown sampler type: {sampler_type} (dasslite provides {', '.join(AVAI_SAMPLERS)}; "
        f"fix DATALOADER.TRAIN_X.SAMPLER / DATALOADER.TEST.SAMPLER)"
    )
