"""Streaming proof: PUT then GET one 4 GiB object that never exists on disk or
in memory on the client side. Opt-in (S3_TESTS_BIG=1) and marked slow.

The body is generated from its offset, so it is seekable (botocore reads it
once for the CRC32 header, once for the SigV4 payload hash, once to send) and
its SHA-256 and MD5 are known before the upload starts. Every 1 MiB block
carries its index, so a server that drops, repeats or reorders blocks gives
back other bytes. S3_TESTS_BIG_BYTES changes the size (for a quick check of
the test itself)."""

import hashlib
import io
import os

import pytest

from conftest import MiB, etag_of, payload

BIG_BYTES = int(os.environ.get("S3_TESTS_BIG_BYTES", 4 * 1024 * MiB))
BLOCK = MiB

big = pytest.mark.skipif(os.environ.get("S3_TESTS_BIG") != "1", reason="opt-in: set S3_TESTS_BIG=1")


class GeneratedBody(io.RawIOBase):
    """`size` bytes; block k is a fixed random block with k in its first 8 bytes."""

    def __init__(self, size, seed="big"):
        super().__init__()
        self.size = size
        self.position = 0
        self.block = payload(BLOCK, seed)

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self.position

    def seek(self, offset, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, min(self.size, base + offset))
        return self.position

    def _block(self, index):
        return index.to_bytes(8, "big") + self.block[8:]

    def read(self, n=-1):
        end = self.size if n is None or n < 0 else min(self.size, self.position + n)
        out = bytearray()
        while self.position < end:
            index, within = divmod(self.position, BLOCK)
            take = min(BLOCK - within, end - self.position)
            out += self._block(index)[within:within + take]
            self.position += take
        return bytes(out)

    def readinto(self, buffer):
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def digests(body):
    sha, md5 = hashlib.sha256(), hashlib.md5()
    for chunk in iter(lambda: body.read(8 * MiB), b""):
        sha.update(chunk)
        md5.update(chunk)
    return sha.hexdigest(), '"%s"' % md5.hexdigest()


def test_generated_body_is_deterministic_and_seekable():
    body = GeneratedBody(3 * BLOCK + 5)
    whole = body.read()
    assert len(whole) == 3 * BLOCK + 5
    body.seek(BLOCK - 3)
    assert body.read(10) == whole[BLOCK - 3:BLOCK + 7]
    assert whole[:BLOCK] != whole[BLOCK:2 * BLOCK]  # blocks differ
    assert etag_of(whole) == digests(GeneratedBody(3 * BLOCK + 5))[1]


@pytest.mark.slow
@big
def test_put_get_4gib_streaming(s3, bucket):
    sha_expected, etag_expected = digests(GeneratedBody(BIG_BYTES))

    put = s3.put_object(Bucket=bucket, Key="big", Body=GeneratedBody(BIG_BYTES))
    assert put["ETag"] == etag_expected

    got = s3.get_object(Bucket=bucket, Key="big", ChecksumMode="ENABLED")
    assert got["ContentLength"] == BIG_BYTES
    sha, length = hashlib.sha256(), 0
    for chunk in got["Body"].iter_chunks(4 * MiB):
        sha.update(chunk)
        length += len(chunk)
    assert length == BIG_BYTES
    assert sha.hexdigest() == sha_expected
