//! The stale-description path does not allocate (counted with a global allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use icepact::{Config, Disposition, IgnoreReason, Output, Peer, PeerSetup, PublicKey, Seed};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn stale_description_path_does_not_allocate() {
    let now = Instant::now();
    let (ka, kb) = (PublicKey([1; 32]), PublicKey([2; 32]));
    let mut a = Peer::new(
        Config::default(),
        PeerSetup {
            local: ka,
            remote: kb,
            epoch_floor: 1,
            seed: Seed::insecure_from_u64(1),
        },
        now,
    )
    .unwrap();
    let mut b = Peer::new(
        Config::default(),
        PeerSetup {
            local: kb,
            remote: ka,
            epoch_floor: 1,
            seed: Seed::insecure_from_u64(2),
        },
        now,
    )
    .unwrap();
    let first = a.description().unwrap();
    while a.poll_output().is_some() {}
    let _ = b.handle_description(now, &first).unwrap();
    while b.poll_output().is_some() {}
    let mut newer = first.clone();
    newer.session.version += 1;
    let _ = b.handle_description(now, &newer).unwrap();
    while b.poll_output().is_some() {}

    // The first stale description that asks for a reply is answered (rule EPOCH_CATCH_UP: the
    // reply tells a remote whose floor went back); further ones within the initial back-off
    // interval are not, and that path allocates nothing.
    let got = b.handle_description(now, &first).unwrap();
    assert!(matches!(
        got,
        Disposition::Ignored(IgnoreReason::Stale { .. })
    ));
    assert!(matches!(b.poll_output(), Some(Output::Send(_))));
    while b.poll_output().is_some() {}

    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..100 {
        let got = b.handle_description(now, &first).unwrap();
        assert!(matches!(
            got,
            Disposition::Ignored(IgnoreReason::Stale { .. })
        ));
        assert!(!matches!(b.poll_output(), Some(Output::Send(_))));
    }
    assert_eq!(ALLOCS.load(Ordering::Relaxed) - before, 0);
}
