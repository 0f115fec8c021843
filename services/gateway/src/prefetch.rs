//! A cache prefetch hint for the loops that visit one connection's outbox
//! after another (the hub's fan-out, the flusher's round). An outbox was last
//! written on another core, so the first touch of it is a cache miss, and a
//! locked instruction or a system call right behind that touch waits for it.
//! Asking for the outbox a few iterations ahead lets the miss overlap the work
//! on the current one.
#![allow(unsafe_code)]

/// How many iterations ahead the loops ask for an outbox.
pub const AHEAD: usize = 4;

/// Most cache lines of one value asked for.
const MAX_LINES: usize = 6;

/// Asks the CPU to bring `value` (its first few cache lines) into its caches.
/// Only a hint: it changes nothing the program can observe.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let start = std::ptr::from_ref(value).cast::<i8>();
        let lines = size_of::<T>().div_ceil(64).min(MAX_LINES);
        for line in 0..lines {
            // SAFETY: a prefetch never faults, whatever the address, and reads nothing
            // the program sees; SSE, its target feature, is part of every x86_64 CPU.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(line * 64)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
