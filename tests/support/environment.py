"""The environment every in-process run of the functions gets: dummy credentials for moto and the
settings template.yaml gives a deployed function. Tests and benchmarks differ only in their names
for the table and bucket, the catalog cache and a few extras."""

MOTO_QUEUES = "https://sqs.us-east-1.amazonaws.com/123456789012/"


def queue_url(table: str, kind: str) -> str:
    """The job queue of a kind (cleanup, report, import) that moto_environment names for a table."""
    return f"{MOTO_QUEUES}{table}-{kind}"


def imports_bucket(table: str) -> str:
    return f"{table}-imports"


def moto_environment(table: str, bucket: str, catalog_cache_seconds: int) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        # moto 5 streams: newer botocore would route stream calls to an account endpoint moto does not know.
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "TABLE_NAME": table,
        "REPORTS_BUCKET": bucket,
        "CLEANUP_QUEUE_URL": queue_url(table, "cleanup"),
        "REPORT_QUEUE_URL": queue_url(table, "report"),
        "IMPORT_QUEUE_URL": queue_url(table, "import"),
        "IMPORTS_BUCKET": imports_bucket(table),
        "JOB_RETRY_SECONDS": "0",  # a failed job is received again at once (deployed: JobRetrySeconds)
        "CATALOG_CACHE_SECONDS": str(catalog_cache_seconds),
        "POWERTOOLS_SERVICE_NAME": "segments",
        "POWERTOOLS_METRICS_NAMESPACE": "Segments",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
