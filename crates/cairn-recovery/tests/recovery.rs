//! End-to-end recovery flows with the checked-in test keys: generate → decrypt with the recovery
//! private key → sign → session → data key.

use std::collections::BTreeMap;

use cairn_recovery::{
    decrypt_secret, generate, parse_recovery_key, sign_secret, Generated, RecoveryData,
    RecoveryError, RecoveryMode, RecoveryPublicKey, RecoverySession, Zeroizing,
};
use proptest::prelude::*;

const PUB: [&str; 3] = [
    include_str!("../../../testdata/manifests/keys/recovery1.pub"),
    include_str!("../../../testdata/manifests/keys/recovery2.pub"),
    include_str!("../../../testdata/manifests/keys/recovery3.pub"),
];
const KEY: [&str; 3] = [
    include_str!("../../../testdata/manifests/keys/recovery1.key"),
    include_str!("../../../testdata/manifests/keys/recovery2.key"),
    include_str!("../../../testdata/manifests/keys/recovery3.key"),
];
const NAMES: [&str; 3] = ["alice", "bob", "carol"];

fn keys(n: usize) -> BTreeMap<String, RecoveryPublicKey> {
    (0..n)
        .map(|i| {
            (
                NAMES[i].to_string(),
                parse_recovery_key(PUB[i]).expect("test key"),
            )
        })
        .collect()
}

/// What key holder `i` does offline: decrypt their secret and sign it.
fn holder(g: &Generated, i: usize) -> (Zeroizing<Vec<u8>>, Vec<u8>) {
    let secret = decrypt_secret(KEY[i], &g.secrets[NAMES[i]]).expect("decrypt");
    let sig = sign_secret(KEY[i], &secret).expect("sign");
    (secret, sig)
}

fn session(g: &Generated, n: usize) -> RecoverySession {
    RecoverySession::new(&g.recovery_data, &keys(n)).expect("session")
}

#[test]
fn single_key_round_trip() {
    let g = generate(&keys(1), 0).expect("generate");
    assert_eq!(g.secrets.len(), 1);
    let (secret, sig) = holder(&g, 0);
    assert_eq!(&secret[..], g.data_key.as_bytes());
    let mut s = session(&g, 1);
    assert_eq!(s.remaining(), 1);
    let p = s.submit(&secret, &sig).expect("submit");
    assert_eq!(p.remaining, 0);
    assert_eq!(p.data_key.as_ref(), Some(&g.data_key));
    // Replaying the same DEK is refused.
    assert_eq!(
        s.submit(&secret, &sig).map(|_| ()),
        Err(RecoveryError::ReplayedShare("alice".into()))
    );
}

#[test]
fn single_key_refusals() {
    let g = generate(&keys(1), 0).expect("generate");
    let (secret, _) = holder(&g, 0);
    let mut s = session(&g, 1);
    // Signed by a key that is not a recovery key of this manifest.
    let foreign = sign_secret(KEY[1], &secret).expect("sign");
    assert_eq!(
        s.submit(&secret, &foreign).map(|_| ()),
        Err(RecoveryError::BadSignature)
    );
    assert_eq!(
        s.submit(&secret[..16], &foreign).map(|_| ()),
        Err(RecoveryError::SecretLength {
            expected: 32,
            actual: 16
        })
    );
    // Still usable.
    let sig = sign_secret(KEY[0], &secret).expect("sign");
    let p = s.submit(&secret, &sig).expect("submit");
    assert_eq!(p.data_key.as_ref(), Some(&g.data_key));
}

#[test]
fn xor_three_of_three() {
    for threshold in [0, 3] {
        let g = generate(&keys(3), threshold).expect("generate");
        let data = RecoveryData::parse(&g.recovery_data).expect("data");
        assert_eq!(data.mode(), RecoveryMode::Xor);
        assert_eq!(data.threshold(), 3);
        let shares: Vec<_> = (0..3).map(|i| holder(&g, i)).collect();
        for s in &shares {
            assert_eq!(s.0.len(), 32);
            assert_ne!(&s.0[..], g.data_key.as_bytes());
        }
        for order in [[0, 1, 2], [2, 0, 1]] {
            let mut sess = session(&g, 3);
            let mut remaining = vec![];
            let mut key = None;
            for i in order {
                let p = sess.submit(&shares[i].0, &shares[i].1).expect("submit");
                remaining.push(p.remaining);
                key = p.data_key;
            }
            assert_eq!(remaining, vec![2, 1, 0]);
            assert_eq!(key.as_ref(), Some(&g.data_key));
            assert_eq!(sess.data_key(), Some(&g.data_key));
            assert_eq!(sess.signers(), vec!["alice", "bob", "carol"]);
            assert_eq!(
                sess.submit(&shares[0].0, &shares[0].1).map(|_| ()),
                Err(RecoveryError::AlreadyComplete)
            );
        }
    }
}

#[test]
fn shamir_two_of_three_every_pair() {
    let g = generate(&keys(3), 2).expect("generate");
    let data = RecoveryData::parse(&g.recovery_data).expect("data");
    assert_eq!(data.mode(), RecoveryMode::Shamir);
    assert_eq!((data.threshold(), data.key_count()), (2, 3));
    let shares: Vec<_> = (0..3).map(|i| holder(&g, i)).collect();
    let mut xs: Vec<u8> = shares.iter().map(|s| s.0[32]).collect();
    xs.sort_unstable();
    xs.dedup();
    assert_eq!(xs.len(), 3, "distinct trailing x-coordinates");
    assert!(xs.iter().all(|&x| x != 0));
    for a in 0..3 {
        for b in 0..3 {
            if a == b {
                continue;
            }
            let mut sess = session(&g, 3);
            let p = sess.submit(&shares[a].0, &shares[a].1).expect("first");
            assert_eq!((p.remaining, p.data_key.is_none()), (1, true));
            assert_eq!(sess.remaining(), 1);
            let p = sess.submit(&shares[b].0, &shares[b].1).expect("second");
            assert_eq!(p.remaining, 0);
            assert_eq!(p.data_key.as_ref(), Some(&g.data_key), "pair {a},{b}");
            let c = 3 - a - b;
            assert_eq!(
                sess.submit(&shares[c].0, &shares[c].1).map(|_| ()),
                Err(RecoveryError::AlreadyComplete)
            );
        }
    }
}

#[test]
fn session_from_recorded_public_keys() {
    // In recovery the manifest is still sealed: the keys recorded in the recovery data serve.
    let g = generate(&keys(3), 2).expect("generate");
    let data = RecoveryData::parse(&g.recovery_data).expect("data");
    assert_eq!(data.public_keys(), keys(3));
    let mut sess = RecoverySession::new(&g.recovery_data, &data.public_keys()).expect("session");
    let (s0, g0) = holder(&g, 0);
    let (s2, g2) = holder(&g, 2);
    sess.submit(&s2, &g2).expect("share 2");
    let p = sess.submit(&s0, &g0).expect("share 0");
    assert_eq!(p.data_key.as_ref(), Some(&g.data_key));
    assert_eq!(sess.signers(), vec!["alice", "carol"]);
}

#[test]
fn refusals_leave_session_usable() {
    for threshold in [0, 2] {
        let g = generate(&keys(3), threshold).expect("generate");
        let shares: Vec<_> = (0..3).map(|i| holder(&g, i)).collect();
        let len = shares[0].0.len();
        let mut sess = session(&g, 3);
        let (s0, sig0) = &shares[0];
        let (s1, _) = &shares[1];

        // Corrupted signature: verifies with no manifest key.
        let mut bad_sig = sig0.clone();
        bad_sig[5] ^= 1;
        assert_eq!(
            sess.submit(s0, &bad_sig).map(|_| ()),
            Err(RecoveryError::BadSignature)
        );
        // Signed by another manifest key than the share's owner.
        let by_bob = sign_secret(KEY[1], s0).expect("sign");
        assert_eq!(
            sess.submit(s0, &by_bob).map(|_| ()),
            Err(RecoveryError::WrongSigner {
                owner: "alice".into(),
                signer: "bob".into()
            })
        );
        // Truncated share.
        assert_eq!(
            sess.submit(&s0[..31], sig0).map(|_| ()),
            Err(RecoveryError::SecretLength {
                expected: len,
                actual: 31
            })
        );
        // A share of the right length that is not in the recovery data, validly signed.
        let mut unknown = s1.to_vec();
        unknown[0] ^= 0x80;
        let unknown_sig = sign_secret(KEY[1], &unknown).expect("sign");
        assert_eq!(
            sess.submit(&unknown, &unknown_sig).map(|_| ()),
            Err(RecoveryError::UnknownShare)
        );
        assert_eq!(sess.remaining(), if threshold == 0 { 3 } else { 2 });
        assert!(sess.signers().is_empty());

        // Accept one, then replay it.
        let p = sess.submit(s0, sig0).expect("accept");
        assert_eq!(
            sess.submit(s0, sig0).map(|_| ()),
            Err(RecoveryError::ReplayedShare("alice".into()))
        );
        assert_eq!(sess.remaining(), p.remaining);

        // The rest still recovers the key.
        let mut key = None;
        for (s, sig) in &shares[1..] {
            if sess.data_key().is_some() {
                break;
            }
            key = sess.submit(s, sig).expect("accept").data_key;
        }
        assert_eq!(key.as_ref(), Some(&g.data_key), "threshold {threshold}");
    }
}

#[test]
fn session_setup_refusals() {
    let none = generate(&keys(0), 0).expect("generate");
    assert!(none.secrets.is_empty());
    assert!(matches!(
        RecoverySession::new(&none.recovery_data, &keys(0)),
        Err(RecoveryError::RecoveryImpossible)
    ));
    let g = generate(&keys(2), 0).expect("generate");
    assert!(matches!(
        RecoverySession::new(&g.recovery_data, &keys(3)),
        Err(RecoveryError::KeyMismatch(name)) if name == "carol"
    ));
    let mut swapped = keys(2);
    swapped.insert("bob".into(), parse_recovery_key(PUB[2]).expect("key"));
    assert!(matches!(
        RecoverySession::new(&g.recovery_data, &swapped),
        Err(RecoveryError::KeyMismatch(name)) if name == "bob"
    ));
    assert!(matches!(
        RecoverySession::new(b"{}", &keys(2)),
        Err(RecoveryError::InvalidRecoveryData(_))
    ));
}

#[test]
fn pkcs1_and_ec_recovery_keys_rejected() {
    let pkcs1 = include_str!("../../../testdata/manifests/keys/recovery1.pkcs1.pub");
    let ec = include_str!("../../../testdata/manifests/keys/ec-recovery.pub");
    let e = parse_recovery_key(pkcs1).expect_err("pkcs1");
    assert_eq!(e, RecoveryError::Pkcs1PublicKey);
    assert!(e.to_string().contains("PKCS#1"), "{e}");
    let e = parse_recovery_key(ec).expect_err("ec");
    assert_eq!(e, RecoveryError::NotRsa("EC"));
    assert!(e.to_string().contains("only RSA"), "{e}");
}

#[test]
fn secrets_stay_out_of_debug_and_errors() {
    let g = generate(&keys(3), 2).expect("generate");
    let (s0, sig0) = holder(&g, 0);
    let mut sess = session(&g, 3);
    sess.submit(&s0, &sig0).expect("submit");
    let share_hex: String = s0.iter().map(|b| format!("{b:02x}")).collect();
    let key_hex: String = g
        .data_key
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for text in [format!("{sess:?}"), format!("{g:?}")] {
        assert!(!text.contains(&share_hex), "{text}");
        assert!(!text.contains(&key_hex), "{text}");
        assert!(!text.contains(&format!("{:?}", &s0[..])), "{text}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_submissions_never_panic(
        secret in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..80),
            proptest::collection::vec(any::<u8>(), 32..=32),
            proptest::collection::vec(any::<u8>(), 33..=33),
        ],
        signature in proptest::collection::vec(any::<u8>(), 0..300),
        which in 0usize..3,
    ) {
        let (g, n) = fixtures(which);
        let mut sess = RecoverySession::new(&g.recovery_data, &keys(n)).expect("session");
        let before = sess.remaining();
        let r = sess.submit(&secret, &signature);
        // Random bytes are never a valid signature, so nothing is accepted.
        prop_assert!(r.is_err());
        prop_assert_eq!(sess.remaining(), before);
        prop_assert!(RecoveryData::parse(&secret).is_err());
    }
}

/// Generated once per mode (RSA work is the slow part of each proptest case).
fn fixtures(which: usize) -> (&'static Generated, usize) {
    use std::sync::OnceLock;
    static F: OnceLock<[Generated; 3]> = OnceLock::new();
    let f = F.get_or_init(|| {
        [
            generate(&keys(1), 0).expect("single"),
            generate(&keys(3), 0).expect("xor"),
            generate(&keys(3), 2).expect("shamir"),
        ]
    });
    (&f[which], if which == 0 { 1 } else { 3 })
}
