//! In-process tests of the Coordinator: real servers on port 0, real TLS, simulation mode.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "coordinator/recovery.rs"]
mod recovery;
#[path = "support/mod.rs"]
mod support;
#[path = "coordinator/users_updates.rs"]
mod users_updates;

use base64::Engine as _;
use support::*;
use x509_parser::prelude::*;

fn read_manifest(rel: &str) -> Vec<u8> {
    std::fs::read(format!("{MANIFESTS}/{rel}")).unwrap()
}

fn base_manifest(uid: [u8; 32], extra_marble: &str) -> String {
    format!(
        r#"{{"Packages":{{"p":{{"UniqueID":"{}"}}}},"Marbles":{{"m":{{"Package":"p"{extra_marble}}}}}}}"#,
        hex::encode(uid)
    )
}

const ACCEPT: &[&str] = &[
    "valid-minimal.json",
    "valid-basic.json",
    "valid-templates.json",
    "valid-users-roles.json",
    "samples/estore-manifest.json",
    "samples/gramine-hello-manifest.json",
    "samples/gramine-nginx-manifest.json",
    "samples/gramine-redis-manifest.json",
    "samples/helloc++-manifest.json",
    "samples/helloworld-manifest.json",
    "samples/occlum-hello-manifest.json",
];

const REJECT: &[(&str, &str)] = &[
    ("update-svn-bump.json", "E_CHECK"),
    ("invalid-no-marbles.json", "E_CHECK"),
    ("invalid-unknown-package.json", "E_CHECK"),
    ("invalid-uniqueid-and-signerid.json", "E_CHECK"),
    ("invalid-unknown-secret-type.json", "E_CHECK"),
    ("invalid-user-unknown-role.json", "E_CHECK"),
    ("invalid-template-undefined-secret.json", "E_TEMPLATE"),
    ("samples/sample-manifest.json", "E_CHECK"),
    ("samples/manifest-template.json", "E_PARSE"),
];

#[tokio::test(flavor = "multi_thread")]
async fn sample_manifests_rejected_as_documented() {
    let c = Coord::start().await;
    for (file, kind) in REJECT {
        let r = c.set_manifest(&read_manifest(file)).await;
        assert_eq!(r.status, 500, "{file}: {}", r.text());
        assert!(r.content_type.starts_with("text/plain"), "{file}");
        assert!(r.body.ends_with(b"\n"));
        let v = r.json();
        assert_eq!(v["status"], "error");
        assert!(v["data"].is_null());
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains(kind), "{file}: expected {kind} in {msg}");
        assert_eq!(c.status_code().await, 2, "{file}");
    }
    // v1: a rejected manifest is a 400 error.
    let r = request(
        c.client(),
        "POST",
        "/manifest",
        Some(read_manifest("invalid-no-marbles.json")),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["status"], "error");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sample_manifests_accepted_as_documented() {
    for file in ACCEPT {
        let c = Coord::start().await;
        assert_eq!(c.status_code().await, 2);
        let raw = read_manifest(file);
        let r = c.set_manifest(&raw).await;
        assert_eq!(r.status, 200, "{file}: {}", r.text());
        assert_eq!(r.content_type, "application/json");
        let v = r.json();
        assert_eq!(v["status"], "success", "{file}");
        assert!(v["data"]
            .as_object()
            .unwrap()
            .contains_key("RecoverySecrets"));
        assert_eq!(c.status_code().await, 3, "{file}");
        let g = request(c.client(), "GET", "/api/v2/manifest", None)
            .await
            .json();
        assert_eq!(
            g["data"]["manifestFingerprint"].as_str().unwrap(),
            hex::encode(cairn_crypto::sha256(&raw))
        );
        c.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn status_envelopes_routing_v1_v2() {
    let c = Coord::start().await;
    let r = request(c.client(), "GET", "/api/v2/status", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "application/json");
    assert_eq!(
        r.text(),
        r#"{"status":"success","data":{"code":2,"message":"Coordinator is ready to accept a manifest."}}"#
    );
    let r = request(c.client(), "GET", "/status", None).await.json();
    assert_eq!(r["data"]["StatusCode"], 2);
    assert!(r["data"]["StatusMessage"].is_string());
    // Unknown path and wrong method: 405 error, empty message omitted.
    for (m, p) in [
        ("GET", "/nope"),
        ("DELETE", "/api/v2/status"),
        ("POST", "/api/v2/status"),
    ] {
        let r = request(c.client(), m, p, None).await;
        assert_eq!(r.status, 405, "{m} {p}");
        assert_eq!(r.text(), "{\"status\":\"error\",\"data\":null}\n");
    }
    // Malformed JSON: 400 fail with a JSON content type.
    let r = request(
        c.client(),
        "POST",
        "/api/v2/manifest",
        Some(b"{not json".to_vec()),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.content_type, "application/json");
    assert_eq!(r.json()["status"], "fail");
    // No manifest yet.
    let r = request(c.client(), "GET", "/api/v2/manifest", None).await;
    assert_eq!(r.status, 500);
    let r = request(c.client(), "GET", "/manifest", None).await.json();
    assert_eq!(r["status"], "success");
    assert!(r["data"]["Manifest"].is_null());
    assert_eq!(r["data"]["ManifestSignature"], "");
    // v1 raw manifest set.
    let raw = base_manifest(U, "");
    let r = request(
        c.client(),
        "POST",
        "/manifest",
        Some(raw.clone().into_bytes()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), r#"{"status":"success","data":null}"#);
    assert_eq!(c.status_code().await, 3);
    let r = request(c.client(), "GET", "/manifest", None).await.json();
    assert_eq!(
        r["data"]["ManifestSignature"],
        hex::encode(cairn_crypto::sha256(raw.as_bytes()))
    );
    // Update log.
    let r = request(c.client(), "GET", "/api/v2/update", None)
        .await
        .json();
    let line = r["data"]["updateLog"][0].as_str().unwrap();
    assert!(line.contains("Initial manifest set"));
    // Metrics.
    let m = http_get(c.running.metrics_addr.unwrap(), "/metrics").await;
    assert!(m.contains("cairn_client_api_requests_total"), "{m}");
    assert!(m.contains("path=\"/api/v2/status\""), "{m}");
    c.stop().await;
}

/// FR-32 a: a second SET is refused with a pointer to the update workflow.
#[tokio::test(flavor = "multi_thread")]
async fn fr32_second_set_refused() {
    let c = Coord::start().await;
    let a = base_manifest(U, "");
    assert_eq!(c.set_manifest(a.as_bytes()).await.status, 200);
    let r = c.set_manifest(base_manifest(V, "").as_bytes()).await;
    assert_eq!(r.status, 500);
    let msg = r.json()["message"].as_str().unwrap().to_string();
    assert!(msg.contains("update"), "{msg}");
    let g = request(c.client(), "GET", "/api/v2/manifest", None)
        .await
        .json();
    assert_eq!(
        g["data"]["manifestFingerprint"],
        hex::encode(cairn_crypto::sha256(a.as_bytes()))
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn quote_and_chain_verify_with_sim_root() {
    let c = Coord::start().await;
    let sim = c.sim();
    let (r, tls_chain) = request_with_chain(c.client(), "GET", "/api/v2/quote", None).await;
    let v = r.json();
    let chain = pem_ders(v["data"]["cert"].as_str().unwrap());
    assert_eq!(chain.len(), 2);
    let (intermediate, root) = (&chain[0], &chain[1]);
    // The client API presents the root certificate.
    assert_eq!(&tls_chain[0], root);
    let quote = base64::engine::general_purpose::STANDARD
        .decode(v["data"]["quote"].as_str().unwrap())
        .unwrap();
    let collateral = sim.collateral().unwrap();
    let now = ::time::OffsetDateTime::now_utc().unix_timestamp() as u64;
    let root_trust = cairn_attest::TrustRoot::Simulation(sim.root_der());
    let verdict = cairn_attest::verify(&quote, &collateral, now, &root_trust).unwrap();
    assert_eq!(&verdict.report_data[..32], &cairn_crypto::sha256(root)[..]);
    assert_eq!(&verdict.report_data[32..], &[0u8; 32][..]);
    // Intel root refuses simulated evidence.
    assert!(cairn_attest::verify(
        &quote,
        &collateral,
        now,
        &cairn_attest::TrustRoot::IntelProduction
    )
    .is_err());
    // Intermediate is signed by the root.
    let (_, i) = X509Certificate::from_der(intermediate).unwrap();
    let (_, rt) = X509Certificate::from_der(root).unwrap();
    i.verify_signature(Some(rt.public_key())).unwrap();
    // With a nonce.
    let nonce = b"cairn-nonce";
    let q = base64::engine::general_purpose::URL_SAFE.encode(nonce);
    let r = request(c.client(), "GET", &format!("/api/v2/quote?nonce={q}"), None)
        .await
        .json();
    let quote = base64::engine::general_purpose::STANDARD
        .decode(r["data"]["quote"].as_str().unwrap())
        .unwrap();
    let verdict = cairn_attest::verify(&quote, &collateral, now, &root_trust).unwrap();
    assert_eq!(
        &verdict.report_data[..32],
        &cairn_crypto::sha256_concat(&[root, nonce])[..]
    );
    // Bad nonce: 400 fail.
    let r = request(c.client(), "GET", "/api/v2/quote?nonce=%%%", None).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["status"], "fail");
    // v1 quote.
    let r = request(c.client(), "GET", "/quote", None).await.json();
    assert!(r["data"]["Cert"].is_string() && r["data"]["Quote"].is_string());
    c.stop().await;
}

/// FR-10: IP literals become IP SANs, not DNS SANs.
#[tokio::test(flavor = "multi_thread")]
async fn fr10_ip_sans() {
    let tmp = tempfile::tempdir().unwrap();
    let running = start_in(
        tmp.path(),
        &["--dns-names", "localhost,192.0.2.10,coord.example.test"],
    )
    .await;
    let r = request(running.client_addr, "GET", "/api/v2/quote", None)
        .await
        .json();
    let chain = pem_ders(r["data"]["cert"].as_str().unwrap());
    let (_, root) = X509Certificate::from_der(&chain[1]).unwrap();
    let san = root.subject_alternative_name().unwrap().unwrap();
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for n in &san.value.general_names {
        match n {
            GeneralName::DNSName(d) => dns.push(d.to_string()),
            GeneralName::IPAddress(b) => ips.push(b.to_vec()),
            _ => {}
        }
    }
    assert!(dns.contains(&"localhost".to_string()));
    assert!(dns.contains(&"coord.example.test".to_string()));
    assert!(!dns.iter().any(|d| d == "192.0.2.10"));
    assert!(ips.contains(&vec![192, 0, 2, 10]));
    assert!(ips.contains(&vec![127, 0, 0, 1]));
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn activation_success_leaf_and_fr08() {
    let c = Coord::start().await;
    let sim = c.sim();
    let env = r#","Parameters":{"Env":{"ROOT":"{{ pem .MarbleRun.RootCA.Cert }}","CRT":"{{ pem .MarbleRun.MarbleCert.Cert }}"},"Files":{"/k":"{{ hex .Secrets.k }}"},"Argv":["a","b"]}"#;
    let manifest = format!(
        r#"{{"Packages":{{"p":{{"UniqueID":"{}"}}}},"Marbles":{{"m":{{"Package":"p"{env}}},"n":{{"Package":"p"{env}}}}},"Secrets":{{"k":{{"Type":"symmetric-key","Size":128,"Shared":true}}}}}}"#,
        hex::encode(U)
    );
    assert_eq!(c.set_manifest(manifest.as_bytes()).await.status, 200);
    let id = identity(&sim, U, false);
    let marble = TestMarble::new();
    let uuid = "9e8f1bb0-2d43-4e5c-8c0a-1a2b3c4d5e6f";
    let (r, mesh_chain) = activate(c.mesh(), &marble, "m", uuid, marble.quote(&sim, &id)).await;
    let resp = r.unwrap();
    let p = resp.parameters.as_ref().unwrap();
    assert_eq!(p.argv, vec!["a", "b"]);
    assert_eq!(p.files["/k"].len(), 32);
    // Mesh server presents intermediate + root.
    let q = request(c.client(), "GET", "/api/v2/quote", None)
        .await
        .json();
    let chain = pem_ders(q["data"]["cert"].as_str().unwrap());
    assert_eq!(mesh_chain, chain);
    // The leaf.
    let leaf_chain = pem_ders(&env_str(
        &resp,
        "MARBLE_PREDEFINED_MARBLE_CERTIFICATE_CHAIN",
    ));
    assert_eq!(leaf_chain.len(), 2);
    assert_eq!(leaf_chain[1], chain[0]);
    let (_, leaf) = X509Certificate::from_der(&leaf_chain[0]).unwrap();
    let cn = leaf
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(cn, uuid);
    let ext = leaf
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == "1.3.9903.2.1")
        .expect("marble type extension");
    assert_eq!(ext.value, b"m");
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    assert!(san
        .value
        .general_names
        .iter()
        .any(|n| matches!(n, GeneralName::DNSName("marble.test"))));
    let marble_root = pem_ders(&env_str(&resp, "MARBLE_PREDEFINED_ROOT_CA"));
    let (_, mroot) = X509Certificate::from_der(&marble_root[0]).unwrap();
    leaf.verify_signature(Some(mroot.public_key())).unwrap();
    let (_, inter) = X509Certificate::from_der(&chain[0]).unwrap();
    leaf.verify_signature(Some(inter.public_key())).unwrap();
    let coord_root = pem_ders(&env_str(&resp, "MARBLE_PREDEFINED_COORDINATOR_ROOT_CA"));
    assert_eq!(coord_root[0], chain[1]);
    assert!(
        env_str(&resp, "MARBLE_PREDEFINED_PRIVATE_KEY").starts_with("-----BEGIN PRIVATE KEY-----")
    );
    assert_eq!(pem_ders(&env_str(&resp, "ROOT")), marble_root);
    // FR-08: a second marble's leaf verifies against the first one's marble root.
    let marble2 = TestMarble::new();
    let (r2, _) = activate(
        c.mesh(),
        &marble2,
        "n",
        "11111111-2d43-4e5c-8c0a-1a2b3c4d5e6f",
        marble2.quote(&sim, &id),
    )
    .await;
    let resp2 = r2.unwrap();
    let crt2 = pem_ders(&env_str(&resp2, "CRT"));
    let (_, leaf2) = X509Certificate::from_der(&crt2[0]).unwrap();
    leaf2.verify_signature(Some(mroot.public_key())).unwrap();
    // Metrics count activations.
    let m = http_get(c.running.metrics_addr.unwrap(), "/metrics").await;
    assert!(
        m.contains("cairn_marble_activations_total{type=\"m\",result=\"success\"} 1"),
        "{m}"
    );
    c.stop().await;
}

/// FR-02 (no Parameters) and FR-11 (per-marble secret binding).
#[tokio::test(flavor = "multi_thread")]
async fn fr02_fr11_debug_package_and_secret_binding() {
    let c = Coord::start().await;
    let sim = c.sim();
    let dbg = r#"{"Packages":{"p":{"Debug":true}},"Marbles":{"m":{"Package":"p"}}}"#;
    assert_eq!(c.set_manifest(dbg.as_bytes()).await.status, 200);
    let id = identity(&sim, V, true);
    for _ in 0..2 {
        let marble = TestMarble::new();
        let (r, _) = activate(
            c.mesh(),
            &marble,
            "m",
            "9e8f1bb0-2d43-4e5c-8c0a-1a2b3c4d5e6f",
            marble.quote(&sim, &id),
        )
        .await;
        let resp = r.unwrap();
        let p = resp.parameters.unwrap();
        assert!(p.files.is_empty() && p.argv.is_empty());
        let mut keys: Vec<_> = p.env.keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            vec![
                "MARBLE_PREDEFINED_COORDINATOR_ROOT_CA",
                "MARBLE_PREDEFINED_MARBLE_CERTIFICATE_CHAIN",
                "MARBLE_PREDEFINED_PRIVATE_KEY",
                "MARBLE_PREDEFINED_ROOT_CA"
            ]
        );
    }
    c.stop().await;

    for disable in [false, true] {
        let c = Coord::start().await;
        let sim = c.sim();
        let dsb = if disable {
            r#","DisableSecretBinding":true"#
        } else {
            ""
        };
        let m = format!(
            r#"{{"Packages":{{"p":{{"Debug":true}}}},"Marbles":{{"a":{{"Package":"p","Parameters":{{"Env":{{"K":"{{{{ hex .Secrets.k }}}}"}}}}{dsb}}},"b":{{"Package":"p","Parameters":{{"Env":{{"K":"{{{{ hex .Secrets.k }}}}"}}}}{dsb}}}}},"Secrets":{{"k":{{"Type":"symmetric-key","Size":256}}}}}}"#
        );
        let r = c.set_manifest(m.as_bytes()).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let id = identity(&sim, V, true);
        let x = "9e8f1bb0-2d43-4e5c-8c0a-1a2b3c4d5e6f";
        let mut ks = Vec::new();
        for t in ["a", "b", "a"] {
            let marble = TestMarble::new();
            let (r, _) = activate(c.mesh(), &marble, t, x, marble.quote(&sim, &id)).await;
            ks.push(env_str(&r.unwrap(), "K"));
        }
        assert_eq!(ks[0].len(), 64);
        assert_eq!(ks[0], ks[2]);
        if disable {
            assert_eq!(ks[0], ks[1]);
        } else {
            assert_ne!(ks[0], ks[1]);
        }
        c.stop().await;
    }
}

async fn expect_denied(
    c: &Coord,
    marble: &TestMarble,
    t: &str,
    quote: Vec<u8>,
    code: tonic::Code,
    needle: &str,
) {
    let (r, _) = activate(
        c.mesh(),
        marble,
        t,
        "9e8f1bb0-2d43-4e5c-8c0a-1a2b3c4d5e6f",
        quote,
    )
    .await;
    let s = r.expect_err("activation must fail");
    assert_eq!(s.code(), code, "{}", s.message());
    assert!(
        s.message().contains(needle),
        "expected {needle:?} in {:?}",
        s.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn activation_failures_name_the_reason() {
    let c = Coord::start().await;
    let sim = c.sim();
    let marble = TestMarble::new();
    let good = identity(&sim, U, false);
    // State 2: FailedPrecondition.
    expect_denied(
        &c,
        &marble,
        "m",
        marble.quote(&sim, &good),
        tonic::Code::FailedPrecondition,
        "cannot accept marbles",
    )
    .await;

    let m = format!(
        r#"{{"Packages":{{"p":{{"UniqueID":"{}"}},"s":{{"SignerID":"{}","ProductID":7,"SecurityVersion":4}},"t":{{"UniqueID":"{}","AcceptedTCBStatuses":["UpToDate"]}}}},"Marbles":{{"m":{{"Package":"p","MaxActivations":2}},"svn":{{"Package":"s"}},"tcb":{{"Package":"t"}}}}}}"#,
        hex::encode(U),
        hex::encode(sim.signer_id()),
        hex::encode(U)
    );
    let r = c.set_manifest(m.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Unknown marble type.
    expect_denied(
        &c,
        &marble,
        "ghost",
        marble.quote(&sim, &good),
        tonic::Code::PermissionDenied,
        "unknown marble type requested",
    )
    .await;
    // Wrong MRENCLAVE.
    expect_denied(
        &c,
        &marble,
        "m",
        marble.quote(&sim, &identity(&sim, V, false)),
        tonic::Code::PermissionDenied,
        "UniqueID",
    )
    .await;
    // Quote bound to another certificate.
    let other = TestMarble::new();
    expect_denied(
        &c,
        &marble,
        "m",
        other.quote(&sim, &good),
        tonic::Code::PermissionDenied,
        "report data binding",
    )
    .await;
    // Debug mismatch.
    expect_denied(
        &c,
        &marble,
        "m",
        marble.quote(&sim, &identity(&sim, U, true)),
        tonic::Code::PermissionDenied,
        "Debug",
    )
    .await;
    // SecurityVersion too low (package s wants >= 4, identity has 3).
    expect_denied(
        &c,
        &marble,
        "svn",
        marble.quote(&sim, &good),
        tonic::Code::PermissionDenied,
        "SecurityVersion",
    )
    .await;
    // Garbage quote.
    expect_denied(
        &c,
        &marble,
        "m",
        vec![1, 2, 3],
        tonic::Code::PermissionDenied,
        "quote",
    )
    .await;
    // Bad UUID (after all checks pass).
    let (r, _) = activate(
        c.mesh(),
        &marble,
        "m",
        "not-a-uuid",
        marble.quote(&sim, &good),
    )
    .await;
    assert_eq!(r.unwrap_err().code(), tonic::Code::InvalidArgument);
    // MaxActivations = 2.
    for _ in 0..2 {
        let (r, _) = activate(
            c.mesh(),
            &marble,
            "m",
            "9e8f1bb0-2d43-4e5c-8c0a-1a2b3c4d5e6f",
            marble.quote(&sim, &good),
        )
        .await;
        r.unwrap();
    }
    expect_denied(
        &c,
        &marble,
        "m",
        marble.quote(&sim, &good),
        tonic::Code::PermissionDenied,
        "reached max activations count",
    )
    .await;
    // Counter survives a restart.
    let c = c.restart(&[]).await;
    expect_denied(
        &c,
        &marble,
        "m",
        marble.quote(&sim, &good),
        tonic::Code::PermissionDenied,
        "reached max activations count",
    )
    .await;
    c.stop().await;
}

/// FR-41: concurrent activations of one marble type with different UUIDs.
#[tokio::test(flavor = "multi_thread")]
async fn fr41_concurrent_activations() {
    let c = Coord::start().await;
    let sim = c.sim();
    assert_eq!(
        c.set_manifest(base_manifest(U, "").as_bytes()).await.status,
        200
    );
    let id = identity(&sim, U, false);
    let mesh = c.mesh();
    let mut tasks = Vec::new();
    for uuid in [
        "9e8f1bb0-2d43-4e5c-8c0a-1a2b3c4d5e6f",
        "11111111-2222-4333-8444-555555555555",
    ] {
        let marble = TestMarble::new();
        let q = marble.quote(&sim, &id);
        tasks.push(tokio::spawn(async move {
            let (r, _) = activate(mesh, &marble, "m", uuid, q).await;
            pem_ders(&env_str(
                &r.unwrap(),
                "MARBLE_PREDEFINED_MARBLE_CERTIFICATE_CHAIN",
            ))[0]
                .clone()
        }));
    }
    let a = tasks.remove(0).await.unwrap();
    let b = tasks.remove(0).await.unwrap();
    assert_ne!(a, b);
    let r = c.set_manifest(base_manifest(V, "").as_bytes()).await;
    assert_eq!(r.status, 500);
    c.stop().await;
}

/// Group commit of activation counters: 24 marbles race for MaxActivations = 5; exactly five
/// are activated, the rest refused at the limit, and the count survives a restart.
#[tokio::test(flavor = "multi_thread")]
async fn group_commit_grants_max_activations_exactly() {
    let c = Coord::start().await;
    let sim = c.sim();
    let r = c
        .set_manifest(base_manifest(U, r#","MaxActivations":5"#).as_bytes())
        .await;
    assert_eq!(r.status, 200);
    let id = identity(&sim, U, false);
    let mesh = c.mesh();
    let mut tasks = Vec::new();
    for i in 0..24u32 {
        let marble = TestMarble::new();
        let q = marble.quote(&sim, &id);
        let uuid = format!("00000000-0000-4000-8000-{i:012}");
        tasks.push(tokio::spawn(async move {
            activate(mesh, &marble, "m", &uuid, q).await.0
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(s) => {
                assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
                assert!(
                    s.message().contains("reached max activations count"),
                    "{s:?}"
                );
                refused += 1;
            }
        }
    }
    assert_eq!((ok, refused), (5, 19));
    let c = c.restart(&[]).await;
    let marble = TestMarble::new();
    let (r, _) = activate(
        c.mesh(),
        &marble,
        "m",
        "9e8f1bb0-2d43-4e5c-8c0a-1a2b3c4d5e6f",
        marble.quote(&sim, &id),
    )
    .await;
    assert_eq!(r.unwrap_err().code(), tonic::Code::PermissionDenied);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_identity_and_manifest() {
    let c = Coord::start().await;
    let raw = read_manifest("valid-basic.json");
    assert_eq!(c.set_manifest(&raw).await.status, 200);
    let before = request(c.client(), "GET", "/api/v2/manifest", None)
        .await
        .json();
    let q1 = request(c.client(), "GET", "/api/v2/quote", None)
        .await
        .json();
    let c = c.restart(&[]).await;
    assert_eq!(c.status_code().await, 3);
    let after = request(c.client(), "GET", "/api/v2/manifest", None)
        .await
        .json();
    assert_eq!(before, after);
    let q2 = request(c.client(), "GET", "/api/v2/quote", None)
        .await
        .json();
    assert_eq!(q1["data"]["cert"], q2["data"]["cert"]);
    let root = pem_ders(q2["data"]["cert"].as_str().unwrap())[1].clone();
    let sig = base64::engine::general_purpose::STANDARD
        .decode(
            after["data"]["manifestSignatureRootECDSA"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let m = base64::engine::general_purpose::STANDARD
        .decode(after["data"]["manifest"].as_str().unwrap())
        .unwrap();
    assert_eq!(m, raw);
    cairn_ca::verify_manifest_signature(&root, &m, &sig).unwrap();
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_in_state_2_keeps_root() {
    let c = Coord::start().await;
    let q1 = request(c.client(), "GET", "/api/v2/quote", None)
        .await
        .json();
    let c = c.restart(&[]).await;
    assert_eq!(c.status_code().await, 2);
    let q2 = request(c.client(), "GET", "/api/v2/quote", None)
        .await
        .json();
    assert_eq!(q1["data"]["cert"], q2["data"]["cert"]);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn flipped_byte_enters_recovery_not_a_new_identity() {
    let c = Coord::start().await;
    let raw = base_manifest(U, "");
    assert_eq!(c.set_manifest(raw.as_bytes()).await.status, 200);
    let q1 = request(c.client(), "GET", "/api/v2/quote", None)
        .await
        .json();
    let (dir, tmp) = c.stop().await;
    // The seal dir is private whatever the umask.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("seal"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    let state_file = dir.join("seal").join(cairn_store::STATE_FILE);
    let mut bytes = std::fs::read(&state_file).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::write(&state_file, &bytes).unwrap();
    let running = start_in(&dir, &[]).await;
    let c = Coord {
        running,
        dir,
        _tmp: tmp,
    };
    assert_eq!(c.status_code().await, 1);
    let s = request(c.client(), "GET", "/api/v2/status", None)
        .await
        .json();
    assert!(s["data"]["message"]
        .as_str()
        .unwrap()
        .contains("recovery mode"));
    // The sealed state is not overwritten.
    assert_eq!(std::fs::read(&state_file).unwrap(), bytes);
    // A temporary root is served and can be attested.
    let q2 = request(c.client(), "GET", "/api/v2/quote", None)
        .await
        .json();
    assert_ne!(q1["data"]["cert"], q2["data"]["cert"]);
    let r = request(c.client(), "GET", "/api/v2/manifest", None).await;
    assert_eq!(r.status, 500);
    assert!(r.text().contains("recovery"));
    // Restarting again still does not replace the sealed state.
    let c = c.restart(&[]).await;
    assert_eq!(c.status_code().await, 1);
    assert_eq!(std::fs::read(&state_file).unwrap(), bytes);
    let q2 = request(c.client(), "GET", "/api/v2/quote", None)
        .await
        .json();
    // An explicit manifest set in state 1 replaces it, keeping the temporary root.
    let r = c.set_manifest(raw.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.status_code().await, 3);
    assert_ne!(std::fs::read(&state_file).unwrap(), bytes);
    let q3 = request(c.client(), "GET", "/api/v2/quote", None)
        .await
        .json();
    assert_eq!(q2["data"]["cert"], q3["data"]["cert"]);
    let c = c.restart(&[]).await;
    assert_eq!(c.status_code().await, 3);
    c.stop().await;
}

/// FR-32 b: a manifest set whose commit fails changes nothing and returns no secrets.
#[tokio::test(flavor = "multi_thread")]
async fn fr32_failed_commit_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let seal = tmp.path().join("seal");
    let config = cairn_coordinator::Config::parse(
        [
            "x",
            "--client-addr",
            "127.0.0.1:0",
            "--mesh-addr",
            "127.0.0.1:0",
            "--simulation",
            "--seal-dir",
            seal.to_str().unwrap(),
        ],
        &std::collections::BTreeMap::<String, String>::new(),
    )
    .unwrap();
    std::fs::create_dir_all(&seal).unwrap();
    let store = std::sync::Arc::new(cairn_store::FilePersistence::new(&seal).unwrap());
    let running = cairn_coordinator::start_with_store(&config, Some(store.clone()))
        .await
        .unwrap();
    let c = Coord {
        running,
        dir: tmp.path().to_path_buf(),
        _tmp: Some(tmp),
    };
    let raw = base_manifest(U, "");
    store.fail_next_writes(1);
    let r = c.set_manifest(raw.as_bytes()).await;
    assert_eq!(r.status, 500, "{}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "error");
    assert!(v["data"].is_null());
    assert_eq!(c.status_code().await, 2);
    assert_eq!(
        request(c.client(), "GET", "/api/v2/manifest", None)
            .await
            .status,
        500
    );
    let r = c.set_manifest(raw.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.status_code().await, 3);
    c.stop().await;
}

/// TCB status: a platform whose TCB is OutOfDate is refused unless the package accepts it.
#[tokio::test(flavor = "multi_thread")]
async fn tcb_status_not_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let sim_dir = tmp.path().join("seal").join("sim");
    let settings = cairn_platform::SimSettings {
        tcb_status: "OutOfDate".into(),
        advisory_ids: vec!["INTEL-SA-00615".into()],
    };
    let sim = cairn_platform::SimPlatformDir::open_or_create_with(
        &sim_dir,
        ::time::OffsetDateTime::now_utc(),
        settings,
    )
    .unwrap();
    let running = start_in(tmp.path(), &[]).await;
    let c = Coord {
        running,
        dir: tmp.path().to_path_buf(),
        _tmp: Some(tmp),
    };
    let m = format!(
        r#"{{"Packages":{{"p":{{"UniqueID":"{u}"}},"q":{{"UniqueID":"{u}","AcceptedTCBStatuses":["OutOfDate"]}}}},"Marbles":{{"m":{{"Package":"p"}},"ok":{{"Package":"q"}}}}}}"#,
        u = hex::encode(U)
    );
    assert_eq!(c.set_manifest(m.as_bytes()).await.status, 200);
    let marble = TestMarble::new();
    let id = identity(&sim, U, false);
    expect_denied(
        &c,
        &marble,
        "m",
        marble.quote(&sim, &id),
        tonic::Code::PermissionDenied,
        "OutOfDate",
    )
    .await;
    let (r, _) = activate(
        c.mesh(),
        &marble,
        "ok",
        "9e8f1bb0-2d43-4e5c-8c0a-1a2b3c4d5e6f",
        marble.quote(&sim, &id),
    )
    .await;
    r.unwrap();
    c.stop().await;
}
