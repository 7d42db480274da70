//! `EtcdPersistence` against a real etcd: CAS semantics, racing writers, outages, the watch,
//! credentials, and use from inside tokio.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use cairn_store::{EtcdConfig, EtcdPersistence, Persistence, Revision, StoreError};

use crate::etcd_server::{start_or_skip, EtcdServer};

/// Generous: these bound waits for etcd and the watch; they are not performance assertions.
const DEADLINE: Duration = Duration::from_secs(20);

fn config(server: &EtcdServer, key: &str) -> EtcdConfig {
    EtcdConfig {
        key: key.to_owned(),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(3),
        ..EtcdConfig::new([server.url()])
    }
}

fn backend(server: &EtcdServer, key: &str) -> EtcdPersistence {
    EtcdPersistence::new(config(server, key)).unwrap()
}

/// The raw key as etcd holds it: (mod_revision, value).
fn raw_get(server: &EtcdServer, key: &str) -> Option<(i64, Vec<u8>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = etcd_client::Client::connect([server.url()], None)
            .await
            .unwrap();
        let resp = c.get(key, None).await.unwrap();
        resp.kvs()
            .first()
            .map(|kv| (kv.mod_revision(), kv.value().to_vec()))
    })
}

fn assert_conflict(e: StoreError, expected: Option<u64>, actual: Option<u64>) {
    match e {
        StoreError::Conflict {
            expected: e,
            actual: a,
        } => assert_eq!((e, a), (expected, actual)),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn assert_backend_error(e: &StoreError, server: &EtcdServer) {
    assert!(
        matches!(
            e,
            StoreError::Backend {
                backend: "etcd",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains(&server.url()), "{e}");
}

#[test]
fn round_trip_and_conflicts() {
    let Some(server) = start_or_skip("round_trip_and_conflicts") else {
        return;
    };
    let p = backend(&server, "/cairn/test/round-trip");
    assert_eq!(p.load().unwrap(), None);

    let r1 = p.compare_and_swap(None, b"one").unwrap();
    assert_eq!(p.load().unwrap(), Some((r1, b"one".to_vec())));
    // Layout: the blob is the key's value as is; the revision is its mod_revision.
    assert_eq!(
        raw_get(&server, "/cairn/test/round-trip"),
        Some((i64::try_from(r1.0).unwrap(), b"one".to_vec()))
    );
    assert_eq!(raw_get(&server, cairn_store::DEFAULT_ETCD_KEY), None);

    // A writer that believes there is no state, or holds a wrong revision, changes nothing.
    assert_conflict(
        p.compare_and_swap(None, b"x").unwrap_err(),
        None,
        Some(r1.0),
    );
    assert_conflict(
        p.compare_and_swap(Some(Revision(r1.0 + 1000)), b"x")
            .unwrap_err(),
        Some(r1.0 + 1000),
        Some(r1.0),
    );
    assert_conflict(
        p.compare_and_swap(Some(Revision(u64::MAX)), b"x")
            .unwrap_err(),
        Some(u64::MAX),
        Some(r1.0),
    );

    let r2 = p.compare_and_swap(Some(r1), b"two").unwrap();
    assert!(r2 > r1, "{r2:?} > {r1:?}");
    assert_conflict(
        p.compare_and_swap(Some(r1), b"x").unwrap_err(),
        Some(r1.0),
        Some(r2.0),
    );
    assert_eq!(p.load().unwrap(), Some((r2, b"two".to_vec())));

    // Another handle on the same key sees the same state; other keys are independent.
    let q = backend(&server, "/cairn/test/round-trip");
    assert_eq!(q.load().unwrap(), Some((r2, b"two".to_vec())));
    let other = backend(&server, "/cairn/test/other");
    assert_eq!(other.load().unwrap(), None);

    // A sealed state of realistic size (1 MiB, below etcd's default 1.5 MiB request limit).
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let r3 = q.compare_and_swap(Some(r2), &big).unwrap();
    assert_eq!(p.load().unwrap(), Some((r3, big)));
}

#[test]
fn racing_writers_exactly_one_wins() {
    let Some(server) = start_or_skip("racing_writers_exactly_one_wins") else {
        return;
    };
    let key = "/cairn/test/race";
    let writers = [
        Arc::new(backend(&server, key)),
        Arc::new(backend(&server, key)),
    ];
    let mut expected: Option<Revision> = None;
    for round in 0..10 {
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = writers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let (w, barrier) = (w.clone(), barrier.clone());
                let blob = format!("round {round} writer {i}").into_bytes();
                thread::spawn(move || {
                    barrier.wait();
                    (blob.clone(), w.compare_and_swap(expected, &blob))
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<_> = results
            .iter()
            .filter_map(|(blob, r)| r.as_ref().ok().map(|rev| (*rev, blob.clone())))
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let (won, blob) = winners[0].clone();
        for (_, r) in results {
            if let Err(e) = r {
                assert_conflict(e, expected.map(|r| r.0), Some(won.0));
            }
        }
        for w in &writers {
            assert_eq!(w.load().unwrap(), Some((won, blob.clone())));
        }
        expected = Some(won);
    }
}

#[test]
fn outage_is_reported_and_restart_restores_service() {
    let Some(mut server) = start_or_skip("outage_is_reported_and_restart_restores_service") else {
        return;
    };
    let p = backend(&server, "/cairn/test/outage");
    let r1 = p.compare_and_swap(None, b"before the outage").unwrap();
    let mut watch = p.subscribe();

    server.kill();
    let started = Instant::now();
    let e = p.load().unwrap_err();
    assert_backend_error(&e, &server);
    let e = p.compare_and_swap(Some(r1), b"lost").unwrap_err();
    assert_backend_error(&e, &server);
    eprintln!(
        "etcd down: two calls failed in {:?}: {e}",
        started.elapsed()
    );

    server.restart();
    // Service comes back on the same data dir without a new backend; the state survived.
    let deadline = Instant::now() + DEADLINE;
    let loaded = loop {
        match p.load() {
            Ok(v) => break v,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for etcd: {e}");
                thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("etcd did not come back: {e}"),
        }
    };
    assert_eq!(loaded, Some((r1, b"before the outage".to_vec())));
    let r2 = p.compare_and_swap(Some(r1), b"after the outage").unwrap();
    assert_eq!(p.load().unwrap(), Some((r2, b"after the outage".to_vec())));

    // The watch re-established itself and reports the write made after the restart.
    let deadline = Instant::now() + DEADLINE;
    while *watch.borrow_and_update() != Some(r2) {
        assert!(Instant::now() < deadline, "watch never saw {r2:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn hung_etcd_times_out() {
    let Some(mut server) = start_or_skip("hung_etcd_times_out") else {
        return;
    };
    let p = backend(&server, "/cairn/test/hung");
    let r1 = p.compare_and_swap(None, b"state").unwrap();
    server.freeze(true);
    let started = Instant::now();
    let e = p.compare_and_swap(Some(r1), b"maybe").unwrap_err();
    let took = started.elapsed();
    server.freeze(false);
    assert_backend_error(&e, &server);
    assert!(e.to_string().contains("did not answer within"), "{e}");
    // Bounded by connect + request timeout (5 s here), not by etcd; generous margin.
    assert!(took < DEADLINE, "{took:?}");
    eprintln!("hung etcd: failed after {took:?}: {e}");
    // After a timed-out write the outcome is unknown: the frozen etcd may still run the queued
    // request once thawed. Reloading tells which, and a retry based on r1 never applies twice.
    let deadline = Instant::now() + DEADLINE;
    let loaded = loop {
        match p.load() {
            Ok(v) => break v,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for etcd: {e}");
                thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("etcd did not come back: {e}"),
        }
    };
    let (rev, blob) = loaded.unwrap();
    if rev == r1 {
        assert_eq!(blob, b"state");
    } else {
        assert!(rev > r1, "{rev:?} > {r1:?}");
        assert_eq!(blob, b"maybe");
    }
    // The queued write may still land between that load and the retry: either the retry or the
    // queued write applies, never both.
    let retry = p.compare_and_swap(Some(r1), b"maybe");
    let (final_rev, final_blob) = p.load().unwrap().unwrap();
    assert_eq!(final_blob, b"maybe");
    match retry {
        Ok(r2) => assert_eq!(final_rev, r2),
        Err(e) => assert_conflict(e, Some(r1.0), Some(final_rev.0)),
    }
    thread::sleep(Duration::from_millis(500));
    assert_eq!(p.load().unwrap(), Some((final_rev, b"maybe".to_vec())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_notifies_and_works_inside_tokio() {
    let Some(server) = start_or_skip("watch_notifies_and_works_inside_tokio") else {
        return;
    };
    // Built, used (via spawn_blocking) and dropped inside a multi-thread runtime.
    let key = "/cairn/test/watch";
    let watcher = Arc::new(backend(&server, key));
    let writer = Arc::new(backend(&server, key));
    let mut rx = watcher.subscribe();
    // Nothing is stored under the key yet.
    assert_eq!(*rx.borrow(), None);

    let mut expected = None;
    for i in 0..3 {
        let w = writer.clone();
        let started = Instant::now();
        let rev = tokio::task::spawn_blocking(move || {
            w.compare_and_swap(expected, format!("state {i}").as_bytes())
        })
        .await
        .unwrap()
        .unwrap();
        tokio::time::timeout(DEADLINE, rx.wait_for(|v| *v == Some(rev)))
            .await
            .expect("watch notification")
            .unwrap();
        eprintln!(
            "watch saw {rev:?} {:?} after the write started",
            started.elapsed()
        );
        let w = watcher.clone();
        let loaded = tokio::task::spawn_blocking(move || w.load())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(loaded, Some((rev, format!("state {i}").into_bytes())));
        expected = Some(rev);
    }
    drop(rx);
    drop(watcher);
    drop(writer);
}

#[tokio::test(flavor = "current_thread")]
async fn works_from_spawn_blocking_on_a_current_thread_runtime() {
    let Some(server) = start_or_skip("works_from_spawn_blocking_on_a_current_thread_runtime")
    else {
        return;
    };
    let p = Arc::new(backend(&server, "/cairn/test/current-thread"));
    let q = p.clone();
    let (r, loaded) = tokio::task::spawn_blocking(move || {
        let r = q.compare_and_swap(None, b"from spawn_blocking").unwrap();
        (r, q.load().unwrap())
    })
    .await
    .unwrap();
    assert_eq!(loaded, Some((r, b"from spawn_blocking".to_vec())));
    drop(p);
}

#[test]
fn credentials_are_used_and_never_shown() {
    let Some(server) = start_or_skip("credentials_are_used_and_never_shown") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = etcd_client::Client::connect([server.url()], None)
            .await
            .unwrap();
        c.user_add("root", "root-pw-1f2e", None).await.unwrap();
        c.role_add("root").await.unwrap();
        c.user_grant_role("root", "root").await.unwrap();
        c.auth_enable().await.unwrap();
    });
    drop(rt);

    let key = "/cairn/test/auth";
    let with = |user: Option<&str>, password: Option<&str>| {
        EtcdPersistence::new(EtcdConfig {
            user: user.map(str::to_owned),
            password: password.map(str::to_owned),
            ..config(&server, key)
        })
        .unwrap()
    };
    let wrong = with(Some("root"), Some("wrong-pw-9a8b"));
    let e = wrong.load().unwrap_err();
    assert_backend_error(&e, &server);
    let shown = format!("{e} {e:?} {wrong:?}");
    assert!(!shown.contains("wrong-pw-9a8b"), "{shown}");

    let anonymous = with(None, None);
    assert!(anonymous.compare_and_swap(None, b"x").is_err());

    let right = with(Some("root"), Some("root-pw-1f2e"));
    let r = right.compare_and_swap(None, b"authorised").unwrap();
    assert_eq!(right.load().unwrap(), Some((r, b"authorised".to_vec())));
    assert!(!format!("{right:?}").contains("root-pw-1f2e"));
}

/// Presence keys (HA): a key written with `put_expiring` is listed under its prefix and
/// vanishes once its lease runs out without a refresh.
#[test]
fn expiring_keys_are_listed_then_vanish() {
    let Some(server) = start_or_skip("expiring_keys_are_listed_then_vanish") else {
        return;
    };
    let p = backend(&server, "/cairn/test/presence-state");
    assert!(p.list_prefix("/cairn/test/live/").unwrap().is_empty());
    p.put_expiring("/cairn/test/live/a", b"A", Duration::from_secs(2))
        .unwrap();
    p.put_expiring("/cairn/test/live/b", b"B", Duration::from_secs(60))
        .unwrap();
    // Refreshed: the value is replaced and the new lease counts.
    p.put_expiring("/cairn/test/live/a", b"A2", Duration::from_secs(2))
        .unwrap();
    assert_eq!(
        p.list_prefix("/cairn/test/live/").unwrap(),
        vec![
            ("/cairn/test/live/a".to_string(), b"A2".to_vec()),
            ("/cairn/test/live/b".to_string(), b"B".to_vec()),
        ]
    );
    let deadline = Instant::now() + DEADLINE;
    while p.list_prefix("/cairn/test/live/").unwrap().len() != 1 {
        assert!(Instant::now() < deadline, "the expired key is still listed");
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        p.list_prefix("/cairn/test/live/").unwrap()[0].0,
        "/cairn/test/live/b"
    );
}
