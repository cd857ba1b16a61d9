//! Test support: forbid io_uring in this process with a seccomp filter, the way a
//! container runtime's seccomp profile does, so the WAL's fallback is tested against
//! the kernel's real refusal (EPERM from `io_uring_setup`) rather than a flag.
#![allow(unsafe_code)]

/// io_uring syscall numbers (identical on x86_64 and aarch64).
const IO_URING_SYSCALLS: [u32; 3] = [425, 426, 427];

/// Installs the filter for this thread and every thread it creates afterwards.
pub(crate) fn install() -> std::io::Result<()> {
    use libc::{sock_filter, sock_fprog};
    let stmt = |code: u16, k: u32| sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8| sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf: 0,
        k,
    };
    let n = IO_URING_SYSCALLS.len() as u8;
    let mut filter = vec![stmt((libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, 0)];
    for (i, nr) in IO_URING_SYSCALLS.iter().enumerate() {
        // Jump over the remaining comparisons and the ALLOW to the ERRNO return.
        filter.push(jeq(*nr, n - i as u8));
    }
    filter.push(stmt(
        (libc::BPF_RET | libc::BPF_K) as u16,
        libc::SECCOMP_RET_ALLOW,
    ));
    filter.push(stmt(
        (libc::BPF_RET | libc::BPF_K) as u16,
        libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32 & libc::SECCOMP_RET_DATA),
    ));
    let prog = sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `prog` points at `filter`, a valid BPF program that outlives the call
    // (the kernel copies it); the filter only inspects the syscall number.
    let rc = unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
