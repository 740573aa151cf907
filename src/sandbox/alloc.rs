//! A counting allocator: QuickJS's own memory limit raises an out-of-memory error that the
//! program can catch and ignore, so the host keeps its own count and flags the run instead.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Once;

use libmimalloc_sys as mi;
use rquickjs::allocator::Allocator;

/// Shared between the allocator (inside the runtime) and the interrupt handler.
#[derive(Default)]
pub(crate) struct Budget {
    pub(crate) used: Cell<usize>,
    pub(crate) limit: Cell<usize>,
    pub(crate) exceeded: Cell<bool>,
}

pub(crate) struct CountingAllocator(Rc<Budget>);

/// mimalloc's `mi_option_allow_thp` in the v3 option list that libmimalloc-sys builds; the
/// crate exports no name for it.
const MI_OPTION_ALLOW_THP: mi::mi_option_t = 43;
// A libmimalloc-sys whose option list has moved must stop the build, not set another option.
const _: () = assert!(mi::_mi_option_last == 47);

impl CountingAllocator {
    pub(crate) fn new(budget: Rc<Budget>) -> Self {
        // mimalloc asks for transparent huge pages on the arenas it maps. A sandbox's heap is
        // freed at the end of every execution and the next one lands partly on other memory,
        // so a few huge-page faults per run are normal; each zeroes 2 MiB, which on the VMs
        // this runs on took milliseconds and made about one demo run in sixty 2-4x slower. Small
        // pages fault in proportion to what a program touches. Setting the option at run time,
        // before the first arena, skips mimalloc's `prctl` that would turn huge pages off for
        // the embedding process too; it only changes arenas this mimalloc maps from now on.
        static NO_HUGE_PAGES: Once = Once::new();
        NO_HUGE_PAGES.call_once(|| unsafe { mi::mi_option_set(MI_OPTION_ALLOW_THP, 0) });
        CountingAllocator(budget)
    }

    fn admit(&self, size: usize) -> bool {
        let b = &self.0;
        if b.used.get().saturating_add(size) > b.limit.get() {
            b.exceeded.set(true);
            return false;
        }
        true
    }
}

unsafe impl Allocator for CountingAllocator {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        if !self.admit(size) {
            return std::ptr::null_mut();
        }
        let ptr = unsafe { mi::mi_malloc(size) }.cast::<u8>();
        if !ptr.is_null() {
            let b = &self.0;
            b.used.set(b.used.get() + unsafe { usable(ptr) });
        }
        ptr
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        let Some(total) = count.checked_mul(size) else { return std::ptr::null_mut() };
        if !self.admit(total) {
            return std::ptr::null_mut();
        }
        let ptr = unsafe { mi::mi_calloc(count, size) }.cast::<u8>();
        if !ptr.is_null() {
            let b = &self.0;
            b.used.set(b.used.get() + unsafe { usable(ptr) });
        }
        ptr
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        let size = unsafe { usable(ptr) };
        let b = &self.0;
        b.used.set(b.used.get().saturating_sub(size));
        unsafe { mi::mi_free(ptr.cast()) }
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, new_size: usize) -> *mut u8 {
        if ptr.is_null() {
            return self.alloc(new_size);
        }
        let old = unsafe { usable(ptr) };
        if new_size > old && !self.admit(new_size - old) {
            return std::ptr::null_mut();
        }
        let new = unsafe { mi::mi_realloc(ptr.cast(), new_size) }.cast::<u8>();
        if !new.is_null() {
            let b = &self.0;
            let now = unsafe { usable(new) };
            b.used.set(b.used.get().saturating_sub(old) + now);
        }
        new
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        unsafe { usable(ptr) }
    }
}

/// SAFETY: `ptr` came from mimalloc and is live.
unsafe fn usable(ptr: *mut u8) -> usize {
    unsafe { mi::mi_usable_size(ptr.cast_const().cast()) }
}
