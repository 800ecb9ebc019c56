"""Report objects in S3 (written as they are read, in bounded memory) and background report requests."""

import io
import math
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from botocore.config import Config
from botocore.exceptions import ClientError
from pynamodb.exceptions import PutError

from dal.entities import (
    REPORT_JOBS,
    ReportRequestItem,
    job_gsi1sk,
    jobs_gsi1pk,
    report_request_pk,
    shared_connection,
)
from dal.repository import JOB_STALE_AFTER
from dal.transient import busy_when_transient
from logic.reports import StoredReport
from shared.clock import to_stored, utc_now

PART_BYTES = 8 * 1024 * 1024  # S3 parts must be at least 5 MiB, except the last
CONTENT_TYPE = "text/csv; charset=utf-8"
REQUEST_LIFETIME = timedelta(hours=1)
STOP_CHECK_LINES = 5_000


def s3_client(session: Any = None) -> Any:
    """An S3 client from the botocore session of the store's connection: a session of its own would
    load the endpoint and partition data again (about 65 ms of a report function's cold start)."""
    connection = shared_connection()
    session = session or connection.session
    return session.create_client("s3", region_name=connection.region, config=Config(signature_version="s3v4"))


class S3ReportStorage:
    def __init__(self, bucket: str, link_seconds: int, client: Any = None) -> None:
        self._bucket = bucket
        self._link_seconds = link_seconds
        self._s3 = client or s3_client()

    def describe(self, key: str) -> StoredReport | None:
        try:
            tags = self._s3.get_object_tagging(Bucket=self._bucket, Key=key)["TagSet"]
        except ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        values = {tag["Key"]: tag["Value"] for tag in tags}
        if "rows" not in values:
            return None  # written but never finished: write it again
        return StoredReport(rows=int(values["rows"]), complete=values.get("complete") == "true")

    def save(
        self,
        key: str,
        lines: Iterable[str],
        should_stop: Callable[[], bool],
        describe: Callable[[int], StoredReport],
    ) -> StoredReport | None:
        """One PutObject, tags included, for a small report; a multipart upload for a big one, tagged
        once complete. Memory stays one part. An object without its tags reads as unfinished."""
        buffer = io.BytesIO()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        count = 0
        try:
            for line in lines:
                buffer.write(line.encode("utf-8"))
                count += 1
                if count % STOP_CHECK_LINES == 0 and should_stop():
                    self._abort(key, upload_id)
                    return None
                if buffer.tell() >= PART_BYTES:
                    upload_id = upload_id or self._start(key)
                    parts.append(self._part(key, upload_id, len(parts) + 1, buffer))
            report = describe(count)
            if upload_id is None:
                self._s3.put_object(
                    Bucket=self._bucket, Key=key, Body=buffer.getvalue(), ContentType=CONTENT_TYPE,
                    ServerSideEncryption="AES256", Tagging=urlencode(_tags(report)),
                )  # fmt: skip
                return report
            parts.append(self._part(key, upload_id, len(parts) + 1, buffer))
            self._s3.complete_multipart_upload(
                Bucket=self._bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            self._abort(key, upload_id)
            raise
        tags = [{"Key": name, "Value": value} for name, value in _tags(report).items()]
        self._s3.put_object_tagging(Bucket=self._bucket, Key=key, Tagging={"TagSet": tags})
        return report

    def link(self, key: str) -> tuple[str, datetime]:
        url = self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=self._link_seconds
        )
        return url, utc_now() + timedelta(seconds=self._link_seconds)

    def _start(self, key: str) -> str:
        upload = self._s3.create_multipart_upload(
            Bucket=self._bucket, Key=key, ContentType=CONTENT_TYPE, ServerSideEncryption="AES256"
        )
        return str(upload["UploadId"])

    def _part(self, key: str, upload_id: str, number: int, buffer: io.BytesIO) -> dict[str, Any]:
        answer = self._s3.upload_part(
            Bucket=self._bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=buffer.getvalue()
        )
        buffer.seek(0)
        buffer.truncate()
        return {"ETag": answer["ETag"], "PartNumber": number}

    def _abort(self, key: str, upload_id: str | None) -> None:
        if upload_id is not None:
            self._s3.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)


def _tags(report: StoredReport) -> dict[str, str]:
    return {"rows": str(report.rows), "complete": str(report.complete).lower()}


@busy_when_transient
class DynamoBackgroundReports:
    """Report jobs: a request item whose stream record enqueues the job; it stays in the jobs index
    (JOBS#report) while pending, so the sweeper sends it again if it is lost."""

    def request(self, key: str, period: str, user_id: int | None, now: datetime) -> bool:
        item = ReportRequestItem(
            report_request_pk(key),
            ReportRequestItem.SK,
            key=key,
            period=period,
            user_id=user_id,
            status="pending",
            requested_at=to_stored(now),
            ttl=math.ceil((now + REQUEST_LIFETIME).timestamp()),
        )
        item.gsi1pk, item.gsi1sk = _job_key(key, now + JOB_STALE_AFTER)
        still_pending = (ReportRequestItem.status == "pending") & (
            ReportRequestItem.ttl > int(now.timestamp())
        )
        try:
            item.save(condition=~still_pending)
        except PutError as error:
            if getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def pending(self, key: str) -> tuple[str, int | None] | None:
        """The period and user of a report still to write, read consistently; None if done or unknown."""
        try:
            item = ReportRequestItem.get(report_request_pk(key), ReportRequestItem.SK, consistent_read=True)
        except ReportRequestItem.DoesNotExist:
            return None
        if item.status == "done":
            return None
        return item.period, None if item.user_id is None else int(item.user_id)

    def claim(self, key: str, now: datetime) -> None:
        """Being written: the sweeper leaves it alone until it is stale."""
        gsi1pk, gsi1sk = _job_key(key, now + JOB_STALE_AFTER)
        self._update(key, [ReportRequestItem.gsi1pk.set(gsi1pk), ReportRequestItem.gsi1sk.set(gsi1sk)])

    def finish(self, key: str) -> None:
        self._update(key, [ReportRequestItem.status.set("done"), *_out_of_jobs()])

    def fail(self, key: str) -> None:
        """Its message goes to the dead-letter queue: out of the sweeper's sight until redriven."""
        self._update(key, [ReportRequestItem.status.set("failed"), *_out_of_jobs()])

    def _update(self, key: str, actions: list[Any]) -> None:
        ReportRequestItem(report_request_pk(key), ReportRequestItem.SK).update(
            actions=actions, condition=ReportRequestItem.pk.exists()
        )


def _job_key(key: str, due_at: datetime) -> tuple[str, str]:
    return jobs_gsi1pk(REPORT_JOBS), job_gsi1sk(to_stored(due_at), key)


def _out_of_jobs() -> list[Any]:
    return [ReportRequestItem.gsi1pk.remove(), ReportRequestItem.gsi1sk.remove()]
