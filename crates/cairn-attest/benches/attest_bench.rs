//! `cargo bench -p cairn-attest`: dcap-qvl's own verify of the real SGX sample vs Cairn's
//! verify+policy, and simulated quote generation rate. Prints; asserts nothing.

use std::time::Instant;

use cairn_attest::sim::{EnclaveIdentity, SimPlatform, SimSettings};
use cairn_attest::{check_policy, verify, Collateral, PackagePolicy, TrustRoot};

const NOW: u64 = 1_751_328_000;

fn per_sec(n: u32, f: impl FnMut()) -> f64 {
    let mut f = f;
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}

fn main() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/attestation/dcap-qvl"
    );
    let quote = std::fs::read(format!("{dir}/sgx_quote")).expect("sample quote");
    let coll: Collateral = serde_json::from_slice(
        &std::fs::read(format!("{dir}/sgx_quote_collateral.json")).expect("sample collateral"),
    )
    .expect("collateral json");
    let n = 300;
    let dcap = per_sec(n, || {
        dcap_qvl::verify::QuoteVerifier::new_prod()
            .verify(&quote, &coll, NOW)
            .expect("dcap verify");
    });
    let policy = PackagePolicy {
        unique_id: Some([0x33; 32]),
        accepted_tcb_statuses: vec!["ConfigurationAndSWHardeningNeeded".into()],
        ..Default::default()
    };
    let cairn = per_sec(n, || {
        let v = verify(&quote, &coll, NOW, &TrustRoot::IntelProduction).expect("cairn verify");
        let _ = std::hint::black_box(check_policy(&v, &policy));
    });
    let now = time::OffsetDateTime::from_unix_timestamp(NOW as i64).expect("time");
    let sim = SimPlatform::generate(now, SimSettings::default()).expect("sim platform");
    let id = EnclaveIdentity {
        mr_enclave: [1; 32],
        mr_signer: sim.signer_id(),
        isv_prod_id: 1,
        isv_svn: 1,
        debug: false,
    };
    let gen = per_sec(2000, || {
        std::hint::black_box(sim.quote(&id, &[7; 32]).expect("sim quote"));
    });
    let sim_coll = sim.collateral(now).expect("sim collateral");
    let sim_q = sim.quote(&id, &[7; 32]).expect("sim quote");
    let root = TrustRoot::Simulation(sim.root_der().to_vec());
    let simv = per_sec(n, || {
        verify(&sim_q, &sim_coll, NOW, &root).expect("sim verify");
    });
    println!(
        "dcap-qvl verify (real sgx_quote)      : {:8.3} ms/op  ({dcap:.0}/s)",
        1e3 / dcap
    );
    println!(
        "cairn verify+policy (real sgx_quote)  : {:8.3} ms/op  ({cairn:.0}/s)  ratio {:.2}x",
        1e3 / cairn,
        dcap / cairn
    );
    println!(
        "cairn verify (simulated quote)        : {:8.3} ms/op  ({simv:.0}/s)",
        1e3 / simv
    );
    println!(
        "simulated quote generation            : {:8.3} ms/op  ({gen:.0}/s)",
        1e3 / gen
    );
}
