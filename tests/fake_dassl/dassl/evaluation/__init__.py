"""``dassl.evaluation`` (borrowed from the bundled engine: registry, builder and Classification)."""
from disakit.dasslite.evaluation import (  # noqa: F401
                                         EVALUATOR_REGISTRY,
                                         Classification,
                                         EvaluatorBase,
                                         build_evaluator,
)
