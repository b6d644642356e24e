"""``dassl.metrics`` (borrowed from the bundled engine)."""
from disakit.dasslite.metrics import compute_accuracy  # noqa: F401
