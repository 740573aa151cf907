//! See `codemode::__fuzz::rpc` for what this target checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    codemode::__fuzz::rpc(data);
});
