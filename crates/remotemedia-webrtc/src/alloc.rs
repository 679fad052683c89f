//! Large blocks on mappings of their own, so that their memory goes back to the system when
//! they are freed.
//!
//! A decoded 720p picture is a fresh 1.38 MB buffer per frame, handed to the application
//! (JavaScript) and freed whenever it is collected. glibc serves blocks that large with `mmap`
//! at first, but after the first such block is freed it raises its mmap threshold above the
//! block's size (the "dynamic threshold"), and from then on the frames come from the heaps of
//! whichever threads allocate and free them, where freed memory mostly stays: with three 720p
//! pairs streaming, RSS grew about twice as much as with a fixed threshold (BENCHMARKS.md,
//! "Media (issue 3)", note 4).
//!
//! [`LargeBlocksMapped`] is a global allocator for the Node binding: blocks of [`LARGE`] bytes and
//! more get their own anonymous mapping (unmapped when freed; grown with `mremap`), everything
//! else goes to the system allocator. Unlike `mallopt(M_MMAP_THRESHOLD)` it changes nothing for
//! the rest of the process (Node's own allocations keep glibc's policy). Elsewhere than on Linux
//! it is the system allocator.
//!
//! [`map`] and [`unmap`] are also used by libvpx's allocator (`media::vpx_mem`).

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks this large and larger are mapped (a 1280x720 I420 picture is 1.38 MB; 640x480 is
/// 0.46 MB and stays on the heap, where glibc's dynamic threshold leaves blocks below 1 MB
/// mapped as well until larger ones are freed).
pub const LARGE: usize = 1 << 20;

/// The smallest page size on Linux: mappings are aligned at least this much.
#[cfg(target_os = "linux")]
const PAGE: usize = 4096;

/// Maps `len` bytes of zeroed, private, anonymous memory; null when that fails. With
/// `populate` the pages are made resident now (one system call instead of a fault per page,
/// for memory that is about to be written in full); without, each page becomes resident when
/// first touched.
#[cfg(target_os = "linux")]
pub(crate) fn map(len: usize, populate: bool) -> *mut u8 {
    let flags =
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | if populate { libc::MAP_POPULATE } else { 0 };
    // SAFETY: an anonymous mapping at an address of the kernel's choice; no pointer is passed.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

/// Unmaps what [`map`] returned.
///
/// # Safety
/// `p` and `len` are a mapping from [`map`] (or [`LargeBlocksMapped`]) not unmapped yet, and
/// nothing uses it any more.
#[cfg(target_os = "linux")]
pub(crate) unsafe fn unmap(p: *mut u8, len: usize) {
    libc::munmap(p.cast(), len);
}

/// The global allocator of the Node binding: see the module documentation.
#[derive(Debug, Default, Clone, Copy)]
pub struct LargeBlocksMapped;

#[cfg(target_os = "linux")]
fn mapped(layout: &Layout) -> bool {
    layout.size() >= LARGE && layout.align() <= PAGE
}

#[cfg(not(target_os = "linux"))]
fn mapped(_: &Layout) -> bool {
    false
}

// SAFETY: every block is either the system allocator's or a mapping of its own, decided by the
// layout alone, which the caller passes unchanged to `dealloc` / `realloc`.
unsafe impl GlobalAlloc for LargeBlocksMapped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        #[cfg(target_os = "linux")]
        if mapped(&layout) {
            // Uninitialized memory is about to be written (a picture, a copy).
            return map(layout.size(), true);
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        #[cfg(target_os = "linux")]
        if mapped(&layout) {
            // Zero already, page by page when touched.
            return map(layout.size(), false);
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        #[cfg(target_os = "linux")]
        if mapped(&layout) {
            return unmap(ptr, layout.size());
        }
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        match (mapped(&layout), mapped(&new_layout)) {
            (false, false) => System.realloc(ptr, layout, new_size),
            #[cfg(target_os = "linux")]
            (true, true) => {
                let p = libc::mremap(ptr.cast(), layout.size(), new_size, libc::MREMAP_MAYMOVE);
                if p == libc::MAP_FAILED {
                    std::ptr::null_mut()
                } else {
                    p.cast()
                }
            }
            _ => {
                let new = self.alloc(new_layout);
                if !new.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                new
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill_and_check(p: *mut u8, len: usize, seed: u8) {
        assert!(!p.is_null());
        // SAFETY: `len` bytes at `p` are a live block of the test.
        let s = unsafe { std::slice::from_raw_parts_mut(p, len) };
        for (i, b) in s.iter_mut().enumerate() {
            *b = seed.wrapping_add(i as u8);
        }
        assert!(s
            .iter()
            .enumerate()
            .all(|(i, b)| *b == seed.wrapping_add(i as u8)));
    }

    #[test]
    fn small_and_large_blocks_hold_their_bytes_across_realloc() {
        let a = LargeBlocksMapped;
        // Below and above the threshold, and across it both ways.
        let steps = [
            100,
            LARGE - 1,
            LARGE,
            3 * LARGE + 7,
            LARGE + 1,
            64,
            2 * LARGE,
        ];
        let mut layout = Layout::from_size_align(steps[0], 16).unwrap();
        // SAFETY: sizes are non-zero; every block is freed with the layout it has.
        unsafe {
            let mut p = a.alloc(layout);
            fill_and_check(p, layout.size(), 3);
            for &size in &steps[1..] {
                let keep = layout.size().min(size);
                let q = a.realloc(p, layout, size);
                assert!(!q.is_null(), "realloc to {size}");
                let s = std::slice::from_raw_parts(q, keep);
                assert!(
                    s.iter()
                        .enumerate()
                        .all(|(i, b)| *b == 3u8.wrapping_add(i as u8)),
                    "bytes lost in realloc {} -> {size}",
                    layout.size()
                );
                layout = Layout::from_size_align(size, 16).unwrap();
                p = q;
                fill_and_check(p, size, 3);
            }
            a.dealloc(p, layout);
        }
    }

    #[test]
    fn zeroed_large_blocks_are_zero_and_aligned() {
        let a = LargeBlocksMapped;
        for (size, align) in [(LARGE, 16), (LARGE + 12_345, 4096), (LARGE, 8192)] {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: non-zero size; freed with the same layout.
            unsafe {
                let p = a.alloc_zeroed(layout);
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0);
                assert!(std::slice::from_raw_parts(p, size).iter().all(|b| *b == 0));
                a.dealloc(p, layout);
            }
        }
    }
}
