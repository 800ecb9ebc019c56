"""An import's files in the imports bucket (private, encrypted, TLS only; docs/imports.md):

- `imports/{slug}/{import_id}/upload.csv`: what the client PUTs through the presigned link; its S3
  event starts the import;
- `.../source.csv`: the upload kept when the import starts, read chunk by chunk (a later upload to
  the link changes nothing);
- `.../errors/{chunk}.csv`: the rejected lines of one chunk; `.../errors.csv`: all of them, in line
  order, behind the import's `errors_url`.

The upload and its copy are deleted when the import ends; the errors CSV expires with the bucket's
lifecycle rule (30 days).
"""

import io
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

from botocore.exceptions import ClientError

from dal.report_storage import s3_client
from logic.import_lines import ERRORS_HEADER
from logic.imports import UploadLink
from shared.clock import utc_now

UPLOAD_CONTENT_TYPE = "text/csv"
ERRORS_CONTENT_TYPE = "text/csv; charset=utf-8"
PART_BYTES = 8 * 1024 * 1024  # S3 parts must be at least 5 MiB, except the last
READ_BLOCK = 1024 * 1024
_MISSING = ("NoSuchKey", "404", "NotFound", "PreconditionFailed", "412")


def upload_key(slug: str, import_id: str) -> str:
    return f"imports/{slug}/{import_id}/upload.csv"


def import_of_upload(key: str) -> tuple[str, str] | None:
    """(slug, import_id) of an upload's object key; None for any other key."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != "imports" or parts[3] != "upload.csv":
        return None
    return parts[1], parts[2]


def _source_key(slug: str, import_id: str) -> str:
    return f"imports/{slug}/{import_id}/source.csv"


def _errors_part_key(slug: str, import_id: str, chunk: int) -> str:
    return f"imports/{slug}/{import_id}/errors/{chunk:06d}.csv"


def _errors_key(slug: str, import_id: str) -> str:
    return f"imports/{slug}/{import_id}/errors.csv"


class S3ImportFiles:
    def __init__(self, bucket: str, link_seconds: int, client: Any = None) -> None:
        self._bucket = bucket
        self._link_seconds = link_seconds
        self._s3 = client or s3_client()

    def upload_link(self, slug: str, import_id: str) -> UploadLink:
        """A presigned PUT of the upload's key, with the one header the client must send."""
        url = self._s3.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": self._bucket,
                "Key": upload_key(slug, import_id),
                "ContentType": UPLOAD_CONTENT_TYPE,
            },
            ExpiresIn=self._link_seconds,
        )
        expires_at = utc_now() + timedelta(seconds=self._link_seconds)
        return UploadLink(url, {"content-type": UPLOAD_CONTENT_TYPE}, expires_at)

    def upload_size(self, slug: str, import_id: str, etag: str) -> int | None:
        try:
            head = self._s3.head_object(Bucket=self._bucket, Key=upload_key(slug, import_id), IfMatch=etag)
        except ClientError as error:
            if _code(error) in _MISSING:
                return None
            raise
        return int(head["ContentLength"])

    def keep_upload(self, slug: str, import_id: str, etag: str) -> bool:
        """Copy the upload (if it is still this one) to the import's source; a copy made before by a
        start run again is kept. A single-part object's copy has its ETag, which proves it is the
        upload meant (the copy's own condition says the same where S3 checks it)."""
        source = _source_key(slug, import_id)
        if self._etag(source) == etag:
            return True
        try:
            copied = self._s3.copy_object(
                Bucket=self._bucket,
                Key=source,
                CopySource={"Bucket": self._bucket, "Key": upload_key(slug, import_id)},
                CopySourceIfMatch=etag,
                ServerSideEncryption="AES256",
            )
        except ClientError as error:
            if _code(error) in _MISSING:
                return False
            raise
        if copied["CopyObjectResult"]["ETag"] != etag:
            self._s3.delete_object(Bucket=self._bucket, Key=source)
            return False
        return True

    def source_blocks(self, slug: str, import_id: str) -> Iterator[bytes]:
        body = self._s3.get_object(Bucket=self._bucket, Key=_source_key(slug, import_id))["Body"]
        yield from body.iter_chunks(READ_BLOCK)

    def source_range(self, slug: str, import_id: str, start: int, end: int) -> bytes:
        answer = self._s3.get_object(
            Bucket=self._bucket, Key=_source_key(slug, import_id), Range=f"bytes={start}-{end - 1}"
        )
        return bytes(answer["Body"].read())

    def save_errors(self, slug: str, import_id: str, chunk: int, lines: list[str]) -> None:
        self._s3.put_object(
            Bucket=self._bucket,
            Key=_errors_part_key(slug, import_id, chunk),
            Body="".join(lines).encode("utf-8"),
            ContentType=ERRORS_CONTENT_TYPE,
            ServerSideEncryption="AES256",
        )

    def compose_errors(self, slug: str, import_id: str, chunks: list[int]) -> None:
        """The errors CSV: its header, then each chunk's rejected lines in line order, streamed in
        parts (memory stays one part, whatever the file)."""

        def pieces() -> Iterator[bytes]:
            yield ERRORS_HEADER.encode("utf-8")
            for chunk in sorted(chunks):
                body = self._s3.get_object(Bucket=self._bucket, Key=_errors_part_key(slug, import_id, chunk))
                yield from body["Body"].iter_chunks(READ_BLOCK)

        if self._etag(_errors_key(slug, import_id)) is None:  # written by a finish run before: kept
            self._write(_errors_key(slug, import_id), pieces())
        for start in range(0, len(chunks), 1000):
            parts = [
                {"Key": _errors_part_key(slug, import_id, chunk)} for chunk in chunks[start : start + 1000]
            ]
            self._s3.delete_objects(Bucket=self._bucket, Delete={"Objects": parts, "Quiet": True})

    def errors_link(self, slug: str, import_id: str) -> str:
        return str(
            self._s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": self._bucket, "Key": _errors_key(slug, import_id)},
                ExpiresIn=self._link_seconds,
            )
        )

    def drop_files(self, slug: str, import_id: str) -> None:
        keys = [{"Key": upload_key(slug, import_id)}, {"Key": _source_key(slug, import_id)}]
        self._s3.delete_objects(Bucket=self._bucket, Delete={"Objects": keys, "Quiet": True})

    def _etag(self, key: str) -> str | None:
        try:
            return str(self._s3.head_object(Bucket=self._bucket, Key=key)["ETag"])
        except ClientError as error:
            if _code(error) in _MISSING:
                return None
            raise

    def _write(self, key: str, pieces: Iterable[bytes]) -> None:
        """One PutObject for a small object, a multipart upload for a big one."""
        buffer = io.BytesIO()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            for piece in pieces:
                buffer.write(piece)
                if buffer.tell() >= PART_BYTES:
                    if upload_id is None:
                        upload_id = self._s3.create_multipart_upload(
                            Bucket=self._bucket, Key=key, ContentType=ERRORS_CONTENT_TYPE,
                            ServerSideEncryption="AES256",
                        )["UploadId"]  # fmt: skip
                    parts.append(self._part(key, upload_id, len(parts) + 1, buffer))
            if upload_id is None:
                self._s3.put_object(
                    Bucket=self._bucket, Key=key, Body=buffer.getvalue(), ContentType=ERRORS_CONTENT_TYPE,
                    ServerSideEncryption="AES256",
                )  # fmt: skip
                return
            parts.append(self._part(key, upload_id, len(parts) + 1, buffer))
            self._s3.complete_multipart_upload(
                Bucket=self._bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            if upload_id is not None:
                self._s3.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)
            raise

    def _part(self, key: str, upload_id: str, number: int, buffer: io.BytesIO) -> dict[str, Any]:
        answer = self._s3.upload_part(
            Bucket=self._bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=buffer.getvalue()
        )
        buffer.seek(0)
        buffer.truncate()
        return {"ETag": answer["ETag"], "PartNumber": number}


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
