"""Hostile inputs: XML entity bombs and a decompression bomb, made small."""

import zlib


def billion_laughs(root: str, body: str) -> bytes:
    """An XML document whose `&lol9;` expands to 10⁹ × "lol": 3 GB from under 1 KB.

    `body` is the document's root element, using `&lol9;` somewhere.
    """
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{level} "{f"&lol{level - 1};" * 10}">' for level in range(1, 10)
    ]
    return f'<?xml version="1.0"?>\n<!DOCTYPE {root} [\n{"\n".join(entities)}\n]>\n{body}\n'.encode()


def gzip_bomb(size: int) -> bytes:
    """gzip data that decompresses to `size` zero bytes (about a thousandth of it compressed)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1024 * 1024)
    pieces = [compressor.compress(chunk[: min(len(chunk), size - done)]) for done in range(0, size, len(chunk))]
    return b"".join(pieces) + compressor.flush()
