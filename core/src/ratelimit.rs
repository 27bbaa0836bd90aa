//! Per-credential rate limiting: a token bucket for each caller, refilled
//! from the injected clock. In memory only (a restart forgets it), bounded
//! in how many callers it tracks, and integer arithmetic throughout (tokens
//! are counted in thousandths). It owns no table. It also holds [`Quota`],
//! the numbers a shell shows of any limit (this one or a plan's daily cap)
//! as `X-RateLimit-*` headers.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::clock::UnixMillis;
use crate::error::{Error, Result};

/// Callers tracked at most; beyond it, idle (full) buckets are forgotten.
pub const RATE_BUCKETS_MAX: usize = 100_000;
/// Thousandths of a token per request.
const COST_MILLI: u64 = 1_000;

/// How fast a caller may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second, sustained (0 turns limiting off).
    pub per_sec: u32,
    /// Requests a caller may make at once after being idle.
    pub burst: u32,
}

/// Where a caller stands against a limit: the numbers behind the
/// `X-RateLimit-Limit`, `-Remaining` and `-Reset` headers. For the rate
/// limit: the burst, the whole requests left in the bucket, and when it is
/// full again; for a plan cap: the product's daily cap, what is left of it
/// today, and the next UTC midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests (or jobs) the limit allows in its window.
    pub limit: u64,
    /// How many are left now.
    pub remaining: u64,
    /// When the limit is whole again.
    pub reset_at: UnixMillis,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    milli_tokens: u64,
    at: UnixMillis,
}

/// Token buckets by caller.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// Where a caller refused with `retry_after_ms` stands at `now`: no
    /// request left, whole again when one is (the burst refills later, but
    /// a client may retry then).
    pub fn refused_quota(&self, retry_after_ms: u64, now: UnixMillis) -> Quota {
        Quota {
            limit: u64::from(self.limit.burst.max(1)),
            remaining: 0,
            reset_at: now.saturating_add(i64::try_from(retry_after_ms).unwrap_or(i64::MAX)),
        }
    }

    /// A limiter allowing `limit` per caller.
    pub fn new(limit: RateLimit) -> Self {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `caller`'s bucket at `now` and says where the
    /// caller stands (`None` when limiting is off), or refuses with
    /// [`Error::RateLimited`] saying when one will be available.
    pub fn admit(&self, caller: &str, now: UnixMillis) -> Result<Option<Quota>> {
        if self.limit.per_sec == 0 {
            return Ok(None);
        }
        let capacity = u64::from(self.limit.burst.max(1)) * COST_MILLI;
        let per_sec = u64::from(self.limit.per_sec);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= RATE_BUCKETS_MAX && !buckets.contains_key(caller) {
            // Forget callers whose bucket has refilled: they lose nothing.
            buckets.retain(|_, b| refill(b, now, per_sec, capacity) < capacity);
            if buckets.len() >= RATE_BUCKETS_MAX {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(caller.to_owned()).or_insert(Bucket {
            milli_tokens: capacity,
            at: now,
        });
        bucket.milli_tokens = refill(bucket, now, per_sec, capacity);
        bucket.at = now.max(bucket.at);
        if bucket.milli_tokens >= COST_MILLI {
            bucket.milli_tokens -= COST_MILLI;
            // Milli-tokens refill at `per_sec` per millisecond.
            let to_full = (capacity - bucket.milli_tokens).div_ceil(per_sec);
            return Ok(Some(Quota {
                limit: u64::from(self.limit.burst.max(1)),
                remaining: bucket.milli_tokens / COST_MILLI,
                reset_at: now.saturating_add(i64::try_from(to_full).unwrap_or(i64::MAX)),
            }));
        }
        // Milli-tokens refill at `per_sec` per millisecond.
        let missing = COST_MILLI - bucket.milli_tokens;
        Err(Error::RateLimited {
            retry_after_ms: missing.div_ceil(per_sec),
        })
    }
}

fn refill(bucket: &Bucket, now: UnixMillis, per_sec: u64, capacity: u64) -> u64 {
    let elapsed = u64::try_from(now.saturating_sub(bucket.at)).unwrap_or(0);
    bucket
        .milli_tokens
        .saturating_add(elapsed.saturating_mul(per_sec))
        .min(capacity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let limiter = RateLimiter::new(RateLimit {
            per_sec: 2,
            burst: 3,
        });
        for left in (0..3).rev() {
            let quota = limiter.admit("k", 0).expect("within the burst");
            assert_eq!(
                quota.map(|q| (q.limit, q.remaining)),
                Some((3, left)),
                "the burst and what is left of it"
            );
        }
        match limiter.admit("k", 0) {
            Err(Error::RateLimited { retry_after_ms }) => assert_eq!(retry_after_ms, 500),
            other => panic!("{other:?}"),
        }
        limiter.admit("other", 0).expect("callers are separate");
        assert!(limiter.admit("k", 499).is_err());
        limiter.admit("k", 500).expect("refilled one");
        assert!(limiter.admit("k", 500).is_err());
        limiter.admit("k", 10_000).expect("idle refills");
    }

    #[test]
    fn zero_turns_it_off() {
        let limiter = RateLimiter::new(RateLimit {
            per_sec: 0,
            burst: 0,
        });
        for _ in 0..10_000 {
            assert_eq!(limiter.admit("k", 0).expect("off"), None);
        }
    }
}
