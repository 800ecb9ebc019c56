"""GET /segments/{slug}/imports/{import_id}"""

from aws_lambda_powertools.event_handler import Response

from dal.factory import get_import_files, get_import_store
from logic.imports import errors_link, find_import
from models.responses import import_json
from shared.clock import to_public
from shared.http import build_resolver, json_response, lambda_entry, path_import_id, path_slug, query_params
from shared.snapstart import prepare_for_snapshot

app = build_resolver()


@app.get("/segments/<slug>/imports/<import_id>")
def get_one(slug: str, import_id: str) -> Response:
    query_params(app.current_event, set())
    job = find_import(get_import_store(), path_slug(app.current_event), path_import_id(app.current_event))
    return json_response(200, import_json(job, to_public, errors_url=errors_link(get_import_files(), job)))


lambda_handler = lambda_entry(app)

prepare_for_snapshot(get_import_store, get_import_files)
