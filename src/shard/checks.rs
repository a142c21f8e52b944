//! Startup checks: what a server verifies before it creates glommio
//! executors or touches data, each failure an operator-facing message that
//! says what is wrong, the measured and required values, and the fix.
//!
//! Why these and not "let glommio fail": glommio 0.9.0 reports a low
//! locked-memory limit as `MemLockLimit(65536/524288)`, panics with "Romulus
//! killing Remus" when `io_uring_setup` is refused (seccomp, sysctl), exits
//! the process on kernels older than 5.8, and meets a filesystem without
//! O_DIRECT only when it opens or writes a data file. Checking first turns each of those
//! into one line an operator can act on, and `run_all` reports every failure
//! at once so a misconfigured host is fixed in one round.
//!
//! The only `unsafe` in the crate (`lib.rs` denies it elsewhere): two
//! syscalls std does not wrap, `io_uring_setup` (the probe) and `statvfs`.
//! Limits come from `/proc/self/limits` and filesystem types from
//! `/proc/self/mountinfo`, the same values `getrlimit` and `statfs` return.
#![allow(unsafe_code)]

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// glommio refuses to create an executor when `RLIMIT_MEMLOCK` is below
/// 512 KiB (`MIN_MEMLOCK_LIMIT` in glommio 0.9.0 `sys/uring.rs`): before
/// Linux 5.12 the memory of its three rings is charged to that limit.
pub const EXECUTOR_MEMLOCK_MIN_BYTES: u64 = 512 * 1024;

/// The name of the identity record inside a data directory.
pub const IDENTITY_FILE_NAME: &str = "toasty.id";
/// Written, synced, then hard-linked to [`IDENTITY_FILE_NAME`]; a leftover
/// one (crash during `identity_create`) is ignored and overwritten.
const IDENTITY_FILE_NAME_TMP: &str = "toasty.id.tmp";
/// Prefix of the O_DIRECT probe file; a leftover one (crash during the
/// probe) does not make a directory "non-empty".
const PROBE_FILE_PREFIX: &str = ".toasty-probe-";

/// The kernel glommio 0.9.0 needs: older ones lack io_uring opcodes it uses,
/// and glommio then calls `process::exit(1)` instead of returning an error.
const KERNEL_VERSION_MIN: (u32, u32) = (5, 8);

/// Direct I/O needs the buffer, offset and length aligned to the device's
/// logical block size; 4096 covers both 512-byte and 4Kn devices.
const DIRECT_IO_BLOCK_BYTES: usize = 4096;

/// How many names of unexpected files a "not a toasty directory" error lists.
const FOREIGN_ENTRIES_SHOWN_MAX: usize = 5;

/// A resource limit as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Bytes(u64),
    Unlimited,
}

impl Limit {
    fn allows(self, required_bytes: u64) -> bool {
        match self {
            Limit::Unlimited => true,
            Limit::Bytes(bytes) => bytes >= required_bytes,
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Unlimited => f.write_str("unlimited"),
            Limit::Bytes(bytes) => f.write_str(&human_bytes(*bytes)),
        }
    }
}

/// The soft and hard `RLIMIT_MEMLOCK` of this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemlockLimit {
    pub soft: Limit,
    pub hard: Limit,
}

/// Who a data directory belongs to, stored in `DIR/toasty.id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirIdentity {
    pub cluster: u128,
    pub node: u32,
    pub shard: u32,
    /// The on-disk format of the data in the directory.
    pub format_version: u32,
}

/// What `identity_check` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityState {
    /// No `toasty.id` and nothing else: the caller may `identity_create`.
    Fresh,
    /// `toasty.id` is intact and names this process's cluster, node, shard
    /// and format version.
    Matches,
}

/// Why a `toasty.id` could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityCorruption {
    Size {
        size_bytes: u64,
    },
    Magic,
    Checksum,
    /// Checksum valid but a reserved field is not zero: written by a newer
    /// layout this binary does not know.
    Reserved,
}

/// The facts `io_uring` failures are explained with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IoUringEnv {
    /// `/proc/sys/kernel/osrelease`.
    pub kernel_release: Option<String>,
    /// `/proc/sys/kernel/io_uring_disabled` (Linux ≥ 6.6): 0 allowed,
    /// 1 only for `CAP_SYS_ADMIN` or `kernel.io_uring_group`, 2 nobody.
    pub disabled_sysctl: Option<u32>,
    /// `Seccomp: 2` in `/proc/self/status`: a seccomp filter is installed
    /// (every Docker/containerd container has one).
    pub seccomp_filter: bool,
}

/// One failed check, phrased for the operator who has to fix it.
#[derive(Debug)]
pub enum CheckError {
    MemlockTooLow {
        limit: MemlockLimit,
        required_bytes: u64,
    },
    KernelTooOld {
        release: String,
    },
    IoUringMissing {
        env: IoUringEnv,
    },
    IoUringDenied {
        env: IoUringEnv,
    },
    IoUringNoMemory,
    IoUringFailed {
        errno: i32,
    },
    ODirectUnsupported {
        dir: PathBuf,
        fs_type: Option<String>,
        op: &'static str,
        errno: i32,
    },
    ODirectMismatch {
        dir: PathBuf,
        offset_first_bad: usize,
    },
    FreeSpaceLow {
        dir: PathBuf,
        available_bytes: u64,
        required_bytes: u64,
    },
    FreeSpaceUnknown {
        dir: PathBuf,
        detail: String,
    },
    DataDirMissing {
        dir: PathBuf,
    },
    DataDirNotDirectory {
        dir: PathBuf,
    },
    NotToastyDir {
        dir: PathBuf,
        entries_shown: Vec<String>,
        entry_count: usize,
    },
    IdentityMismatch {
        dir: PathBuf,
        found: DirIdentity,
        expected: DirIdentity,
    },
    IdentityCorrupt {
        dir: PathBuf,
        corruption: IdentityCorruption,
    },
    IdentityExists {
        dir: PathBuf,
    },
    /// A /proc file this check relies on is missing or unparsable.
    Proc {
        path: &'static str,
        detail: String,
    },
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl std::error::Error for CheckError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CheckError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// 1. Locked memory.

/// Locked memory a process with `executors` glommio executors needs:
/// `executors × (io_memory_bytes + 512 KiB)`, saturating.
///
/// Why this formula: every executor registers its `io_memory` buffer with
/// io_uring, and registered buffers are pinned and charged to the same
/// per-process `RLIMIT_MEMLOCK` (all executors are threads of one process,
/// so the charges add up). glommio also refuses to start an executor below
/// 512 KiB, which before Linux 5.12 is what its rings cost. Counting the
/// 512 KiB on top of `io_memory` for every executor is conservative: on
/// newer kernels rings are charged to the memory cgroup instead.
/// glommio's own default `io_memory` is 10 MiB per executor.
pub fn memlock_required(executors: usize, io_memory_bytes: usize) -> u64 {
    let per_executor = (io_memory_bytes as u64).saturating_add(EXECUTOR_MEMLOCK_MIN_BYTES);
    (executors as u64).saturating_mul(per_executor)
}

/// This process's `RLIMIT_MEMLOCK`, read from `/proc/self/limits`.
pub fn memlock_limit() -> Result<MemlockLimit, CheckError> {
    const PATH: &str = "/proc/self/limits";
    let text = fs::read_to_string(PATH)
        .map_err(|error| CheckError::Proc { path: PATH, detail: error.to_string() })?;
    parse_memlock_limit(&text).ok_or_else(|| CheckError::Proc {
        path: PATH,
        detail: "no parsable \"Max locked memory\" line".to_string(),
    })
}

/// The soft `RLIMIT_MEMLOCK` (the one the kernel enforces) must be at least
/// `required_bytes` (see [`memlock_required`]).
pub fn memlock(required_bytes: u64) -> Result<(), CheckError> {
    let limit = memlock_limit()?;
    if limit.soft.allows(required_bytes) {
        Ok(())
    } else {
        Err(CheckError::MemlockTooLow { limit, required_bytes })
    }
}

/// Parses the `Max locked memory  <soft>  <hard>  bytes` line; the kernel
/// prints each value in bytes or as `unlimited` (fs/proc/base.c).
fn parse_memlock_limit(limits: &str) -> Option<MemlockLimit> {
    let line = limits.lines().find_map(|line| line.strip_prefix("Max locked memory"))?;
    let mut fields = line.split_whitespace();
    let soft = parse_limit(fields.next()?)?;
    let hard = parse_limit(fields.next()?)?;
    Some(MemlockLimit { soft, hard })
}

fn parse_limit(field: &str) -> Option<Limit> {
    if field == "unlimited" {
        Some(Limit::Unlimited)
    } else {
        field.parse().ok().map(Limit::Bytes)
    }
}

// ---------------------------------------------------------------------------
// 2. io_uring.

/// Creates and closes a 4-entry io_uring, as glommio will; a refusal is
/// explained with [`IoUringEnv`] (see [`io_uring_error`]). Also refuses
/// kernels older than 5.8, on which glommio exits the process.
pub fn io_uring() -> Result<(), CheckError> {
    let env = IoUringEnv::read();
    if let Some(release) = &env.kernel_release {
        if kernel_version(release).is_some_and(|version| version < KERNEL_VERSION_MIN) {
            return Err(CheckError::KernelTooOld { release: release.clone() });
        }
    }
    // struct io_uring_params: 120 bytes of u32/u64 fields; zero asks for a
    // plain ring, and the kernel rejects non-zero reserved fields.
    let mut params = [0u32; 30];
    // SAFETY: `params` is writable and as large as struct io_uring_params;
    // no flags are set, so the kernel reads no other memory.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
    if fd < 0 {
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        return Err(io_uring_error(errno, env));
    }
    // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
    drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) });
    Ok(())
}

/// The error for an `io_uring_setup` that failed with `errno`.
pub fn io_uring_error(errno: i32, env: IoUringEnv) -> CheckError {
    match errno {
        libc::ENOSYS => CheckError::IoUringMissing { env },
        libc::EPERM => CheckError::IoUringDenied { env },
        libc::ENOMEM => CheckError::IoUringNoMemory,
        _ => CheckError::IoUringFailed { errno },
    }
}

impl IoUringEnv {
    /// Reads the environment; an unreadable file is reported as unknown.
    pub fn read() -> IoUringEnv {
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        IoUringEnv {
            kernel_release: read_trimmed("/proc/sys/kernel/osrelease"),
            disabled_sysctl: read_trimmed("/proc/sys/kernel/io_uring_disabled")
                .and_then(|value| value.parse().ok()),
            seccomp_filter: status_field(&status, "Seccomp").is_some_and(|mode| mode == "2"),
        }
    }
}

fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim())
    })
}

fn read_trimmed(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|text| text.trim().to_string())
}

/// `"6.18.44-fc-v657"` → `(6, 18)`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor_digits: String =
        parts.next()?.chars().take_while(|char| char.is_ascii_digit()).collect();
    Some((major, minor_digits.parse().ok()?))
}

// ---------------------------------------------------------------------------
// 3. O_DIRECT.

/// A buffer whose address satisfies direct I/O alignment, in safe Rust: the
/// type's alignment is the block size, so every `Box<AlignedBlock>` is.
#[repr(C, align(4096))]
struct AlignedBlock([u8; DIRECT_IO_BLOCK_BYTES]);
const _: () = assert!(std::mem::align_of::<AlignedBlock>() == DIRECT_IO_BLOCK_BYTES);

/// Writes one aligned block to a probe file in `dir` with O_DIRECT,
/// fdatasyncs it, reads it back with O_DIRECT, compares, and removes the
/// file. Filesystems that refuse O_DIRECT (tmpfs before Linux 6.6, some
/// overlayfs and FUSE setups) fail at open or at the first I/O with EINVAL
/// or EOPNOTSUPP.
pub fn o_direct(dir: &Path) -> Result<(), CheckError> {
    let path = dir.join(format!("{PROBE_FILE_PREFIX}odirect-{}", std::process::id()));
    let result = o_direct_probe(dir, &path);
    let removed = fs::remove_file(&path);
    result?;
    removed.map_err(|source| CheckError::Io { op: "remove O_DIRECT probe file", path, source })
}

fn o_direct_probe(dir: &Path, path: &Path) -> Result<(), CheckError> {
    let io_error = |op: &'static str, source: io::Error| match source.raw_os_error() {
        Some(errno @ (libc::EINVAL | libc::EOPNOTSUPP)) => CheckError::ODirectUnsupported {
            dir: dir.to_path_buf(),
            fs_type: filesystem_type(dir),
            op,
            errno,
        },
        _ => CheckError::Io { op, path: path.to_path_buf(), source },
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(|source| io_error("open with O_DIRECT", source))?;

    let mut written = Box::new(AlignedBlock([0; DIRECT_IO_BLOCK_BYTES]));
    // A pattern no stale or zeroed block can match.
    for (index, byte) in written.0.iter_mut().enumerate() {
        *byte = (index % 251) as u8 ^ 0xA5;
    }
    file.write_all_at(&written.0, 0).map_err(|source| io_error("O_DIRECT write", source))?;
    file.sync_data().map_err(|source| io_error("fdatasync", source))?;

    let mut read = Box::new(AlignedBlock([0; DIRECT_IO_BLOCK_BYTES]));
    file.read_exact_at(&mut read.0, 0).map_err(|source| io_error("O_DIRECT read", source))?;
    match written.0.iter().zip(read.0.iter()).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(offset_first_bad) => {
            Err(CheckError::ODirectMismatch { dir: dir.to_path_buf(), offset_first_bad })
        }
    }
}

/// The type of the filesystem holding `path` ("ext4", "tmpfs", "overlay",
/// ...): the mount in `/proc/self/mountinfo` with the longest mount point
/// that contains the path (the last one listed when mounts are stacked).
pub fn filesystem_type(path: &Path) -> Option<String> {
    let path = fs::canonicalize(path).ok()?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mount_for(&mountinfo, &path).map(|(_, fs_type)| fs_type)
}

/// Returns (mount point, filesystem type) for `path` (canonical).
fn mount_for(mountinfo: &str, path: &Path) -> Option<(PathBuf, String)> {
    let mut best: Option<(PathBuf, String)> = None;
    for line in mountinfo.lines() {
        // id parent major:minor root mount-point options [optional...] - type source super
        let Some((before, after)) = line.split_once(" - ") else { continue };
        let (Some(mount_point), Some(fs_type)) =
            (before.split(' ').nth(4), after.split(' ').next())
        else {
            continue;
        };
        let mount_point = PathBuf::from(unescape_mountinfo(mount_point));
        let fs_type = fs_type.to_string();
        let longer =
            best.as_ref().is_none_or(|(p, _)| mount_point.as_os_str().len() >= p.as_os_str().len());
        if path.starts_with(&mount_point) && longer {
            best = Some((mount_point, fs_type));
        }
    }
    best
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes.get(index + 1..index + 4).filter(|digits| {
            bytes[index] == b'\\' && digits.iter().all(|digit| (b'0'..=b'7').contains(digit))
        });
        match octal.and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok())
        {
            Some(byte) => {
                out.push(byte);
                index += 4;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------
// 4. Free space.

/// Bytes available to an unprivileged writer in `dir` must be at least
/// `required_bytes`.
pub fn free_space(dir: &Path, required_bytes: u64) -> Result<(), CheckError> {
    let available_bytes = available_bytes(dir)?;
    if available_bytes >= required_bytes {
        Ok(())
    } else {
        Err(CheckError::FreeSpaceLow { dir: dir.to_path_buf(), available_bytes, required_bytes })
    }
}

/// `f_bavail × f_frsize` of statvfs: what an unprivileged writer can use.
pub fn available_bytes(dir: &Path) -> Result<u64, CheckError> {
    let unknown = |detail: String| CheckError::FreeSpaceUnknown { dir: dir.to_path_buf(), detail };
    let c_path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| unknown("the path contains a NUL byte".to_string()))?;
    // SAFETY: all-zero is a valid `statvfs`; the kernel fills it in.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is NUL-terminated and `stat` writable.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(unknown(format!("statvfs: {}", io::Error::last_os_error())));
    }
    Ok(u64::from(stat.f_bavail).saturating_mul(u64::from(stat.f_frsize)))
}

// ---------------------------------------------------------------------------
// 5. Data directory identity.

/// Layout of `toasty.id`, little-endian:
/// magic 8 | cluster 16 | node 4 | shard 4 | format_version 4 | reserved 4 (zero)
/// | xxh3-128 of the preceding 40 bytes 16.
const IDENTITY_MAGIC: [u8; 8] = *b"TOASTYID";
const IDENTITY_CHECKSUMMED_BYTES: usize = 40;
pub const IDENTITY_SIZE_BYTES: usize = IDENTITY_CHECKSUMMED_BYTES + 16;

impl DirIdentity {
    pub fn encode(&self) -> [u8; IDENTITY_SIZE_BYTES] {
        let mut record = [0u8; IDENTITY_SIZE_BYTES];
        record[0..8].copy_from_slice(&IDENTITY_MAGIC);
        record[8..24].copy_from_slice(&self.cluster.to_le_bytes());
        record[24..28].copy_from_slice(&self.node.to_le_bytes());
        record[28..32].copy_from_slice(&self.shard.to_le_bytes());
        record[32..36].copy_from_slice(&self.format_version.to_le_bytes());
        let checksum = xxhash_rust::xxh3::xxh3_128(&record[..IDENTITY_CHECKSUMMED_BYTES]);
        record[IDENTITY_CHECKSUMMED_BYTES..].copy_from_slice(&checksum.to_le_bytes());
        record
    }

    pub fn decode(record: &[u8]) -> Result<DirIdentity, IdentityCorruption> {
        let Ok(record) = <&[u8; IDENTITY_SIZE_BYTES]>::try_from(record) else {
            return Err(IdentityCorruption::Size { size_bytes: record.len() as u64 });
        };
        if record[0..8] != IDENTITY_MAGIC {
            return Err(IdentityCorruption::Magic);
        }
        let checksum = xxhash_rust::xxh3::xxh3_128(&record[..IDENTITY_CHECKSUMMED_BYTES]);
        if record[IDENTITY_CHECKSUMMED_BYTES..] != checksum.to_le_bytes() {
            return Err(IdentityCorruption::Checksum);
        }
        if record[36..40] != [0; 4] {
            return Err(IdentityCorruption::Reserved);
        }
        let u32_at = |at: usize| {
            u32::from_le_bytes([record[at], record[at + 1], record[at + 2], record[at + 3]])
        };
        let mut cluster = [0u8; 16];
        cluster.copy_from_slice(&record[8..24]);
        Ok(DirIdentity {
            cluster: u128::from_le_bytes(cluster),
            node: u32_at(24),
            shard: u32_at(28),
            format_version: u32_at(32),
        })
    }
}

/// Writes `DIR/toasty.id` atomically: the record goes to a temporary file
/// that is fsynced, then hard-linked to the final name (a link, unlike a
/// rename, fails instead of replacing an existing id, also when two
/// processes race), then the directory is fsynced so the name is durable.
/// Refuses if `toasty.id` already exists. Call `identity_check` first: this
/// function does not look at other files.
pub fn identity_create(dir: &Path, identity: &DirIdentity) -> Result<(), CheckError> {
    let path = dir.join(IDENTITY_FILE_NAME);
    let path_tmp = dir.join(IDENTITY_FILE_NAME_TMP);
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| CheckError::Io { op, path, source }
    };
    if path.symlink_metadata().is_ok() {
        return Err(CheckError::IdentityExists { dir: dir.to_path_buf() });
    }
    let mut file = File::create(&path_tmp).map_err(io("create", &path_tmp))?;
    file.write_all(&identity.encode()).map_err(io("write", &path_tmp))?;
    file.sync_all().map_err(io("fsync", &path_tmp))?;
    drop(file);
    match fs::hard_link(&path_tmp, &path) {
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            let _ = fs::remove_file(&path_tmp);
            return Err(CheckError::IdentityExists { dir: dir.to_path_buf() });
        }
        result => result.map_err(io("link", &path))?,
    }
    File::open(dir).and_then(|dir_file| dir_file.sync_all()).map_err(io("fsync directory", dir))?;
    // A leftover temporary file is harmless (ignored, overwritten next time).
    fs::remove_file(&path_tmp).map_err(io("remove", &path_tmp))
}

/// Whether `dir` is this process's data directory.
///
/// "Empty" (→ `Fresh`) means: no `toasty.id` and no entries other than
/// `lost+found` (present at the root of every ext4 filesystem, and a
/// dedicated disk is the expected setup), a leftover `toasty.id.tmp`, and
/// leftover probe files of these checks. Anything else without a
/// `toasty.id` is refused: it may be another program's data. A `toasty.id`
/// that does not decode is corruption, never `Fresh`.
pub fn identity_check(dir: &Path, expected: &DirIdentity) -> Result<IdentityState, CheckError> {
    match fs::metadata(dir) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(CheckError::DataDirMissing { dir: dir.to_path_buf() });
        }
        Err(source) => return Err(CheckError::Io { op: "stat", path: dir.to_path_buf(), source }),
        Ok(metadata) if !metadata.is_dir() => {
            return Err(CheckError::DataDirNotDirectory { dir: dir.to_path_buf() });
        }
        Ok(_) => {}
    }
    let path = dir.join(IDENTITY_FILE_NAME);
    let record = match read_identity_record(&path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return fresh_or_foreign(dir),
        Err(source) => return Err(CheckError::Io { op: "read", path, source }),
        Ok(record) => record,
    };
    let found = record
        .and_then(|record| DirIdentity::decode(&record))
        .map_err(|corruption| CheckError::IdentityCorrupt { dir: dir.to_path_buf(), corruption })?;
    if found == *expected {
        Ok(IdentityState::Matches)
    } else {
        Err(CheckError::IdentityMismatch { dir: dir.to_path_buf(), found, expected: *expected })
    }
}

/// Reads the record, or returns its size when that is wrong (a huge file is
/// not read whole).
fn read_identity_record(path: &Path) -> io::Result<Result<Vec<u8>, IdentityCorruption>> {
    let mut file = File::open(path)?;
    let size_bytes = file.metadata()?.len();
    if size_bytes != IDENTITY_SIZE_BYTES as u64 {
        return Ok(Err(IdentityCorruption::Size { size_bytes }));
    }
    let mut record = vec![0u8; IDENTITY_SIZE_BYTES];
    file.read_exact(&mut record)?;
    Ok(Ok(record))
}

fn fresh_or_foreign(dir: &Path) -> Result<IdentityState, CheckError> {
    let io = |source| CheckError::Io { op: "list", path: dir.to_path_buf(), source };
    let mut foreign = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let name = entry.map_err(io)?.file_name().to_string_lossy().into_owned();
        let ours = name == "lost+found"
            || name == IDENTITY_FILE_NAME_TMP
            || name.starts_with(PROBE_FILE_PREFIX);
        if !ours {
            foreign.push(name);
        }
    }
    if foreign.is_empty() {
        return Ok(IdentityState::Fresh);
    }
    foreign.sort();
    let entry_count = foreign.len();
    foreign.truncate(FOREIGN_ENTRIES_SHOWN_MAX);
    Err(CheckError::NotToastyDir { dir: dir.to_path_buf(), entries_shown: foreign, entry_count })
}

// ---------------------------------------------------------------------------
// 6. All of them.

/// What `run_all` checks.
#[derive(Clone, Debug)]
pub struct StartupParams {
    pub data_dir: PathBuf,
    pub identity: DirIdentity,
    /// glommio executors this process will create (one per shard).
    pub executors: usize,
    /// `io_memory` each executor registers with io_uring.
    pub io_memory_bytes: usize,
    /// Space the shard preallocates (WAL, superblock, first chunk files).
    pub free_space_required_bytes: u64,
}

/// Every failure of `run_all`, in check order.
#[derive(Debug)]
pub struct StartupReport {
    /// `None` when the identity check failed.
    pub identity: Option<IdentityState>,
    pub failures: Vec<CheckError>,
}

impl StartupReport {
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs every check and collects all failures, so an operator fixes a host
/// in one round. The O_DIRECT probe writes a file into the data directory,
/// so it runs only when the identity check says the directory is ours
/// (`Fresh` or `Matches`); every other check always runs.
pub fn run_all(params: &StartupParams) -> StartupReport {
    let dir = params.data_dir.as_path();
    let mut failures = Vec::new();
    if let Err(error) = memlock(memlock_required(params.executors, params.io_memory_bytes)) {
        failures.push(error);
    }
    if let Err(error) = io_uring() {
        failures.push(error);
    }
    let identity = identity_check(dir, &params.identity).map_err(|error| failures.push(error)).ok();
    if identity.is_some() {
        if let Err(error) = o_direct(dir) {
            failures.push(error);
        }
    }
    if let Err(error) = free_space(dir, params.free_space_required_bytes) {
        failures.push(error);
    }
    StartupReport { identity, failures }
}

impl fmt::Display for StartupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.failures.is_empty() {
            return f.write_str("all startup checks passed");
        }
        write!(f, "{} startup check(s) failed:", self.failures.len())?;
        for (index, failure) in self.failures.iter().enumerate() {
            write!(f, "\n  {}. {failure}", index + 1)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The group count a node's data was made with.

/// The file in a node's data directory that records its group count.
pub const GROUPS_FILE_NAME: &str = "groups";

/// Objects hash to groups by the group count (`--cores`), so a node's data
/// must always be opened with the count it was made with: any other would
/// leave objects in groups nobody asks. Compares `group_count` with the one
/// recorded in `data_dir/groups` or, for data made before that file, with
/// the number of formatted shard directories, then records it. An error
/// names both counts and what to do.
pub fn group_count(data_dir: &Path, group_count: u32) -> Result<(), String> {
    if group_count_check(data_dir, group_count)? {
        group_count_record(data_dir, group_count)?;
    }
    Ok(())
}

/// The check half of [`group_count`]: Ok(true) if the count still has to be
/// recorded. `toasty-server` records it only once every startup check has
/// passed, so a first start that fails (memlock, a foreign file) does not
/// fix the count the operator is about to correct.
pub fn group_count_check(data_dir: &Path, group_count: u32) -> Result<bool, String> {
    let path = data_dir.join(GROUPS_FILE_NAME);
    let made_with = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text.trim().parse::<u32>().map_err(|_| {
            format!(
                "{}: expected a group count, found {:?}: restore the file with the --cores \
                 this data was made with",
                path.display(),
                text.trim()
            )
        })?),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let formatted = (0..1024u32)
                .take_while(|shard| {
                    crate::shard::storage::ReplicaFile::exists(
                        &data_dir.join(format!("shard-{shard}")),
                    )
                })
                .count() as u32;
            (formatted > 0).then_some(formatted)
        }
        Err(error) => return Err(format!("{}: cannot read: {error}", path.display())),
    };
    match made_with {
        Some(count) if count != group_count => Err(format!(
            "{}: this node's data was made with --cores {count} (objects hash to {count} \
             groups); --cores {group_count} would leave objects where no request looks. \
             Start with --cores {count} (every node of a cluster uses the same)",
            data_dir.display()
        )),
        Some(_) if path.exists() => Ok(false),
        _ => Ok(true),
    }
}

/// Write the group count record (see [`group_count_check`]).
pub fn group_count_record(data_dir: &Path, group_count: u32) -> Result<(), String> {
    let path = data_dir.join(GROUPS_FILE_NAME);
    std::fs::write(&path, format!("{group_count}\n"))
        .map_err(|e| format!("{}: cannot record the group count: {e}", path.display()))
}

// ---------------------------------------------------------------------------
// Messages.

/// `1536` → "1.5 KiB (1536 bytes)": the unit to read, the exact number to
/// compare.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {} ({bytes} bytes)", UNITS[unit])
}

fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EINVAL => "EINVAL",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EPERM => "EPERM",
        libc::ENOSYS => "ENOSYS",
        libc::ENOMEM => "ENOMEM",
        _ => return io::Error::from_raw_os_error(errno).to_string(),
    };
    format!("{name}, os error {errno}")
}

fn identity_text(identity: &DirIdentity) -> String {
    format!("cluster {:032x} node {} shard {}", identity.cluster, identity.node, identity.shard)
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::MemlockTooLow { limit, required_bytes } => {
                fmt_memlock(f, limit, *required_bytes)
            }
            CheckError::KernelTooOld { release } => write!(
                f,
                "kernel {release} is too old: glommio needs Linux {}.{} or newer for the io_uring \
                 operations it uses. Fix: run on a newer kernel.",
                KERNEL_VERSION_MIN.0, KERNEL_VERSION_MIN.1
            ),
            CheckError::IoUringMissing { env } => write!(
                f,
                "this kernel ({}) has no io_uring (io_uring_setup returned ENOSYS): it is built \
                 without CONFIG_IO_URING, or a sandbox such as gVisor does not implement it. Fix: \
                 run on a standard Linux {}.{}+ kernel.",
                env.kernel_release.as_deref().unwrap_or("release unknown"),
                KERNEL_VERSION_MIN.0,
                KERNEL_VERSION_MIN.1
            ),
            CheckError::IoUringDenied { env } => fmt_io_uring_denied(f, env),
            CheckError::IoUringNoMemory => f.write_str(
                "io_uring_setup returned ENOMEM for a 4-entry ring: before Linux 5.12 ring memory \
                 counts against the locked-memory limit. Fix: raise it (`ulimit -l unlimited`, \
                 `LimitMEMLOCK=infinity` in the systemd unit, docker `--ulimit memlock=-1:-1`).",
            ),
            CheckError::IoUringFailed { errno } => {
                write!(
                    f,
                    "io_uring_setup failed with {}; toasty cannot run without io_uring.",
                    errno_name(*errno)
                )
            }
            CheckError::ODirectUnsupported { dir, fs_type, op, errno } => write!(
                f,
                "filesystem of {} does not support O_DIRECT (tmpfs? overlayfs?): {op} failed with \
                 {}; filesystem type: {}. Fix: put the data directory on ext4 or xfs on a real \
                 block device, not tmpfs, overlayfs (in docker, mount a volume: `-v \
                 /srv/toasty:/data`), NFS or FUSE.",
                dir.display(),
                errno_name(*errno),
                fs_type.as_deref().unwrap_or("unknown"),
            ),
            CheckError::ODirectMismatch { dir, offset_first_bad } => write!(
                f,
                "O_DIRECT read-back mismatch in {}: the 4096-byte block read back differs from \
                 the one written and fdatasynced, first at byte {offset_first_bad}. The storage \
                 stack loses or corrupts direct writes; do not store data there. Fix: check \
                 the device and its driver (dmesg), or use another disk.",
                dir.display()
            ),
            CheckError::FreeSpaceLow { dir, available_bytes, required_bytes } => write!(
                f,
                "not enough free space in {}: {} available, {} required. Fix: free space on that \
                 filesystem, point --data at a larger one, or lower the preallocation.",
                dir.display(),
                human_bytes(*available_bytes),
                human_bytes(*required_bytes)
            ),
            CheckError::FreeSpaceUnknown { dir, detail } => write!(
                f,
                "cannot measure free space in {}: {detail}. Fix: check that the directory exists \
                 and is readable.",
                dir.display()
            ),
            CheckError::DataDirMissing { dir } => write!(
                f,
                "data directory {} does not exist. Fix: create it (`mkdir -p {}`) on an ext4/xfs \
                 filesystem, or correct --data.",
                dir.display(),
                dir.display()
            ),
            CheckError::DataDirNotDirectory { dir } => {
                write!(
                    f,
                    "data directory {} is not a directory. Fix: correct --data.",
                    dir.display()
                )
            }
            CheckError::NotToastyDir { dir, entries_shown, entry_count } => {
                fmt_not_toasty(f, dir, entries_shown, *entry_count)
            }
            CheckError::IdentityMismatch { dir, found, expected } => {
                fmt_identity_mismatch(f, dir, found, expected)
            }
            CheckError::IdentityCorrupt { dir, corruption } => {
                fmt_identity_corrupt(f, dir, corruption)
            }
            CheckError::IdentityExists { dir } => write!(
                f,
                "{} already holds a {IDENTITY_FILE_NAME}; refusing to overwrite it (it names the \
                 data already there). Fix: start with the identity it records, or use another \
                 directory.",
                dir.display()
            ),
            CheckError::Proc { path, detail } => write!(
                f,
                "cannot read {path}: {detail}. Fix: mount /proc (toasty runs on Linux only)."
            ),
            CheckError::Io { op, path, source } => {
                write!(
                    f,
                    "{op} {} failed: {source}. Fix: check the path and its permissions.",
                    path.display()
                )
            }
        }
    }
}

fn fmt_memlock(
    f: &mut fmt::Formatter<'_>,
    limit: &MemlockLimit,
    required_bytes: u64,
) -> fmt::Result {
    let required_kib = required_bytes.div_ceil(1024);
    write!(
        f,
        "locked-memory limit too low: the soft RLIMIT_MEMLOCK is {}, the hard one {}; the \
         glommio executors need {} (per executor its io_memory + 512 KiB). Fix: raise it to at least \
         {required_kib} KiB: `ulimit -l {required_kib}` (or `ulimit -l unlimited`) in the shell \
         that starts toasty, `LimitMEMLOCK=infinity` in its systemd unit, docker `--ulimit \
         memlock=-1:-1`, or a `memlock` line in /etc/security/limits.conf.",
        limit.soft,
        limit.hard,
        human_bytes(required_bytes)
    )?;
    if !limit.hard.allows(required_bytes) {
        f.write_str(
            " The hard limit is below that too, so `ulimit -l` alone fails: raise it as root.",
        )?;
    }
    Ok(())
}

fn fmt_io_uring_denied(f: &mut fmt::Formatter<'_>, env: &IoUringEnv) -> fmt::Result {
    match env.disabled_sysctl {
        Some(2) => f.write_str(
            "io_uring is disabled on this host: kernel.io_uring_disabled = 2 (io_uring_setup \
             returns EPERM for every process). Fix: `sysctl -w kernel.io_uring_disabled=0` and \
             persist it in /etc/sysctl.d/.",
        ),
        Some(1) => f.write_str(
            "io_uring is restricted on this host: kernel.io_uring_disabled = 1 allows it only to \
             CAP_SYS_ADMIN and members of kernel.io_uring_group, and this process is neither \
             (io_uring_setup returns EPERM). Fix: `sysctl -w kernel.io_uring_disabled=0`, or set \
             kernel.io_uring_group to a group toasty's user belongs to.",
        ),
        value => write!(
            f,
            "io_uring_setup returned EPERM although kernel.io_uring_disabled is {}: a seccomp \
             filter blocks it (filter installed: {}); Docker 25+ and containerd's RuntimeDefault \
             profile refuse io_uring. Fix: run with a seccomp profile that allows \
             io_uring_setup, io_uring_enter and io_uring_register (`docker run --security-opt \
             seccomp=/path/to/profile.json`, Kubernetes `seccompProfile: Localhost`), or look \
             for an SELinux/AppArmor denial.",
            value.map_or("absent".to_string(), |value| value.to_string()),
            if env.seccomp_filter { "yes" } else { "no" }
        ),
    }
}

fn fmt_not_toasty(
    f: &mut fmt::Formatter<'_>,
    dir: &Path,
    entries_shown: &[String],
    entry_count: usize,
) -> fmt::Result {
    write!(
        f,
        "{} holds files but no {IDENTITY_FILE_NAME}: not a toasty data directory, refusing to \
         touch it (found {}",
        dir.display(),
        entries_shown.join(", ")
    )?;
    if entry_count > entries_shown.len() {
        write!(f, " and {} more", entry_count - entries_shown.len())?;
    }
    f.write_str(
        "). Fix: point --data at an empty directory or at this shard's existing data directory.",
    )
}

fn fmt_identity_mismatch(
    f: &mut fmt::Formatter<'_>,
    dir: &Path,
    found: &DirIdentity,
    expected: &DirIdentity,
) -> fmt::Result {
    let same_owner = (found.cluster, found.node, found.shard)
        == (expected.cluster, expected.node, expected.shard);
    if same_owner {
        return write!(
            f,
            "{} holds data format version {}, but this binary uses format version {}. Fix: run \
             the toasty release that wrote it, or migrate the directory first.",
            dir.display(),
            found.format_version,
            expected.format_version
        );
    }
    write!(
        f,
        "{} belongs to {}, but this process is {} — wrong --data or --node?",
        dir.display(),
        identity_text(found),
        identity_text(expected)
    )
}

fn fmt_identity_corrupt(
    f: &mut fmt::Formatter<'_>,
    dir: &Path,
    corruption: &IdentityCorruption,
) -> fmt::Result {
    let what = match corruption {
        IdentityCorruption::Size { size_bytes } => {
            format!("it is {size_bytes} bytes, a valid one is {IDENTITY_SIZE_BYTES}")
        }
        IdentityCorruption::Magic => "it does not start with the magic \"TOASTYID\"".to_string(),
        IdentityCorruption::Checksum => "its xxh3-128 checksum does not match".to_string(),
        IdentityCorruption::Reserved => {
            "its reserved field is not zero (written by a newer toasty?)".to_string()
        }
    };
    write!(
        f,
        "{}/{IDENTITY_FILE_NAME} is corrupt: {what}. Refusing to start: which cluster, node and \
         shard the directory belongs to is unknown. Fix: restore {IDENTITY_FILE_NAME} from a \
         backup or a sibling shard's record; do not delete it to make the directory look fresh \
         while it still holds data.",
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDENTITY: DirIdentity = DirIdentity {
        cluster: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
        node: 1,
        shard: 0,
        format_version: 1,
    };

    #[test]
    fn memlock_required_formula() {
        assert_eq!(memlock_required(0, 10 << 20), 0);
        assert_eq!(memlock_required(1, 0), 512 * 1024);
        assert_eq!(memlock_required(2, 10 << 20), 2 * ((10 << 20) + 512 * 1024));
        assert_eq!(memlock_required(usize::MAX, usize::MAX), u64::MAX);
    }

    #[test]
    fn memlock_limits_parse() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63376                63376                processes \n\
                      Max locked memory         65536                unlimited            bytes     \n";
        let limit = parse_memlock_limit(limits).expect("parses");
        assert_eq!(limit, MemlockLimit { soft: Limit::Bytes(65536), hard: Limit::Unlimited });
        assert_eq!(parse_memlock_limit("Max processes 1 1 processes\n"), None);
        assert_eq!(parse_memlock_limit("Max locked memory lots 1 bytes\n"), None);
    }

    #[test]
    fn memlock_message_names_values_and_fixes() {
        let error = CheckError::MemlockTooLow {
            limit: MemlockLimit { soft: Limit::Bytes(65536), hard: Limit::Bytes(65536) },
            required_bytes: 11 << 20,
        };
        let message = error.to_string();
        for needle in [
            "64.0 KiB (65536 bytes)",
            "11.0 MiB (11534336 bytes)",
            "ulimit -l 11264",
            "LimitMEMLOCK=infinity",
            "hard limit is below",
        ] {
            assert!(message.contains(needle), "{needle:?} missing from {message}");
        }
    }

    #[test]
    fn io_uring_errno_mapping() {
        let env = |disabled| IoUringEnv {
            kernel_release: Some("6.1.0".to_string()),
            disabled_sysctl: disabled,
            seccomp_filter: true,
        };
        let message = |errno, disabled| io_uring_error(errno, env(disabled)).to_string();
        assert!(matches!(
            io_uring_error(libc::ENOSYS, env(None)),
            CheckError::IoUringMissing { .. }
        ));
        assert!(message(libc::ENOSYS, None).contains("6.1.0"));
        assert!(message(libc::ENOSYS, None).contains("CONFIG_IO_URING"));
        assert!(message(libc::EPERM, Some(2)).contains("sysctl -w kernel.io_uring_disabled=0"));
        assert!(message(libc::EPERM, Some(2)).contains("= 2"));
        assert!(message(libc::EPERM, Some(1)).contains("kernel.io_uring_group"));
        let seccomp = message(libc::EPERM, Some(0));
        assert!(seccomp.contains("--security-opt seccomp="), "{seccomp}");
        assert!(seccomp.contains("filter installed: yes"), "{seccomp}");
        assert!(message(libc::EPERM, None).contains("is absent"));
        assert!(matches!(io_uring_error(libc::ENOMEM, env(None)), CheckError::IoUringNoMemory));
        assert!(message(libc::ENOMEM, None).contains("LimitMEMLOCK=infinity"));
        let other = message(libc::EFAULT, None);
        assert!(other.contains(&format!("os error {}", libc::EFAULT)), "{other}");
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(kernel_version("5.4.0-150-generic"), Some((5, 4)));
        assert_eq!(kernel_version("5.10"), Some((5, 10)));
        assert_eq!(kernel_version("garbage"), None);
        assert!((5, 4) < KERNEL_VERSION_MIN && (5, 10) >= KERNEL_VERSION_MIN);
    }

    #[test]
    fn mountinfo_longest_prefix_and_escapes() {
        let mountinfo = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
23 22 0:5 / /dev/shm rw - tmpfs tmpfs rw\n\
24 22 0:6 / /data\\040disk rw - xfs /dev/sdb rw\n\
25 22 0:7 / /dev/shm rw - overlay overlay rw\n";
        let lookup = |path: &str| mount_for(mountinfo, Path::new(path)).map(|(_, t)| t);
        assert_eq!(lookup("/tmp/x").as_deref(), Some("ext4"));
        assert_eq!(lookup("/data disk/shard0").as_deref(), Some("xfs"));
        assert_eq!(lookup("/data/shard0").as_deref(), Some("ext4"));
        // Stacked mounts: the later one is on top.
        assert_eq!(lookup("/dev/shm/a").as_deref(), Some("overlay"));
        assert_eq!(unescape_mountinfo("a\\011b\\134c\\0"), "a\tb\\c\\0");
    }

    #[test]
    fn o_direct_message() {
        let error = CheckError::ODirectUnsupported {
            dir: PathBuf::from("/dev/shm/data"),
            fs_type: Some("tmpfs".to_string()),
            op: "open with O_DIRECT",
            errno: libc::EINVAL,
        };
        let message = error.to_string();
        assert!(message.starts_with(
            "filesystem of /dev/shm/data does not support O_DIRECT (tmpfs? overlayfs?)"
        ));
        assert!(
            message.contains("EINVAL")
                && message.contains("type: tmpfs")
                && message.contains("ext4 or xfs")
        );
    }

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(1), "1 bytes");
        assert_eq!(human_bytes(1536), "1.5 KiB (1536 bytes)");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB (3221225472 bytes)");
        assert!(human_bytes(u64::MAX).starts_with("16.0 EiB"));
    }

    #[test]
    fn identity_roundtrip() {
        assert_eq!(DirIdentity::decode(&IDENTITY.encode()), Ok(IDENTITY));
        let other = DirIdentity { cluster: u128::MAX, node: u32::MAX, shard: 7, format_version: 9 };
        assert_eq!(DirIdentity::decode(&other.encode()), Ok(other));
    }

    #[test]
    fn identity_every_bit_flip_detected() {
        let record = IDENTITY.encode();
        for bit in 0..IDENTITY_SIZE_BYTES * 8 {
            let mut flipped = record;
            flipped[bit / 8] ^= 1 << (bit % 8);
            let decoded = DirIdentity::decode(&flipped);
            let expected =
                if bit < 64 { IdentityCorruption::Magic } else { IdentityCorruption::Checksum };
            assert_eq!(decoded, Err(expected), "bit {bit}");
        }
    }

    #[test]
    fn identity_size_and_reserved() {
        let record = IDENTITY.encode();
        assert_eq!(
            DirIdentity::decode(&record[..55]),
            Err(IdentityCorruption::Size { size_bytes: 55 })
        );
        assert_eq!(DirIdentity::decode(&[]), Err(IdentityCorruption::Size { size_bytes: 0 }));
        let mut reserved = record;
        reserved[36] = 1;
        let checksum = xxhash_rust::xxh3::xxh3_128(&reserved[..IDENTITY_CHECKSUMMED_BYTES]);
        reserved[IDENTITY_CHECKSUMMED_BYTES..].copy_from_slice(&checksum.to_le_bytes());
        assert_eq!(DirIdentity::decode(&reserved), Err(IdentityCorruption::Reserved));
    }

    #[test]
    fn identity_mismatch_messages() {
        let dir = PathBuf::from("/srv/toasty");
        let other = DirIdentity { cluster: 2, node: 2, ..IDENTITY };
        let message =
            CheckError::IdentityMismatch { dir: dir.clone(), found: IDENTITY, expected: other }
                .to_string();
        assert!(
            message.contains("belongs to cluster 0123456789abcdef0011223344556677 node 1 shard 0"),
            "{message}"
        );
        assert!(message
            .contains("this process is cluster 00000000000000000000000000000002 node 2 shard 0"));
        assert!(message.contains("wrong --data or --node?"));
        let newer = DirIdentity { format_version: 2, ..IDENTITY };
        let message =
            CheckError::IdentityMismatch { dir, found: IDENTITY, expected: newer }.to_string();
        assert!(
            message.contains("format version 1") && message.contains("format version 2"),
            "{message}"
        );
    }
}
