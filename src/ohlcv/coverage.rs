//! Exact interval arithmetic on half-open ranges `[start, end)` of epoch ms.

/// A set of times as sorted, disjoint, non-adjacent, non-empty half-open ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ranges(Vec<(i64, i64)>);

impl Ranges {
    pub fn new() -> Self {
        Ranges(Vec::new())
    }

    pub fn as_slice(&self) -> &[(i64, i64)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Add `[a, b)`, merging with overlapping or adjacent ranges. Empty ranges are ignored.
    pub fn insert(&mut self, a: i64, b: i64) {
        if b <= a {
            return;
        }
        // First range that ends at or after `a` (could touch it) and first that starts after `b`.
        let lo = self.0.partition_point(|&(_, e)| e < a);
        let hi = self.0.partition_point(|&(s, _)| s <= b);
        if lo == hi {
            self.0.insert(lo, (a, b));
            return;
        }
        let start = a.min(self.0[lo].0);
        let end = b.max(self.0[hi - 1].1);
        self.0.splice(lo..hi, [(start, end)]);
    }

    /// `[a, b)` minus this set, as sorted ranges.
    pub fn missing(&self, a: i64, b: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        if b <= a {
            return out;
        }
        let mut cursor = a;
        let first = self.0.partition_point(|&(_, e)| e <= a);
        for &(s, e) in &self.0[first..] {
            if s >= b {
                break;
            }
            if s > cursor {
                out.push((cursor, s));
            }
            cursor = cursor.max(e);
            if cursor >= b {
                break;
            }
        }
        if cursor < b {
            out.push((cursor, b));
        }
        out
    }

    pub fn covers(&self, a: i64, b: i64) -> bool {
        self.missing(a, b).is_empty()
    }
}

impl FromIterator<(i64, i64)> for Ranges {
    fn from_iter<I: IntoIterator<Item = (i64, i64)>>(iter: I) -> Self {
        let mut v: Vec<(i64, i64)> = iter.into_iter().filter(|&(a, b)| a < b).collect();
        v.sort_unstable();
        let mut out: Vec<(i64, i64)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            match out.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        Ranges(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force over a small universe: the set of covered points.
    fn points(r: &[(i64, i64)]) -> Vec<i64> {
        let mut v: Vec<i64> = r.iter().flat_map(|&(a, b)| a..b).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    #[test]
    fn insert_merges_adjacent_and_overlapping() {
        let mut r = Ranges::new();
        r.insert(10, 20);
        r.insert(30, 40);
        r.insert(20, 30);
        assert_eq!(r.as_slice(), &[(10, 40)]);
        r.insert(0, 5);
        r.insert(50, 60);
        r.insert(4, 51);
        assert_eq!(r.as_slice(), &[(0, 60)]);
        r.insert(7, 7);
        assert_eq!(r.as_slice(), &[(0, 60)]);
    }

    #[test]
    fn missing_handles_partial_overlaps() {
        let r: Ranges = [(10, 20), (30, 40)].into_iter().collect();
        assert_eq!(r.missing(0, 50), vec![(0, 10), (20, 30), (40, 50)]);
        assert_eq!(r.missing(15, 35), vec![(20, 30)]);
        assert_eq!(r.missing(12, 18), vec![]);
        assert_eq!(r.missing(18, 32), vec![(20, 30)]);
        assert_eq!(r.missing(40, 45), vec![(40, 45)]);
        assert_eq!(r.missing(5, 5), vec![]);
    }

    #[test]
    fn exhaustive_against_brute_force() {
        // Deterministic pseudo-random cases over a small universe.
        let mut seed = 0x9E3779B97F4A7C15u64;
        let mut next = move |n: i64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as i64
        };
        for _ in 0..2000 {
            let raw: Vec<(i64, i64)> = (0..next(6)).map(|_| (next(40), next(40))).collect();
            let mut inc = Ranges::new();
            for &(a, b) in &raw {
                inc.insert(a, b);
            }
            let bulk: Ranges = raw.iter().copied().collect();
            assert_eq!(inc, bulk);
            let (a, b) = (next(40), next(40));
            let want: Vec<i64> = (a..b).filter(|p| !points(&raw).contains(p)).collect();
            let got = inc.missing(a, b);
            assert_eq!(points(&got), want);
            // Output is normalised: sorted, disjoint, non-adjacent.
            assert!(got.windows(2).all(|w| w[0].1 < w[1].0));
        }
    }
}
