"""SSH public host keys as `ssh-keyscan` prints them ("TYPE BASE64"), checked the way ssh reads the
blob: RFC 4253 strings, the first naming the key type, which must match the TYPE written before it.
A line that does not parse would only fail later, inside the provider, as a host-key mismatch."""

import base64
import binascii
import struct
from typing import Optional

# Fields after the type string, and a length check for the ones with a fixed size (RFC 8709, 4253, 5656).
_KEY_FIELDS = {
    "ssh-ed25519": 1,
    "ssh-rsa": 2,
    "ecdsa-sha2-nistp256": 2,
    "ecdsa-sha2-nistp384": 2,
    "ecdsa-sha2-nistp521": 2,
}
_ED25519_KEY_BYTES = 32


def looks_like_private_key(text: str) -> bool:
    return "PRIVATE KEY" in text or "BEGIN OPENSSH" in text


def _strings(blob: bytes) -> Optional[list[bytes]]:
    fields, position = [], 0
    while position < len(blob):
        if position + 4 > len(blob):
            return None
        (length,) = struct.unpack(">I", blob[position:position + 4])
        position += 4
        if position + length > len(blob):
            return None
        fields.append(blob[position:position + length])
        position += length
    return fields


def host_key_problem(line: str) -> Optional[str]:
    words = line.split(" ")
    if len(words) != 2:
        return "is not one 'TYPE BASE64' pair"
    key_type, encoded = words
    if key_type not in _KEY_FIELDS:
        return f"has key type {key_type!r}; pin one of {', '.join(_KEY_FIELDS)}"
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return "has a key that is not valid base64"
    fields = _strings(blob)
    if not fields:
        return "has a key blob that does not parse"
    embedded = fields[0].decode("ascii", errors="replace")
    if embedded != key_type:
        return f"says {key_type} but its key blob is an {embedded!r} key"
    if len(fields) != 1 + _KEY_FIELDS[key_type]:
        return "has a key blob that does not parse"
    if key_type == "ssh-ed25519" and len(fields[1]) != _ED25519_KEY_BYTES:
        return f"has an ed25519 key of {len(fields[1])} bytes instead of {_ED25519_KEY_BYTES}"
    if key_type.startswith("ecdsa-") and fields[1].decode("ascii", errors="replace") != key_type.rpartition("-")[2]:
        return "has an ECDSA key on another curve than its type names"
    return None
