//! A Count-Min sketch (Cormode and Muthukrishnan): `depth` rows of `width` counters; a value
//! adds one to a counter in each row, chosen by that row's hash of the value, and its count
//! is estimated as the least of its counters. The estimate is never below the true count,
//! and above it by at most `epsilon` times the total with probability `confidence`, for
//! `width = ceil(e / epsilon)` and `depth = ceil(ln(1 / (1 - confidence)))`.
//!
//! Counters go down as well as up, so a view keeps the sketch under deletes and updates, in
//! state bounded by `width * depth` counters per group whatever the number of distinct
//! values. The counters are a function of the multiset alone (not of the order rows came in),
//! so a view and its query ad hoc give the same sketch, byte for byte.
//!
//! Values are hashed by their text form (PostgreSQL's output of the value), with a hash we
//! own (FNV-1a, then a SplitMix64 finaliser, seeded per row), since a sketch is data that is
//! stored and compared across versions.

use std::f64::consts::E;

/// The bounds `count_min_sketch` takes when given none: 0.1% of the total, 99% of the time.
pub const DEFAULT_EPSILON: f64 = 0.001;
pub const DEFAULT_CONFIDENCE: f64 = 0.99;
/// At most this many counters in one sketch (8 MiB), whatever the bounds asked for.
pub const MAX_CELLS: u64 = 1 << 20;
/// Version of the sketch's bytes: `[version][width: u32 LE][depth: u32 LE][counter: i64 LE]*`,
/// row after row.
const FORMAT_VERSION: u8 = 1;
const HEADER_BYTES: usize = 9;

/// The shape of a sketch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountMin {
    pub width: u32,
    pub depth: u32,
}

impl CountMin {
    /// The SQL name of the sketch's aggregate function.
    pub const FUNCTION: &'static str = "count_min_sketch";

    /// The `(epsilon, confidence)` a call `count_min_sketch(x [, epsilon, confidence])` asks
    /// for (its defaults when it gives none); `None` when they are not constants.
    pub fn call_bounds(args: &[std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>]) -> Option<(f64, f64)> {
        match args.len() {
            1 => Some((DEFAULT_EPSILON, DEFAULT_CONFIDENCE)),
            3 => Some((super::constant_f64(&args[1])?, super::constant_f64(&args[2])?)),
            _ => None,
        }
    }

    /// The sketch for `epsilon` and `confidence`; `None` unless both are in (0, 1) and the
    /// sketch fits in [`MAX_CELLS`].
    pub fn for_bounds(epsilon: f64, confidence: f64) -> Option<Self> {
        if !(epsilon > 0.0 && epsilon < 1.0 && confidence > 0.0 && confidence < 1.0) {
            return None;
        }
        let width = (E / epsilon).ceil();
        let depth = (1.0 / (1.0 - confidence)).ln().ceil().max(1.0);
        if width * depth > MAX_CELLS as f64 {
            return None;
        }
        Some(Self { width: width as u32, depth: depth as u32 })
    }

    pub fn cells(&self) -> usize {
        self.width as usize * self.depth as usize
    }

    /// The counter of `text` in each row, as indexes into the `cells()` counters.
    pub fn cells_of(&self, text: &[u8]) -> impl Iterator<Item = u32> + '_ {
        let base = fnv1a(text);
        (0..self.depth).map(move |row| row * self.width + (mix(base ^ u64::from(row).wrapping_mul(0x9E37_79B9_7F4A_7C15)) % u64::from(self.width)) as u32)
    }

    /// The sketch's bytes for `counters` (one per cell, row after row).
    pub fn encode(&self, counters: &[i64]) -> Vec<u8> {
        assert_eq!(counters.len(), self.cells(), "one counter per cell");
        let mut bytes = Vec::with_capacity(HEADER_BYTES + counters.len() * 8);
        bytes.push(FORMAT_VERSION);
        bytes.extend_from_slice(&self.width.to_le_bytes());
        bytes.extend_from_slice(&self.depth.to_le_bytes());
        for c in counters {
            bytes.extend_from_slice(&c.to_le_bytes());
        }
        bytes
    }

    /// The shape and counters of a sketch's bytes; `None` when they are not a sketch.
    pub fn decode(bytes: &[u8]) -> Option<(Self, Vec<i64>)> {
        if bytes.len() < HEADER_BYTES || bytes[0] != FORMAT_VERSION {
            return None;
        }
        let width = u32::from_le_bytes(bytes[1..5].try_into().ok()?);
        let depth = u32::from_le_bytes(bytes[5..9].try_into().ok()?);
        let shape = Self { width, depth };
        let body = &bytes[HEADER_BYTES..];
        if width == 0 || depth == 0 || body.len() != shape.cells() * 8 {
            return None;
        }
        let counters = body.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
        Some((shape, counters))
    }

    /// The estimated count of `text`: the least of its counters.
    pub fn estimate(&self, counters: &[i64], text: &[u8]) -> i64 {
        self.cells_of(text).map(|cell| counters[cell as usize]).min().unwrap_or(0)
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// SplitMix64's finaliser: spreads FNV's low-entropy high bits over the word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_bytes_are_pinned() {
        let cm = CountMin::for_bounds(DEFAULT_EPSILON, DEFAULT_CONFIDENCE).unwrap();
        assert_eq!(cm, CountMin { width: 2719, depth: 5 });
        let tiny = CountMin { width: 3, depth: 2 };
        // The cells of a value are part of what views store: pinned.
        assert_eq!(tiny.cells_of(b"apple").collect::<Vec<_>>(), PINNED_APPLE.to_vec());
        assert_eq!(cm.cells_of(b"apple").collect::<Vec<_>>(), vec![94, 4422, 5900, 10549, 11661]);
        let bytes = tiny.encode(&[1, 0, 2, 0, 0, -1]);
        assert_eq!(&bytes[..9], &[1, 3, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(CountMin::decode(&bytes), Some((tiny, vec![1, 0, 2, 0, 0, -1])));
        assert_eq!(CountMin::decode(&bytes[..20]), None);
        assert!(CountMin::for_bounds(0.0, 0.5).is_none() && CountMin::for_bounds(1e-9, 0.99).is_none());
    }

    const PINNED_APPLE: [u32; 2] = [0, 3];

    #[test]
    fn estimates_never_undercount() {
        let cm = CountMin { width: 50, depth: 4 };
        let mut counters = vec![0i64; cm.cells()];
        let words: Vec<String> = (0..500).map(|i| format!("w{}", i % 120)).collect();
        for w in &words {
            cm.cells_of(w.as_bytes()).for_each(|c| counters[c as usize] += 1);
        }
        for i in 0..120 {
            let w = format!("w{i}");
            let exact = words.iter().filter(|x| **x == w).count() as i64;
            assert!(cm.estimate(&counters, w.as_bytes()) >= exact);
        }
        // Retracting every row empties the sketch.
        for w in &words {
            cm.cells_of(w.as_bytes()).for_each(|c| counters[c as usize] -= 1);
        }
        assert!(counters.iter().all(|&c| c == 0));
    }
}
