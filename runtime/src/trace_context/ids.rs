//! Random numbers for trace and span ids: a wyrand generator per thread, seeded once from the
//! standard library's per-thread random keys (read from the operating system once per thread)
//! mixed with the clock, so that making an id costs a few multiplications and no system call.
//!
//! Ids need to be unique and unpredictable enough to sample on, not secret: this is not a
//! cryptographic generator.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    hasher.write_u128(now);
    hasher.write_u64(std::process::id().into());
    hasher.finish()
}

/// The next 64 random bits of this thread's generator.
pub(crate) fn next() -> u64 {
    STATE.with(|state| {
        let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(s);
        let product = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        ((product >> 64) as u64) ^ (product as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_draw_different_numbers() {
        let here: Vec<u64> = (0..4).map(|_| next()).collect();
        let there: Vec<u64> = std::thread::spawn(|| (0..4).map(|_| next()).collect())
            .join()
            .expect("no panic");
        assert_ne!(here, there);
    }

    #[test]
    fn bits_are_spread_evenly() {
        // Each of the 64 bits is set in about half of 4096 draws.
        let mut counts = [0u32; 64];
        for _ in 0..4096 {
            let value = next();
            for (bit, count) in counts.iter_mut().enumerate() {
                *count += u32::from(value >> bit & 1 == 1);
            }
        }
        for (bit, count) in counts.iter().enumerate() {
            assert!((1800..2300).contains(count), "bit {bit}: {count}");
        }
    }
}
