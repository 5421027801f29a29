use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hash, Hasher},
    net::SocketAddr,
    sync::OnceLock,
    time::{SystemTime, UNIX_EPOCH},
};

// daihuo patch: the cookie is a keyed hash (SipHash with per-process random keys) of the
// caller's address and the current minute. Upstream hashed with fixed keys, so anyone could
// compute the cookie of any address, and multiplied the seconds by 60 instead of dividing, so
// the cookie changed every second. The listener now keeps no state for an induction and
// checks the echoed cookie with `check_cookie` at the conclusion instead.
fn key() -> &'static RandomState {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    KEY.get_or_init(RandomState::new)
}

fn minutes_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

fn cookie_at(saddr: &SocketAddr, minute: u64) -> i32 {
    let mut hasher = key().build_hasher();
    saddr.hash(&mut hasher);
    minute.hash(&mut hasher);
    hasher.finish() as u32 as i32
}

pub fn gen_cookie(saddr: &SocketAddr) -> i32 {
    cookie_at(saddr, minutes_now())
}

/// Whether `cookie` is one this process gave `saddr` this minute or the one before.
pub fn check_cookie(saddr: &SocketAddr, cookie: i32) -> bool {
    let now = minutes_now();
    cookie == cookie_at(saddr, now) || cookie == cookie_at(saddr, now.saturating_sub(1))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn cookies_are_per_address_and_checkable() {
        let a: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let b: SocketAddr = "192.0.2.1:5001".parse().unwrap();
        assert!(check_cookie(&a, gen_cookie(&a)));
        assert!(!check_cookie(&b, gen_cookie(&a)));
        assert!(check_cookie(&a, cookie_at(&a, minutes_now() - 1)));
        assert!(!check_cookie(&a, cookie_at(&a, minutes_now() - 2)));
    }
}
