"""One module per Lambda function: template.yaml names each `handlers.<module>.lambda_handler`.

Lambda imports this package before any handler, so it is where the cold start is kept lean:
powertools' two catch-all packages load only the resolver and event classes a function uses
(shared/lean_imports.py).
"""

from shared.lean_imports import defer_package_init

defer_package_init("aws_lambda_powertools.event_handler")
defer_package_init("aws_lambda_powertools.utilities.data_classes")
