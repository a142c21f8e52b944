//! A timerfd in the epoll set: epoll_wait's own timeout has millisecond
//! resolution (mio rounds up), far too coarse to send at 20,000 requests/s
//! on schedule. Linux only, like the rest of the tool.

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

pub struct TimerFd {
    fd: OwnedFd,
}

impl TimerFd {
    pub fn new() -> io::Result<TimerFd> {
        // SAFETY: plain syscall; the fd is owned by OwnedFd from here on.
        let raw = unsafe {
            libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC)
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh, valid descriptor nobody else owns.
        Ok(TimerFd { fd: unsafe { OwnedFd::from_raw_fd(raw) } })
    }

    /// Edge-triggered: every expiry wakes epoll even if the expiry count was
    /// never read, and re-arming resets the count, so we never read it.
    pub fn register(&self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut SourceFd(&self.fd.as_raw_fd()), token, Interest::READABLE)
    }

    /// Fires once, `after` from now (at least 1 ns: zero would disarm).
    pub fn arm_in(&self, after: Duration) {
        let ns = after.as_nanos().clamp(1, i64::MAX as u128) as i64;
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec { tv_sec: ns / 1_000_000_000, tv_nsec: ns % 1_000_000_000 },
        };
        // SAFETY: valid fd and a spec we own; failure only means a late wake.
        unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    }
}

/// Timer slack (50 µs by default) delays every wake-up; open-loop sends want
/// to leave on time.
pub fn set_thread_timer_slack_ns(ns: u64) {
    // SAFETY: prctl with an integer argument affects only this thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong) };
}
