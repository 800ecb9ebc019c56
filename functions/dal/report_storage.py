"""Report objects in S3, written as they are read, in bounded memory: a report by one writer, the
temporary objects of a fanned-out report's slices, and the report composed from them."""

import io
import math
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import urlencode

from botocore.config import Config
from botocore.exceptions import ClientError

from dal.entities import shared_connection
from logic.report_fanout import Part
from logic.reports import StoredReport
from shared.clock import utc_now

MIB = 1024 * 1024
PART_BYTES = 8 * MIB  # what a writer holds before it sends a part
MIN_PART_BYTES = 5 * MIB  # S3 parts must be at least this, except the last
COPY_PART_BYTES = 512 * MIB  # a range S3 copies: a big slice is copied in several at once (at most 5 GiB)
COMPOSE_THREADS = 16
CONTENT_TYPE = "text/csv; charset=utf-8"
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
        reports: list[StoredReport] = []

        def tags(count: int) -> dict[str, str]:
            reports.append(describe(count))
            return _tags(reports[0])

        return None if self._write(key, lines, should_stop, tags) is None else reports[0]

    def write_part(self, key: str, lines: Iterable[str]) -> tuple[int, int]:
        """A slice of a report as a temporary object (none when it is empty): (lines, bytes)."""
        written = self._write(key, lines, lambda: False, None)
        assert written is not None
        return written

    def compose(self, key: str, parts: Sequence[Part], report: StoredReport) -> None:
        """The parts, in order, as one object tagged with `report`: one PutObject when small, else a
        multipart upload whose parts S3 copies from the parts' objects (UploadPartCopy), small
        neighbours read and sent together (S3 wants 5 MiB a part but the last), several at once."""
        if sum(part.size for part in parts) < PART_BYTES:
            body = b"".join(self._read(piece) for piece in _whole(parts))
            self._put(key, body, report)
            return
        upload_id = self._start(key)
        try:
            with ThreadPoolExecutor(COMPOSE_THREADS, thread_name_prefix="compose") as pool:
                sent = list(pool.map(lambda numbered: self._compose_part(key, upload_id, *numbered),
                                     enumerate(compose_plan(parts), start=1)))  # fmt: skip
            self._s3.complete_multipart_upload(
                Bucket=self._bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": sent}
            )
        except BaseException:
            self._abort(key, upload_id)
            raise
        self._tag(key, report)

    def _compose_part(self, key: str, upload_id: str, number: int, part: "UploadPart") -> dict[str, Any]:
        if part.copy:
            ((source, first, end),) = part.ranges
            answer = self._s3.upload_part_copy(
                Bucket=self._bucket, Key=key, UploadId=upload_id, PartNumber=number,
                CopySource={"Bucket": self._bucket, "Key": source},
                CopySourceRange=f"bytes={first}-{end - 1}",
            )  # fmt: skip
            return {"ETag": answer["CopyPartResult"]["ETag"], "PartNumber": number}
        body = b"".join(self._read(piece) for piece in part.ranges)
        answer = self._s3.upload_part(
            Bucket=self._bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
        )
        return {"ETag": answer["ETag"], "PartNumber": number}

    def _read(self, piece: tuple[str, int, int]) -> bytes:
        source, first, end = piece
        answer = self._s3.get_object(Bucket=self._bucket, Key=source, Range=f"bytes={first}-{end - 1}")
        return bytes(answer["Body"].read())

    def _write(
        self,
        key: str,
        lines: Iterable[str],
        should_stop: Callable[[], bool],
        tags: Callable[[int], dict[str, str]] | None,
    ) -> tuple[int, int] | None:
        """Stream the lines into the object: one PutObject under a part, else a multipart upload (tagged
        once complete, when `tags` says how); (lines, bytes), or None if should_stop() said so. No
        object when there is nothing to write and nothing to tag."""
        buffer = io.BytesIO()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        count = size = 0
        try:
            for line in lines:
                size += buffer.write(line.encode("utf-8"))
                count += 1
                if count % STOP_CHECK_LINES == 0 and should_stop():
                    self._abort(key, upload_id)
                    return None
                if buffer.tell() >= PART_BYTES:
                    upload_id = upload_id or self._start(key)
                    parts.append(self._part(key, upload_id, len(parts) + 1, buffer))
            tagging = None if tags is None else tags(count)
            if upload_id is None:
                if size or tagging is not None:
                    self._s3.put_object(
                        Bucket=self._bucket, Key=key, Body=buffer.getvalue(), ContentType=CONTENT_TYPE,
                        ServerSideEncryption="AES256", **({"Tagging": urlencode(tagging)} if tagging else {}),
                    )  # fmt: skip
                return count, size
            parts.append(self._part(key, upload_id, len(parts) + 1, buffer))
            self._s3.complete_multipart_upload(
                Bucket=self._bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            self._abort(key, upload_id)
            raise
        if tagging is not None:
            self._s3.put_object_tagging(
                Bucket=self._bucket, Key=key,
                Tagging={"TagSet": [{"Key": name, "Value": value} for name, value in tagging.items()]},
            )  # fmt: skip
        return count, size

    def _put(self, key: str, body: bytes, report: StoredReport) -> None:
        self._s3.put_object(
            Bucket=self._bucket, Key=key, Body=body, ContentType=CONTENT_TYPE, ServerSideEncryption="AES256",
            Tagging=urlencode(_tags(report)),
        )  # fmt: skip

    def _tag(self, key: str, report: StoredReport) -> None:
        tags = [{"Key": name, "Value": value} for name, value in _tags(report).items()]
        self._s3.put_object_tagging(Bucket=self._bucket, Key=key, Tagging={"TagSet": tags})

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


class UploadPart(NamedTuple):
    """One part of a composed report: a byte range S3 copies (`copy`), or ranges read and sent as one
    upload. Ranges are (object key, first byte, end byte excluded)."""

    copy: bool
    ranges: list[tuple[str, int, int]]


def compose_plan(
    parts: Sequence[Part],
    min_part: int = MIN_PART_BYTES,
    stream_part: int = PART_BYTES,
    copy_part: int = COPY_PART_BYTES,
) -> list[UploadPart]:
    """The upload parts that make the objects one, in order. A run of objects under `min_part` is read
    and sent together, topped up from the start of the object after it, until it is `stream_part`;
    the rest of an object of at least `min_part` is copied by S3 in ranges of at most `copy_part`.
    So every part but the last is at least `min_part`, and no byte is read or copied twice."""
    plan: list[UploadPart] = []
    pending: list[tuple[str, int, int]] = []
    pending_size = 0
    for part in parts:
        offset = 0
        if pending:
            offset = min(part.size, stream_part - pending_size)
            pending.append((part.key, 0, offset))
            pending_size += offset
            if pending_size >= stream_part:
                plan.append(UploadPart(False, pending))
                pending, pending_size = [], 0
        rest = part.size - offset
        if rest >= min_part:
            pieces = math.ceil(rest / copy_part)
            step = math.ceil(rest / pieces)
            for first in range(offset, part.size, step):
                plan.append(UploadPart(True, [(part.key, first, min(first + step, part.size))]))
        elif rest > 0:
            pending, pending_size = [(part.key, offset, part.size)], rest
    if pending:
        plan.append(UploadPart(False, pending))
    return plan


def _whole(parts: Sequence[Part]) -> list[tuple[str, int, int]]:
    return [(part.key, 0, part.size) for part in parts]
