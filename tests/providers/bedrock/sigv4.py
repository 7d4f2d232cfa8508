"""AWS Signature Version 4 as an AWS service checks it, for the fakes of AWS services.

- :class:`Keys`: one credential set a fake accepts (access key, secret, session token).
- :func:`verify` checks a received request the way AWS does, in AWS's order: the
  ``Authorization`` header, the credential scope (known access key, region, service), the
  ``X-Amz-Date`` (well formed, within five minutes, the scope's day), the session token, the
  ``X-Amz-Content-SHA256`` header against the body, then the signature, recomputed with botocore
  from the path exactly as received. A refusal raises :class:`SignatureError` with the error
  type and message AWS sends, and a reason for the test's eyes.
- :func:`sign_headers` signs a POST as botocore does, also for another time than now, so that a
  test can forge what a broken client sends.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SIGNATURE_TTL = datetime.timedelta(minutes=5)
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_AUTH_SCHEME = "AWS4-HMAC-SHA256 "
_SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your"
    " AWS Secret Access Key and signing method. Consult the service documentation for details."
)
_INVALID_TOKEN = "The security token included in the request is invalid."


@dataclass(frozen=True)
class Keys:
    """One AWS credential set; ``session_token`` is set for temporary (STS) credentials."""

    access_key: str
    secret_key: str
    session_token: str | None = None


class SignatureError(Exception):
    """A request AWS refuses before it reaches the service: AWS's error type and message, and
    ``reason``, what exactly was wrong (with the canonical request on a signature mismatch)."""

    def __init__(
        self,
        reason: str,
        message: str = _SIGNATURE_MISMATCH,
        error_type: str = "InvalidSignatureException",
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message
        self.error_type = error_type


def verify(
    request: web.BaseRequest,
    body: bytes,
    *,
    keys: Mapping[str, Keys],
    region: str,
    service: str,
) -> Keys:
    """The credential set ``request`` is signed with, or :class:`SignatureError`.

    ``keys`` maps each accepted access key to its credential set; ``request.raw_path`` is
    signed as received, so a client that signs one path and sends another fails as on AWS.
    """
    header = request.headers.get("Authorization")
    if header is None:
        raise SignatureError(
            "no Authorization header",
            "Missing Authentication Token",
            "MissingAuthenticationTokenException",
        )
    fields = _authorization_fields(header)
    access_key, date, scope_region, scope_service, terminator = _credential_scope(
        fields["Credential"]
    )
    signer = keys.get(access_key)
    if signer is None:
        raise SignatureError(
            f"unknown access key {access_key}", _INVALID_TOKEN, "UnrecognizedClientException"
        )
    if scope_region != region:
        raise SignatureError(
            f"region {scope_region!r}, expected {region!r}",
            "Credential should be scoped to a valid region. ",
        )
    if scope_service != service or terminator != "aws4_request":
        raise SignatureError(
            f"scope {scope_service}/{terminator}",
            f"Credential should be scoped to correct service: '{service}'. ",
        )
    amz_date = _check_date(request.headers.get("X-Amz-Date"), date)
    _check_token(request.headers.get("X-Amz-Security-Token"), signer.session_token)
    _check_content_sha256(request.headers.get("X-Amz-Content-SHA256"), body)
    _check_signature(request, body, fields, amz_date, SigV4Auth(_botocore(signer), service, region))
    return signer


def sign_headers(
    url: str,
    body: bytes,
    *,
    access_key: str,
    secret_key: str,
    region: str,
    session_token: str | None = None,
    at: datetime.datetime | None = None,
    service: str = "bedrock",
) -> dict[str, str]:
    """The headers of a POST of JSON ``body`` to ``url`` signed by botocore's SigV4Auth.

    ``url``'s path must already be percent-encoded as sent (``...v1%3A0/converse``). ``at``
    signs for another time than now (an expired signature), through the same botocore steps.
    """
    request = AWSRequest(
        method="POST", url=url, data=body, headers={"Content-Type": "application/json"}
    )
    auth = SigV4Auth(Credentials(access_key, secret_key, session_token), service, region)
    if at is None:
        auth.add_auth(request)
        return dict(request.headers.items())
    amz_date = at.strftime(AMZ_DATE_FORMAT)
    request.context["timestamp"] = amz_date
    request.headers["X-Amz-Date"] = amz_date
    if session_token is not None:
        request.headers["X-Amz-Security-Token"] = session_token
    canonical = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, canonical), request)
    names = auth.signed_headers(auth.headers_to_sign(request))
    request.headers["Authorization"] = (
        f"{_AUTH_SCHEME}Credential={auth.scope(request)}, SignedHeaders={names}, "
        f"Signature={signature}"
    )
    return dict(request.headers.items())


# -- the checks, in AWS's order ----------------------------------------------------------------


def _authorization_fields(header: str) -> dict[str, str]:
    """``Credential``, ``SignedHeaders`` and ``Signature`` of a SigV4 Authorization header."""
    if not header.startswith(_AUTH_SCHEME):
        raise SignatureError(
            f"scheme of {header[:30]!r}", "Authorization header requires AWS4-HMAC-SHA256."
        )
    fields = dict(
        part.strip().partition("=")[::2] for part in header.removeprefix(_AUTH_SCHEME).split(",")
    )
    for name in ("Credential", "SignedHeaders", "Signature"):
        if not fields.get(name):
            raise SignatureError(
                f"no {name} in Authorization",
                f"Authorization header requires '{name}' parameter.",
                "IncompleteSignatureException",
            )
    return fields


def _credential_scope(credential: str) -> tuple[str, str, str, str, str]:
    parts = credential.split("/")
    if len(parts) != 5:
        raise SignatureError(
            f"credential {credential!r}",
            "Credential should be of the form AKID/DATE/REGION/SERVICE/aws4_request.",
            "IncompleteSignatureException",
        )
    return parts[0], parts[1], parts[2], parts[3], parts[4]


def _check_date(amz_date: str | None, scope_date: str) -> str:
    """The ``X-Amz-Date`` value, when it is well formed, fresh and the credential's day."""
    if amz_date is None:
        raise SignatureError(
            "no X-Amz-Date header",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
            "IncompleteSignatureException",
        )
    try:
        signed_at = datetime.datetime.strptime(amz_date, AMZ_DATE_FORMAT).replace(
            tzinfo=datetime.UTC
        )
    except ValueError:
        raise SignatureError(f"X-Amz-Date {amz_date!r} is not ISO 8601 basic") from None
    now = datetime.datetime.now(datetime.UTC)
    if abs(now - signed_at) > SIGNATURE_TTL:
        late = signed_at < now
        bound = (now - SIGNATURE_TTL if late else now + SIGNATURE_TTL).strftime(AMZ_DATE_FORMAT)
        raise SignatureError(
            f"X-Amz-Date {amz_date} more than {SIGNATURE_TTL} from now",
            f"Signature expired: {amz_date} is now earlier than {bound} "
            f"({now.strftime(AMZ_DATE_FORMAT)} - 5 min.)"
            if late
            else f"Signature not yet current: {amz_date} is still later than {bound} "
            f"({now.strftime(AMZ_DATE_FORMAT)} + 5 min.)",
        )
    if scope_date != amz_date[:8]:
        raise SignatureError(
            f"credential date {scope_date} is not the day of {amz_date}",
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{scope_date}' != '{amz_date[:8]}', from '{amz_date}'.",
        )
    return amz_date


def _check_token(token: str | None, expected: str | None) -> None:
    if token != expected:
        reason = "no session token" if token is None else "wrong or unexpected session token"
        raise SignatureError(reason, _INVALID_TOKEN, "UnrecognizedClientException")


def _check_content_sha256(declared: str | None, body: bytes) -> None:
    # botocore trusts this header in the canonical request; the body must then match it.
    if declared is not None and declared != hashlib.sha256(body).hexdigest():
        raise SignatureError(
            "X-Amz-Content-SHA256 does not match the body",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )


def _check_signature(
    request: web.BaseRequest,
    body: bytes,
    fields: dict[str, str],
    amz_date: str,
    auth: SigV4Auth,
) -> None:
    signed_names = fields["SignedHeaders"].split(";")
    if "host" not in signed_names:
        raise SignatureError("host not signed", "'Host' or ':authority' must be a 'SignedHeader'.")
    missing = [name for name in signed_names if name not in request.headers]
    if missing:
        raise SignatureError(f"signed headers missing from the request: {missing}")
    signed = AWSRequest(
        method=request.method,
        # The path exactly as received: re-quoting it would hide a client's encoding bug.
        url=f"http://{request.host}{request.raw_path}",
        data=body,
        headers={name: ",".join(request.headers.getall(name)) for name in signed_names},
    )
    signed.context["timestamp"] = amz_date
    canonical = auth.canonical_request(signed)
    expected = auth.signature(auth.string_to_sign(signed, canonical), signed)
    if auth.signed_headers(auth.headers_to_sign(signed)) != fields["SignedHeaders"]:
        raise SignatureError(f"SignedHeaders {fields['SignedHeaders']!r} not canonical")
    if not hmac.compare_digest(expected, fields["Signature"]):
        raise SignatureError(f"signature mismatch; canonical request: {canonical!r}")


def _botocore(keys: Keys) -> Credentials:
    return Credentials(keys.access_key, keys.secret_key, keys.session_token)
