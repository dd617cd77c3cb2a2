"""A master list in S3 or an S3-compatible store, written with conditional puts."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from ..config import Settings
from ..errors import TooLarge
from ..records import ServerList
from .base import (
    Location,
    publish_conditionally,
)


class S3MasterList(Location):
    """``s3://bucket/key`` through boto3: conditional ``put_object`` (``IfMatch``/``IfNoneMatch``).

    Credentials, region and endpoint come from boto3's usual chain (environment,
    ``~/.aws``, instance roles; ``AWS_ENDPOINT_URL`` for S3-compatible servers).
    """

    def __init__(self, settings: Settings, setting: str, location: str) -> None:
        super().__init__(settings, setting, location)
        parts = urlsplit(location)
        self.bucket, self.key = parts.netloc, unquote(parts.path.lstrip("/"))
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise self.error("needs boto3: pip install flask-clustershazbot[s3]") from None
        timeout = settings.master_list_timeout
        self.client: Any = boto3.session.Session().client(
            "s3",
            config=Config(
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"max_attempts": 2, "mode": "standard"},
            ),
        )

    def _call(self, name: str, **kw: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, name)(Bucket=self.bucket, Key=self.key, **kw)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in (
                "NoSuchKey",
                "404",
                "PreconditionFailed",
                "412",
                "ConditionalRequestConflict",
                "409",
            ):
                return code  # handled by the caller: nothing stored yet, or a conflict
            raise self.error(f"{name} failed: {code or 'ClientError'}") from None
        except BotoCoreError as exc:
            raise self.error(f"{name} failed: {type(exc).__name__}") from None

    def _get(self) -> tuple[bytes, str] | None:
        """The stored body and its ETag; None when nothing is stored yet."""
        reply = self._call("get_object")
        if isinstance(reply, str):
            return None
        if reply.get("ContentLength", 0) > self.settings.max_body_bytes:
            raise TooLarge(f"{self.where} is larger than the body limit")
        try:
            return reply["Body"].read(), str(reply["ETag"])
        except Exception as exc:  # botocore's stream errors are not one class
            raise self.error(f"get_object failed: {type(exc).__name__}") from None

    def _fetch(self, deadline: float, repair: bool = False) -> tuple[ServerList, str | None]:
        got = self.within(deadline, "get_object", self._get)
        if got is None:
            return ServerList(), None
        return self.parse(got[0], repair), got[1]

    def read(self) -> ServerList:
        return self._fetch(self.deadline())[0]

    def publish(self, view: ServerList) -> None:
        def store(body: bytes, etag: str | None, deadline: float) -> bool:
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            reply = self.within(
                deadline,
                "put_object",
                lambda: self._call(
                    "put_object", Body=body, ContentType="application/json", **condition
                ),
            )
            return not isinstance(reply, str)

        publish_conditionally(self, lambda d: self._fetch(d, repair=True), store, view)
