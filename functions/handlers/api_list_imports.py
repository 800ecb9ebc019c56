"""GET /segments/{slug}/imports"""

from aws_lambda_powertools.event_handler import Response

from dal.factory import get_import_files, get_import_store
from logic.imports import errors_link, list_imports
from models.responses import import_json
from shared.clock import to_public
from shared.http import (
    build_resolver,
    encode_cursor,
    import_page_request,
    json_response,
    lambda_entry,
    path_slug,
    query_params,
)
from shared.snapstart import prepare_for_snapshot

app = build_resolver()


@app.get("/segments/<slug>/imports")
def list_all(slug: str) -> Response:
    limit, after = import_page_request(query_params(app.current_event, {"limit", "cursor"}))
    jobs, more = list_imports(get_import_store(), path_slug(app.current_event), limit, after)
    files = get_import_files()
    body = {
        "imports": [import_json(job, to_public, errors_url=errors_link(files, job)) for job in jobs],
        "next_cursor": encode_cursor(jobs[-1].import_id) if more and jobs else None,
    }
    return json_response(200, body)


lambda_handler = lambda_entry(app)

prepare_for_snapshot(get_import_store, get_import_files)
