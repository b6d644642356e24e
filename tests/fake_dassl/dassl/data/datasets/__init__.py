from .build import DATASET_REGISTRY, build_dataset  # noqa: F401
# Datum and DatasetBase are borrowed from the bundled engine.
from disakit.dasslite.data.datasets import Datum, DatasetBase  # noqa: F401
