"""``dassl.optim.optimizer`` (borrowed from the bundled engine)."""
from disakit.dasslite.optim import build_optimizer  # noqa: F401
