//! Random bytes for identifiers that must be unique and unguessable but are not secrets: a
//! token's `jti` (it travels inside the token) and a request id. Each thread draws them from
//! aws-lc's CSPRNG one block at a time and hands them out in pieces, so the per-call cost of
//! the generator (its locking, reseed check and AES block setup, about as much as the rest of
//! a small token's claims) is paid once per [`BLOCK`] bytes instead of once per identifier.
//! Bytes handed out are wiped from the block, so no two callers ever get the same bytes.
//!
//! Keys, refresh-token secrets and access-token secrets do not come from here: they call
//! `aws_lc_rs::rand` directly, so a secret never sits in a buffer before it is used.

use std::cell::RefCell;

/// Bytes drawn from the CSPRNG at once, per thread.
pub const BLOCK: usize = 1024;

/// The system random number generator failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomError;

struct Pool {
    bytes: [u8; BLOCK],
    /// Bytes of `bytes` already handed out (and wiped).
    used: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool {
            bytes: [0; BLOCK],
            used: BLOCK,
        })
    };
}

/// Fills `out` with random bytes from this thread's block (refilled from the CSPRNG when it
/// has fewer than `out.len()` left). Requests longer than [`BLOCK`] go to the CSPRNG directly.
pub fn fill(out: &mut [u8]) -> Result<(), RandomError> {
    if out.len() > BLOCK {
        return aws_lc_rs::rand::fill(out).map_err(|_| RandomError);
    }
    POOL.with(|pool| {
        let Ok(mut pool) = pool.try_borrow_mut() else {
            // Not reachable (nothing here calls back into `fill`), but never a panic.
            return aws_lc_rs::rand::fill(out).map_err(|_| RandomError);
        };
        if BLOCK - pool.used < out.len() {
            aws_lc_rs::rand::fill(&mut pool.bytes).map_err(|_| RandomError)?;
            pool.used = 0;
        }
        let start = pool.used;
        let end = start + out.len();
        let Some(taken) = pool.bytes.get_mut(start..end) else {
            return aws_lc_rs::rand::fill(out).map_err(|_| RandomError);
        };
        out.copy_from_slice(taken);
        taken.fill(0);
        pool.used = end;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn pieces_never_repeat_across_refills_and_are_not_zero() {
        // 18-byte pieces (a jti) across many refills of the block: every piece differs, and
        // none is the wiped (all-zero) part of the block.
        let mut seen = HashSet::new();
        for _ in 0..(20 * BLOCK / 18) {
            let mut piece = [0u8; 18];
            fill(&mut piece).unwrap();
            assert_ne!(piece, [0u8; 18]);
            assert!(seen.insert(piece), "a piece repeated");
        }
    }

    #[test]
    fn bytes_look_uniform() {
        // Over 64 KiB every byte value turns up, each near 256 times (a block handed out twice,
        // or a zeroed one, would skew the zero count far past this).
        let mut counts = [0u32; 256];
        for _ in 0..(64 * 1024 / 16) {
            let mut piece = [0u8; 16];
            fill(&mut piece).unwrap();
            for b in piece {
                counts[usize::from(b)] += 1;
            }
        }
        assert!(
            counts.iter().all(|&c| (150..400).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn long_requests_and_odd_sizes_are_filled() {
        let mut long = vec![0u8; BLOCK + 1];
        fill(&mut long).unwrap();
        assert!(long.iter().any(|&b| b != 0));
        let mut sizes = Vec::new();
        for n in [1, 7, BLOCK - 3, 5, BLOCK, 0] {
            let mut piece = vec![0u8; n];
            fill(&mut piece).unwrap();
            sizes.push(piece.len());
        }
        assert_eq!(sizes, [1, 7, BLOCK - 3, 5, BLOCK, 0]);
    }
}
