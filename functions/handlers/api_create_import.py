"""POST /segments/{slug}/imports"""

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.metrics import MetricUnit

from dal.factory import get_import_files, get_import_store
from logic.imports import ImportRequest, create_import
from models.api import CreateImportRequest, compile_schemas
from models.responses import import_json
from shared.clock import to_public, utc_now
from shared.http import build_resolver, json_response, lambda_entry, parse_body, path_slug
from shared.observability import metrics
from shared.snapstart import prepare_for_snapshot

app = build_resolver()


@app.post("/segments/<slug>/imports")
def create(slug: str) -> Response:
    segment = path_slug(app.current_event)
    request = parse_body(app.current_event, CreateImportRequest)
    job, link = create_import(
        get_import_store(), get_import_files(), segment,
        ImportRequest(request.mode, request.ttl_seconds, request.expires_at), utc_now(),
    )  # fmt: skip
    metrics.add_metric(name="ImportsCreated", unit=MetricUnit.Count, value=1)
    upload = {
        "url": link.url,
        "method": "PUT",
        "headers": link.headers,
        "expires_at": to_public(link.expires_at),
    }
    location = f"/segments/{job.slug}/imports/{job.import_id}"
    return json_response(201, import_json(job, to_public, upload), {"Location": location})


lambda_handler = lambda_entry(app)

prepare_for_snapshot(get_import_store, get_import_files, compile_schemas)
