//! Waiting for a `flock` in the kernel, with a timeout.
//!
//! `flock(2)` either fails at once (`LOCK_NB`) or blocks until the lock is free: it has no
//! timeout. Polling with sleeps leaves the lock free while every waiter sleeps; blocking
//! wakes a waiter the moment the holder lets go. The timeout comes from a POSIX timer that
//! signals the waiting thread (and only it, `SIGEV_THREAD_ID`) at the deadline and every
//! `TICK` after, with a handler that does nothing and no `SA_RESTART`, so the blocked
//! `flock` returns `EINTR` and the waiter sees the deadline has passed. The ticks cover a
//! signal that lands just before `flock` is entered.
//!
//! The signal is a real-time one nobody else handles, chosen and installed once per
//! process. Where there is none, or the timer cannot be made, the caller polls as before.
//! Only for local filesystems: an NFS client waits for a blocked lock by polling the server
//! itself, with back-off up to 30 s, which would overshoot any timeout.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Period of the timer after its first expiry.
const TICK: Duration = Duration::from_millis(5);

/// What a blocking wait came to.
pub enum Waited {
    Locked,
    TimedOut(Duration),
}

extern "C" fn wake(_: libc::c_int) {}

/// The real-time signal used to wake waiters, installed on first use; None if every
/// candidate already has a handler.
fn signal() -> Option<libc::c_int> {
    static SIGNAL: OnceLock<Option<libc::c_int>> = OnceLock::new();
    *SIGNAL.get_or_init(|| {
        // Away from both ends of the range, which other libraries tend to pick.
        for sig in (libc::SIGRTMIN() + 6)..=(libc::SIGRTMAX() - 6) {
            // SAFETY: sigaction with a null new action only reads the current one into `old`.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0
                || old.sa_sigaction != libc::SIG_DFL
            {
                continue;
            }
            // SAFETY: a zeroed sigaction is valid; the handler is a no-op `extern "C" fn`,
            // async-signal-safe; flags leave out SA_RESTART on purpose.
            let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
            act.sa_sigaction = wake as *const () as libc::sighandler_t;
            act.sa_flags = 0;
            unsafe { libc::sigemptyset(&mut act.sa_mask) };
            if unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) } == 0 {
                return Some(sig);
            }
        }
        None
    })
}

/// A POSIX timer signalling this thread at a deadline and every `TICK` after; deleted on drop.
struct Timer(libc::timer_t);

impl Timer {
    fn arm(sig: libc::c_int, after: Duration) -> Option<Timer> {
        // SAFETY: a zeroed sigevent is valid; the fields set are those SIGEV_THREAD_ID reads.
        let mut ev: libc::sigevent = unsafe { std::mem::zeroed() };
        ev.sigev_notify = libc::SIGEV_THREAD_ID;
        ev.sigev_signo = sig;
        ev.sigev_notify_thread_id = unsafe { libc::gettid() };
        let mut id: libc::timer_t = std::ptr::null_mut();
        // SAFETY: `ev` and `id` are valid for the call.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut ev, &mut id) } != 0 {
            return None;
        }
        let timer = Timer(id);
        let spec = libc::itimerspec {
            it_interval: timespec(TICK),
            // A zero it_value would disarm the timer.
            it_value: timespec(after.max(Duration::from_nanos(1))),
        };
        // SAFETY: `id` is the timer just created; `spec` is valid.
        if unsafe { libc::timer_settime(timer.0, 0, &spec, std::ptr::null_mut()) } != 0 {
            return None;
        }
        Some(timer)
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // SAFETY: the timer was created by `arm` and is deleted once.
        unsafe { libc::timer_delete(self.0) };
    }
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

/// Block until the lock is had or `timeout` (None: no limit) has passed since `started`.
/// None when this process cannot wake a waiter at a deadline: the caller polls instead.
pub fn wait(
    file: &File,
    exclusive: bool,
    started: Instant,
    timeout: Option<Duration>,
) -> Option<io::Result<Waited>> {
    let _timer = match timeout {
        Some(limit) => Some(Timer::arm(
            signal()?,
            limit.saturating_sub(started.elapsed()),
        )?),
        None => None,
    };
    let op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    };
    loop {
        // SAFETY: flock on a descriptor this call borrows.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Some(Ok(Waited::Locked));
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Some(Err(err));
        }
        // Our timer, or another signal (Python's SIGINT handler, say): go on until the deadline.
        let waited = started.elapsed();
        if timeout.is_some_and(|limit| waited >= limit) {
            return Some(Ok(Waited::TimedOut(waited)));
        }
    }
}
