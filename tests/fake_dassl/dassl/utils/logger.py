"""``dassl.utils.logger`` (borrowed from the bundled engine)."""
from disakit.dasslite.utils import Logger, setup_logger

__all__ = ["Logger", "setup_logger"]
