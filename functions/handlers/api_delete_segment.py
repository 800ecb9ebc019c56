"""DELETE /segments/{slug}"""

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.metrics import MetricUnit

from dal.factory import get_store
from logic.segments import delete_segment
from shared.clock import utc_now
from shared.http import build_resolver, lambda_entry, path_slug
from shared.observability import metrics
from shared.snapstart import prepare_for_snapshot

app = build_resolver()


@app.delete("/segments/<slug>")
def delete(slug: str) -> Response:
    delete_segment(get_store(), path_slug(app.current_event), utc_now)
    metrics.add_metric(name="SegmentDeleted", unit=MetricUnit.Count, value=1)
    return Response(204, None, "")


lambda_handler = lambda_entry(app)

prepare_for_snapshot(get_store)
