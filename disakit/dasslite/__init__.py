"""dasslite: a Dassl.pytorch-compatible training engine bundled with the toolkit.

It mirrors Dassl's module paths (``dasslite.config`` for ``dassl.config`` and so on) so that
trainers and datasets written against Dassl run unchanged through ``dassl_api``. Sub-packages
are imported on demand; importing ``dasslite`` itself loads nothing heavy.
"""

__version__ = "0.6.3"
