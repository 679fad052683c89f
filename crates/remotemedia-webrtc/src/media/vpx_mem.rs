//! libvpx's allocator (`vpx_mem`), replaced.
//!
//! libvpx allocates everything through four functions: `vpx_memalign`, `vpx_malloc`,
//! `vpx_calloc` and `vpx_free` (libvpx 1.12's `vpx_mem.c`, the only object of `libvpx.a` that
//! defines them). Its `vpx_calloc` is an aligned `malloc` followed by a `memset` of the whole
//! block, so every page of a zero-filled buffer becomes resident, used or not. The VP9
//! encoder's token buffer (`cpi->tile_tok`, 44.5 MB at 1280x720, sized for the worst case of
//! every macroblock) is such a buffer; a real-time frame writes a small part of it.
//!
//! The definitions here take the place of libvpx's: libvpx is linked statically (see
//! `.cargo/config.toml`), and an archive member is only pulled in for symbols still undefined,
//! so with these four defined first `vpx_mem.c.o` is never linked (were it linked too, the link
//! would fail with duplicate symbols, not pick one silently). [`stats`] is referenced by the
//! codec code (through [`link`]) so that this object is part of every link that uses libvpx.
//!
//! - Blocks of [`MAP_MIN`] bytes and more get their own anonymous mapping: zero-filled by the
//!   kernel page by page on first touch (so `vpx_calloc` does no `memset` and untouched pages
//!   cost no memory), and unmapped on `vpx_free`, so a closed encoder's memory goes back to the
//!   system at once instead of staying in the C heap.
//! - Smaller blocks come from `malloc`, aligned within an over-allocation as libvpx does
//!   (`vpx_calloc` clears them).
//!
//! Every block has a 16-byte header just below the pointer handed out: the start of the
//! underlying allocation and its size (with a flag for mapped blocks).

#[cfg(target_os = "linux")]
mod imp {
    use std::os::raw::c_void;
    use std::ptr;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Blocks this large and larger are mapped on their own (glibc's initial mmap threshold).
    pub const MAP_MIN: usize = 128 * 1024;
    /// libvpx's own limit (`VPX_MAX_ALLOCABLE_MEMORY` on 64-bit targets).
    const MAX_ALLOCABLE: usize = 1 << 40;
    const HEADER: usize = 16;
    /// The smallest page size on Linux: mapped blocks support alignments up to this.
    const PAGE: usize = 4096;
    const MAPPED: usize = 1;

    static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
    static FREES: AtomicU64 = AtomicU64::new(0);
    static MAPPED_BYTES: AtomicU64 = AtomicU64::new(0);
    static HEAP_BYTES: AtomicU64 = AtomicU64::new(0);

    /// Counters of libvpx's allocations in this process.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct VpxMemStats {
        /// `vpx_memalign` / `vpx_malloc` / `vpx_calloc` calls that returned a block.
        pub allocations: u64,
        /// `vpx_free` calls with a block.
        pub frees: u64,
        /// Bytes in live mapped blocks (address space; resident only where touched).
        pub mapped_bytes: u64,
        /// Bytes requested in live blocks from `malloc`.
        pub heap_bytes: u64,
    }

    /// libvpx's allocation counters so far (all encoders and decoders of the process).
    pub fn stats() -> VpxMemStats {
        VpxMemStats {
            allocations: ALLOCATIONS.load(Ordering::Relaxed),
            frees: FREES.load(Ordering::Relaxed),
            mapped_bytes: MAPPED_BYTES.load(Ordering::Relaxed),
            heap_bytes: HEAP_BYTES.load(Ordering::Relaxed),
        }
    }

    /// Writes the header below `p`.
    ///
    /// # Safety
    /// `p - HEADER .. p` must be writable and 8-byte aligned.
    unsafe fn set_header(p: *mut u8, base: *mut c_void, size_and_flag: usize) {
        let h = p.sub(HEADER).cast::<usize>();
        h.write(base as usize);
        h.add(1).write(size_and_flag);
    }

    /// # Safety
    /// `p` must come from [`alloc`] and not be freed yet.
    unsafe fn header(p: *mut u8) -> (*mut c_void, usize) {
        let h = p.sub(HEADER).cast::<usize>();
        (h.read() as *mut c_void, h.add(1).read())
    }

    fn alloc(align: usize, size: usize, zeroed: bool) -> *mut c_void {
        if size > MAX_ALLOCABLE || !align.is_power_of_two() {
            return ptr::null_mut();
        }
        let align = align.max(HEADER);
        let p = if size >= MAP_MIN && align <= PAGE {
            // The mapping starts on a page, so `base + align` is aligned, and the header fits in
            // the `align` bytes below it.
            let len = size + align;
            // Not populated: the pages of a zero-filled block become resident when touched.
            let base = crate::alloc::map(len, false);
            if base.is_null() {
                return ptr::null_mut();
            }
            // SAFETY: `base .. base + len` is ours; `p - HEADER` lies within it, 16-aligned.
            unsafe {
                let p = base.add(align);
                set_header(p, base.cast(), (len << 1) | MAPPED);
                MAPPED_BYTES.fetch_add(len as u64, Ordering::Relaxed);
                p
            }
        } else {
            let total = size + align - 1 + HEADER;
            // SAFETY: plain malloc.
            let base = unsafe { libc::malloc(total) };
            if base.is_null() {
                return ptr::null_mut();
            }
            let p = ((base as usize + HEADER + align - 1) & !(align - 1)) as *mut u8;
            // SAFETY: `p - HEADER >= base` and `p + size <= base + total`; `p` is 16-aligned.
            unsafe {
                set_header(p, base, size << 1);
                if zeroed {
                    ptr::write_bytes(p, 0, size);
                }
            }
            HEAP_BYTES.fetch_add(size as u64, Ordering::Relaxed);
            p
        };
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        p.cast()
    }

    /// Makes the caller's object file refer to the four definitions below, so that the linker
    /// takes this module's object before it looks into `libvpx.a` (see the module doc).
    #[inline(always)]
    pub fn link() {
        std::hint::black_box([
            vpx_memalign as *const (),
            vpx_malloc as *const (),
            vpx_calloc as *const (),
            vpx_free as *const (),
        ]);
    }

    /// libvpx's `vpx_memalign`: `size` bytes aligned to `align` (a power of two).
    #[no_mangle]
    pub extern "C" fn vpx_memalign(align: usize, size: usize) -> *mut c_void {
        alloc(align, size, false)
    }

    /// libvpx's `vpx_malloc`: 16-byte aligned, like libvpx's own.
    #[no_mangle]
    pub extern "C" fn vpx_malloc(size: usize) -> *mut c_void {
        alloc(16, size, false)
    }

    /// libvpx's `vpx_calloc`: zero-filled, without touching the pages of a mapped block.
    #[no_mangle]
    pub extern "C" fn vpx_calloc(num: usize, size: usize) -> *mut c_void {
        match num.checked_mul(size) {
            Some(total) => alloc(16, total, true),
            None => ptr::null_mut(),
        }
    }

    /// libvpx's `vpx_free`: a block from the functions above, or null.
    ///
    /// # Safety
    /// `p` is null or a block from `vpx_memalign` / `vpx_malloc` / `vpx_calloc` not freed yet
    /// (libvpx's own contract).
    #[no_mangle]
    pub unsafe extern "C" fn vpx_free(p: *mut c_void) {
        if p.is_null() {
            return;
        }
        let (base, size_and_flag) = header(p.cast());
        FREES.fetch_add(1, Ordering::Relaxed);
        if size_and_flag & MAPPED != 0 {
            let len = size_and_flag >> 1;
            MAPPED_BYTES.fetch_sub(len as u64, Ordering::Relaxed);
            crate::alloc::unmap(base.cast(), len);
        } else {
            HEAP_BYTES.fetch_sub((size_and_flag >> 1) as u64, Ordering::Relaxed);
            libc::free(base);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn blocks_are_aligned_zeroed_and_freed() {
            for &(align, size) in &[
                (16, 0),
                (16, 1),
                (32, 100),
                (64, 4096),
                (16, MAP_MIN - 1),
                (16, MAP_MIN),
                (32, 3 * MAP_MIN + 5),
                (4096, MAP_MIN),
                (8192, MAP_MIN),
            ] {
                let p = vpx_memalign(align, size).cast::<u8>();
                assert!(!p.is_null(), "{align} {size}");
                assert_eq!(p as usize % align, 0, "{align} {size}");
                // SAFETY: `size` bytes at `p` are ours until vpx_free.
                unsafe {
                    ptr::write_bytes(p, 0xa5, size);
                    vpx_free(p.cast());
                }
                let z = vpx_calloc(size.max(1), 1).cast::<u8>();
                assert!(!z.is_null());
                assert_eq!(z as usize % 16, 0);
                // SAFETY: as above.
                unsafe {
                    let s = std::slice::from_raw_parts(z, size.max(1));
                    assert!(s.iter().all(|&b| b == 0), "{align} {size} not zeroed");
                    vpx_free(z.cast());
                }
            }
            // SAFETY: null is allowed.
            unsafe { vpx_free(ptr::null_mut()) };
        }

        #[test]
        fn refuses_overflow_and_huge_sizes() {
            assert!(vpx_calloc(usize::MAX / 2, 3).is_null());
            assert!(vpx_malloc(MAX_ALLOCABLE + 1).is_null());
            assert!(vpx_memalign(24, 64).is_null());
        }

        #[test]
        fn mapped_blocks_are_counted_while_live() {
            let p = vpx_calloc(1, 4 * MAP_MIN);
            let live = stats();
            assert!(live.mapped_bytes >= 4 * MAP_MIN as u64);
            // SAFETY: from vpx_calloc above.
            unsafe { vpx_free(p) };
            assert!(stats().frees > live.frees);
        }
    }
}

#[cfg(target_os = "linux")]
pub use imp::{link, stats, VpxMemStats, MAP_MIN};

/// Elsewhere libvpx keeps its own allocator.
#[cfg(not(target_os = "linux"))]
#[inline(always)]
pub fn link() {}
