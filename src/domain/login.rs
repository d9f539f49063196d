//! How guessing passwords is slowed (OWASP ASVS 2.2.1, anti-automation): after a few wrong
//! passwords for one account, or from one address, each further attempt must wait, twice as
//! long each time, up to a quarter of an hour. An attempt made while waiting is refused
//! without its password being checked, so a guesser learns nothing from it; it does not
//! count either, so nobody can keep a clerk locked out merely by trying fast.
//!
//! An account's count ends with its next right password, or when an admin unlocks it. An
//! address's count is forgotten a quarter of an hour after its last wrong password (a clerk
//! logging in from it must not clear a guesser's count).

/// Wrong passwords for one account before attempts must wait.
pub const ACCOUNT_FREE: u32 = 3;
/// Wrong passwords from one address before attempts must wait: an office's clerks may all
/// come from one address.
pub const ADDRESS_FREE: u32 = 10;
/// The longest wait, and how long an address's count is remembered.
pub const MAX_WAIT_SECS: i64 = 900;
/// An account with this many wrong passwords shows as locked to an admin.
pub const LOCKED_AT: u32 = 5;

/// What a throttle is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    Account(&'a str),
    Address(&'a str),
}

impl Subject<'_> {
    /// How it is kept in the store: `account:<name, lowercase>`, `address:<ip>`.
    pub fn key(self) -> String {
        match self {
            Subject::Account(name) => format!("account:{}", name.trim().to_lowercase()),
            Subject::Address(ip) => format!("address:{ip}"),
        }
    }

    /// The subject a stored key names.
    pub fn from_key(key: &str) -> Option<Subject<'_>> {
        if let Some(name) = key.strip_prefix("account:") {
            Some(Subject::Account(name))
        } else {
            key.strip_prefix("address:").map(Subject::Address)
        }
    }

    fn free(self) -> u32 {
        match self {
            Subject::Account(_) => ACCOUNT_FREE,
            Subject::Address(_) => ADDRESS_FREE,
        }
    }

    /// Seconds an attempt must wait after `failures` wrong passwords, the last `since`
    /// seconds ago; 0: it may try now.
    ///
    /// Times are kept in whole seconds, so `since` = 1 may be a millisecond that crossed a
    /// second's boundary: one second is taken off it, so a wait is never shorter than it says.
    pub fn wait_secs(self, failures: u32, since: i64) -> i64 {
        if failures < self.free() {
            return 0;
        }
        let wait = (1i64 << (failures - self.free()).min(20)).min(MAX_WAIT_SECS);
        (wait - (since - 1).max(0)).max(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_from_the_free_attempts_up_to_the_cap() {
        let a = Subject::Account("Mario");
        assert_eq!(a.key(), "account:mario");
        assert_eq!(
            Subject::from_key("account:mario"),
            Some(Subject::Account("mario"))
        );
        assert_eq!(Subject::from_key("other:x"), None);
        assert_eq!(a.wait_secs(2, 0), 0);
        assert_eq!(a.wait_secs(3, 0), 1);
        assert_eq!(a.wait_secs(4, 0), 2);
        assert_eq!(a.wait_secs(8, 0), 32);
        assert_eq!(a.wait_secs(25, 0), MAX_WAIT_SECS);
        assert_eq!(
            a.wait_secs(8, 30),
            3,
            "the wait runs from the last wrong password, less a second for rounding"
        );
        assert_eq!(a.wait_secs(8, 33), 0);
        assert_eq!(
            a.wait_secs(3, 1),
            1,
            "one whole second apart may be a millisecond across a second's boundary"
        );
        assert_eq!(a.wait_secs(3, 2), 0);
        let ip = Subject::Address("192.0.2.7");
        assert_eq!(ip.wait_secs(9, 0), 0, "an office shares its address");
        assert_eq!(ip.wait_secs(10, 0), 1);
    }
}
