//! Rendezvous (highest-random-weight) hashing: which origins a room lives on.
//!
//! Every origin gets a score for the room, a hash of (origin name, room); the ranking by score
//! is the room's preference list: first the primary, then the backup, then the rest. Every
//! edge computes the same list from the same names with no coordination, and removing an
//! origin moves only the rooms it ranked first.
//!
//! The hash is written out here (FNV-1a with a splitmix64 finalizer) rather than taken from
//! `std`, whose `DefaultHasher` may change between Rust releases: edges built by different
//! compilers must still agree.

/// FNV-1a over `origin`, a separator that cannot occur in names, and `room`, then mixed.
pub fn score(origin: &str, room: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in origin
        .as_bytes()
        .iter()
        .chain(&[0xff])
        .chain(room.as_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finalizer: FNV alone clusters on short keys that differ in one byte.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Indices of `names` from most to least preferred for `room` (ties broken by name).
pub fn rank<S: AsRef<str>>(names: &[S], room: &str) -> Vec<usize> {
    let mut order: Vec<(u64, usize)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (score(n.as_ref(), room), i))
        .collect();
    order.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| names[a.1].as_ref().cmp(names[b.1].as_ref()))
    });
    order.into_iter().map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking_ignores_list_order() {
        let a = ["o1", "o2", "o3", "o4"];
        let b = ["o3", "o1", "o4", "o2"];
        for room in ["demo", "shop-1", "shop-2", "x"] {
            let ra: Vec<_> = rank(&a, room).into_iter().map(|i| a[i]).collect();
            let rb: Vec<_> = rank(&b, room).into_iter().map(|i| b[i]).collect();
            assert_eq!(ra, rb, "{room}");
        }
    }

    #[test]
    fn removing_an_origin_moves_only_its_rooms() {
        let all = ["o1", "o2", "o3", "o4"];
        let fewer = ["o1", "o2", "o4"];
        let mut moved = 0;
        for n in 0..2000 {
            let room = format!("room{n}");
            let before = all[rank(&all, &room)[0]];
            let after = fewer[rank(&fewer, &room)[0]];
            if before != "o3" {
                assert_eq!(before, after, "{room}");
            } else {
                moved += 1;
            }
        }
        // About a quarter of the rooms lived on o3.
        assert!((350..650).contains(&moved), "{moved}");
    }

    #[test]
    fn rooms_spread_over_origins() {
        let names = ["a", "b", "c"];
        let mut counts = [0; 3];
        for n in 0..3000 {
            counts[rank(&names, &format!("live{n}"))[0]] += 1;
        }
        assert!(
            counts.iter().all(|&c| (850..1150).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn scores_are_pinned() {
        // A change here would move every room on every edge at upgrade time.
        assert_eq!(score("a", "b"), 0x552d_4556_57d9_1379);
        assert_eq!(score("origin-a", "demo"), 0x4c7c_5bef_5c51_ed90);
    }
}
