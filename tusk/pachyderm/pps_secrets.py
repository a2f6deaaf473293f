"""Pachyderm's secrets, kept as records in tusk's metadata store.

Secrets are Kubernetes secrets in Pachyderm. tusk keeps each one's manifest,
with its creation time, under ``pachyderm/secrets/<name>`` (the adapter's
only metadata keys), so the secret calls of ``pps_v2.API`` round-trip; no
pipeline reads them (``transform.secrets`` is not supported).
"""

from __future__ import annotations

import json
import time

from pfs import errors
from pfs.metadata import Compare, MetadataStore, Put
from tusk.pachyderm_api import pps_pb2 as p

_SECRETS_PREFIX = "pachyderm/secrets/"


def _secret_key(name: str) -> str:
    """The metadata key of secret ``name``."""
    return _SECRETS_PREFIX + name


def _not_found(name: str) -> errors.NotFound:
    return errors.NotFound(f"secret {name or '?'} not found (list them with list_secret)")


def _secret_info(name: str, value: bytes) -> p.SecretInfo:
    record = json.loads(value)
    out = p.SecretInfo(secret=p.Secret(name=name),
                       type=record["manifest"].get("type") or "Opaque")
    out.creation_timestamp.FromNanoseconds(round(record["created"] * 1e9))
    return out


def create_secret(meta: MetadataStore, file: bytes) -> None:
    """Store the Secret manifest ``file`` (JSON) under its ``metadata.name``,
    unless a secret of that name exists."""
    try:
        manifest = json.loads(file)
    except ValueError as e:
        raise errors.InvalidArgument(
            f"secret is not JSON ({e}): send a Kubernetes Secret manifest") from None
    name = manifest.get("metadata", {}).get("name") if isinstance(manifest, dict) else None
    if not isinstance(name, str) or not name:
        raise errors.InvalidArgument(
            "secret has no name: set metadata.name in the Secret manifest")
    record = json.dumps({"manifest": manifest, "created": time.time()}).encode()
    if not meta.txn([Compare(_secret_key(name), 0)], [Put(_secret_key(name), record)]):
        raise errors.AlreadyExists(
            f"secret {name} already exists: delete it first to replace it")


def inspect_secret(meta: MetadataStore, name: str) -> p.SecretInfo:
    kv = meta.get(_secret_key(name))
    if not name or kv is None:
        raise _not_found(name)
    return _secret_info(name, kv.value)


def list_secrets(meta: MetadataStore) -> list[p.SecretInfo]:
    return [_secret_info(kv.key.removeprefix(_SECRETS_PREFIX), kv.value)
            for kv in meta.range(_SECRETS_PREFIX)]


def delete_secret(meta: MetadataStore, name: str) -> None:
    if not name or not meta.delete(_secret_key(name)):
        raise _not_found(name)


__all__ = ["create_secret", "delete_secret", "inspect_secret", "list_secrets"]
