//! Kernel receive timestamps (SO_TIMESTAMPNS): the time a response's last
//! segment reached our socket, not the time our thread got around to reading
//! it. Latency then excludes the generator's own wake-up lag, which also
//! lets the open loop coalesce wake-ups without inflating what it reports.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// `SO_TIMESTAMPNS` (= `SCM_TIMESTAMPNS`) in asm-generic/socket.h, used by
/// x86_64 and aarch64; the libc crate does not export it for Linux.
const SO_TIMESTAMPNS: libc::c_int = 35;

/// Asks the kernel to attach a receive timestamp to every read.
pub fn enable(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads one c_int we own.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_TIMESTAMPNS,
            &on as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `read` that also returns the receive timestamp (CLOCK_REALTIME, ns) of
/// the last segment it consumed, when the kernel gave one.
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<i64>)> {
    let mut iov =
        libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: buf.len() };
    // u64s keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; zero is a valid empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: every pointer in msg refers to live buffers owned here.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: the CMSG macros walk the control buffer the kernel filled,
    // bounded by msg_controllen; the payload is read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == SO_TIMESTAMPNS {
                let ts: libc::timespec =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::timespec);
                stamp = Some(ts.tv_sec * 1_000_000_000 + ts.tv_nsec);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, stamp))
}

/// Maps CLOCK_REALTIME stamps onto `Instant`. Refreshed every worker tick
/// (10 ms), so even a clock being slewed at NTP's 500 ppm limit errs by at
/// most ~5 µs.
#[derive(Debug, Clone, Copy)]
pub struct ClockMap {
    realtime_ns: i64,
    instant: Instant,
}

impl ClockMap {
    pub fn now() -> ClockMap {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes one timespec we own.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
        ClockMap { realtime_ns: ts.tv_sec * 1_000_000_000 + ts.tv_nsec, instant: Instant::now() }
    }

    /// The instant of a realtime stamp, clamped to `[earliest, latest]`
    /// (a response cannot arrive before its request left, nor after now).
    pub fn instant(&self, realtime_ns: i64, earliest: Instant, latest: Instant) -> Instant {
        let delta = realtime_ns - self.realtime_ns;
        let at = if delta >= 0 {
            self.instant.checked_add(Duration::from_nanos(delta as u64))
        } else {
            self.instant.checked_sub(Duration::from_nanos(delta.unsigned_abs()))
        };
        at.unwrap_or(latest).clamp(earliest, latest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn loopback_reads_carry_a_stamp_before_the_read() {
        // Fails if the kernel gives no stamp (we would silently fall back
        // to read time) or the stamp maps to a time after the read.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        enable(server.as_raw_fd()).unwrap();
        // The kernel turns stamping on for the whole stack asynchronously.
        std::thread::sleep(Duration::from_millis(50));
        let sent = Instant::now();
        client.write_all(b"hello").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let map = ClockMap::now();
        let mut buf = [0u8; 16];
        let (n, stamp) = recv(server.as_raw_fd(), &mut buf).unwrap();
        let read_at = Instant::now();
        assert_eq!(&buf[..n], b"hello");
        let at = map.instant(
            stamp.expect("a receive timestamp"),
            sent - Duration::from_secs(1),
            read_at,
        );
        assert!(
            at >= sent - Duration::from_millis(1) && at + Duration::from_millis(15) < read_at,
            "stamp not at arrival"
        );
    }
}
