"""POST /segments"""

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.metrics import MetricUnit

from dal.factory import get_store
from logic.segments import NewSegment, create_segment
from models.api import CreateSegmentRequest, compile_schemas
from models.domain import MemberCounts
from models.responses import segment_json
from shared.clock import to_public, utc_now
from shared.http import build_resolver, json_response, lambda_entry, parse_body
from shared.observability import metrics
from shared.snapstart import prepare_for_snapshot

app = build_resolver()


@app.post("/segments")
def create() -> Response:
    request = parse_body(app.current_event, CreateSegmentRequest)
    new = NewSegment(request.slug, request.description, request.auto_percent, request.exclusion_group)
    segment = create_segment(get_store(), new, utc_now)
    metrics.add_metric(name="SegmentCreated", unit=MetricUnit.Count, value=1)
    body = segment_json(segment, to_public, MemberCounts(), segment.created_at)  # a new generation: empty
    return json_response(201, body, {"Location": f"/segments/{segment.slug}"})


lambda_handler = lambda_entry(app)

prepare_for_snapshot(get_store, compile_schemas)
