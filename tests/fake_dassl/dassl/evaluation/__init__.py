"""``dassl.evaluation`` (borrowed from the bundled engine: registry, builder and Classification)."""
from disakit.dasslite.evaluation import (EVALUATOR_REGISTRY, Classification,  # noqa: F401
                                         EvaluatorBase, build_evaluator)
