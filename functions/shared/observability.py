"""One logger, tracer and metrics object per container, configured by POWERTOOLS_* variables.

The tracer is powertools' own: active with the X-Ray SDK in Lambda (`Tracing: Active` in
template.yaml), disabled where powertools finds no Lambda or POWERTOOLS_TRACE_DISABLED is set
(tests, the local runtime, sam local). It patches botocore alone, which every AWS call of the
service (pynamodb's included) goes through: by default the X-Ray SDK would import and patch every
library it can trace that happens to be installed.
"""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer(patch_modules=["botocore"])
metrics = Metrics()
