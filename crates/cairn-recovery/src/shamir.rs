//! Shamir secret sharing over GF(256) (AES field, reduction polynomial 0x11b) with vsss-rs, in
//! MarbleRun's share layout: the y-bytes first, then ONE trailing x-coordinate byte. vsss-rs puts
//! the x byte first, so shares are rotated by one byte at this boundary.

use std::convert::Infallible;

use cairn_crypto::{fill_random, Zeroize, Zeroizing};
use vsss_rs::{Gf256, IdentifierGf256};

use crate::{RecoveryError, DATA_KEY_LEN, MAX_SHAMIR_SHARES, SHAMIR_SHARE_LEN};

/// Splits a 32-byte secret into `n` shares, any `threshold` of which recover it. Share `i` has
/// x-coordinate `i + 1`. Each share is 33 bytes: y-values, then the x byte.
pub(crate) fn split(
    secret: &[u8; DATA_KEY_LEN],
    threshold: usize,
    n: usize,
) -> Result<Vec<Zeroizing<Vec<u8>>>, RecoveryError> {
    if n > MAX_SHAMIR_SHARES {
        return Err(RecoveryError::TooManyKeys(n));
    }
    let ids = (1..=n).map(|x| {
        // Invariant: n ≤ 255 (checked above), so every x fits a byte and none is zero.
        IdentifierGf256(Gf256(u8::try_from(x).unwrap_or(u8::MAX)))
    });
    let mut rng = SystemRng { failed: false };
    let shares = Gf256::split_bytes_with_participant_ids_iter(threshold, n, secret, &mut rng, ids)
        .map_err(|_| RecoveryError::InvalidThreshold {
            threshold: threshold as u64,
            keys: n,
        })?;
    // Wrap first so the shares are zeroized whatever happens next.
    let shares: Vec<Zeroizing<Vec<u8>>> = shares.into_iter().map(Zeroizing::new).collect();
    // Invariant: polynomial coefficients came from the system CSPRNG, or we return no shares.
    if rng.failed {
        return Err(RecoveryError::Random);
    }
    Ok(shares
        .into_iter()
        .map(|mut s| {
            s.rotate_left(1);
            s
        })
        .collect())
}

/// Combines shares in MarbleRun layout (each 33 bytes, x last) into the 32-byte secret.
pub(crate) fn combine(shares: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>, RecoveryError> {
    if shares.len() < 2 || shares.iter().any(|s| s.len() != SHAMIR_SHARE_LEN) {
        return Err(RecoveryError::Combine);
    }
    let vsss_layout: Zeroizing<Vec<Vec<u8>>> = Zeroizing::new(
        shares
            .iter()
            .map(|s| {
                let mut v = s.to_vec();
                v.rotate_right(1);
                v
            })
            .collect(),
    );
    let secret = Gf256::combine_bytes(&*vsss_layout).map_err(|_| RecoveryError::Combine)?;
    Ok(Zeroizing::new(secret))
}

/// rand_core adapter over the system CSPRNG (aws-lc-rs). vsss-rs wants an infallible RNG, so a
/// failure is recorded in `failed` and checked by the caller before any share is used.
struct SystemRng {
    failed: bool,
}

impl rand_core::TryRng for SystemRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        if fill_random(dst).is_err() {
            self.failed = true;
            dst.zeroize();
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for SystemRng {}

#[cfg(test)]
mod tests {
    use super::*;

    /// GF(256) arithmetic the way HashiCorp's implementation does it: log/exp tables of the
    /// generator 0x03 over the AES polynomial 0x11b. Written independently of vsss-rs.
    struct Tables {
        log: [u8; 256],
        exp: [u8; 256],
    }

    impl Tables {
        fn new() -> Self {
            let mut log = [0u8; 256];
            let mut exp = [0u8; 256];
            let mut x: u16 = 1;
            for i in 0..255u16 {
                exp[i as usize] = x as u8;
                log[x as usize] = i as u8;
                // x *= 3  (x*2 xor x), reduced by 0x11b
                let mut d = x << 1;
                if d & 0x100 != 0 {
                    d ^= 0x11b;
                }
                x ^= d;
            }
            exp[255] = exp[0];
            Self { log, exp }
        }

        fn mul(&self, a: u8, b: u8) -> u8 {
            if a == 0 || b == 0 {
                return 0;
            }
            let s = (u16::from(self.log[a as usize]) + u16::from(self.log[b as usize])) % 255;
            self.exp[s as usize]
        }

        fn div(&self, a: u8, b: u8) -> u8 {
            assert_ne!(b, 0);
            if a == 0 {
                return 0;
            }
            let s = (255 + u16::from(self.log[a as usize]) - u16::from(self.log[b as usize])) % 255;
            self.exp[s as usize]
        }

        /// Evaluates the polynomial with `coeffs[0]` as constant term at `x`.
        fn eval(&self, coeffs: &[u8], x: u8) -> u8 {
            coeffs.iter().rev().fold(0u8, |acc, c| self.mul(acc, x) ^ c)
        }

        /// Lagrange interpolation at 0 of shares in HashiCorp layout (y-bytes, then x).
        fn combine(&self, shares: &[&[u8]]) -> Vec<u8> {
            let len = shares[0].len() - 1;
            let xs: Vec<u8> = shares.iter().map(|s| s[len]).collect();
            (0..len)
                .map(|i| {
                    let mut acc = 0u8;
                    for (j, s) in shares.iter().enumerate() {
                        let mut basis = 1u8;
                        for (m, &xm) in xs.iter().enumerate() {
                            if m != j {
                                // xm / (xm - xj); subtraction is XOR
                                basis = self.mul(basis, self.div(xm, xm ^ xs[j]));
                            }
                        }
                        acc ^= self.mul(s[i], basis);
                    }
                    acc
                })
                .collect()
        }
    }

    fn vector_secret() -> [u8; 32] {
        std::array::from_fn(|i| (i as u8).wrapping_mul(7).wrapping_add(1))
    }

    /// Share x of the fixed polynomial f_i(x) = secret[i] + (0xa0 ^ i)·x, HashiCorp layout.
    fn table_share(t: &Tables, x: u8) -> Vec<u8> {
        let s = vector_secret();
        let mut out: Vec<u8> = (0..32)
            .map(|i| t.eval(&[s[i], 0xa0 ^ i as u8], x))
            .collect();
        out.push(x);
        out
    }

    // Computed independently (Python, AES-field multiplication) for the polynomial above.
    const SHARE_X2: &str = "5a51504b4e757c6772090803161d242f0a0100fbfee5ecd7c2d9d8d3a6adb4bf02";
    const SHARE_X3: &str = "faf0f2e8ead0dac0daa0a2a8bab08a80bab0b2484a505a607a6062681a100a0003";

    #[test]
    fn field_tables_match_known_products() {
        let t = Tables::new();
        // FIPS-197 §4.2: {57}·{83} = {c1}, {57}·{13} = {fe}
        assert_eq!(t.mul(0x57, 0x83), 0xc1);
        assert_eq!(t.mul(0x57, 0x13), 0xfe);
        assert_eq!(t.div(0xc1, 0x83), 0x57);
    }

    #[test]
    fn hashicorp_layout_vector_combines() {
        let t = Tables::new();
        let s2 = table_share(&t, 2);
        let s3 = table_share(&t, 3);
        assert_eq!(hex::encode(&s2), SHARE_X2);
        assert_eq!(hex::encode(&s3), SHARE_X3);
        let s1 = table_share(&t, 1);
        let secret = vector_secret();
        for pair in [[&s1, &s2], [&s2, &s3], [&s3, &s1]] {
            let got = combine(&[pair[0], pair[1]]).expect("combine");
            assert_eq!(&got[..], &secret[..]);
        }
        assert_eq!(t.combine(&[&s2, &s3]), secret.to_vec());
    }

    #[test]
    fn split_is_readable_by_hashicorp_style_combine() {
        let t = Tables::new();
        let secret: [u8; 32] = std::array::from_fn(|i| 0xff - i as u8);
        for (k, n) in [(2, 3), (3, 5), (2, 2), (4, 4)] {
            let shares = split(&secret, k, n).expect("split");
            assert_eq!(shares.len(), n);
            for (i, s) in shares.iter().enumerate() {
                assert_eq!(s.len(), SHAMIR_SHARE_LEN);
                assert_eq!(s[32] as usize, i + 1, "trailing x byte");
            }
            let first: Vec<&[u8]> = shares.iter().take(k).map(|s| &s[..]).collect();
            assert_eq!(t.combine(&first), secret.to_vec(), "{k}-of-{n}");
            let last: Vec<&[u8]> = shares.iter().skip(n - k).map(|s| &s[..]).collect();
            assert_eq!(&combine(&last).expect("combine")[..], &secret[..]);
            if k > 2 {
                // Fewer than k shares interpolate to something else.
                let few: Vec<&[u8]> = shares.iter().take(k - 1).map(|s| &s[..]).collect();
                assert_ne!(&combine(&few).expect("combine")[..], &secret[..]);
            }
        }
    }

    #[test]
    fn combine_refuses_bad_input() {
        let t = Tables::new();
        let s1 = table_share(&t, 1);
        assert_eq!(combine(&[&s1]).map(|_| ()), Err(RecoveryError::Combine));
        assert_eq!(
            combine(&[&s1, &s1]).map(|_| ()),
            Err(RecoveryError::Combine)
        );
        assert_eq!(
            combine(&[&s1, &s1[..32]]).map(|_| ()),
            Err(RecoveryError::Combine)
        );
        let mut zero_x = table_share(&t, 2);
        zero_x[32] = 0;
        assert_eq!(
            combine(&[&s1, &zero_x]).map(|_| ()),
            Err(RecoveryError::Combine)
        );
        assert!(matches!(
            split(&[0; 32], 2, 256),
            Err(RecoveryError::TooManyKeys(256))
        ));
    }
}
