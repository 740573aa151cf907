//! Sealing a worker process before it runs any program: resource limits, new namespaces,
//! Landlock, then `no_new_privs` and a seccomp-bpf allow-list on every thread. Each layer
//! assumes the one before it failed.

use std::collections::BTreeMap;

use super::SealReport;

/// Limits the worker drops to: no files written, no core dumps, few descriptors, no locked
/// memory. Heap is bounded by each sandbox's counting allocator, not here.
const RLIMITS: [(libc::__rlimit_resource_t, u64, &str); 4] = [
    (libc::RLIMIT_FSIZE, 0, "fsize=0"),
    (libc::RLIMIT_CORE, 0, "core=0"),
    (libc::RLIMIT_NOFILE, 16, "nofile=16"),
    (libc::RLIMIT_MEMLOCK, 0, "memlock=0"),
];

/// What the process-wide layers achieved. Runs on the worker's only thread: `unshare` of a
/// user namespace refuses a process with more than one.
pub(crate) fn prepare() -> SealReport {
    let mut report = SealReport::default();
    for (resource, value, name) in RLIMITS {
        let limit = libc::rlimit { rlim_cur: value, rlim_max: value };
        if unsafe { libc::setrlimit(resource, &limit) } == 0 {
            report.rlimits.push(name.to_string());
        }
    }
    // glibc reads the time zone file the first time a local time is asked for; after the
    // seal it could not, and `new Date().getHours()` would be a forbidden `openat`.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
    }
    let namespaces: [(&[&str], libc::c_int); 2] = [
        (
            &["user", "net", "mount", "ipc", "uts"],
            libc::CLONE_NEWUSER
                | libc::CLONE_NEWNET
                | libc::CLONE_NEWNS
                | libc::CLONE_NEWIPC
                | libc::CLONE_NEWUTS,
        ),
        // Where user namespaces are off, root may still leave the others.
        (
            &["net", "mount", "ipc", "uts"],
            libc::CLONE_NEWNET | libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS,
        ),
    ];
    let mut refused = None;
    for (names, flags) in namespaces {
        if unsafe { libc::unshare(flags) } == 0 {
            report.namespaces = names.iter().map(|n| n.to_string()).collect();
            refused = None;
            break;
        }
        refused.get_or_insert_with(|| std::io::Error::last_os_error().to_string());
    }
    report.namespaces_refused = refused;
    report.landlock = landlock();
    report
}

/// No filesystem access at all, no TCP, no signals or abstract sockets outside the worker.
fn landlock() -> String {
    use landlock::{Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetStatus, Scope, ABI};
    let abi = ABI::V6;
    let restricted = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.handle_access(AccessNet::from_all(abi)))
        .and_then(|r| r.scope(Scope::from_all(abi)))
        .and_then(|r| r.create())
        .and_then(|r| r.restrict_self());
    match restricted {
        Ok(status) => match status.ruleset {
            RulesetStatus::FullyEnforced => "fully enforced".into(),
            RulesetStatus::PartiallyEnforced => "partially enforced (an older Landlock ABI)".into(),
            RulesetStatus::NotEnforced => "not enforced (this kernel has no Landlock)".into(),
        },
        Err(e) => format!("not enforced ({e})"),
    }
}

/// The system calls a worker makes once sealed: reading and writing its socket, memory,
/// locks, clocks, and ending. Nothing opens, connects, executes or traces; any other call
/// kills the process.
fn allowed() -> Vec<libc::c_long> {
    let mut calls = vec![
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_readv,
        libc::SYS_writev,
        libc::SYS_recvfrom,
        libc::SYS_sendto,
        libc::SYS_recvmsg,
        libc::SYS_sendmsg,
        libc::SYS_ppoll,
        libc::SYS_close,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_mprotect,
        libc::SYS_madvise,
        libc::SYS_brk,
        libc::SYS_futex,
        libc::SYS_sched_yield,
        libc::SYS_clock_gettime,
        libc::SYS_clock_getres,
        libc::SYS_clock_nanosleep,
        libc::SYS_getrandom,
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigprocmask,
        libc::SYS_sigaltstack,
        libc::SYS_restart_syscall,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([libc::SYS_poll, libc::SYS_gettimeofday, libc::SYS_time]);
    calls
}

/// `prctl`'s option to name a memory mapping (not in every libc's constants).
const PR_SET_VMA: u64 = 0x53564d41;

/// Sets `no_new_privs` and installs the allow-list on every thread of the process.
pub(crate) fn seccomp() -> Result<(), String> {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
    let arch: TargetArch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| format!("seccomp does not know this architecture: {e:?}"))?;
    use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        allowed().into_iter().map(|call| (call, Vec::new())).collect();
    // mimalloc names the memory it maps (`prctl(PR_SET_VMA, …)`); no other `prctl`.
    let name_memory = SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, PR_SET_VMA)
        .and_then(|c| SeccompRule::new(vec![c]))
        .map_err(|e| format!("the seccomp rule for prctl is invalid: {e}"))?;
    rules.insert(libc::SYS_prctl, vec![name_memory]);
    let filter = SeccompFilter::new(rules, SeccompAction::KillProcess, SeccompAction::Allow, arch)
        .map_err(|e| format!("the seccomp filter is invalid: {e}"))?;
    let program: BpfProgram =
        filter.try_into().map_err(|e| format!("the seccomp filter did not compile: {e}"))?;
    seccompiler::apply_filter_all_threads(&program)
        .map_err(|e| format!("the seccomp filter was refused: {e}"))
}
