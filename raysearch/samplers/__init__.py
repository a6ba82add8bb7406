"""Negative samplers: alias tables, vectorised positive exclusion, one module per sampler.

``make_sampler(name, train, **params)`` builds any sampler registered in ``SAMPLERS``: rns, pns, dns,
srns, gdns, icpns, inbatch, mixed, ahns, the synthesising mixgcf and dens, the adversarial (IRGAN)
generator, and the knowledge-enhanced attribute and social. See ``raysearch.samplers.base`` for the
contract.
"""

from raysearch.samplers import (  # noqa: F401  (registration)
    adversarial,
    ahns,
    attribute,
    dens,
    dns,
    gdns,
    icpns,
    inbatch,
    mixed,
    mixgcf,
    pns,
    rns,
    social,
    srns,
)
from raysearch.samplers.alias import AliasTable, RaggedAliasTable
from raysearch.samplers.base import SAMPLERS, Sampler, make_sampler

__all__ = ["SAMPLERS", "AliasTable", "RaggedAliasTable", "Sampler", "make_sampler"]
