//! Startup checks against the real machine. Where the library reads /proc
//! (limits, filesystem types) these tests measure the same thing with libc
//! (getrlimit, statfs) and assert that the checks agree, so a wrong parser
//! or a wrong verdict fails.

use std::fs;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use toasty::shard::checks::{
    self, CheckError, DirIdentity, IdentityState, Limit, StartupParams, IDENTITY_FILE_NAME,
};

const EXT4_SUPER_MAGIC: i64 = 0xEF53;
const XFS_SUPER_MAGIC: i64 = 0x5846_5342;
const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

const IDENTITY: DirIdentity = DirIdentity {
    cluster: 0xfeed_f00d_0000_0000_0000_0000_0000_0001,
    node: 1,
    shard: 0,
    format_version: 1,
};

/// A unique directory (pid + counter) removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        TempDir::new_in(&std::env::temp_dir(), label)
    }

    fn new_in(parent: &Path, label: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!("toasty-checks-{}-{count}-{label}", std::process::id()));
        fs::create_dir(&path).expect("create test directory");
        TempDir(path)
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.0)
            .expect("list")
            .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn getrlimit_memlock() -> libc::rlimit {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable rlimit.
    let result = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    assert_eq!(result, 0, "getrlimit: {}", io::Error::last_os_error());
    limit
}

fn to_limit(value: libc::rlim_t) -> Limit {
    if value == libc::RLIM_INFINITY {
        Limit::Unlimited
    } else {
        Limit::Bytes(value)
    }
}

fn statfs_type(path: &Path) -> i64 {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("no NUL");
    // SAFETY: all-zero is a valid statfs; the path is NUL-terminated.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    let result = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) };
    assert_eq!(result, 0, "statfs {}: {}", path.display(), io::Error::last_os_error());
    stat.f_type as i64
}

fn statvfs_available_bytes(path: &Path) -> u64 {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("no NUL");
    // SAFETY: all-zero is a valid statvfs; the path is NUL-terminated.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let result = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    assert_eq!(result, 0, "statvfs {}: {}", path.display(), io::Error::last_os_error());
    stat.f_bavail * stat.f_frsize
}

// ---------------------------------------------------------------------------
// memlock

#[test]
fn memlock_limit_matches_getrlimit() {
    let raw = getrlimit_memlock();
    let limit = checks::memlock_limit().expect("read /proc/self/limits");
    assert_eq!(limit.soft, to_limit(raw.rlim_cur));
    assert_eq!(limit.hard, to_limit(raw.rlim_max));
}

#[test]
fn memlock_one_byte_over_the_limit_fails() {
    let soft = getrlimit_memlock().rlim_cur;
    if soft == libc::RLIM_INFINITY {
        eprintln!("skipped: RLIMIT_MEMLOCK is unlimited, nothing exceeds it");
        return;
    }
    let error = checks::memlock(soft + 1).expect_err("limit + 1 must fail");
    assert!(matches!(error, CheckError::MemlockTooLow { .. }), "{error:?}");
    let message = error.to_string();
    eprintln!("{message}");
    assert!(message.contains(&format!("({soft} bytes)")), "{message}");
    assert!(message.contains(&format!("({} bytes)", soft + 1)), "{message}");
    assert!(message.contains("ulimit -l"), "{message}");
    assert!(message.contains("LimitMEMLOCK=infinity"), "{message}");
}

#[test]
fn memlock_within_the_limit_passes() {
    let soft = getrlimit_memlock().rlim_cur;
    if soft == 0 {
        eprintln!("skipped: RLIMIT_MEMLOCK is 0, no requirement can pass");
        return;
    }
    checks::memlock(1).expect("1 byte fits any non-zero limit");
    checks::memlock(soft.min(u64::MAX - 1)).expect("exactly the limit fits");
}

const CHILD_ENV: &str = "TOASTY_CHECKS_CHILD";
const CHILD_MEMLOCK_SOFT_BYTES: u64 = 64 * 1024;

/// Runs this test binary again with the soft RLIMIT_MEMLOCK lowered to
/// 64 KiB (setrlimit between fork and exec), so `memlock` sees a limit it
/// did not set itself: the operator's `ulimit -l 64`.
#[test]
fn memlock_fails_in_child_with_lowered_limit() {
    let hard = getrlimit_memlock().rlim_max;
    if hard != libc::RLIM_INFINITY && hard < CHILD_MEMLOCK_SOFT_BYTES {
        eprintln!("skipped: hard RLIMIT_MEMLOCK {hard} is below the 64 KiB the child needs");
        return;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let mut command = Command::new(exe);
    command.args(["helper_memlock_child", "--exact", "--nocapture", "--test-threads=1"]);
    command.env(CHILD_ENV, "memlock");
    // SAFETY: the closure only calls setrlimit (async-signal-safe) on a
    // stack value and builds an io::Error from errno.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit { rlim_cur: CHILD_MEMLOCK_SOFT_BYTES, rlim_max: hard };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = command.output().expect("run child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    // The child prints the message; seeing it proves the helper ran and
    // did not return early.
    assert!(stdout.contains("CHILD MESSAGE: locked-memory limit too low"), "{stdout}");
    assert!(stdout.contains("64.0 KiB (65536 bytes)"), "{stdout}");
    assert!(stdout.contains("ulimit -l 576"), "{stdout}");
}

/// Not a test on its own: `memlock_fails_in_child_with_lowered_limit` runs
/// it in a child process with `TOASTY_CHECKS_CHILD=memlock`.
#[test]
fn helper_memlock_child() {
    if std::env::var(CHILD_ENV).as_deref() != Ok("memlock") {
        return;
    }
    let limit = checks::memlock_limit().expect("read limits");
    assert_eq!(limit.soft, Limit::Bytes(CHILD_MEMLOCK_SOFT_BYTES));
    // One executor with glommio's smallest io_memory (64 KiB) + 512 KiB.
    let required = checks::memlock_required(1, 64 * 1024);
    assert_eq!(required, 576 * 1024);
    let error = checks::memlock(required).expect_err("64 KiB < 576 KiB");
    println!("CHILD MESSAGE: {error}");
}

// ---------------------------------------------------------------------------
// io_uring

/// `io_uring_setup(4, params)` done here independently; `Err(errno)`.
fn raw_io_uring_probe() -> Result<(), i32> {
    // struct io_uring_params is 120 bytes of u32/u64 fields; all zero asks
    // for a plain ring.
    let mut params = [0u32; 30];
    // SAFETY: `params` is a writable buffer of sizeof(struct io_uring_params).
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    // SAFETY: `fd` is the ring fd just returned and owned by nobody else.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

#[test]
fn io_uring_check_agrees_with_raw_probe() {
    let raw = raw_io_uring_probe();
    let checked = checks::io_uring();
    eprintln!("raw io_uring_setup: {raw:?}; io_uring(): {checked:?}");
    match raw {
        // This machine: io_uring works, so the check must pass.
        Ok(()) => checked.expect("io_uring works here, the check must pass"),
        Err(errno) => {
            let error = checked.expect_err("io_uring_setup fails here, the check must fail");
            let expected = checks::io_uring_error(errno, checks::IoUringEnv::read());
            assert_eq!(error.to_string(), expected.to_string());
        }
    }
}

/// The docker case for real: a child process whose seccomp filter answers
/// `io_uring_setup` with EPERM, as Docker 25+'s default profile does.
#[test]
fn io_uring_denied_by_seccomp_in_child() {
    // Classic BPF: load the syscall number, EPERM for io_uring_setup, allow
    // everything else. The constants are from linux/filter.h, seccomp.h.
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JMP_JEQ_K: u16 = 0x15;
    const BPF_RET_K: u16 = 0x06;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    let statement = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    // Built before fork: the child must not allocate.
    let mut filter = Box::new([
        statement(BPF_LD_W_ABS, 0, 0, 0),
        statement(BPF_JMP_JEQ_K, 0, 1, libc::SYS_io_uring_setup as u32),
        statement(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | libc::EPERM as u32),
        statement(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]);
    let program = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_mut_ptr() };
    let program_address = &program as *const libc::sock_fprog as usize;

    let exe = std::env::current_exe().expect("test binary path");
    let mut command = Command::new(exe);
    command.args(["helper_io_uring_child", "--exact", "--nocapture", "--test-threads=1"]);
    command.env(CHILD_ENV, "io_uring");
    // SAFETY: only prctl on memory built before fork and still alive.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, program_address)
                    != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = command.output().expect("run child");
    drop(filter);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("CHILD MESSAGE: io_uring_setup returned EPERM"), "{stdout}");
    assert!(stdout.contains("filter installed: yes"), "{stdout}");
    assert!(stdout.contains("--security-opt seccomp="), "{stdout}");
    eprintln!("{}", stdout.lines().find(|line| line.contains("CHILD MESSAGE")).unwrap_or(""));
}

/// Not a test on its own: run by `io_uring_denied_by_seccomp_in_child`.
#[test]
fn helper_io_uring_child() {
    if std::env::var(CHILD_ENV).as_deref() != Ok("io_uring") {
        return;
    }
    let error = checks::io_uring().expect_err("seccomp refuses io_uring_setup");
    assert!(matches!(error, CheckError::IoUringDenied { .. }), "{error:?}");
    println!("CHILD MESSAGE: {error}");
}

// ---------------------------------------------------------------------------
// O_DIRECT

#[test]
fn o_direct_passes_on_ext4_or_xfs_tmp() {
    let dir = TempDir::new("odirect");
    let magic = statfs_type(&dir.0);
    let fs_type = checks::filesystem_type(&dir.0);
    eprintln!("temp dir {} is {fs_type:?} (f_type {magic:#x})", dir.0.display());
    match magic {
        EXT4_SUPER_MAGIC => assert_eq!(fs_type.as_deref(), Some("ext4")),
        XFS_SUPER_MAGIC => assert_eq!(fs_type.as_deref(), Some("xfs")),
        _ => {
            eprintln!("skipped: the temp dir is neither ext4 nor xfs");
            return;
        }
    }
    checks::o_direct(&dir.0).expect("ext4/xfs support O_DIRECT");
    assert_eq!(dir.entries(), Vec::<String>::new(), "the probe file must be removed");
}

/// Whether O_DIRECT open + one aligned write works in `dir`, done here
/// without the library.
fn independent_o_direct_probe(dir: &Path) -> io::Result<()> {
    #[repr(C, align(4096))]
    struct Block([u8; 4096]);
    let path = dir.join("independent-probe");
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path);
    let result = file.and_then(|file| file.write_all_at(&Box::new(Block([7; 4096])).0, 0));
    let _ = fs::remove_file(&path);
    result
}

#[test]
fn o_direct_on_dev_shm_matches_independent_probe() {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() || statfs_type(shm) != TMPFS_MAGIC {
        eprintln!("skipped: no tmpfs at /dev/shm");
        return;
    }
    let dir = TempDir::new_in(shm, "odirect");
    assert_eq!(checks::filesystem_type(&dir.0).as_deref(), Some("tmpfs"));
    let independent = independent_o_direct_probe(&dir.0);
    let checked = checks::o_direct(&dir.0);
    eprintln!("tmpfs O_DIRECT: independent {independent:?}, check {checked:?}");
    match independent {
        // Linux ≥ 6.6 tmpfs accepts O_DIRECT: the check must pass.
        Ok(()) => checked.expect("tmpfs accepts O_DIRECT here"),
        Err(error) => {
            let errno = error.raw_os_error();
            assert!(matches!(errno, Some(libc::EINVAL | libc::EOPNOTSUPP)), "{error}");
            let message = checked.expect_err("tmpfs refuses O_DIRECT here").to_string();
            assert!(message.contains("does not support O_DIRECT (tmpfs? overlayfs?)"), "{message}");
            assert!(message.contains("tmpfs"), "{message}");
        }
    }
    assert_eq!(dir.entries(), Vec::<String>::new(), "the probe file must be removed");
}

const CHILD_DIR_ENV: &str = "TOASTY_CHECKS_DIR";
/// What the shell script exits with when it cannot mount (no privileges).
const CHILD_SKIP_STATUS: i32 = 77;

/// The refusal path for real: ramfs has no direct I/O and (unlike tmpfs
/// since Linux 6.6) refuses O_DIRECT at open with EINVAL. It is mounted in
/// a private mount namespace (`unshare -m`, needs root), so the host never
/// sees it; without the privilege the test is skipped.
#[test]
fn o_direct_fails_on_ramfs_in_private_mount_namespace() {
    let dir = TempDir::new("ramfs");
    let exe = std::env::current_exe().expect("test binary path");
    let script = format!(
        "mount -t ramfs ramfs \"$1\" || exit {CHILD_SKIP_STATUS}; \
         exec \"$2\" helper_o_direct_child --exact --nocapture --test-threads=1"
    );
    let output = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script, "sh"])
        .arg(&dir.0)
        .arg(exe)
        .env(CHILD_ENV, "o_direct")
        .env(CHILD_DIR_ENV, &dir.0)
        .output();
    let output = match output {
        Err(error) => return eprintln!("skipped: cannot run unshare: {error}"),
        Ok(output) => output,
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(CHILD_SKIP_STATUS) || stderr.starts_with("unshare:") {
        return eprintln!("skipped: no private ramfs mount here: {}", stderr.trim());
    }
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    let message = "CHILD MESSAGE: filesystem of";
    assert!(stdout.contains(message), "{stdout}");
    assert!(stdout.contains("does not support O_DIRECT (tmpfs? overlayfs?)"), "{stdout}");
    assert!(stdout.contains("EINVAL") && stdout.contains("filesystem type: ramfs"), "{stdout}");
    eprintln!("{}", stdout.lines().find(|line| line.contains(message)).unwrap_or(""));
}

/// Not a test on its own: run by `o_direct_fails_on_ramfs_in_private_mount_namespace`
/// with the data directory on ramfs.
#[test]
fn helper_o_direct_child() {
    if std::env::var(CHILD_ENV).as_deref() != Ok("o_direct") {
        return;
    }
    let dir = PathBuf::from(std::env::var_os(CHILD_DIR_ENV).expect("directory"));
    assert_eq!(statfs_type(&dir), RAMFS_MAGIC);
    assert_eq!(checks::filesystem_type(&dir).as_deref(), Some("ramfs"));
    let error = checks::o_direct(&dir).expect_err("ramfs refuses O_DIRECT");
    assert!(
        matches!(error, CheckError::ODirectUnsupported { errno: libc::EINVAL, .. }),
        "{error:?}"
    );
    assert_eq!(fs::read_dir(&dir).expect("list").count(), 0, "no probe file left");
    println!("CHILD MESSAGE: {error}");
}

#[test]
fn o_direct_in_missing_dir_is_an_io_error() {
    let dir = TempDir::new("odirect-missing");
    let missing = dir.0.join("absent");
    let error = checks::o_direct(&missing).expect_err("no directory");
    assert!(matches!(error, CheckError::Io { .. }), "{error:?}");
    assert!(error.to_string().contains("absent"), "{error}");
}

// ---------------------------------------------------------------------------
// free space

#[test]
fn free_space_huge_requirement_fails() {
    let dir = TempDir::new("space");
    let error = checks::free_space(&dir.0, u64::MAX / 2).expect_err("nobody has 8 EiB");
    assert!(matches!(error, CheckError::FreeSpaceLow { .. }), "{error:?}");
    let message = error.to_string();
    eprintln!("{message}");
    assert!(message.contains("8.0 EiB (9223372036854775807 bytes) required"), "{message}");
    assert!(message.contains("available"), "{message}");
    assert!(message.contains(&dir.0.display().to_string()), "{message}");
}

#[test]
fn free_space_one_byte_passes() {
    let dir = TempDir::new("space");
    checks::free_space(&dir.0, 1).expect("1 byte is free");
}

#[test]
fn available_bytes_matches_statvfs() {
    let dir = TempDir::new("space");
    let before = statvfs_available_bytes(&dir.0);
    let measured = checks::available_bytes(&dir.0).expect("measure");
    let after = statvfs_available_bytes(&dir.0);
    // Other processes write meanwhile: allow 256 MiB of drift.
    let slack: u64 = 256 << 20;
    let (low, high) = (before.min(after).saturating_sub(slack), before.max(after) + slack);
    assert!((low..=high).contains(&measured), "{measured} outside {low}..={high}");
}

#[test]
fn free_space_of_missing_dir_is_unknown() {
    let dir = TempDir::new("space");
    let error = checks::free_space(&dir.0.join("absent"), 1).expect_err("no directory");
    assert!(matches!(error, CheckError::FreeSpaceUnknown { .. }), "{error:?}");
}

// ---------------------------------------------------------------------------
// identity

#[test]
fn identity_empty_dir_is_fresh_then_create_matches() {
    let dir = TempDir::new("identity");
    assert_eq!(checks::identity_check(&dir.0, &IDENTITY).expect("empty"), IdentityState::Fresh);
    checks::identity_create(&dir.0, &IDENTITY).expect("create");
    assert_eq!(dir.entries(), vec![IDENTITY_FILE_NAME.to_string()], "temporary file removed");
    assert_eq!(checks::identity_check(&dir.0, &IDENTITY).expect("ours"), IdentityState::Matches);
}

#[test]
fn identity_leftovers_and_lost_found_still_fresh() {
    let dir = TempDir::new("identity");
    fs::create_dir(dir.0.join("lost+found")).expect("mkdir");
    fs::write(dir.0.join("toasty.id.tmp"), b"half").expect("write");
    fs::write(dir.0.join(".toasty-probe-odirect-1"), b"").expect("write");
    assert_eq!(checks::identity_check(&dir.0, &IDENTITY).expect("fresh"), IdentityState::Fresh);
    // A leftover temporary file does not stop a create.
    checks::identity_create(&dir.0, &IDENTITY).expect("create over leftover tmp");
    assert_eq!(checks::identity_check(&dir.0, &IDENTITY).expect("ours"), IdentityState::Matches);
}

#[test]
fn identity_mismatch_names_both() {
    let dir = TempDir::new("identity");
    checks::identity_create(&dir.0, &IDENTITY).expect("create");
    let others = [
        DirIdentity { cluster: 0xbeef, ..IDENTITY },
        DirIdentity { node: 2, ..IDENTITY },
        DirIdentity { shard: 3, ..IDENTITY },
    ];
    for other in others {
        let error = checks::identity_check(&dir.0, &other).expect_err("someone else's");
        let message = error.to_string();
        let found = format!("belongs to cluster {:032x} node 1 shard 0", IDENTITY.cluster);
        let expected = format!(
            "this process is cluster {:032x} node {} shard {}",
            other.cluster, other.node, other.shard
        );
        assert!(message.contains(&found), "{message}");
        assert!(message.contains(&expected), "{message}");
        assert!(message.contains("wrong --data or --node?"), "{message}");
    }
    let newer = DirIdentity { format_version: 2, ..IDENTITY };
    let message = checks::identity_check(&dir.0, &newer).expect_err("other format").to_string();
    assert!(message.contains("format version 1") && message.contains("format version 2"));
}

fn corrupt_and_check(dir: &TempDir, mutate: impl FnOnce(&mut Vec<u8>)) -> CheckError {
    let path = dir.0.join(IDENTITY_FILE_NAME);
    let mut record = fs::read(&path).expect("read");
    mutate(&mut record);
    fs::write(&path, &record).expect("write");
    let error = checks::identity_check(&dir.0, &IDENTITY).expect_err("corrupt is never fresh");
    assert!(matches!(error, CheckError::IdentityCorrupt { .. }), "{error:?}");
    error
}

#[test]
fn identity_corruption_is_its_own_error() {
    let dir = TempDir::new("identity");
    checks::identity_create(&dir.0, &IDENTITY).expect("create");
    let original = fs::read(dir.0.join(IDENTITY_FILE_NAME)).expect("read");

    let message = corrupt_and_check(&dir, |record| record[20] ^= 0x01).to_string();
    eprintln!("{message}");
    assert!(message.contains("checksum does not match"), "{message}");

    fs::write(dir.0.join(IDENTITY_FILE_NAME), &original).expect("restore");
    let message = corrupt_and_check(&dir, |record| record[0] ^= 0x80).to_string();
    assert!(message.contains("magic"), "{message}");

    let message = corrupt_and_check(&dir, |record| record.truncate(30)).to_string();
    assert!(message.contains("it is 30 bytes, a valid one is 56"), "{message}");

    let message = corrupt_and_check(&dir, |record| record.clear()).to_string();
    assert!(message.contains("it is 0 bytes"), "{message}");

    let message = corrupt_and_check(&dir, |record| *record = vec![0; 1 << 20]).to_string();
    assert!(message.contains("it is 1048576 bytes"), "{message}");
}

#[test]
fn identity_non_empty_dir_without_id_is_refused() {
    let dir = TempDir::new("identity");
    for name in ["a.dat", "b.dat", "c", "d", "e", "f", "g"] {
        fs::write(dir.0.join(name), b"someone's data").expect("write");
    }
    let error = checks::identity_check(&dir.0, &IDENTITY).expect_err("foreign files");
    assert!(matches!(error, CheckError::NotToastyDir { .. }), "{error:?}");
    let message = error.to_string();
    eprintln!("{message}");
    assert!(message.contains(
        "holds files but no toasty.id: not a toasty data directory, refusing to touch it"
    ));
    assert!(message.contains("a.dat, b.dat, c, d, e and 2 more"), "{message}");
    assert_eq!(dir.entries().len(), 7);
}

#[test]
fn identity_create_twice_is_refused() {
    let dir = TempDir::new("identity");
    checks::identity_create(&dir.0, &IDENTITY).expect("first create");
    let other = DirIdentity { node: 9, ..IDENTITY };
    let error = checks::identity_create(&dir.0, &other).expect_err("second create");
    assert!(matches!(error, CheckError::IdentityExists { .. }), "{error:?}");
    assert!(error.to_string().contains("refusing to overwrite"), "{error}");
    // The first identity is untouched.
    assert_eq!(checks::identity_check(&dir.0, &IDENTITY).expect("ours"), IdentityState::Matches);
}

#[test]
fn identity_missing_dir_and_file_as_dir() {
    let dir = TempDir::new("identity");
    let error = checks::identity_check(&dir.0.join("absent"), &IDENTITY).expect_err("missing");
    assert!(matches!(error, CheckError::DataDirMissing { .. }), "{error:?}");
    assert!(error.to_string().contains("mkdir -p"), "{error}");
    fs::write(dir.0.join("file"), b"").expect("write");
    let error = checks::identity_check(&dir.0.join("file"), &IDENTITY).expect_err("file");
    assert!(matches!(error, CheckError::DataDirNotDirectory { .. }), "{error:?}");
}

// ---------------------------------------------------------------------------
// run_all

#[test]
fn run_all_passes_on_a_good_fresh_dir() {
    let dir = TempDir::new("run-all");
    let params = StartupParams {
        data_dir: dir.0.clone(),
        identity: IDENTITY,
        executors: 1,
        io_memory_bytes: 64 * 1024,
        free_space_required_bytes: 1 << 20,
    };
    let soft = getrlimit_memlock().rlim_cur;
    if soft != libc::RLIM_INFINITY && soft < checks::memlock_required(1, 64 * 1024) {
        eprintln!("skipped: RLIMIT_MEMLOCK {soft} is below one executor's need");
        return;
    }
    if raw_io_uring_probe().is_err() {
        eprintln!("skipped: io_uring unavailable on this machine");
        return;
    }
    let report = checks::run_all(&params);
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.identity, Some(IdentityState::Fresh));
    assert_eq!(report.to_string(), "all startup checks passed");
    assert_eq!(dir.entries(), Vec::<String>::new(), "run_all leaves nothing behind");
}

#[test]
fn run_all_reports_every_failure() {
    let dir = TempDir::new("run-all");
    fs::write(dir.0.join("other.db"), b"x").expect("write");
    let mtime_before = fs::metadata(&dir.0).and_then(|m| m.modified()).expect("mtime");
    let soft = getrlimit_memlock().rlim_cur;
    let params = StartupParams {
        data_dir: dir.0.clone(),
        identity: IDENTITY,
        executors: usize::MAX,
        io_memory_bytes: usize::MAX,
        free_space_required_bytes: u64::MAX,
    };
    let report = checks::run_all(&params);
    eprintln!("{report}");
    let memlock_fails = soft != libc::RLIM_INFINITY;
    let expected = usize::from(memlock_fails) + 2 + usize::from(raw_io_uring_probe().is_err());
    assert_eq!(report.failures.len(), expected, "{report}");
    assert_eq!(report.identity, None);
    let has = |test: fn(&CheckError) -> bool| report.failures.iter().any(test);
    assert_eq!(has(|e| matches!(e, CheckError::MemlockTooLow { .. })), memlock_fails);
    assert!(has(|e| matches!(e, CheckError::NotToastyDir { .. })));
    assert!(has(|e| matches!(e, CheckError::FreeSpaceLow { .. })));
    // The foreign directory was not touched: an O_DIRECT probe file, even
    // removed again, would have changed its mtime.
    assert_eq!(dir.entries(), vec!["other.db".to_string()]);
    let mtime_after = fs::metadata(&dir.0).and_then(|m| m.modified()).expect("mtime");
    assert_eq!(mtime_before, mtime_after, "run_all wrote into a foreign directory");
    assert!(report.to_string().starts_with(&format!("{expected} startup check(s) failed:")));
}

/// Fails if a node's data opens with another group count than it was made
/// with (objects would hash to groups nobody asks), if the first start does
/// not record its count, or if data made before the record existed is not
/// recognised by its formatted shard directories.
#[test]
fn group_count_is_recorded_and_enforced() {
    let dir = TempDir::new("groups");
    assert!(checks::group_count_check(&dir.0, 2).expect("fresh"), "fresh data needs a record");
    assert!(!dir.0.join(checks::GROUPS_FILE_NAME).exists(), "the check alone writes nothing");
    checks::group_count(&dir.0, 2).expect("a fresh directory takes any count");
    let recorded = fs::read_to_string(dir.0.join(checks::GROUPS_FILE_NAME)).expect("recorded");
    assert_eq!(recorded.trim(), "2");
    checks::group_count(&dir.0, 2).expect("the same count opens");
    let error = checks::group_count(&dir.0, 1).expect_err("another count is refused");
    assert!(error.contains("--cores 2") && error.contains("--cores 1"), "{error}");

    fs::write(dir.0.join(checks::GROUPS_FILE_NAME), "two\n").expect("garble");
    let error = checks::group_count(&dir.0, 2).expect_err("a garbled record is refused");
    assert!(error.contains("expected a group count"), "{error}");

    // Older data: no record, two formatted shards (a replica file each).
    let old = TempDir::new("groups-old");
    for shard in 0..2 {
        let shard_dir = old.0.join(format!("shard-{shard}"));
        fs::create_dir(&shard_dir).expect("shard dir");
        fs::write(toasty::shard::storage::ReplicaFile::path_in(&shard_dir), b"x").expect("file");
    }
    let error = checks::group_count(&old.0, 1).expect_err("fewer groups than formatted");
    assert!(error.contains("--cores 2"), "{error}");
    assert!(!old.0.join(checks::GROUPS_FILE_NAME).exists(), "a refused start records nothing");
    checks::group_count(&old.0, 2).expect("the formatted count opens");
    let recorded = fs::read_to_string(old.0.join(checks::GROUPS_FILE_NAME)).expect("recorded");
    assert_eq!(recorded.trim(), "2");
}

/// Fails if a first start that fails a startup check still fixes the
/// group count: the operator who fixes the cause may also be fixing
/// `--cores`, and a record left by the failed start would refuse it.
#[test]
fn a_failed_first_start_records_no_group_count() {
    let dir = TempDir::new("groups-failed-start");
    let shard = dir.0.join("shard-0");
    fs::create_dir(&shard).expect("shard dir");
    fs::write(shard.join("other.db"), b"not ours").expect("foreign file");
    let output = Command::new(env!("CARGO_BIN_EXE_toasty-server"))
        .args(["--node", "0", "--peers", "127.0.0.1:1", "--cores", "2", "--cpus", "unpinned"])
        .arg("--data")
        .arg(&dir.0)
        .output()
        .expect("run toasty-server");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a foreign file must fail the start: {stderr}");
    assert!(stderr.contains("other.db") || stderr.contains("not a toasty"), "{stderr}");
    assert!(
        !dir.0.join(checks::GROUPS_FILE_NAME).exists(),
        "the failed start recorded a group count"
    );
    // A later start's check still accepts any count, as for fresh data.
    assert!(checks::group_count_check(&dir.0, 1).expect("no record yet"));
}
