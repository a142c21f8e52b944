"""Real command-line clients: aws-cli v1 (s3 cp, sync, ls, rm) and rclone."""

import hashlib
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ACCESS_KEY, ENDPOINT, REGION, SECRET_KEY, MiB, big_payload, multipart_etag, payload

CLI_CHUNK = 8 * MiB  # aws-cli's multipart chunk size, pinned in the config below


def _aws_binary():
    beside_python = os.path.join(os.path.dirname(sys.executable), "aws")
    return beside_python if os.path.exists(beside_python) else shutil.which("aws")


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    binary = _aws_binary()
    if not binary:
        pytest.skip("aws-cli is not installed (scripts/s3-tests.sh installs it)")
    config = tmp_path_factory.mktemp("awscli") / "config"
    config.write_text(
        "[default]\nregion = %s\ns3 =\n    addressing_style = path\n"
        "    multipart_threshold = 8MB\n    multipart_chunksize = 8MB\n"
        "    max_concurrent_requests = 4\n" % REGION)
    env = dict(os.environ, AWS_CONFIG_FILE=str(config), AWS_SHARED_CREDENTIALS_FILE=os.devnull,
               AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION=REGION,
               AWS_MAX_ATTEMPTS="1")
    env.pop("AWS_PROFILE", None)

    def run(*args, check=True):
        proc = subprocess.run([binary, "--endpoint-url", ENDPOINT, *args], env=env,
                              capture_output=True, text=True, timeout=300)
        if check:
            assert proc.returncode == 0, "aws %s failed (%d):\n%s\n%s" % (
                " ".join(args), proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
        return proc

    return run


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            digest.update(block)
    return digest.hexdigest()


def make_tree(root, count=50):
    """`count` small files in nested folders (names with spaces and UTF-8);
    returns {relative posix path: bytes}."""
    files = {}
    folders = ["", "a", "a/b", "a/b/c", "docs", "docs/old files", "données"]
    for i in range(count):
        rel = "%s/file %02d.txt" % (folders[i % len(folders)], i) if folders[i % len(folders)] else "file %02d.txt" % i
        data = payload((i * 397) % 9000, "tree-%d" % i)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[rel] = data
    return files


def remote_keys(s3, bucket, prefix=""):
    keys, token = {}, None
    while True:
        kw = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kw["ContinuationToken"] = token
        page = s3.list_objects_v2(**kw)
        keys.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
        if not page["IsTruncated"]:
            return keys
        token = page["NextContinuationToken"]


# ---------------------------------------------------------------- aws-cli


def test_aws_cp_100mib_roundtrip(aws, s3, bucket, tmp_path):
    data = big_payload(100 * MiB, "cli-big")
    src, dst = tmp_path / "up.bin", tmp_path / "down.bin"
    src.write_bytes(data)
    aws("s3", "cp", str(src), "s3://%s/big.bin" % bucket)
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == len(data)
    # aws-cli uploads in 8 MiB parts: 13 parts, and this exact ETag.
    assert head["ETag"] == multipart_etag([data[i:i + CLI_CHUNK] for i in range(0, len(data), CLI_CHUNK)])
    del data
    aws("s3", "cp", "s3://%s/big.bin" % bucket, str(dst))
    assert sha256_file(dst) == sha256_file(src)


def test_aws_sync_up_again_and_down(aws, s3, bucket, tmp_path):
    local = tmp_path / "site"
    files = make_tree(local)
    aws("s3", "sync", str(local), "s3://%s/site/" % bucket)
    assert remote_keys(s3, bucket, "site/") == {"site/" + k: len(v) for k, v in files.items()}
    for rel in ("file 00.txt", "a/b/c/file 03.txt", "données/file 06.txt"):
        assert s3.get_object(Bucket=bucket, Key="site/" + rel)["Body"].read() == files[rel]

    # Nothing changed: a second sync uploads nothing.
    again = aws("s3", "sync", str(local), "s3://%s/site/" % bucket)
    assert "upload:" not in again.stdout

    # One file grows: exactly that one goes up.
    (local / "a/b/file 02.txt").write_bytes(b"changed and longer than before " * 400)
    changed = aws("s3", "sync", str(local), "s3://%s/site/" % bucket)
    uploads = [line for line in changed.stdout.splitlines() if "upload:" in line]
    assert len(uploads) == 1 and "file 02.txt" in uploads[0], changed.stdout

    # Down into an empty folder: the same tree, byte for byte.
    down = tmp_path / "down"
    aws("s3", "sync", "s3://%s/site/" % bucket, str(down))
    files["a/b/file 02.txt"] = b"changed and longer than before " * 400
    got = {p.relative_to(down).as_posix(): p.read_bytes() for p in down.rglob("*") if p.is_file()}
    assert got == files

    # --delete removes what is gone locally.
    (local / "docs/file 04.txt").unlink()
    aws("s3", "sync", "--delete", str(local), "s3://%s/site/" % bucket)
    assert "site/docs/file 04.txt" not in remote_keys(s3, bucket, "site/")
    assert len(remote_keys(s3, bucket, "site/")) == len(files) - 1


def test_aws_ls(aws, s3, bucket, tmp_path):
    files = make_tree(tmp_path / "t", count=12)
    aws("s3", "sync", str(tmp_path / "t"), "s3://%s/t/" % bucket)
    s3.put_object(Bucket=bucket, Key="top.txt", Body=b"12345")

    assert bucket in aws("s3", "ls").stdout.split()

    top = aws("s3", "ls", "s3://%s/" % bucket).stdout.splitlines()
    assert any(line.split() == ["PRE", "t/"] for line in top), top
    assert any(line.endswith(" 5 top.txt") for line in top), top

    recursive = aws("s3", "ls", "--recursive", "s3://%s/t/" % bucket).stdout.splitlines()
    listed = {}
    for line in recursive:
        # "2026-01-01 00:00:00       1234 t/a/file 01.txt": the key may hold spaces.
        _date, _time, size, key = line.split(None, 3)
        listed[key] = int(size)
    assert listed == {"t/" + k: len(v) for k, v in files.items()}


def test_aws_rm_recursive(aws, s3, bucket, tmp_path):
    make_tree(tmp_path / "t", count=20)
    aws("s3", "sync", str(tmp_path / "t"), "s3://%s/gone/" % bucket)
    s3.put_object(Bucket=bucket, Key="kept", Body=b"k")
    s3.put_object(Bucket=bucket, Key="gone-not-a-folder", Body=b"k")
    out = aws("s3", "rm", "--recursive", "s3://%s/gone/" % bucket)
    assert out.stdout.count("delete:") == 20
    assert remote_keys(s3, bucket) == {"kept": 1, "gone-not-a-folder": 1}


def test_aws_cp_missing_bucket_fails(aws, tmp_path):
    src = tmp_path / "f"
    src.write_bytes(b"x")
    proc = aws("s3", "cp", str(src), "s3://s3t-no-such-bucket-cli-0f3e/f", check=False)
    assert proc.returncode != 0
    assert "NoSuchBucket" in proc.stderr


# ---------------------------------------------------------------- rclone


@pytest.fixture(scope="module")
def rclone(tmp_path_factory):
    binary = shutil.which("rclone")
    if not binary:
        pytest.skip("rclone is not installed (scripts/s3-tests.sh installs it)")
    config = tmp_path_factory.mktemp("rclone") / "rclone.conf"
    config.write_text("")
    env = dict(os.environ, RCLONE_CONFIG=str(config),
               RCLONE_CONFIG_TOASTY_TYPE="s3",
               RCLONE_CONFIG_TOASTY_PROVIDER="Other",
               RCLONE_CONFIG_TOASTY_ENV_AUTH="false",
               RCLONE_CONFIG_TOASTY_ENDPOINT=ENDPOINT,
               RCLONE_CONFIG_TOASTY_ACCESS_KEY_ID=ACCESS_KEY,
               RCLONE_CONFIG_TOASTY_SECRET_ACCESS_KEY=SECRET_KEY,
               RCLONE_CONFIG_TOASTY_REGION=REGION,
               RCLONE_CONFIG_TOASTY_FORCE_PATH_STYLE="true")
    # rclone fails on the AWS_CA_BUNDLE this environment exports.
    env.pop("AWS_CA_BUNDLE", None)

    def run(*args, check=True):
        proc = subprocess.run([binary, "--retries", "1", "--low-level-retries", "1", *args],
                              env=env, capture_output=True, text=True, timeout=300)
        if check:
            assert proc.returncode == 0, "rclone %s failed (%d):\n%s\n%s" % (
                " ".join(args), proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
        return proc

    return run


def test_rclone_copy_check_ls_delete(rclone, s3, bucket, tmp_path):
    local = tmp_path / "rc"
    files = make_tree(local, count=30)
    remote = "toasty:%s/rc" % bucket
    rclone("copy", str(local), remote)
    assert remote_keys(s3, bucket, "rc/") == {"rc/" + k: len(v) for k, v in files.items()}
    assert s3.get_object(Bucket=bucket, Key="rc/a/file 01.txt")["Body"].read() == files["a/file 01.txt"]

    rclone("check", str(local), remote)

    listed = {}
    for line in rclone("ls", remote).stdout.splitlines():
        size, name = line.strip().split(" ", 1)
        listed[name] = int(size)
    assert listed == {k: len(v) for k, v in files.items()}

    # check must notice a remote object with other bytes of the same size.
    original = files["docs/file 04.txt"]
    s3.put_object(Bucket=bucket, Key="rc/docs/file 04.txt", Body=bytes(b ^ 0xFF for b in original))
    assert rclone("check", str(local), remote, check=False).returncode != 0

    rclone("delete", remote)
    assert remote_keys(s3, bucket, "rc/") == {}
