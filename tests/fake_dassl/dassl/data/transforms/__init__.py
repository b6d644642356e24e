"""``dassl.data.transforms`` (borrowed from the bundled engine)."""
from disakit.dasslite.data.transforms import INTERPOLATION_MODES, build_transform  # noqa: F401
