"""disakit: DiSa and the CoOp-family baselines as one installable, namespaced library.

Layers (each importable on its own): ``disakit.dasslite`` (the Dassl-compatible engine),
``disakit.dassl_api`` (the seam: a real ``dassl`` when installed, else ours),
``disakit.clipkit`` (CLIP loading, prompt injection, losses), ``disakit.datasets`` and
``disakit.trainers`` (the repository's ``datasets/`` and ``trainers/`` folders, kept at the top
of the checkout for CoOp habits), ``disakit.runkit`` (run bookkeeping and the paper-table
driver), and ``disakit.plugin`` (use the trainers from another CoOp-family repository).
Installing the project adds only the top-level name ``disakit``.
"""
__version__ = "0.2.0"
